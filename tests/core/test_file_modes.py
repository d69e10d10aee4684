"""Files we write into buckets and output directories get 0666 & ~umask, directories 0777 & ~umask (as
Prometheus' own files), whichever way they are made: generated, imported, compacted, downsampled, relabelled,
repaired, uploaded (hard-linked or copied across file systems) or downloaded."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_cli_verify import bad_block
from tests.clihelp import START_MS, make_openmetrics, run_cli

H = 3_600_000
ZERO_DELAYS = ("--consistency-delay", "0s", "--delete-delay", "0s")
RELABEL = "- action: labeldrop\n  regex: instance\n"


@pytest.fixture(params=[0o022, 0o027], ids=["umask022", "umask027"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's own tmp dirs are 0700), so another user can read below it."""
    path = Path(tempfile.mkdtemp(prefix="thanos-tools-modes-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def wrong_modes(root: Path, mask: int) -> list[str]:
    want_file, want_dir = 0o666 & ~mask, 0o777 & ~mask
    bad = []
    for dirpath, dirs, files in os.walk(root):
        for name, want in [(d, want_dir) for d in [*dirs, ""]] + [(f, want_file) for f in files]:
            path = Path(dirpath, name)
            mode = path.stat().st_mode & 0o777
            if mode != want:
                bad.append(f"{path}: {oct(mode)} (want {oct(want)})")
    return sorted(set(bad))


def ok(*args: str) -> str:
    res = run_cli(*args)
    assert res.exit_code == 0, f"{args}: {res.stderr}"
    return res.stdout


def other_file_system(path: Path) -> Path | None:
    for candidate in ("/dev/shm", "/run", "/var/tmp"):
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK) and \
                os.stat(candidate).st_dev != os.stat(path).st_dev:
            return Path(candidate)
    return None


def test_everything_we_write_has_the_umask_modes(umask: int, world_dir: Path, tmp_path: Path) -> None:
    bucket = world_dir / "bucket"
    ok("bucket", "generate", "--bucket", str(bucket), "--series", "5", "--duration", "10h", "--start",
       str(START_MS), "--label", "cluster=a")
    long_start = START_MS - START_MS % (48 * H)
    ok("bucket", "generate", "--bucket", str(bucket), "--series", "3", "--duration", "48h", "--start",
       str(long_start), "--block-duration", "48h", "--label", "cluster=long")
    om = tmp_path / "in.om"
    om.write_bytes(make_openmetrics(series=5, hours=2, start_ms=START_MS))
    ok("bucket", "import", "--bucket", str(bucket), "--label", "cluster=imported", str(om))
    ok("bucket", "compact", "--bucket", str(bucket), "--no-dry-run", *ZERO_DELAYS, "--downsampling.disable")
    ok("bucket", "downsample", "--bucket", str(bucket), "--no-dry-run", "--selector", "cluster=long")
    ok("bucket", "relabel", "--bucket", str(bucket), "--selector", "cluster=imported", "--relabel-config", RELABEL,
       "--no-dry-run")
    bad_block(bucket, START_MS - 10 * H, START_MS - 8 * H)
    ok("bucket", "verify", "--bucket", str(bucket), "--repair", "--no-dry-run", "--backup.bucket",
       str(world_dir / "backup"))
    assert wrong_modes(bucket, umask) == [] and wrong_modes(world_dir / "backup", umask) == []

    ids = ok("bucket", "ls", "--bucket", str(bucket), "-o", "ids").split()
    download = world_dir / "download"
    ok("bucket", "download", "--bucket", str(bucket), *[a for u in ids for a in ("--id", u)], str(download))
    assert wrong_modes(download, umask) == []
    ok("bucket", "upload", "--bucket", str(world_dir / "same-fs"), str(download))
    assert wrong_modes(world_dir / "same-fs", umask) == []

    if umask == 0o022 and shutil.which("promtool") and shutil.which("setpriv"):
        listed = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "promtool", "tsdb",
                                 "list", str(world_dir / "same-fs")], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert {line.split()[0] for line in listed.stdout.splitlines()[1:]} == set(ids)


def test_upload_across_file_systems(umask: int, tmp_path: Path) -> None:
    other = other_file_system(tmp_path)
    if other is None:
        pytest.skip("no second writable file system (e.g. /dev/shm) to upload to")
    src = tmp_path / "src"
    ok("bucket", "generate", "--bucket", str(src), "--series", "3", "--duration", "4h", "--start", str(START_MS))
    dest = Path(tempfile.mkdtemp(prefix="thanos-tools-modes-", dir=other))
    try:
        ok("bucket", "upload", "--bucket", str(dest / "bucket"), str(src))
        ok("bucket", "generate", "--bucket", str(dest / "generated"), "--series", "3", "--duration", "4h",
           "--start", str(START_MS))
        assert wrong_modes(dest / "bucket", umask) == [] and wrong_modes(dest / "generated", umask) == []
    finally:
        shutil.rmtree(dest, ignore_errors=True)
