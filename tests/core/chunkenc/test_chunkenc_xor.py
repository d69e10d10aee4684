"""XOR chunk codec: FORMATS.md §4 worked examples, quirks, round trips, corrupt input, Python fallback."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thanostools.core.chunkenc.xor import (
    NORMAL_NAN_BITS,
    DecodedBatch,
    decode,
    decode_batch,
    encode,
    encode_batch,
    num_samples,
)
from thanostools.core.constants import STALE_NAN_BITS
from thanostools.core.errors import CorruptBlockError
from thanostools.core.kernels import xor as kernels

MASK64 = (1 << 64) - 1
REPO = Path(__file__).resolve().parents[3]

EXAMPLE_A = bytes.fromhex(
    "0004" "80897a" "3ff0000000000000" "9875" "c004000000000000000900037ff800000000000080"
)
EXAMPLE_B = bytes.fromhex("000480897a3ff00000000000009875c25fff6d06d61d")
EXAMPLE_C = bytes.fromhex(
    "000880897a3ff00000000000009875ff08000000060007003bfffc06e007270ff17dff6000000000000f8000000000"
    "04287490010000000000001d0bdc00"
)
ONE_SAMPLE_2X = bytes.fromhex("000180897a4024000000000000" "00")  # §3.2: 2.x writes one extra zero byte


def bits_of(x: float) -> int:
    return int(struct.unpack(">Q", struct.pack(">d", x))[0])


def bitstring(data: bytes) -> str:
    return "".join(f"{b:08b}" for b in data)


# ---------------------------------------------------------------- an independent, bit-by-bit reference


def ref_encode(ts: list[int], vs: list[int]) -> bytes:
    """Straight from the spec, one bit at a time, Python ints (Prometheus 3.x form)."""
    bits: list[int] = []

    def put(value: int, n: int) -> None:
        bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    def put_uvarint(u: int) -> None:
        while u >= 0x80:
            put((u & 0x7F) | 0x80, 8)
            u >>= 7
        put(u, 8)

    lead: int | None = None
    trail = 0

    def put_xor(x: int) -> None:
        nonlocal lead, trail
        if x == 0:
            put(0, 1)
            return
        lz = min(64 - x.bit_length(), 31)
        tz = (x & -x).bit_length() - 1
        if lead is not None and lz >= lead and tz >= trail:
            put(0b10, 2)
            put(x >> trail, 64 - lead - trail)
            return
        lead, trail = lz, tz
        sig = 64 - lz - tz
        put(0b11, 2)
        put(lz, 5)
        put(sig % 64, 6)
        put(x >> tz, sig)

    prev_delta = 0
    for i, (t, v) in enumerate(zip(ts, vs, strict=True)):
        if i == 0:
            put_uvarint(((t << 1) ^ (t >> 63)) & MASK64)
            put(v, 64)
            continue
        delta = (t - ts[i - 1]) & MASK64
        if i == 1:
            put_uvarint(delta)
        else:
            dod = (delta - prev_delta) & MASK64
            signed = dod - (1 << 64) if dod >= 1 << 63 else dod
            if signed == 0:
                put(0, 1)
            elif -8191 <= signed <= 8192:
                put(0b10, 2)
                put(dod & 0x3FFF, 14)
            elif -65535 <= signed <= 65536:
                put(0b110, 3)
                put(dod & 0x1FFFF, 17)
            elif -524287 <= signed <= 524288:
                put(0b1110, 4)
                put(dod & 0xFFFFF, 20)
            else:
                put(0b1111, 4)
                put(dod, 64)
        prev_delta = delta
        put_xor(v ^ vs[i - 1])
    bits.extend([0] * (-len(bits) % 8))
    body = bytes(int("".join(map(str, bits[k : k + 8])), 2) for k in range(0, len(bits), 8))
    return len(ts).to_bytes(2, "big") + body


def arrays(ts: list[int], vs: list[int]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(ts, dtype=np.int64), np.array(vs, dtype=np.uint64)


# ---------------------------------------------------------------- worked examples (§4.6)


def test_example_a_bytes() -> None:
    t = np.array([1000000, 1015000, 1030000, 1045001])
    v = np.array([1.0, -1.0000000000000002, -1.0000000000000002, 2.0])
    assert encode(t, v) == EXAMPLE_A
    dt, dv = decode(EXAMPLE_A)
    assert dt.tolist() == t.tolist()
    assert dv.tolist() == [bits_of(x) for x in v]


def test_example_a_writes_64_significant_bits_as_zero() -> None:
    stream = bitstring(EXAMPLE_A[15:])
    assert stream[:13] == "11" + "00000" + "000000"
    assert stream[13:77] == f"{0x8000000000000001:064b}"


def test_example_b_bytes_and_window_decisions() -> None:
    t = np.array([1000000, 1015000, 1030000, 1045000])
    v = np.array([1.0, 2.0, 2.5, 4.0])
    assert encode(t, v) == EXAMPLE_B
    stream = bitstring(EXAMPLE_B[15:])
    expected = ("11" "00001" "001011" "11111111111"  # x = 0x7FF0000000000000: L=1, S=11
                "0" "11" "01101" "000001" "1"  # dod 0; L=13, T=50 < 52
                "0" "11" "01011" "000011" "101")  # dod 0; L=11 < 13
    assert stream == expected  # three new windows: T shrinks, then L shrinks; 56 bits, no padding
    assert decode(EXAMPLE_B)[1].view(np.float64).tolist() == [1.0, 2.0, 2.5, 4.0]


def test_example_c_decodes_all_dod_buckets() -> None:
    t, v = decode(EXAMPLE_C)
    assert t.tolist() == [1000000, 1015000, 1030001, 1045001, 1100000, 1700000, 2300000, 2400000]
    assert np.diff(t, 2).tolist() == [1, -1, 39999, 545001, 0, -500000]
    assert [hex(x) for x in v.tolist()] == [
        "0x3ff0000000000000",
        "0x3ff0000000000001",
        "0xbff0000000000001",
        hex(NORMAL_NAN_BITS),
        "0x4014000000000000",
        "0x4014000000000000",
        "0x401c000000000000",
        "0x401c000000000000",
    ]


def test_example_c_reencodes_identically_modulo_2x_trailing_byte() -> None:
    t, v = decode(EXAMPLE_C)
    ours = encode(t, v)
    assert ours in (EXAMPLE_C, EXAMPLE_C[:-1])
    assert ours == ref_encode(t.tolist(), v.tolist())


def test_leading_zero_clamp_at_31() -> None:
    stream = bitstring(EXAMPLE_C[15:])
    assert stream[:13] == "11" + "11111" + "100001"  # x = 1: L = 31 (not 63), S = 33
    assert stream[13:46] == "0" * 32 + "1"


def test_first_xor_always_opens_a_window() -> None:
    # x = all ones would fit the decoder's initial (0, 0) window, but the writer has no window yet
    data = encode(np.array([0, 1]), np.array([0, MASK64], dtype=np.uint64))
    assert bitstring(data[2 + 1 + 8 + 1 :])[:13] == "11" + "00000" + "000000"


def test_one_sample_chunk_3x_and_2x_forms() -> None:
    ours = encode(np.array([1000000]), np.array([10.0]))
    assert ours + b"\x00" == ONE_SAMPLE_2X
    for data in (ours, ONE_SAMPLE_2X):
        t, v = decode(data)
        assert t.tolist() == [1000000]
        assert v.view(np.float64).tolist() == [10.0]


def test_empty_chunk() -> None:
    assert encode(np.array([], dtype=np.int64), np.array([], dtype=np.float64)) == b"\x00\x00"
    t, v = decode(b"\x00\x00")
    assert t.size == 0 and v.size == 0 and t.dtype == np.int64 and v.dtype == np.uint64


def test_num_samples() -> None:
    assert num_samples(EXAMPLE_C) == 8
    assert num_samples(memoryview(EXAMPLE_A)) == 4
    assert num_samples(b"\xff\xff") == 65535
    with pytest.raises(CorruptBlockError):
        num_samples(b"\x00")


# ---------------------------------------------------------------- dod buckets and edges


DOD_EDGES = [0, 1, -1, 8192, -8191, 8193, -8192, 65536, -65535, 65537, -65536, 524288, -524287,
             524289, -524288, 1 << 40, -(1 << 40)]


@pytest.mark.parametrize("dod", DOD_EDGES)
def test_dod_bucket_edges(dod: int) -> None:
    base = 1 << 41
    ts = [0, base, 2 * base + dod, 3 * base + dod]
    vs = [1, 1, 1, 1]
    data = encode(*arrays(ts, vs))
    assert data == ref_encode(ts, vs)
    assert decode(data)[0].tolist() == ts
    # t0 = 0 is one varint byte, v0 eight, t1 - t0 = 2^41 six; then sample 1's XOR bit "0"
    dod_bits = bitstring(data[2 + 1 + 8 + 6 :])[1:]
    if dod == 0:
        assert dod_bits[:1] == "0"
    elif -8191 <= dod <= 8192:
        assert dod_bits[:2] == "10"
    elif -65535 <= dod <= 65536:
        assert dod_bits[:3] == "110"
    elif -524287 <= dod <= 524288:
        assert dod_bits[:4] == "1110"
    else:
        assert dod_bits[:4] == "1111"


def test_extreme_timestamps_wrap_like_go() -> None:
    lo, hi = -(1 << 63), (1 << 63) - 1
    ts = [lo, lo, hi, hi, 0]
    with pytest.raises(ValueError):
        encode(*arrays(ts, [0] * 5))
    ts = [lo, -1, 0, hi]
    data = encode(*arrays(ts, [1, 2, 3, 4]))
    assert data == ref_encode(ts, [1, 2, 3, 4])
    assert decode(data)[0].tolist() == ts


def test_values_accept_float64_and_uint64_bits() -> None:
    t = np.arange(4, dtype=np.int64)
    f = np.array([0.0, -0.0, float("inf"), float("nan")])
    assert encode(t, f) == encode(t, f.view(np.uint64))
    assert decode(encode(t, f))[1].tolist() == f.view(np.uint64).tolist()  # Python NaN stays 0x7FF8...0
    assert encode(t, [1, 2, 3, 4]) == encode(t, np.array([1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(TypeError):
        encode(t, np.array(["a", "b", "c", "d"]))


# ---------------------------------------------------------------- round trips


SPECIAL_BITS = [
    0,
    1 << 63,  # -0.0
    1,  # smallest denormal
    0x000FFFFFFFFFFFFF,  # largest denormal
    0x0010000000000000,  # smallest normal
    0x7FEFFFFFFFFFFFFF,  # max float
    0xFFEFFFFFFFFFFFFF,
    0x7FF0000000000000,  # +Inf
    0xFFF0000000000000,  # -Inf
    STALE_NAN_BITS,
    NORMAL_NAN_BITS,
    0x7FF8000000000000,  # Python's NaN
    0xFFFFFFFFFFFFFFFF,
    0x3FF0000000000000,
    0x3FF0000000000001,
]

value_ops = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(SPECIAL_BITS)),
    st.tuples(st.just("set"), st.integers(0, MASK64)),
    st.tuples(st.just("set"), st.floats(allow_nan=False, allow_subnormal=True).map(bits_of)),
    st.tuples(st.just("set"), st.integers(-(10**6), 10**6).map(float).map(bits_of)),
    st.tuples(st.just("same"), st.just(0)),
    st.tuples(st.just("flip"), st.integers(1, 63).flatmap(lambda w: st.integers(1, (1 << w) - 1))
              .flatmap(lambda m: st.integers(0, 64 - m.bit_length()).map(lambda s: m << s))),
)
deltas = st.one_of(
    st.just(0),
    st.integers(0, 20),
    st.sampled_from([15000, 14999, 15001, 30000, 60000]),
    st.integers(0, 1 << 20),
    st.integers(0, 1 << 40),
)


@st.composite
def series(draw: st.DrawFn, max_size: int = 150) -> tuple[list[int], list[int]]:
    ops = draw(st.lists(value_ops, min_size=0, max_size=max_size))
    t = draw(st.integers(-(1 << 62), 1 << 62))
    ts: list[int] = []
    vs: list[int] = []
    v = 0
    for kind, arg in ops:
        v = arg if kind == "set" else v if kind == "same" else v ^ arg
        ts.append(t)
        vs.append(v)
        t += draw(deltas)
    return ts, vs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(series())
def test_round_trip_matches_reference(s: tuple[list[int], list[int]]) -> None:
    ts, vs = s
    data = encode(*arrays(ts, vs))
    assert data == ref_encode(ts, vs)
    t, v = decode(data)
    assert t.tolist() == ts
    assert v.tolist() == vs
    assert num_samples(data) == len(ts)


@settings(max_examples=100, deadline=None)
@given(st.lists(series(max_size=40), min_size=0, max_size=12), st.lists(st.integers(0, 3), max_size=12))
def test_batch_round_trip(chunks: list[tuple[list[int], list[int]]], gaps: list[int]) -> None:
    t = np.array([x for ts, _ in chunks for x in ts], dtype=np.int64)
    v = np.array([x for _, vs in chunks for x in vs], dtype=np.uint64)
    bounds = np.cumsum([0] + [len(ts) for ts, _ in chunks]).astype(np.int64)
    buf, offsets = encode_batch(t, v, bounds)
    assert offsets.shape == (len(chunks) + 1,)
    for j, (ts, vs) in enumerate(chunks):
        assert buf[offsets[j] : offsets[j + 1]].tobytes() == ref_encode(ts, vs)
    # re-lay the chunks out with junk between them, as in a segment file
    pieces: list[bytes] = []
    starts: list[int] = []
    pos = 0
    for j in range(len(chunks)):
        junk = b"\xaa" * (gaps[j] if j < len(gaps) else 1)
        pieces += [junk, buf[offsets[j] : offsets[j + 1]].tobytes()]
        starts.append(pos + len(junk))
        pos += len(junk) + int(offsets[j + 1] - offsets[j])
    seg = np.frombuffer(b"".join(pieces), dtype=np.uint8)
    st_ = np.array(starts, dtype=np.int64)
    batch = decode_batch(seg, st_, st_ + np.diff(offsets))
    assert isinstance(batch, DecodedBatch)
    assert batch.offsets.tolist() == bounds.tolist()
    assert batch.t.tolist() == t.tolist()
    assert batch.v.tolist() == v.tolist()


def test_batch_with_empty_and_single_sample_chunks() -> None:
    t = np.array([5, 6, 7, -3], dtype=np.int64)
    v = np.array([1.5, 2.5, 3.5, 4.5])
    bounds = np.array([0, 0, 1, 1, 3, 4, 4])
    buf, offsets = encode_batch(t, v, bounds)
    chunks = [buf[offsets[j] : offsets[j + 1]].tobytes() for j in range(6)]
    assert chunks[0] == chunks[2] == chunks[5] == b"\x00\x00"
    batch = decode_batch(buf, offsets[:-1], offsets[1:])
    assert batch.offsets.tolist() == bounds.tolist()
    assert batch.t.tolist() == t.tolist()
    assert batch.chunk(3)[0].tolist() == [6, 7]
    assert decode_batch(buf, np.array([], dtype=np.int64), np.array([], dtype=np.int64)).t.size == 0


def test_encode_batch_growth_and_big_chunks() -> None:
    rng = np.random.default_rng(7)
    n = 200_000
    t = np.cumsum(rng.integers(0, 1 << 30, n)).astype(np.int64)
    v = rng.integers(0, MASK64, n, dtype=np.uint64, endpoint=True)  # incompressible: worst case sizes
    bounds = np.append(np.arange(0, n, 65535), n).astype(np.int64)
    buf, offsets = encode_batch(t, v, bounds)
    batch = decode_batch(buf, offsets[:-1], offsets[1:])
    assert np.array_equal(batch.t, t) and np.array_equal(batch.v, v)


def test_encode_batch_validation() -> None:
    t = np.array([1, 2, 1, 2], dtype=np.int64)
    v = np.zeros(4)
    with pytest.raises(ValueError, match="decrease"):
        encode_batch(t, v, np.array([0, 4]))
    buf, offsets = encode_batch(t, v, np.array([0, 2, 4]))  # the decrease is across chunks: fine
    assert decode_batch(buf, offsets[:-1], offsets[1:]).t.tolist() == [1, 2, 1, 2]
    encode_batch(t, v, np.array([2, 4]))  # samples outside every chunk are not looked at
    with pytest.raises(ValueError):
        encode_batch(t, v, np.array([0, 3, 2]))
    with pytest.raises(ValueError):
        encode_batch(t, v, np.array([0, 5]))
    with pytest.raises(ValueError):
        encode_batch(t, v[:3], np.array([0, 3]))
    with pytest.raises(ValueError, match="65535"):
        encode(np.arange(65536), np.zeros(65536))


# ---------------------------------------------------------------- corrupt input


@settings(max_examples=150, deadline=None)
@given(series(max_size=60).filter(lambda s: len(s[0]) > 0))
def test_every_truncation_is_reported(s: tuple[list[int], list[int]]) -> None:
    data = encode(*arrays(*s))
    for cut in range(len(data)):
        with pytest.raises(CorruptBlockError):
            decode(data[:cut])


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=80))
def test_garbage_never_crashes(data: bytes) -> None:
    try:
        t, v = decode(data)
    except CorruptBlockError:
        return
    assert t.shape == v.shape == (num_samples(data),)


def test_truncated_chunk_in_batch_names_index_and_offset() -> None:
    good = EXAMPLE_B
    seg = np.frombuffer(good + good[:-3] + good, dtype=np.uint8)
    n = len(good)
    starts = np.array([0, n, 2 * n - 3])
    ends = np.array([n, 2 * n - 3, 3 * n - 3])
    with pytest.raises(CorruptBlockError) as err:
        decode_batch(seg, starts, ends)
    assert err.value.offset == n
    assert "chunk 1" in str(err.value) and "ends early" in str(err.value)


def test_span_outside_buffer_and_short_header() -> None:
    buf = np.frombuffer(EXAMPLE_B, dtype=np.uint8)
    with pytest.raises(CorruptBlockError):
        decode_batch(buf, np.array([0]), np.array([len(EXAMPLE_B) + 1]))
    with pytest.raises(CorruptBlockError):
        decode_batch(buf, np.array([5]), np.array([4]))
    with pytest.raises(CorruptBlockError) as err:
        decode_batch(buf, np.array([0, 3]), np.array([len(EXAMPLE_B), 4]))
    assert err.value.offset == 3 and "chunk 1" in str(err.value)
    with pytest.raises(ValueError):
        decode_batch(buf, np.array([0, 1]), np.array([3]))


def test_overlong_varint() -> None:
    with pytest.raises(CorruptBlockError, match="varint"):
        decode(b"\x00\x01" + b"\xff" * 10 + b"\x01" + bytes(8))
    with pytest.raises(CorruptBlockError, match="varint"):
        decode(b"\x00\x01" + b"\xff" * 9 + b"\x02" + bytes(8))  # 10th byte may only be 0 or 1


def test_xor_window_wider_than_64_bits() -> None:
    # new window with L = 31 and S = 63: T would be negative
    stream = "11" + "11111" + "111111" + "0" * 80
    body = bytes(int(stream[k : k + 8], 2) for k in range(0, len(stream), 8))
    data = b"\x00\x02" + b"\x00" + bytes(8) + b"\x01" + body
    with pytest.raises(CorruptBlockError, match="window"):
        decode(data)


def test_chunk_at_buffer_end_and_in_the_middle_agree() -> None:
    # chunks within PAD bytes of the end of the buffer take the padded-copy path
    nc, na = len(EXAMPLE_C), len(EXAMPLE_A)
    starts, ends = np.array([0, nc]), np.array([nc, nc + na])
    padded = decode_batch(np.frombuffer(EXAMPLE_C + EXAMPLE_A + bytes(100), dtype=np.uint8), starts, ends)
    tight = decode_batch(np.frombuffer(EXAMPLE_C + EXAMPLE_A, dtype=np.uint8), starts, ends)
    assert padded.t.tolist() == tight.t.tolist()
    assert padded.v.tolist() == tight.v.tolist()


# ---------------------------------------------------------------- pure-Python fallback


FALLBACK_SCRIPT = r"""
import json, sys
import numpy as np
from thanostools.core.kernels import _jit
from thanostools.core.chunkenc.xor import decode_batch, encode_batch
assert not _jit.HAVE_NUMBA
cases = json.loads(sys.stdin.read())
out = []
for ts, vs in cases:
    t = np.array(ts, dtype=np.int64); v = np.array([int(x) for x in vs], dtype=np.uint64)
    buf, offsets = encode_batch(t, v, np.array([0, len(ts) // 2, len(ts)]))
    batch = decode_batch(buf, offsets[:-1], offsets[1:])
    out.append([buf.tobytes().hex(), offsets.tolist(), batch.t.tolist(), [str(x) for x in batch.v.tolist()]])
print(json.dumps(out))
"""


def fallback_cases() -> list[tuple[list[int], list[int]]]:
    rng = np.random.default_rng(3)
    cases: list[tuple[list[int], list[int]]] = [
        (decode(EXAMPLE_C)[0].tolist(), decode(EXAMPLE_C)[1].tolist()),
        ([-(1 << 63), -1, 0, (1 << 63) - 1], [STALE_NAN_BITS, NORMAL_NAN_BITS, 1, MASK64]),
        ([0, 1 << 41, (2 << 41) + 524289, (3 << 41) + 524289, (4 << 41) - 8191, (5 << 41)], SPECIAL_BITS[:6]),
    ]
    ts = np.cumsum(rng.choice([0, 14999, 15000, 15001, 1 << 19, 1 << 35], 150)).tolist()
    vs = [bits_of(float(x)) for x in np.cumsum(rng.normal(size=150)).round(2)]
    cases.append((ts, vs))
    cases.append(([10, 20], [0, 0]))
    return cases


def test_pure_python_fallback_matches_numba() -> None:
    cases = fallback_cases()
    env = dict(os.environ, THANOS_TOOLS_NO_NUMBA="1")
    proc = subprocess.run(
        [sys.executable, "-c", FALLBACK_SCRIPT],
        input=json.dumps([[ts, [str(v) for v in vs]] for ts, vs in cases]),
        capture_output=True, text=True, env=env, cwd=REPO, check=True, timeout=300,
    )
    results = json.loads(proc.stdout)
    for (ts, vs), (hexbuf, offsets, t_out, v_out) in zip(cases, results, strict=True):
        t, v = arrays(ts, vs)
        bounds = np.array([0, len(ts) // 2, len(ts)])
        buf, offs = encode_batch(t, v, bounds)
        assert hexbuf == buf.tobytes().hex()
        assert offsets == offs.tolist()
        assert t_out == ts
        assert [int(x) for x in v_out] == vs


def test_kernel_py_funcs_round_trip() -> None:
    encode_chunks = getattr(kernels.encode_chunks, "py_func", kernels.encode_chunks)
    decode_chunks = getattr(kernels.decode_chunks, "py_func", kernels.decode_chunks)
    ts, vs = fallback_cases()[2]
    t, v = arrays(ts, vs)
    with np.errstate(over="ignore"):
        buf, offsets = encode_chunks(t.view(np.uint64), v, np.array([0, 2, len(ts)]), 0)
        assert buf.tobytes() == ref_encode(ts[:2], vs[:2]) + ref_encode(ts[2:], vs[2:])
        _, tb, vb, bad, status = decode_chunks(buf, offsets[:-1].copy(), offsets[1:].copy())
    assert (bad, status) == (-1, kernels.OK)
    assert tb.view(np.int64).tolist() == ts and vb.tolist() == vs
