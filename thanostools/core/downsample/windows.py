"""Window alignment and chunk-count helpers of Thanos downsampling, with Go integer semantics (FORMATS.md §7.3).

Go's ``/`` and ``%`` truncate toward zero; Python's floor. The kernels call these with njit; tests call them
from Python.
"""

from __future__ import annotations

import numpy as np

from thanostools.core.kernels._jit import njit

# Raw data is assumed to be scraped once a minute when sizing downsampled chunks.
RAW_ASSUMED_INTERVAL = 60_000
MAX_SAMPLES_PER_AGGR_CHUNK = 140
# Thanos: a block must span at least this much before it is downsampled to the next level.
DOWNSAMPLE_RANGE_5M = 40 * 3_600_000
DOWNSAMPLE_RANGE_1H = 10 * 24 * 3_600_000
MAX_FLOAT = float(np.finfo(np.float64).max)


@njit
def go_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


@njit
def go_mod(a: int, b: int) -> int:
    return a - go_div(a, b) * b


@njit
def window_end(t: int, resolution: int) -> int:
    """The last millisecond of the resolution-aligned window holding ``t`` (Thanos currentWindow)."""
    return t - go_mod(t, resolution) + resolution - 1


@njit
def range_fullness(mint: int, maxt: int, step: int, count: int) -> float:
    """``min(1, count / ((maxt - mint) / step))`` in float64; a zero-length range is full."""
    span = float(maxt - mint) / float(step)
    if span == 0.0:
        return 1.0
    f = float(count) / span
    return 1.0 if f > 1.0 else f


@njit
def target_chunk_count(mint: int, maxt: int, in_res: int, out_res: int, count: int) -> int:
    """How many output chunks so that each holds at most 140 windows on average (Thanos targetChunkCount)."""
    max_samples = float(go_div(maxt - mint, out_res))
    expected = int(max_samples * range_fullness(mint, maxt, in_res, count)) + 1
    # Go loops x = 1, 2, ... until expected / x <= 140; the first such x is expected // 141 + 1.
    return expected // (MAX_SAMPLES_PER_AGGR_CHUNK + 1) + 1
