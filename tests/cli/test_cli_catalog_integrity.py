"""Listing blocks and reading their meta.json never hides or confuses blocks.

Every read command answers for the readable blocks, names each unreadable one on stderr (one line: block,
file, why) and exits by the rule: 1 where the answer is incomplete, 3 for verify, 0 with a warning where the
command is documented to go on (query's partial response). Read commands never change the bucket.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.clihelp import START_MS, CliResult, run_cli, tree_digest
from thanostools.core.tsdb.writer import BlockWriter

HOUR = 3_600_000
BLOCKS = 4  # consecutive 2h blocks; the third one is the victim of each corruption
VICTIM = 2
INT64_MAX = 2**63 - 1
BASE = START_MS - START_MS % (8 * HOUR)  # the blocks fill one 8h compaction range


def _write_block(root: Path, start: int, ulid: str | None = None) -> str:
    w = BlockWriter(str(root), ulid=ulid, min_time=start, max_time=start + 2 * HOUR, external_labels={"cluster": "a"})
    t = start + np.arange(0, 2 * HOUR, 60_000, dtype=np.int64)
    for i in range(4):
        w.add_samples((("__name__", "m"), ("i", str(i))), t, np.arange(t.size, dtype=np.float64) + i)
    return w.finish().ulid


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("catalog") / "bucket"
    root.mkdir()
    ulids = [_write_block(root, BASE + 2 * HOUR * n) for n in range(BLOCKS)]
    return root, ulids


@pytest.fixture
def bucket(template: tuple[Path, list[str]], tmp_path: Path) -> tuple[Path, list[str]]:
    root = tmp_path / "bucket"
    shutil.copytree(template[0], root, symlinks=True)
    return root, template[1]


# --- the read commands ---------------------------------------------------------------------------------------

END = BASE + 2 * HOUR * BLOCKS
READS: dict[str, list[str]] = {
    "ls": ["bucket", "ls"],
    "ls-json": ["bucket", "ls", "-o", "json"],
    "inspect": ["bucket", "inspect"],
    "analyze": ["bucket", "analyze"],
    "dump": ["bucket", "dump"],
    "verify": ["bucket", "verify"],
    "query": ["query", "sum by (i) (m)", "--start", str(BASE), "--end", str(END), "--step", "10m",
              "-o", "json"],
    "compact-plan": ["bucket", "compact", "--plan", "--consistency-delay", "0s"],
    "downsample-plan": ["bucket", "downsample", "--plan"],
}
# Exit code when one block's meta.json cannot be read (the healthy blocks are still answered for).
BROKEN_EXIT = {"verify": 3, "query": 0}


def _read(name: str, root: Path) -> CliResult:
    before = tree_digest(root)
    res = run_cli(*READS[name], "--bucket", str(root))
    assert tree_digest(root) == before, f"{name} changed the bucket"
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    return res


@pytest.fixture(scope="module")
def clean_answers(template: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every read command's stdout on the bucket without the victim block."""
    root = tmp_path_factory.mktemp("clean") / "bucket"
    shutil.copytree(template[0], root)
    shutil.rmtree(root / template[1][VICTIM])
    answers = {}
    for name in READS:
        res = _read(name, root)
        assert res.exit_code == 0, (name, res.stderr)
        answers[name] = res.stdout
    return answers


# --- meta.json corruptions -----------------------------------------------------------------------------------

Corruption = Callable[[Path, list[str]], None]


def _edit_meta(edit: Callable[[dict[str, object]], object]) -> Corruption:
    def apply(block: Path, ulids: list[str]) -> None:
        doc = json.loads((block / "meta.json").read_text())
        edit(doc)
        (block / "meta.json").write_text(json.dumps(doc, indent="\t") + "\n")

    return apply


def _bytes(change: Callable[[bytes, list[str]], bytes]) -> Corruption:
    def apply(block: Path, ulids: list[str]) -> None:
        meta = block / "meta.json"
        meta.write_bytes(change(meta.read_bytes(), ulids))

    return apply


def _truncate(fraction: float) -> Corruption:
    return _bytes(lambda data, _: data[:max(1, int(len(data) * fraction))] if fraction else b"")


def _flip_at(anchor: bytes, shift: int) -> Corruption:
    """Flip the lowest bit of the byte ``shift`` bytes after ``anchor`` (structure, ULID or version bytes,
    where a flip cannot yield another valid meta with the same identity)."""

    def change(data: bytes, _: list[str]) -> bytes:
        pos = data.index(anchor) + shift
        return data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1:]

    return _bytes(change)


def _pop(key: str) -> Corruption:
    return _edit_meta(lambda doc: doc.pop(key))


def _set(key: str, value: object) -> Corruption:
    return _edit_meta(lambda doc: doc.__setitem__(key, value))


def _other_ulid(block: Path, ulids: list[str]) -> None:
    _set("ulid", ulids[VICTIM - 1])(block, ulids)


def _swap_times(block: Path, ulids: list[str]) -> None:
    def edit(doc: dict[str, object]) -> None:
        doc["minTime"], doc["maxTime"] = doc["maxTime"], doc["minTime"]

    _edit_meta(edit)(block, ulids)


def _meta_directory(block: Path, _: list[str]) -> None:
    (block / "meta.json").unlink()
    (block / "meta.json").mkdir()


def _meta_dangling_link(block: Path, _: list[str]) -> None:
    (block / "meta.json").unlink()
    os.symlink(block / "no-such-file", block / "meta.json")


def _thanos_labels_number(block: Path, ulids: list[str]) -> None:
    def edit(doc: dict[str, object]) -> None:
        thanos = doc["thanos"]
        assert isinstance(thanos, dict)
        thanos["labels"] = {"cluster": 7}

    _edit_meta(edit)(block, ulids)


DEEP = 200_000
CORRUPTIONS: dict[str, Corruption] = {
    "empty": _truncate(0),
    "truncated-1": _bytes(lambda data, _: data[:1]),
    "truncated-third": _truncate(1 / 3),
    "truncated-half": _truncate(1 / 2),
    "truncated-end": _bytes(lambda data, _: data.rstrip()[:-1]),
    "flip-open-brace": _flip_at(b"{", 0),
    "flip-ulid": _flip_at(b'"ulid": "', 12),
    "flip-colon": _flip_at(b'"minTime"', 9),
    "flip-version": _flip_at(b'"version": 1', 11),
    "invalid-json": _bytes(lambda *_: b"{not json"),
    "not-an-object": _bytes(lambda *_: b"[1, 2]"),
    "mintime-string": _set("minTime", "0"),
    "stats-array": _set("stats", []),
    "labels-number": _thanos_labels_number,
    "no-maxtime": _pop("maxTime"),
    "no-ulid": _pop("ulid"),
    "version-2": _set("version", 2),
    "version-99": _set("version", 99),
    "ulid-of-other-block": _other_ulid,
    "maxtime-before-mintime": _swap_times,
    "deep-array": _bytes(lambda *_: b"[" * DEEP + b"]" * DEEP),
    "deep-object": _bytes(lambda *_: b'{"a":' * DEEP + b"1" + b"}" * DEEP),
    "meta-is-directory": _meta_directory,
    "meta-dangling-symlink": _meta_dangling_link,
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_meta_matrix(corruption: str, bucket: tuple[Path, list[str]], clean_answers: dict[str, str]) -> None:
    root, ulids = bucket
    victim = ulids[VICTIM]
    CORRUPTIONS[corruption](root / victim, ulids)
    for name in READS:
        res = _read(name, root)
        assert res.exit_code == BROKEN_EXIT.get(name, 1), (name, res.exit_code, res.stdout, res.stderr)
        report = res.stderr
        if name == "verify":  # issues are verify's answer, on stdout
            report = res.stdout
        else:
            assert res.stdout == clean_answers[name], name
        naming = [line for line in report.splitlines() if victim in line]
        assert len(naming) == 1, (name, report)
        assert "meta.json" in naming[0], (name, naming)
        others = [line for line in res.stderr.splitlines() if victim not in line]
        assert all(not line.startswith("error: corrupt") for line in others), (name, res.stderr)
    verify = run_cli("bucket", "verify", "--bucket", str(root), "-o", "json")
    issues = verify.json()["issues"]
    assert [(i["id"], i["blocks"]) for i in issues] == [("meta_files", [victim])]


def test_no_partial_response_query_fails_naming_the_block(bucket: tuple[Path, list[str]]) -> None:
    root, ulids = bucket
    (root / ulids[VICTIM] / "meta.json").write_text('{"version": 99}')
    res = run_cli("query", "sum(m)", "--time", str(END), "--no-partial-response", "--bucket", str(root))
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.splitlines() == [line for line in res.stderr.splitlines() if ulids[VICTIM] in line]
    assert "unsupported meta.json version 99" in res.stderr and res.stderr.count("\n") == 1


def test_broken_block_by_id_is_a_located_error(bucket: tuple[Path, list[str]]) -> None:
    root, ulids = bucket
    victim = ulids[VICTIM]
    _swap_times(root / victim, ulids)
    for args in (["bucket", "analyze", "--id", victim], ["bucket", "inspect", "--id", victim],
                 ["bucket", "dump", "--id", victim]):
        res = run_cli(*args, "--bucket", str(root))
        assert res.exit_code == 1, args
        assert res.stderr.count("\n") == 1 and victim in res.stderr and "file meta.json" in res.stderr, res.stderr
        assert "maxTime" in res.stderr and "before minTime" in res.stderr


# --- 1. dangling symlinks ---------------------------------------------------------------------------------------


def test_dangling_symlinks_hide_nothing(bucket: tuple[Path, list[str]]) -> None:
    root, ulids = bucket
    full = {name: _read(name, root).stdout for name in ("ls", "dump", "query")}
    os.symlink(root / "nowhere", root / "dangling-top")
    os.symlink(root / "nowhere", root / ulids[0] / "dangling")
    os.symlink(root / "nowhere", root / ulids[1] / "chunks" / "dangling")
    for name, answer in full.items():
        res = _read(name, root)
        assert res.exit_code == 0 and res.stdout == answer and res.stderr == "", (name, res.stderr)
    res = run_cli("bucket", "verify", "--deep", "--bucket", str(root))
    assert res.exit_code == 0, res.stdout + res.stderr
    assert f"({BLOCKS} blocks checked" in res.stdout + res.stderr


# --- 2. a meta.json naming another block ------------------------------------------------------------------------


def test_compact_skips_block_claiming_another_ulid(bucket: tuple[Path, list[str]]) -> None:
    """Blocks 0..3 fill an 8h range, block 4 follows; block 1 claims block 0's ULID: it is left alone (no
    merge, no mark), blocks 0, 2 and 3 are compacted, and the run exits 1 naming block 1."""
    root, ulids = bucket
    ulids = [*ulids, _write_block(root, BASE + 2 * HOUR * BLOCKS)]
    impostor = ulids[1]
    _set("ulid", ulids[0])(root / impostor, ulids)
    impostor_files = tree_digest(root / impostor)
    res = run_cli("bucket", "compact", "--bucket", str(root), "--consistency-delay", "0s", "--compact.ranges",
                  "2h,8h", "--downsampling.disable", "--cleanup.disable", "--no-dry-run", "-o", "json")
    assert res.exit_code == 1, res.stderr
    report = res.json()
    assert [c["inputs"] for c in report["compactions"]] == [[ulids[0], ulids[2], ulids[3]]]
    assert list(report["unreadable_metas"]) == [impostor]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and impostor in errors[0] and "meta.json" in errors[0] and "does not match" in errors[0]
    assert tree_digest(root / impostor) == impostor_files
    marked = sorted(u for u in ulids if (root / u / "deletion-mark.json").exists())
    assert marked == sorted([ulids[0], ulids[2], ulids[3]])
    out = report["compactions"][0]
    assert out["samples"] == 3 * 4 * 120  # the inputs' samples, nothing of the impostor
    listed = run_cli("bucket", "ls", "--bucket", str(root), "-o", "ids")
    assert listed.exit_code == 1
    assert sorted(listed.stdout.split()) == sorted([ulids[0], ulids[2], ulids[3], ulids[4], out["block"]])


# --- 5. times at the ends of int64 ------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["table", "wide", "json", "csv"])
def test_int64_times_render_in_ls(bucket: tuple[Path, list[str]], output: str) -> None:
    root, ulids = bucket
    _set("maxTime", INT64_MAX)(root / ulids[-1], ulids)
    res = _read("ls", root) if output == "table" else run_cli("bucket", "ls", "-o", output, "--bucket", str(root))
    assert res.exit_code == 0, res.stderr
    if output == "json":
        assert any(doc["maxTime"] == INT64_MAX for doc in res.json())
    else:
        assert "292278994-08-17T07:12:55.807Z" in res.stdout


@pytest.mark.parametrize("output", ["table", "json", "csv", "tsv"])
def test_int64_times_render_in_inspect(bucket: tuple[Path, list[str]], output: str) -> None:
    root, ulids = bucket
    _set("minTime", -(2**63))(root / ulids[0], ulids)
    _set("maxTime", INT64_MAX)(root / ulids[-1], ulids)
    res = run_cli("bucket", "inspect", "-o", output, "--bucket", str(root))
    assert res.exit_code == 0, res.stderr
    assert "292278994-08-17T07:12:55.807Z" in res.stdout
    assert "-292275055-05-16T16:47:04.192Z" in res.stdout
    one = run_cli("bucket", "inspect", "--id", ulids[-1], "--bucket", str(root))
    assert one.exit_code == 0 and "292278994-08-17T07:12:55.807Z" in one.stdout, one.stderr


def test_int64_times_in_analyze(bucket: tuple[Path, list[str]]) -> None:
    root, ulids = bucket
    _set("maxTime", INT64_MAX)(root / ulids[-1], ulids)
    for output in ("text", "json"):
        res = run_cli("bucket", "analyze", "-o", output, "--bucket", str(root))
        assert res.exit_code == 0 and ulids[-1] in res.stdout, res.stderr


# --- 6. internal errors and their details -----------------------------------------------------------------------


def test_internal_error_is_one_line_and_debug_shows_the_traceback(bucket: tuple[Path, list[str]],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug of ours (simulated: the listing raises a plain Python error) is one line; with debug logging the
    promised details, the traceback, really follow."""
    from thanostools.core.workspace import BucketWorkspace

    def broken_listing(self: BucketWorkspace, flt: object = None) -> list[object]:
        raise ZeroDivisionError("simulated bug\nsecond line")

    monkeypatch.setattr(BucketWorkspace, "blocks", broken_listing)
    root, _ = bucket
    res = run_cli("bucket", "ls", "--bucket", str(root))
    assert res.exit_code == 1
    assert res.stderr == ("internal error: ZeroDivisionError: simulated bug "
                          "(run with --log.level=debug for details)\n")
    res = run_cli("--log.level=debug", "bucket", "ls", "--bucket", str(root))
    assert res.exit_code == 1
    assert "Traceback (most recent call last)" in res.stderr and "broken_listing" in res.stderr
    assert res.stderr.splitlines()[-1].startswith("internal error: ZeroDivisionError: simulated bug")


# --- 7. no bucket configured ------------------------------------------------------------------------------------


def test_bare_ls_says_how_to_name_a_bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("THANOS_TOOLS_BUCKET", raising=False)
    res = run_cli("bucket", "ls")
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.count("\n") == 1
    assert "./data does not exist" in res.stderr
    assert "--bucket DIR" in res.stderr and "THANOS_TOOLS_BUCKET" in res.stderr
    assert not (tmp_path / "data").exists()
