"""Kill -9 ``compact``, ``relabel`` and ``upload`` at seeded-random moments, run them again, and check that the
bucket converges: the same series and samples as an uninterrupted run, no partial blocks, no temporary files,
no work directories left."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import thanostools
from tests.clihelp import START_MS, run_cli
from thanostools.core.localfs import remove_stale_work_dirs
from thanostools.core.ulid import is_ulid

WORKTREE = Path(thanostools.__file__).resolve().parent.parent
KILL_POINTS = 3
RELABEL = "- action: labeldrop\n  regex: instance\n"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "thanostools", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(WORKTREE)}


def run_to_completion(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, env=env(), cwd=WORKTREE, timeout=120)
    assert done.returncode == 0, done.stderr


def _wait_until_working(proc: subprocess.Popen[bytes], working: Callable[[], bool]) -> float:
    """Poll until the command has started changing things (past Python's start-up); returns that moment."""
    while proc.poll() is None and not working():
        time.sleep(0.005)
    return time.monotonic()


def working_seconds(args: list[str], working: Callable[[], bool]) -> float:
    """How long an uninterrupted run works, from ``working()`` becoming true to its exit."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env(), cwd=WORKTREE)
    began = _wait_until_working(proc, working)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    return time.monotonic() - began


def kill_after(args: list[str], working: Callable[[], bool], seconds: float) -> None:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), cwd=WORKTREE)
    _wait_until_working(proc, working)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()  # SIGKILL: no cleanup handler runs
        proc.wait()


def dump(bucket: Path) -> str:
    res = run_cli("bucket", "dump", "--bucket", str(bucket))
    assert res.exit_code == 0, res.stderr
    return res.stdout


def live_blocks(bucket: Path) -> list[tuple[int, int, int, int]]:
    """(minTime, maxTime, level, samples) of every block not marked for deletion: no leftover stays live."""
    out = []
    for p in bucket.iterdir():
        if (p / "meta.json").exists() and not (p / "deletion-mark.json").exists():
            m = json.loads((p / "meta.json").read_text())
            out.append((m["minTime"], m["maxTime"], m["compaction"]["level"], m["stats"].get("numSamples", 0)))
    return sorted(out)


def debris(bucket: Path, work: Path | None) -> list[str]:
    blocks = list(bucket.iterdir()) if bucket.exists() else []
    found = [f"partial block {p.name}" for p in blocks if is_ulid(p.name) and not (p / "meta.json").exists()]
    found += [f"temporary {p}" for p in bucket.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]
    if work is not None and work.exists():
        found += [f"work dir {p}" for p in work.iterdir()]
    return found


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten 2h blocks of 100 series, made once."""
    root = tmp_path_factory.mktemp("crash") / "source"
    res = run_cli("bucket", "generate", "--bucket", str(root), "--series", "100", "--duration", "20h", "--start",
                  str(START_MS), "--label", "cluster=a")
    assert res.exit_code == 0, res.stderr
    return root


def converges(tmp_path: Path, seed: int, prepare: Callable[[Path], Path], command: Callable[[Path, Path], list[str]],
              *, uses_work_dir: bool = True) -> None:
    """``prepare(dir)`` makes a fresh bucket under ``dir``; ``command(bucket, work)`` is the command line. Kill
    points are seeded-random fractions of the reference run's working time (after Python's start-up)."""

    def working(bucket: Path, work: Path) -> Callable[[], bool]:
        if uses_work_dir:
            return lambda: work.exists() and any(work.iterdir())
        return bucket.exists

    ref_dir = tmp_path / "reference"
    ref = prepare(ref_dir)
    seconds = working_seconds(command(ref, ref_dir / "work"), working(ref, ref_dir / "work"))
    expected, layout = dump(ref), live_blocks(ref)
    rng = random.Random(seed)
    for n in range(KILL_POINTS):
        case = tmp_path / f"killed-{n}"
        bucket, work = prepare(case), case / "work"
        kill_after(command(bucket, work), working(bucket, work), rng.uniform(0.05, 0.9) * seconds)
        run_to_completion(command(bucket, work))
        assert dump(bucket) == expected, f"kill point {n}"
        assert live_blocks(bucket) == layout, f"kill point {n}"
        assert debris(bucket, work if uses_work_dir else None) == [], f"kill point {n}"


def copy_of(source: Path) -> Callable[[Path], Path]:
    def prepare(case: Path) -> Path:
        shutil.copytree(source, case / "bucket")
        return case / "bucket"

    return prepare


def test_compact_converges_after_kill(source: Path, tmp_path: Path) -> None:
    def command(bucket: Path, work: Path) -> list[str]:
        return cli("bucket", "compact", "--bucket", str(bucket), "--no-dry-run", "--consistency-delay", "0s",
                   "--delete-delay", "0s", "--downsampling.disable", "--work-dir", str(work))

    converges(tmp_path, 1, copy_of(source), command)


def test_relabel_converges_after_kill(source: Path, tmp_path: Path) -> None:
    def command(bucket: Path, work: Path) -> list[str]:
        return cli("bucket", "relabel", "--bucket", str(bucket), "--relabel-config", RELABEL, "--no-dry-run",
                   "--tmp-dir", str(work))

    converges(tmp_path, 2, copy_of(source), command)


def test_upload_converges_after_kill(source: Path, tmp_path: Path) -> None:
    def prepare(case: Path) -> Path:
        case.mkdir()
        return case / "bucket"

    def command(bucket: Path, work: Path) -> list[str]:
        return cli("bucket", "upload", "--bucket", str(bucket), str(source))

    converges(tmp_path, 3, prepare, command, uses_work_dir=False)


def test_a_live_process_keeps_its_work_dir(tmp_path: Path) -> None:
    holder = ("import sys, time\nfrom thanostools.core.localfs import work_dir\n"
              "with work_dir('hold', sys.argv[1]) as w:\n    print(w.path, flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", holder, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env=env(), cwd=WORKTREE)
    try:
        assert proc.stdout is not None
        path = Path(proc.stdout.readline().strip())
        assert remove_stale_work_dirs(str(tmp_path)) == [] and path.is_dir()
    finally:
        proc.kill()
        proc.wait()
    assert remove_stale_work_dirs(str(tmp_path)) == [] and not path.exists()
