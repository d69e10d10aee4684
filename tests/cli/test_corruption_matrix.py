"""Damage × read command: every read command on every kind of damaged block file gives the clean answer (or warns,
naming the block), a located one-line error (exit 1), or verify findings (exit 3) — never an internal error, never
a changed bucket. (test_cli_corruption.py checks single cases in detail; this is the broad sweep.)"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.clihelp import START_MS, CliResult, run_cli, tree_digest
from thanostools.core.tsdb.bytesource import MemorySource
from thanostools.core.tsdb.index import IndexReader
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.ulid import new_ulid

H = 3_600_000
INDEX, SEGMENT, TOMBSTONES = "index", "chunks/000001", "tombstones"
AT = str((START_MS + H) // 1000)
COMMANDS: dict[str, tuple[str, ...]] = {
    "ls": ("bucket", "ls", "-o", "ids"),
    "inspect": ("bucket", "inspect", "-o", "json"),
    "analyze": ("bucket", "analyze"),
    "dump": ("bucket", "dump"),
    "verify": ("bucket", "verify", "-o", "json"),
    "verify-deep": ("bucket", "verify", "--deep", "-o", "json"),
    "query": ("query", "-o", "json", "--time", AT, "sum by (i) (m)"),
    "query-range": ("query", "-o", "json", "--start", str(START_MS // 1000), "--end", AT, "--step", "300",
                    "rate(m[5m])"),
    "compact-plan": ("bucket", "compact", "--plan"),
    "downsample-plan": ("bucket", "downsample", "--plan"),
}


@dataclass(frozen=True)
class Damage:
    name: str
    file: str
    apply: Callable[[Path], None]
    invisible_to_verify: bool | None = False  # only deep checks (or none) can see it; None: it depends
    harmless: bool = False  # a valid block (e.g. no tombstones file): every answer is the clean one


def _truncate(at: Callable[[int], int]) -> Callable[[Path], None]:
    def apply(p: Path) -> None:
        p.write_bytes(p.read_bytes()[:at(p.stat().st_size)])
    return apply


def _flip(at: Callable[[bytes], int]) -> Callable[[Path], None]:
    def apply(p: Path) -> None:
        data = bytearray(p.read_bytes())
        data[at(bytes(data))] ^= 0x04
        p.write_bytes(bytes(data))
    return apply


def _as_directory(p: Path) -> None:
    p.unlink()
    p.mkdir()


def _toc(data: bytes) -> tuple[int, ...]:
    return struct.unpack(">6Q", data[-52:-4])


def _postings_list(data: bytes, which: int) -> int:
    reader = IndexReader(MemorySource(data, "index"))
    return sorted(reader._postings_table[n][v] for n, v in reader.postings_keys())[which]


DAMAGES = [
    Damage("truncated-to-4", INDEX, _truncate(lambda n: 4)),
    Damage("truncated-half", INDEX, _truncate(lambda n: n // 2)),
    Damage("truncated-last-byte", INDEX, _truncate(lambda n: n - 1)),
    Damage("flip-symbols", INDEX, _flip(lambda d: _toc(d)[0] + 9)),
    Damage("flip-series", INDEX, _flip(lambda d: _toc(d)[1] + 20)),
    Damage("flip-all-postings", INDEX, _flip(lambda d: _postings_list(d, 0) + 9)),
    Damage("flip-postings", INDEX, _flip(lambda d: _postings_list(d, 3) + 9), invisible_to_verify=True),
    Damage("flip-postings-table", INDEX, _flip(lambda d: _toc(d)[5] + 12)),
    Damage("flip-toc", INDEX, _flip(lambda d: len(d) - 30)),
    Damage("missing", INDEX, lambda p: p.unlink()),
    Damage("directory", INDEX, _as_directory),
    Damage("truncated-header", SEGMENT, _truncate(lambda n: 5), invisible_to_verify=True),
    Damage("truncated-mid", SEGMENT, _truncate(lambda n: n // 2), invisible_to_verify=True),
    Damage("flip-magic", SEGMENT, _flip(lambda d: 1), invisible_to_verify=True),
    Damage("flip-record", SEGMENT, _flip(lambda d: 20), invisible_to_verify=True),
    Damage("flip-last-crc", SEGMENT, _flip(lambda d: len(d) - 2), invisible_to_verify=True),
    Damage("missing", SEGMENT, lambda p: p.unlink(), invisible_to_verify=True),
    Damage("directory", SEGMENT, _as_directory, invisible_to_verify=True),
    Damage("truncated", TOMBSTONES, _truncate(lambda n: 3), invisible_to_verify=True),
    Damage("flip-crc", TOMBSTONES, _flip(lambda d: len(d) - 1), invisible_to_verify=True),
    Damage("missing", TOMBSTONES, lambda p: p.unlink(), harmless=True),
    Damage("directory", TOMBSTONES, _as_directory, invisible_to_verify=True),
]


def _section(data: bytes, which: str) -> tuple[int, int]:
    toc = _toc(data)
    return {"symbols": (toc[0], toc[1]), "series": (toc[1], toc[4]), "postings": (toc[4], toc[5]),
            "postings-table": (toc[5], len(data) - 52), "toc": (len(data) - 52, len(data))}[which]


def _sampled(which: str, k: int) -> Callable[[bytes], int]:
    """The k-th of a few fixed pseudo-random offsets inside one index section (series padding included)."""
    def at(data: bytes) -> int:
        lo, hi = _section(data, which)
        return int(np.random.default_rng([k, len(which)]).integers(lo, hi))
    return at


DAMAGES += [Damage(f"flip-{which}-sample{k}", INDEX, _flip(_sampled(which, k)), invisible_to_verify=None)
            for which in ("symbols", "series", "postings", "postings-table", "toc") for k in range(3)]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, CliResult]]:
    root = tmp_path_factory.mktemp("clean")
    w = BlockWriter(str(root), ulid=new_ulid(START_MS), external_labels={"r": "1"}, min_time=START_MS,
                    max_time=START_MS + 2 * H)
    t = START_MS + np.arange(0, 2 * H, 30_000, dtype=np.int64)
    for i in range(6):
        w.add_samples((("__name__", "m"), ("i", str(i))), t, np.cumsum(np.full(t.size, float(i + 1))))
    ulid = w.finish().ulid
    answers = {name: run_cli(*args, "--bucket", str(root)) for name, args in COMMANDS.items()}
    assert all(r.exit_code == 0 for r in answers.values()), {k: r.stderr for k, r in answers.items()}
    return root, ulid, answers


def _answer(command: str, stdout: str) -> Any:
    """What must not change: sizes of damaged files may (they are what they are)."""
    if command != "inspect":
        return stdout
    return [{k: v for k, v in row.items() if "size" not in k.lower()} for row in json.loads(stdout)]


def _check(command: str, damage: Damage, res: CliResult, ulid: str, clean: CliResult) -> None:
    text = res.stdout + res.stderr
    assert "internal error" not in text and "Traceback" not in text, text
    if command.startswith("verify"):
        found = res.exit_code == 3
        assert res.exit_code in (0, 3), res.stderr
        expect_findings = not damage.harmless and (command == "verify-deep" or not damage.invisible_to_verify)
        if damage.invisible_to_verify is None and command == "verify":
            expect_findings = found  # whether the plain checks read the flipped byte depends on where it is
        assert found == expect_findings, res.stdout
        if found:
            messages = [i["message"] for i in json.loads(res.stdout)["issues"]]
            assert any(ulid in m and damage.file in m for m in messages), messages
        return
    assert res.exit_code in (0, 1), text
    if res.exit_code == 1:
        assert res.stderr.count("\n") == 1 and ulid in res.stderr and damage.file.split("/")[0] in res.stderr, \
            res.stderr
    elif ulid not in res.stderr:
        assert _answer(command, res.stdout) == _answer(command, clean.stdout), res.stderr
    if damage.harmless:
        assert res.exit_code == 0 and _answer(command, res.stdout) == _answer(command, clean.stdout)


@pytest.mark.parametrize("damage", DAMAGES, ids=lambda d: f"{d.file}:{d.name}")
def test_damage_against_every_read_command(clean: tuple[Path, str, dict[str, CliResult]], damage: Damage,
                                           tmp_path: Path) -> None:
    source, ulid, answers = clean
    root = tmp_path / "bucket"
    shutil.copytree(source, root)
    damage.apply(root / ulid / damage.file)
    before = tree_digest(root)
    for command, args in COMMANDS.items():
        res = run_cli(*args, "--bucket", str(root))
        _check(command, damage, res, ulid, answers[command])
    assert tree_digest(root) == before, "a read command changed the bucket"
