"""The shared folder beside the repository (``../shared``): Prometheus's promqltest scripts and test data.

Tests run them from there; they are never copied into the repository. Where ``CI`` is set, a missing
folder fails the run instead of skipping silently.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"
PROMQLTEST_DIR = SHARED_DIR / "promqltest"


def promqltest_scripts() -> list[Path]:
    scripts = sorted(PROMQLTEST_DIR.glob("*.test")) if PROMQLTEST_DIR.is_dir() else []
    if not scripts and os.environ.get("CI"):
        raise RuntimeError(f"CI is set but the shared promqltest scripts are missing at {PROMQLTEST_DIR}")
    return scripts
NATIVE_HISTOGRAMS_DIR = SHARED_DIR / "testdata" / "native-histograms"
