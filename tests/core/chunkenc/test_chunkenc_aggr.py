"""Thanos AggrChunk framing (FORMATS.md §7.2) and the counter-reset iterator (§7.6)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thanostools.core.chunkenc.aggr import (
    Aggr,
    aggr_spans,
    build_aggr,
    counter_reset_kernel,
    counter_reset_series,
    split_aggr,
)
from thanostools.core.chunkenc.xor import decode, decode_batch, encode
from thanostools.core.constants import STALE_NAN_BITS
from thanostools.core.errors import CorruptBlockError

XOR = 1
FLOAT_HISTOGRAM = 3

# §7.4 "single chunk" test vector, R = 100
SINGLE_CHUNK = {
    Aggr.COUNT: [(99, 4), (199, 3), (250, 1)],
    Aggr.SUM: [(99, 7), (199, 17), (250, 1)],
    Aggr.MIN: [(99, 1), (199, 2), (250, 1)],
    Aggr.MAX: [(99, 3), (199, 10), (250, 1)],
    Aggr.COUNTER: [(20, 1), (99, 4), (199, 13), (250, 14), (250, 1)],
}


def xor_chunk(samples: Sequence[tuple[int, float]]) -> bytes:
    return encode(np.array([t for t, _ in samples], dtype=np.int64), np.array([v for _, v in samples], float))


def single_chunk_subs() -> list[tuple[int, bytes] | None]:
    return [(XOR, xor_chunk(SINGLE_CHUNK[a])) for a in Aggr]


def test_aggr_numbering() -> None:
    assert [int(a) for a in Aggr] == [0, 1, 2, 3, 4]
    assert [a.name for a in Aggr] == ["COUNT", "SUM", "MIN", "MAX", "COUNTER"]


def test_build_layout_is_length_encoding_data_in_order() -> None:
    subs = single_chunk_subs()
    data = build_aggr(subs)
    expected = b""
    for sub in subs:
        assert sub is not None
        assert len(sub[1]) < 0x80
        expected += bytes([len(sub[1]), sub[0]]) + sub[1]
    assert data == expected
    assert split_aggr(data) == subs
    assert split_aggr(memoryview(data)) == subs


def test_absent_aggregates_are_a_zero_length() -> None:
    count = xor_chunk([(10, 1.0)])
    hist = (FLOAT_HISTOGRAM, b"\x00\x00\x01")
    subs: list[tuple[int, bytes] | None] = [(XOR, count), hist, None, None, None]
    data = build_aggr(subs)
    assert data == bytes([len(count), XOR]) + count + b"\x03\x03\x00\x00\x01" + b"\x00\x00\x00"
    assert split_aggr(data) == subs
    assert build_aggr([None] * 5) == b"\x00" * 5
    assert split_aggr(b"\x00" * 5) == [None] * 5


def test_long_sub_chunk_uses_multibyte_length() -> None:
    big = xor_chunk([(i * 15000, float(i) * 1.37) for i in range(120)])
    assert len(big) >= 0x80
    data = build_aggr([(XOR, big)] + [None] * 4)
    n = len(big)
    assert data[:3] == bytes([(n & 0x7F) | 0x80, n >> 7, XOR])
    assert split_aggr(data)[0] == (XOR, big)


def test_build_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        build_aggr([None] * 4)
    with pytest.raises(ValueError):
        build_aggr([(XOR, b"")] + [None] * 4)
    with pytest.raises(ValueError):
        build_aggr([(256, b"\x00\x00")] + [None] * 4)


def test_every_truncation_is_invalid_size() -> None:
    data = build_aggr(single_chunk_subs())
    for cut in range(len(data)):
        with pytest.raises(CorruptBlockError, match="invalid size"):
            split_aggr(data[:cut])


def test_overlong_length_varint_is_invalid_size() -> None:
    with pytest.raises(CorruptBlockError, match="invalid size"):
        split_aggr(b"\xff" * 11)
    with pytest.raises(CorruptBlockError, match="invalid size"):
        split_aggr(b"\x05\x01\x00")  # says 5 bytes, has 1


def segment_of(
    payloads: list[bytes], junk: bytes = b"\xee\xee\xee"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    buf = b""
    starts, ends = [], []
    for p in payloads:
        buf += junk
        starts.append(len(buf))
        buf += p
        ends.append(len(buf))
    return np.frombuffer(buf, dtype=np.uint8), np.array(starts), np.array(ends)


def test_spans_feed_decode_batch() -> None:
    float_chunk = build_aggr(single_chunk_subs())
    hist_chunk = build_aggr([(XOR, xor_chunk([(5, 2.0)])), (FLOAT_HISTOGRAM, b"\x00\x01\x02"), None, None,
                             (FLOAT_HISTOGRAM, b"\x00\x01\x07")])
    buf, starts, ends = segment_of([float_chunk, hist_chunk, float_chunk])
    for which in Aggr:
        s, e, enc = aggr_spans(buf, starts, ends, which)
        assert enc[0] == enc[2] == XOR
        batch = decode_batch(buf, s[[0, 2]], e[[0, 2]])
        expected = SINGLE_CHUNK[which] * 2
        assert batch.t.tolist() == [t for t, _ in expected]
        assert batch.v.view(np.float64).tolist() == [v for _, v in expected]
        if which in (Aggr.MIN, Aggr.MAX):
            assert enc[1] == -1 and s[1] == e[1]
        else:
            assert enc[1] == (XOR if which == Aggr.COUNT else FLOAT_HISTOGRAM)
            sub = split_aggr(hist_chunk)[which]
            assert sub is not None and buf[s[1] : e[1]].tobytes() == sub[1]
    s, e, enc = aggr_spans(buf, starts, ends, Aggr.COUNT)
    assert decode(buf[s[1] : e[1]])[0].tolist() == [5]


def test_spans_of_an_absent_trailing_aggregate() -> None:
    # the counter entry is the final zero byte: absent, not an error
    buf, starts, ends = segment_of([build_aggr([(XOR, b"\x00\x00")] + [None] * 4)])
    s, e, enc = aggr_spans(buf, starts, ends, Aggr.COUNTER)
    assert enc.tolist() == [-1] and s.tolist() == e.tolist()


def test_spans_report_the_truncated_chunk() -> None:
    good = build_aggr(single_chunk_subs())
    buf, starts, ends = segment_of([good, good[:-1], good])
    enc = aggr_spans(buf, starts, ends, Aggr.SUM)[2]  # only walks count and sum: fine
    assert enc.tolist() == [XOR, XOR, XOR]
    with pytest.raises(CorruptBlockError, match="invalid size") as err:
        aggr_spans(buf, starts, ends, Aggr.COUNTER)
    assert err.value.offset == starts[1] and "AggrChunk 1" in str(err.value)
    with pytest.raises(CorruptBlockError):
        aggr_spans(buf, np.array([0]), np.array([len(buf) + 1]), Aggr.COUNT)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.sampled_from(list(Aggr)))
def test_garbage_spans_never_crash(data: bytes, which: Aggr) -> None:
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        s, e, _ = aggr_spans(buf, np.array([0]), np.array([len(data)]), which)
    except CorruptBlockError:
        return
    assert 0 <= s[0] <= e[0] <= len(data)


# ---------------------------------------------------------------- counter-reset iterator


BOUNDARY_RESET_IN = [(10, 1), (30, 5), (30, 5), (50, 1), (70, 10), (70, 10),
                     (120, 1), (140, 20), (140, 20), (160, 21), (180, 40), (180, 40)]
BOUNDARY_RESET_OUT = [(10, 1), (30, 5), (50, 6), (70, 15), (120, 16), (140, 35), (160, 36), (180, 55)]


def run_counter(samples: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    t, v = counter_reset_series(np.array([s[0] for s in samples], dtype=np.int64),
                                np.array([s[1] for s in samples], dtype=np.float64))
    return list(zip(t.tolist(), v.tolist(), strict=True))


def test_boundary_reset_vector() -> None:
    assert run_counter(BOUNDARY_RESET_IN) == BOUNDARY_RESET_OUT


def test_single_aggregated_chunks_counter_inputs() -> None:
    samples = [(99, 100), (299, 150), (499, 210), (499, 10), (599, 20), (799, 50), (999, 120), (999, 50),
               (1099, 40), (1199, 80), (1299, 110)]
    assert run_counter(samples) == [(99, 100), (299, 150), (499, 210), (599, 220), (799, 250),
                                    (999, 320), (1099, 360), (1199, 400), (1299, 430)]


def test_nan_stale_backwards_and_duplicates() -> None:
    stale = np.array([STALE_NAN_BITS], dtype=np.uint64).view(np.float64)[0]
    samples = [(5, float("nan")), (10, 3.0), (20, stale), (20, 4.0), (15, 100.0), (20, 2.0), (30, 5.0)]
    # (20, 4.0) counts; (15, …) is ignored; (20, 2.0) only moves the last value, so 5.0 adds 3
    assert run_counter(samples) == [(10, 3.0), (20, 4.0), (30, 7.0)]
    assert run_counter([]) == []
    assert run_counter([(1, float("nan"))]) == []


def test_uint64_bits_input_and_python_fallback() -> None:
    t = np.array([s[0] for s in BOUNDARY_RESET_IN], dtype=np.int64)
    v = np.array([s[1] for s in BOUNDARY_RESET_IN], dtype=np.float64)
    ot, ov = counter_reset_series(t, v.view(np.uint64))
    assert list(zip(ot.tolist(), ov.tolist(), strict=True)) == BOUNDARY_RESET_OUT
    py = getattr(counter_reset_kernel, "py_func", counter_reset_kernel)
    pt, pv = py(t, v)
    assert pt.tolist() == ot.tolist() and pv.tolist() == ov.tolist()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.floats(0, 1e6)), max_size=60))
def test_counter_output_is_monotone(samples: list[tuple[int, float]]) -> None:
    out = run_counter(samples)
    assert all(a[0] < b[0] and a[1] <= b[1] for a, b in itertools.pairwise(out))
