"""``bucket compact`` and ``bucket downsample`` follow the rule of every bucket-changing command: without
``--no-dry-run`` they print the plan and the bucket stays byte for byte as it was."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.clihelp import START_MS, run_cli
from thanostools.core.ulid import new_ulid

H = 3_600_000
ZERO_DELAYS = ("--consistency-delay", "0s", "--delete-delay", "0s")


def snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under ``root`` with its content hash and mode."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs:
            path = Path(dirpath, name)
            out[str(path.relative_to(root)) + "/"] = oct(path.stat().st_mode)
        for name in files:
            path = Path(dirpath, name)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path.relative_to(root))] = f"{oct(path.stat().st_mode)} {digest}"
    return out


def generate(root: Path, hours: int, *, block_duration: str = "2h", start: int = START_MS) -> list[str]:
    res = run_cli("bucket", "generate", "--bucket", str(root), "--series", "6", "--duration", f"{hours}h",
                  "--start", str(start), "--block-duration", block_duration, "-o", "ids")
    assert res.exit_code == 0, res.stderr
    return res.stdout.split()


@pytest.fixture
def busy_bucket(tmp_path: Path) -> tuple[Path, list[str], str]:
    """Ten 2h blocks (one marked for deletion long ago) and a partial upload made just now."""
    root = tmp_path / "bucket"
    ids = generate(root, 20)
    (root / ids[-1] / "deletion-mark.json").write_text(json.dumps({"id": ids[-1], "version": 1,
                                                                   "deletion_time": 1, "details": "old"}))
    partial = new_ulid()
    (root / partial / "chunks").mkdir(parents=True)
    (root / partial / "chunks" / "000001").write_bytes(b"\0" * 16)
    return root, ids, partial


def test_compact_without_no_dry_run_changes_nothing(busy_bucket: tuple[Path, list[str], str]) -> None:
    root, ids, partial = busy_bucket
    before = snapshot(root)
    res = run_cli("bucket", "compact", "--bucket", str(root), *ZERO_DELAYS)
    assert res.exit_code == 0, res.stderr
    assert snapshot(root) == before
    assert "compact " in res.stdout and "mark-deletion" in res.stdout and "NOT-PLANNED" in res.stdout
    assert "dry run:" in res.stderr and "--no-dry-run" in res.stderr

    doc = run_cli("bucket", "compact", "--bucket", str(root), *ZERO_DELAYS, "-o", "json").json()
    assert snapshot(root) == before
    assert doc["dry_run"] is True and doc["plans"]
    by_action: dict[str, set[str]] = {}
    for a in doc["actions"]:
        by_action.setdefault(a["action"], set()).add(a["block"])
    assert ids[-1] in by_action["delete"]  # marked long ago: the run would delete it
    first_inputs = {b["ulid"] for b in doc["plans"][0]["blocks"]}
    assert first_inputs <= set(ids) and first_inputs <= by_action["mark-deletion"]
    [skipped] = [a for a in doc["actions"] if a["block"] == partial]
    assert skipped["status"] == "skipped" and "--partial-upload-age 48h" in skipped["reason"]


def test_compact_no_dry_run_acts(busy_bucket: tuple[Path, list[str], str]) -> None:
    root, ids, _ = busy_bucket
    res = run_cli("bucket", "compact", "--bucket", str(root), *ZERO_DELAYS, "--no-dry-run", "-o", "json")
    assert res.exit_code == 0, res.stderr
    assert res.json()["compactions"] and not (root / ids[-1]).exists()


def test_plan_is_an_alias_and_wait_needs_no_dry_run(busy_bucket: tuple[Path, list[str], str]) -> None:
    root, _, _ = busy_bucket
    before = snapshot(root)
    assert run_cli("bucket", "compact", "--bucket", str(root), "--plan", *ZERO_DELAYS).exit_code == 0
    res = run_cli("bucket", "compact", "--bucket", str(root), "--wait", *ZERO_DELAYS)
    assert res.exit_code == 2 and "--wait needs --no-dry-run" in res.stderr and "Traceback" not in res.stderr
    assert snapshot(root) == before


def test_downsample_without_no_dry_run_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "bucket"
    [block] = generate(root, 48, block_duration="48h", start=START_MS - START_MS % (48 * H))
    before = snapshot(root)
    res = run_cli("bucket", "downsample", "--bucket", str(root))
    assert res.exit_code == 0, res.stderr
    assert block in res.stdout and "dry run: 1 action(s) planned" in res.stderr
    assert snapshot(root) == before
    computed = run_cli("bucket", "downsample", "--bucket", str(root), "--compute", "-o", "json")
    assert computed.exit_code == 0 and computed.json()[0]["status"] == "dry-run"
    assert snapshot(root) == before
    bad = run_cli("bucket", "downsample", "--bucket", str(root), "--compute", "--no-dry-run")
    assert bad.exit_code == 2 and snapshot(root) == before
    done = run_cli("bucket", "downsample", "--bucket", str(root), "--no-dry-run", "-o", "json")
    assert done.exit_code == 0, done.stderr
    assert [r["status"] for r in done.json()] == ["uploaded"]
    assert len(snapshot(root)) > len(before)


def test_cleanup_deletes_a_partial_upload_marked_for_deletion(busy_bucket: tuple[Path, list[str], str]) -> None:
    root, _, partial = busy_bucket
    res = run_cli("bucket", "cleanup", "--bucket", str(root), *ZERO_DELAYS, "--no-dry-run", "-o", "json")
    assert res.exit_code == 0 and (root / partial).exists()  # younger than the 48h floor (by its ULID time)
    mark = run_cli("bucket", "mark", "--bucket", str(root), "--kind", "deletion", "--id", partial, "--no-dry-run")
    assert mark.exit_code == 0, mark.stderr
    res = run_cli("bucket", "cleanup", "--bucket", str(root), *ZERO_DELAYS, "--no-dry-run", "-o", "json")
    assert res.exit_code == 0, res.stderr
    assert not (root / partial).exists()


def test_compaction_leftovers_are_marked_for_deletion(tmp_path: Path) -> None:
    """A compaction killed after its upload but before marking its inputs: the next run marks them, as Thanos."""
    root = tmp_path / "bucket"
    generate(root, 20)
    args = ("bucket", "compact", "--bucket", str(root), "--consistency-delay", "0s", "--cleanup.disable",
            "--downsampling.disable", "-o", "json")
    first = run_cli(*args, "--no-dry-run").json()["compactions"][0]
    for ulid in first["inputs"]:
        (root / ulid / "deletion-mark.json").unlink()
    planned = run_cli(*args).json()
    assert {a["block"] for a in planned["actions"] if "duplicate" in a["reason"]} == set(first["inputs"])
    again = run_cli(*args, "--no-dry-run")
    assert again.exit_code == 0, again.stderr
    assert sorted(again.json()["garbage_collected"]) == sorted(first["inputs"])
    assert all((root / u / "deletion-mark.json").exists() for u in first["inputs"])
