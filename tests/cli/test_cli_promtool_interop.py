"""Blocks made by real promtool are read by us exactly as promtool reads them, and vice versa."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.clihelp import make_openmetrics, run_cli
from tests.fixtures_prom import needs_promtool, promtool_analyze, promtool_create_blocks, promtool_dump

pytestmark = needs_promtool


@pytest.fixture(scope="module")
def promtool_bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Several promtool-made blocks (3h of data at 2h blocks) with awkward values."""
    root = tmp_path_factory.mktemp("promtool")
    return promtool_create_blocks(make_openmetrics(), root / "data")


def _block_dirs(bucket: Path) -> list[Path]:
    return sorted(p for p in bucket.iterdir() if (p / "meta.json").exists())


def test_dump_matches_promtool_dump(promtool_bucket: Path) -> None:
    expected = promtool_dump(promtool_bucket)
    res = run_cli("bucket", "dump", "--bucket", str(promtool_bucket))
    assert res.exit_code == 0, res.stderr
    assert len(_block_dirs(promtool_bucket)) >= 2
    assert res.stdout == expected


def test_dump_time_range_and_match(promtool_bucket: Path) -> None:
    full = promtool_dump(promtool_bucket).splitlines()
    lines = [ln for ln in full if ln.startswith('{__name__="special_values"')]
    res = run_cli("bucket", "dump", "--bucket", str(promtool_bucket), "--match", "special_values")
    assert res.stdout.splitlines() == lines
    times = sorted({int(ln.rsplit(" ", 1)[1]) for ln in full})
    lo, hi = times[len(times) // 3], times[2 * len(times) // 3]
    res = run_cli("bucket", "dump", "--bucket", str(promtool_bucket), "--min-time", str(lo), "--max-time", str(hi))
    assert res.stdout.splitlines() == [ln for ln in full if lo <= int(ln.rsplit(" ", 1)[1]) <= hi]


def _sections(text: str) -> dict[str, list[str]]:
    """Split analyze output into header lines and titled sections."""
    out: dict[str, list[str]] = {"header": []}
    current = "header"
    for line in text.splitlines():
        if line.endswith(":") and not re.match(r"^\s*\d+%:", line):
            current = line
            out[current] = []
        elif line:
            out[current].append(line)
    return out


def _ranked_ok(ours: list[str], theirs: list[str]) -> None:
    """Same values in the same order; keys may differ only among ties (promtool's sort is unstable)."""
    assert [ln.split(" ", 1)[0] for ln in ours] == [ln.split(" ", 1)[0] for ln in theirs]
    by_value: dict[str, set[str]] = {}
    for ln in theirs:
        v, k = ln.split(" ", 1)
        by_value.setdefault(v, set()).add(k)
    cutoff = theirs[-1].split(" ", 1)[0] if theirs else None
    for ln in ours:
        v, k = ln.split(" ", 1)
        if v != cutoff:
            assert k in by_value[v], ln


@pytest.mark.parametrize("extended", [False, True])
def test_analyze_matches_promtool(promtool_bucket: Path, extended: bool) -> None:
    for block in _block_dirs(promtool_bucket):
        extra = ["--extended"] if extended else []
        theirs = _sections(promtool_analyze(promtool_bucket, block.name, *extra))
        res = run_cli("bucket", "analyze", "--bucket", str(promtool_bucket), "--id", block.name, *extra)
        assert res.exit_code == 0, res.stderr
        ours = _sections(res.stdout)
        assert ours["header"] == theirs["header"]
        for title, lines in theirs.items():
            if title == "header":
                continue
            if "%" in "".join(lines):
                assert ours[title] == lines
            else:
                _ranked_ok(ours[title], lines)


def test_analyze_defaults_to_newest_block(promtool_bucket: Path) -> None:
    newest = max(_block_dirs(promtool_bucket), key=lambda p: json.loads((p / "meta.json").read_text())["minTime"])
    res = run_cli("bucket", "analyze", "--bucket", str(promtool_bucket))
    assert res.stdout.splitlines()[0] == f"Block ID: {newest.name}"


def test_ls_json_matches_meta_files(promtool_bucket: Path) -> None:
    res = run_cli("bucket", "ls", "--bucket", str(promtool_bucket), "-o", "json")
    assert res.exit_code == 0, res.stderr
    docs = res.json()
    blocks = _block_dirs(promtool_bucket)
    assert [d["ulid"] for d in docs] == [b.name for b in blocks]
    for doc, block in zip(docs, blocks, strict=True):
        meta = json.loads((block / "meta.json").read_text())
        size = sum(f.stat().st_size for f in block.rglob("*") if f.is_file())
        assert doc.pop("size_bytes") == size
        assert doc.pop("marks") == []
        assert doc == meta


def test_round_trip_dump_import(promtool_bucket: Path, tmp_path: Path) -> None:
    """promtool blocks → our OpenMetrics dump → our import → promtool dump equals the original."""
    res = run_cli("bucket", "dump", "--bucket", str(promtool_bucket), "-o", "openmetrics")
    assert res.exit_code == 0, res.stderr
    om = tmp_path / "dump.om"
    om.write_text(res.stdout)
    target = tmp_path / "imported"
    res = run_cli("bucket", "import", "--bucket", str(target), str(om), "-o", "json")
    assert res.exit_code == 0, res.stderr
    assert promtool_dump(target) == promtool_dump(promtool_bucket)


def test_import_same_as_promtool_create_blocks(tmp_path: Path) -> None:
    om = tmp_path / "in.om"
    om.write_bytes(make_openmetrics(series=30, hours=5, seed=9))
    theirs = promtool_create_blocks(om.read_bytes(), tmp_path / "theirs")
    ours = tmp_path / "ours"
    res = run_cli("bucket", "import", "--bucket", str(ours), str(om))
    assert res.exit_code == 0, res.stderr
    assert promtool_dump(ours) == promtool_dump(theirs)
    ranges = sorted((m["minTime"], m["maxTime"], m["stats"]["numSamples"]) for m in
                    (json.loads((d / "meta.json").read_text()) for d in _block_dirs(theirs)))
    mine = sorted((m["minTime"], m["maxTime"], m["stats"]["numSamples"]) for m in
                  (json.loads((d / "meta.json").read_text()) for d in _block_dirs(ours)))
    assert mine == ranges


def test_download_then_promtool_reads(promtool_bucket: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(promtool_bucket, copy)
    block = _block_dirs(copy)[0].name
    out = tmp_path / "dl"
    res = run_cli("bucket", "download", "--bucket", str(copy), "--id", block, str(out))
    assert res.exit_code == 0, res.stderr
    assert (out / block / "chunks").is_dir()
    ours = run_cli("bucket", "dump", "--bucket", str(copy), "--id", block)
    assert promtool_dump(out) == ours.stdout
