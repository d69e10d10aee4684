"""`serve` over a bucket that does not exist stops at start-up with the reason, instead of retrying forever."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.servehelp import subprocess_env


@pytest.mark.parametrize("make", ["missing", "block-dir"])
def test_serve_over_a_missing_bucket_exits_at_start_up(tmp_path: Path, make: str) -> None:
    bucket = tmp_path / "nowhere"
    if make == "block-dir":  # a block directory given as the bucket
        bucket.mkdir()
        (bucket / "meta.json").write_text("{}")
    proc = subprocess.run(
        [sys.executable, "-m", "thanostools", "serve", "--bucket", str(bucket), "--http-address", "127.0.0.1:0",
         "--grpc-address", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=120, env=subprocess_env())
    assert proc.returncode == 1
    assert "cannot start: the bucket does not exist" in proc.stderr and str(bucket) in proc.stderr
