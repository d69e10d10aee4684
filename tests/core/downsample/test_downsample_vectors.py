"""Thanos' downsampling unit-test vectors (FORMATS.md §7.4, §7.5), the Go-integer window helpers (§7.3) and
edge cases of the raw → 5m and 5m → 1h paths."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.aggr import Aggr, build_aggr, counter_reset_series, split_aggr
from thanostools.core.downsample import AggrChunks, downsample_aggr, downsample_raw
from thanostools.core.downsample.windows import go_div, go_mod, range_fullness, target_chunk_count, window_end
from thanostools.core.errors import UnsupportedError

STALE = 0x7FF0000000000002
NAN = 0x7FF8000000000001
MAXF = np.finfo(np.float64).max
Samples = list[tuple[int, float]]


def decode_chunk(payload: bytes) -> dict[Aggr, Samples | None]:
    out: dict[Aggr, Samples | None] = {}
    for a, sub in zip(Aggr, split_aggr(payload), strict=True):
        if sub is None:
            out[a] = None
            continue
        assert sub[0] == 1
        t, v = xor.decode(sub[1])
        out[a] = list(zip(t.tolist(), v.view(np.float64).tolist(), strict=True))
    return out


def chunks_of(res: AggrChunks) -> list[dict[Aggr, Samples | None]]:
    return [decode_chunk(res.chunk(k)) for k in range(len(res))]


def xor_sub(samples: Sequence[tuple[int, float]]) -> tuple[int, bytes]:
    return 1, xor.encode(np.array([t for t, _ in samples], np.int64), np.array([v for _, v in samples], float))


def aggr_chunk(subs: dict[Aggr, Samples]) -> bytes:
    return build_aggr([xor_sub(subs[a]) if a in subs else None for a in Aggr])


def bits(values: Sequence[float | int]) -> np.ndarray:
    """Floats, where ints >= 2**62 are taken as raw float bits (StaleNaN, NaN payloads)."""
    out = np.array([0 if isinstance(x, int) and x >= 2**62 else x for x in values], dtype=np.float64).view(np.uint64)
    for i, x in enumerate(values):
        if isinstance(x, int) and x >= 2**62:
            out[i] = np.uint64(x)
    return out


# --- §7.3 helpers ---------------------------------------------------------------------------------------


def go_target_chunk_count(mint: int, maxt: int, in_res: int, out_res: int, count: int) -> int:
    """Literal transcription of the Go loop, as the reference for the closed form."""
    max_samples = float(int((maxt - mint) / out_res))
    span = (maxt - mint) / in_res
    fullness = 1.0 if span == 0 else min(1.0, count / span)
    expected = int(max_samples * fullness) + 1
    x = 1
    while expected // x > 140:
        x += 1
    return x


def test_go_integer_semantics() -> None:
    assert go_div(-7, 2) == -3 and go_mod(-7, 2) == -1 and go_div(7, 2) == 3 and go_mod(7, 2) == 1
    assert window_end(0, 100) == 99
    assert window_end(99, 100) == 99
    assert window_end(100, 100) == 199
    assert window_end(1_700_000_123_456, 300_000) == 1_700_000_099_999 + 300_000
    assert window_end(-1, 100) == 99  # Go: -1 % 100 == -1, so -1 - (-1) + 99; Python's % would give -1
    assert window_end(-150, 100) == -1


def test_range_fullness_and_target_chunk_count() -> None:
    assert range_fullness(0, 0, 60_000, 5) == 1.0
    assert range_fullness(0, 600_000, 60_000, 5) == 0.5
    assert range_fullness(0, 600_000, 60_000, 50) == 1.0
    day = 86_400_000
    cases = [(0, 2 * day, 60_000, 300_000, 11520), (0, 2 * day, 60_000, 300_000, 100), (0, 0, 60_000, 300_000, 1),
             (0, 14 * day, 300_000, 3_600_000, 4032), (5, 10 * day + 7, 300_000, 3_600_000, 17),
             (0, 40 * day, 60_000, 300_000, 10**6), (0, 141 * 300_000, 60_000, 300_000, 10**6)]
    for case in cases:
        assert target_chunk_count(*case) == go_target_chunk_count(*case), case
    assert target_chunk_count(0, 2 * day, 60_000, 300_000, 11520) == 5  # 577 expected windows -> 5 chunks


# --- §7.4 raw -> 5m -----------------------------------------------------------------------------------------

SINGLE_CHUNK_RAW = [(20, 1), (40, 2), (60, 3), (80, 1), (100, 2), (101, STALE), (120, 5), (180, 10), (250, 1)]
SINGLE_CHUNK_EXPECTED = {
    Aggr.COUNT: [(99, 4), (199, 3), (250, 1)],
    Aggr.SUM: [(99, 7), (199, 17), (250, 1)],
    Aggr.MIN: [(99, 1), (199, 2), (250, 1)],
    Aggr.MAX: [(99, 3), (199, 10), (250, 1)],
    Aggr.COUNTER: [(20, 1), (99, 4), (199, 13), (250, 14), (250, 1)],
}


def test_thanos_vector_single_chunk() -> None:
    t = np.array([s[0] for s in SINGLE_CHUNK_RAW])
    res = downsample_raw(t, bits([s[1] for s in SINGLE_CHUNK_RAW]), 100)
    assert len(res) == 1
    assert chunks_of(res)[0] == {a: [(x, float(y)) for x, y in s] for a, s in SINGLE_CHUNK_EXPECTED.items()}
    assert (int(res.mint[0]), int(res.maxt[0]), int(res.num_samples[0])) == (99, 250, 3)


def test_aggr_chunk_bytes_are_thanos_layout() -> None:
    """count, sum, min, max, counter; each uvarint(len) ‖ 0x01 ‖ Prometheus XOR bytes."""
    t = np.array([s[0] for s in SINGLE_CHUNK_RAW])
    res = downsample_raw(t, bits([s[1] for s in SINGLE_CHUNK_RAW]), 100)
    assert res.chunk(0) == aggr_chunk({a: [(x, float(y)) for x, y in s] for a, s in SINGLE_CHUNK_EXPECTED.items()})


BOUNDARY_RAW = [(10, 1), (20, 3), (30, 5), (50, 1), (60, 8), (70, 10), (120, 1), (130, 18), (140, 20), (160, 21),
                (170, 38), (180, 40)]


def test_thanos_vector_counter_reset_at_chunk_boundaries() -> None:
    t = np.array([s[0] for s in BOUNDARY_RAW])
    v = np.array([s[1] for s in BOUNDARY_RAW], dtype=np.float64)
    res = downsample_raw(t, v, 50, num_chunks=6)  # batches of 3 samples: one window per chunk
    counters = [c[Aggr.COUNTER] for c in chunks_of(res)]
    assert counters == [[(10, 1), (30, 5), (30, 5)], [(50, 1), (70, 10), (70, 10)],
                        [(120, 1), (140, 20), (140, 20)], [(160, 21), (180, 40), (180, 40)]]
    ct = np.array([s[0] for c in counters if c for s in c])
    cv = np.array([s[1] for c in counters if c for s in c])
    rt, rv = counter_reset_series(ct, cv)
    assert list(zip(rt.tolist(), rv.tolist(), strict=True)) == [
        (10, 1), (30, 5), (50, 6), (70, 15), (120, 16), (140, 35), (160, 36), (180, 55)]
    # ... and one level up (R = 100) the resets stay hidden inside the running counter.
    up = chunks_of(downsample_aggr([res.chunk(k) for k in range(len(res))], 10, 180, 50, 100, num_chunks=1))
    assert up == [{Aggr.COUNT: [(99, 6), (180, 6)], Aggr.SUM: [(99, 28), (180, 138)],
                   Aggr.MIN: [(99, 1), (180, 1)], Aggr.MAX: [(99, 10), (180, 40)],
                   Aggr.COUNTER: [(10, 1), (99, 15), (180, 55), (180, 40)]}]


def test_windows_never_split_and_chunk_count_follows_target() -> None:
    step = 15_000
    t = np.arange(0, 48 * 3_600_000, step, dtype=np.int64)
    v = np.arange(t.shape[0], dtype=np.float64)
    res = downsample_raw(t, v, 300_000)
    assert len(res) == target_chunk_count(int(t[0]), int(t[-1]), 60_000, 300_000, t.shape[0]) == 5
    chunks = chunks_of(res)
    counts = [sum(x for _, x in c[Aggr.COUNT] or []) for c in chunks]
    assert sum(counts) == t.shape[0]
    assert all(n % 20 == 0 for n in counts)  # every 5m window holds 20 samples: no window was split
    for c, mint, maxt in zip(chunks, res.mint.tolist(), res.maxt.tolist(), strict=True):
        windows = [x for x, _ in c[Aggr.COUNT] or []]
        assert windows[0] == mint and windows[-1] == maxt
        assert all(w % 300_000 == 299_999 for w in windows[:-1])


# --- raw edge cases ---------------------------------------------------------------------------------------


def test_nan_dropped_stale_dropped_and_all_nan_series_vanish() -> None:
    assert len(downsample_raw(np.array([1, 2, 3]), bits([NAN, NAN, STALE]), 100)) == 0
    res = downsample_raw(np.array([10, 20, 30, 40]), bits([NAN, 2.0, NAN, 4.0]), 100)
    (chunk,) = chunks_of(res)
    assert chunk[Aggr.COUNT] == [(40, 2.0)]
    assert chunk[Aggr.COUNTER] == [(20, 2.0), (40, 4.0), (40, 4.0)]  # first/last raw are the non-NaN ones


def test_backwards_equal_and_negative_timestamps() -> None:
    t = np.array([-5, 10, 30, 20, 30, 40])
    res = downsample_raw(t, np.array([9.0, 1, 2, 7, 3, 4]), 100)
    (chunk,) = chunks_of(res)
    # -5 is older than the initial bound 0, 20 goes back in time; the repeated 30 is kept
    assert chunk[Aggr.COUNT] == [(40, 4.0)]
    assert chunk[Aggr.SUM] == [(40, 10.0)]


def test_min_max_start_at_max_float() -> None:
    """Thanos resets min to +MaxFloat64 and max to -MaxFloat64, so a window of only +Inf has min MaxFloat64."""
    res = downsample_raw(np.array([10, 20, 150]), np.array([math.inf, math.inf, -math.inf]), 100)
    (chunk,) = chunks_of(res)
    assert chunk[Aggr.MIN] == [(99, MAXF), (150, -math.inf)]
    assert chunk[Aggr.MAX] == [(99, math.inf), (150, -MAXF)]


def test_counter_resets_within_a_chunk() -> None:
    res = downsample_raw(np.array([0, 100, 200, 300, 400]), np.array([5.0, 7, 2, 3, 1]), 1000)
    (chunk,) = chunks_of(res)
    # 5, +2, reset +2, +1, reset +1 = 11
    assert chunk[Aggr.COUNTER] == [(0, 5.0), (400, 11.0), (400, 1.0)]


# --- §7.5 aggregates -> 1h --------------------------------------------------------------------------------


def test_thanos_vector_single_aggregated_chunks() -> None:
    chunks = [
        aggr_chunk({Aggr.COUNT: [(199, 5), (299, 1), (399, 10), (400, 3), (499, 10)],
                    Aggr.SUM: [(199, 5), (299, 1), (399, 10), (400, 3), (499, 10)],
                    Aggr.MIN: [(199, 5), (299, 1), (399, 10), (400, -3), (499, 10)],
                    Aggr.MAX: [(199, 5), (299, 1), (399, 10), (400, 3), (499, 10)],
                    Aggr.COUNTER: [(99, 100), (299, 150), (499, 210), (499, 10)]}),
        aggr_chunk({Aggr.COUNT: [(699, 0), (999, 100)], Aggr.SUM: [(699, 0), (999, 100)],
                    Aggr.MIN: [(699, 0), (999, 100)], Aggr.MAX: [(699, 0), (999, 100)],
                    Aggr.COUNTER: [(599, 20), (799, 50), (999, 120), (999, 50)]}),
        aggr_chunk({Aggr.COUNTER: [(1099, 40), (1199, 80), (1299, 110)]}),
    ]
    res = downsample_aggr(chunks, 99, 1299, 100, 500, num_chunks=1)
    assert chunks_of(res) == [{
        Aggr.COUNT: [(499, 29), (999, 100)], Aggr.SUM: [(499, 29), (999, 100)],
        Aggr.MIN: [(499, -3), (999, 0)], Aggr.MAX: [(499, 10), (999, 100)],
        Aggr.COUNTER: [(99, 100), (499, 210), (999, 320), (1299, 430), (1299, 110)],
    }]
    assert (int(res.mint[0]), int(res.maxt[0]), int(res.num_samples[0])) == (499, 1299, 2)


def test_aggregate_groups_follow_input_chunk_boundaries() -> None:
    """Output chunks are whole groups of len(chunks) // target input chunks; the last group may be smaller."""
    day = 86_400_000
    t = np.arange(0, 30 * day, 60_000, dtype=np.int64)
    five = downsample_raw(t, np.ones(t.shape[0]), 300_000)
    inputs = [five.chunk(k) for k in range(len(five))]
    target = target_chunk_count(int(five.mint[0]), int(five.maxt[-1]), 300_000, 3_600_000,
                                int(five.num_samples.sum()))
    hour = downsample_aggr(inputs, int(five.mint[0]), int(five.maxt[-1]), 300_000, 3_600_000)
    size = len(inputs) // target
    assert len(hour) == -(-len(inputs) // size)
    for k in range(len(hour)):
        group = range(k * size, min((k + 1) * size, len(inputs)))
        assert int(hour.mint[k]) >= int(five.mint[group[0]]) and int(hour.maxt[k]) == int(five.maxt[group[-1]])
    total = sum(x for c in chunks_of(hour) for _, x in c[Aggr.COUNT] or [])
    assert total == t.shape[0]


def test_stale_markers_inside_aggregates_are_skipped_and_absent_aggregates_stay_absent() -> None:
    sub = {Aggr.COUNT: [(99, 2), (199, 3)], Aggr.COUNTER: [(10, 1), (99, 2), (199, 3), (199, 3)]}
    stale_sum = build_aggr([xor_sub(sub[Aggr.COUNT]),
                            (1, xor.encode(np.array([99, 199]), bits([STALE, 4.0]))), None, None,
                            xor_sub(sub[Aggr.COUNTER])])
    (chunk,) = chunks_of(downsample_aggr([stale_sum], 99, 199, 100, 1000))
    assert chunk[Aggr.COUNT] == [(199, 5.0)]
    assert chunk[Aggr.SUM] == [(199, 4.0)]
    assert chunk[Aggr.MIN] is None and chunk[Aggr.MAX] is None
    assert chunk[Aggr.COUNTER] == [(10, 1.0), (199, 3.0), (199, 3.0)]


def test_histogram_aggregates_are_refused() -> None:
    payload = build_aggr([xor_sub([(99, 1)]), (3, b"\x00\x00"), None, None, (3, b"\x00\x00")])
    with pytest.raises(UnsupportedError, match="histogram"):
        downsample_aggr([payload], 99, 99, 300_000, 3_600_000)
