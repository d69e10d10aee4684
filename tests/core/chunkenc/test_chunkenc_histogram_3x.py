"""The Prometheus >= 2.47 / 3.x head: histogram chunks cut by encoded size (HISTOGRAMS.md H9.5), 3.x appender
rules and headers (H8.5, H9.1), and 3.x re-encoding (H9.6)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thanostools.core.chunkenc import histogram as H

RANGE = H.DEFAULT_CHUNK_RANGE_MS


def flat(t: int, nb: int, count: int = 0, schema: int = 0, hint: int = H.HINT_UNKNOWN) -> H.HistogramSample:
    """A histogram of nb buckets holding 1 each (one span at index 0), constant sum."""
    return H.HistogramSample(t=t, count=count or nb, zero_count=0, sum=1.0, schema=schema, hint=hint,
                             positive_spans=((0, nb),), positive_buckets=(1,) * nb)


def cut(samples: list[H.HistogramSample], flavor: H.Flavor = "3", is_float: bool = False) -> H.HistogramBatch:
    return H.head_chunks(H.build_batch(samples, is_float=is_float), flavor=flavor)


def chunk_bytes(batch: H.HistogramBatch) -> list[int]:
    _, offsets = H.encode_batch(batch, flavor="3")
    return [int(x) for x in np.diff(offsets)]


def test_chunks_end_where_the_size_prediction_says() -> None:
    # 252 buckets of 1 at 10 s from t=0. Bits (H5, H6): layout 8 + 1 + 5 (one span) + 13 (length 252) + 1 + 1 = 29;
    # sample 0: t 1 + count 13 + zero count 1 + sum 64 + buckets 5 + 251 = 335; sample 1: t dod 10000 24 + 3 + 252
    # = 279; later samples 256 bits = 32 bytes. Chunk bytes with n samples: 3 + ceil(643/8) + 32(n-2) = 84 + 32(n-2).
    # Before sample 8 the chunk first holds >= 256 bytes (276): ratio 1024/276, cur 70000, so
    # n = 7200000 / (70001 * 1024/276) = 27.72 -> nextAt = 7200000 / 27 = 266666: chunk 0 is t 0..260000 (27).
    # Chunk 1 starts at 270000 (t is a 32-bit varbit: 84 + 4 bytes): 280 bytes before its sample 8, cur 340000,
    # n = 6930000 / (70001 * 1024/280) = 27.07 -> nextAt = 270000 + 6930000/27 = 526666: 26 samples.
    samples = [flat(i * 10_000, 252) for i in range(80)]
    out = cut(samples)
    sizes = np.diff(out.offsets).tolist()
    assert sizes[:2] == [27, 26]
    assert chunk_bytes(out)[:2] == [84 + 32 * 25, 88 + 32 * 24]
    # the 2.42 head cuts the same samples by count: all 80 in one chunk (it would cut at 120)
    assert np.diff(cut(samples, "2.42").offsets).tolist() == [80]


def test_a_faster_rate_cuts_at_twice_the_target() -> None:
    # 8 samples at 10 s predict nextAt = 266666 (as above); then one sample per ms: the chunk grows by 32 bytes
    # per sample until it holds >= 2048 bytes: 84 + 32(n-2) >= 2048 first at n = 64 (2100 bytes), so the 65th
    # sample starts chunk 1.
    ts = [i * 10_000 for i in range(8)] + [70_000 + i for i in range(1, 200)]
    out = cut([flat(t, 252) for t in ts])
    assert np.diff(out.offsets).tolist()[0] == 64
    assert chunk_bytes(out)[0] == 84 + 32 * 62 + 3  # the first 1 ms sample's t dod (-9999) takes 24 bits, not 1


def test_at_least_ten_samples_unless_the_range_ends() -> None:
    # 5000 buckets: one sample is ~625 bytes, so every chunk is over 2048 bytes after 4 samples; the head still
    # waits for 10 samples, except at the end of the 2 h range.
    ts = [RANGE - 50_000 + i * 10_000 for i in range(12)]  # 5 samples before the range end, 7 after
    out = cut([flat(t, 5000) for t in ts])
    assert np.diff(out.offsets).tolist() == [5, 7]
    out = cut([flat(i * 10_000, 5000) for i in range(25)])
    assert np.diff(out.offsets).tolist() == [10, 10, 5]


def test_3x_headers_and_appender_rules() -> None:
    s = [flat(i * 10_000, 252) for i in range(28)]
    # a size cut where the next sample is appendable: header 01 (the previous appender said: not a reset)
    assert cut(s).header.tolist() == [H.HEADER_UNKNOWN, H.HEADER_NOT_RESET]
    # a reset (count drops) cuts with 10; a schema change cuts with 00
    drop = [flat(0, 4, 10), flat(10_000, 4, 5)]
    assert cut(drop).header.tolist() == [H.HEADER_UNKNOWN, H.HEADER_RESET]
    change = [flat(0, 4), flat(10_000, 4, schema=1)]
    assert cut(change).header.tolist() == [H.HEADER_UNKNOWN, H.HEADER_UNKNOWN]
    gauge = [flat(i * 10_000, 4, hint=H.HINT_GAUGE) for i in range(3)]
    assert cut(gauge).header.tolist() == [H.HEADER_GAUGE]


def test_an_empty_bucket_may_disappear_in_3x_only() -> None:
    a = H.HistogramSample(t=0, count=2, zero_count=0, sum=1.0, positive_spans=((0, 2),), positive_buckets=(0, 2))
    b = H.HistogramSample(t=10_000, count=3, zero_count=0, sum=2.0, positive_spans=((1, 1),), positive_buckets=(3,))
    modern = cut([a, b])
    assert np.diff(modern.offsets).tolist() == [2]
    assert modern.sample_buckets(1)[0].tolist() == [0, 3]  # the backward insert: an explicit 0 (H9.1)
    assert cut([a, b], "2.42").header.tolist() == [H.HEADER_UNKNOWN, H.HEADER_RESET]


def test_3x_reencoding_uses_fresh_appenders() -> None:
    # every 120 samples a new chunk whose header is 00 (no previous appender), 10 only after a detected reset
    samples = [flat(i * 10_000, 4, 10 + i) for i in range(130)] + [flat(1_300_000, 4, 5)]
    batch = H.build_batch(samples, is_float=False)
    out = H.reencode_chunks(batch, np.zeros(len(samples), dtype=bool), flavor="3")
    assert np.diff(out.offsets).tolist() == [120, 10, 1]
    assert out.header.tolist() == [H.HEADER_UNKNOWN, H.HEADER_UNKNOWN, H.HEADER_RESET]
    legacy = H.reencode_chunks(batch, np.zeros(len(samples), dtype=bool), flavor="2.42")
    assert legacy.header.tolist() == [H.HEADER_UNKNOWN, H.HEADER_NOT_RESET, H.HEADER_RESET]


# ---------------------------------------------------------------- generated series against a reference


@st.composite
def growing_counter(draw: Any, is_float: bool) -> list[H.HistogramSample]:
    """A counter series without resets whose bucket set only grows (so only size cuts and recodes happen)."""
    n = draw(st.integers(2, 160))
    idx = sorted(draw(st.sets(st.integers(-40, 40), min_size=0, max_size=6)))
    counts = dict.fromkeys(idx, 0)
    t = draw(st.integers(-(RANGE * 3), RANGE * 3))
    total = 0.0
    samples = []
    for _ in range(n):
        t += draw(st.sampled_from([1, 7, 1000, 15_000, 60_000, 900_000]))
        if draw(st.integers(0, 9)) == 0:
            counts.setdefault(draw(st.integers(-60, 60)), 0)
        for k in counts:
            counts[k] += draw(st.integers(0, 3000))
        total += draw(st.floats(0, 1e6))
        keys = sorted(counts)
        spans, last = [], None
        for k in keys:
            if last is not None and k == last + 1:
                spans[-1] = (spans[-1][0], spans[-1][1] + 1)
            else:
                spans.append((k if last is None else k - last - 1, 1))
            last = k
        buckets = tuple(float(counts[k]) if is_float else counts[k] for k in keys)
        samples.append(H.HistogramSample(t=t, count=sum(buckets), zero_count=0, sum=total,
                                         positive_spans=tuple(spans), positive_buckets=buckets))
    return samples


def encoded_size(samples: list[H.HistogramSample], is_float: bool) -> int:
    """Bytes of these samples as one chunk, built by the appender (recoding included) and the real encoder."""
    one = H.reencode_chunks(H.build_batch(samples, is_float=is_float), np.zeros(len(samples), dtype=bool),
                            flavor="3", samples_per_chunk=H.MAX_SAMPLES_PER_CHUNK)
    assert one.num_chunks == 1
    return chunk_bytes(one)[0]


def range_for(t: int) -> int:
    """The end of t's chunk range (Go's truncating division)."""
    q = abs(t) // RANGE
    return (q if t >= 0 else -q) * RANGE + RANGE


def reference_bounds(samples: list[H.HistogramSample], is_float: bool) -> list[int]:
    """H9.5 step by step, sizes from encoding each prefix."""
    start, bounds = 0, [0]
    next_at = range_for(samples[0].t)
    computed = False
    for s in range(1, len(samples)):
        size = encoded_size(samples[start:s], is_float)
        t0 = samples[start].t
        range_end = range_for(t0)
        if not computed and size >= 256:
            n = (next_at - t0) / ((samples[s - 1].t - t0 + 1) * (1024 / size))
            if n > 1:
                next_at = int(t0 + (next_at - t0) / math.floor(n))
            computed = True
        if (samples[s].t >= next_at or size >= 2048) and (s - start >= 10 or samples[s].t >= range_end):
            start = s
            bounds.append(s)
            next_at = range_for(samples[s].t)
            computed = False
    return [*bounds, len(samples)]


@pytest.mark.parametrize("is_float", [False, True])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_series_cut_as_the_reference_and_round_trip(is_float: bool, data: Any) -> None:
    samples = data.draw(growing_counter(is_float))
    out = cut(samples, is_float=is_float)
    assert out.offsets.tolist() == reference_bounds(samples, is_float)
    buf, offsets = H.encode_batch(out, flavor="3")
    sizes = np.diff(offsets)
    back = H.decode_batch(buf, offsets[:-1], offsets[1:], np.full(out.num_chunks, 3 if is_float else 2), flavor="3")
    assert back.t.tolist() == [s.t for s in samples]
    for i, s in enumerate(samples):
        pos, _ = back.sample_buckets(i)
        spans, _ = back.layouts.spans(int(back.layout[i]))
        indices = _expand_one(tuple(spans))
        got = {k: v for k, v in zip(indices, pos.tolist(), strict=True) if v != 0}
        want = {k: v for k, v in zip(_expand_one(s.positive_spans), s.positive_buckets, strict=True) if v != 0}
        assert got == want
        assert back.count[i] == s.count
    # the documented limits: a chunk of more than 10 samples held < 2048 bytes before its last sample
    for j in range(out.num_chunks):
        lo, hi = int(out.offsets[j]), int(out.offsets[j + 1])
        if hi - lo > 10:
            assert encoded_size(samples[lo:hi - 1], is_float) < 2048
        assert sizes[j] == encoded_size(samples[lo:hi], is_float)


def _expand_one(spans: tuple[tuple[int, int], ...]) -> list[int]:
    out: list[int] = []
    i = 0
    for k, (off, length) in enumerate(spans):
        i = off if k == 0 else i + off
        out.extend(range(i, i + length))
        i += length
    return out

