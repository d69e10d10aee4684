"""The kernels' unit tests again with numba disabled (THANOS_TOOLS_NO_NUMBA=1: ``_jit.njit`` is a no-op), so
the pure-Python fallback behaves exactly as the compiled kernels (64-bit wrapping included)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Fast without numba: the unit tests of the xor, binary, CRC and label-key kernels.
KERNEL_TESTS = ["tests/core/test_kernels_binary.py", "tests/core/test_kernels_labelkeys.py",
                "tests/core/test_crc32c_kernel.py", "tests/core/chunkenc/test_chunkenc_xor.py",
                "tests/core/chunkenc/test_chunkenc_xor2.py"]


def test_kernel_tests_pass_without_numba() -> None:
    env = dict(os.environ, THANOS_TOOLS_NO_NUMBA="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", *KERNEL_TESTS,
         "-k", "not pure_python_fallback_matches_numba"],  # that one starts its own no-numba process
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " failed" not in proc.stdout
    probe = subprocess.run([sys.executable, "-c", "from thanostools.core.kernels import _jit; print(_jit.HAVE_NUMBA)"],
                           cwd=REPO, env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "False"
