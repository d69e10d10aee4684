"""Native-histogram chunk codec against real Prometheus 2.42 blocks (shared/testdata/native-histograms)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thanostools.core.chunkenc import histogram as H
from thanostools.core.errors import CorruptBlockError
from thanostools.core.render.histjson import api_buckets, api_histogram
from thanostools.core.tsdb.block import Block

DATA = Path("/work/shared/testdata/native-histograms")
BLOCKS = {"main": "run1/01M94ZAZYBH36Q16ZZBE8Y9PW2", "snapshot": "run1/01M94ZC7V80EZ83V6W2RPNME91",
          "edge": "run2/01M94ZPHPTYFJKBQ1PMXW21M19"}
REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="native-histogram test data not present")


@dataclasses.dataclass
class Chunks:
    labels: list[dict[str, str]]
    series_of: np.ndarray
    buf: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    encodings: np.ndarray
    maxt: int

    def data(self, i: int) -> bytes:
        return self.buf[self.starts[i]:self.ends[i]].tobytes()


@cache
def block_chunks(name: str) -> Chunks:
    blk = Block.open_dir(str(DATA / BLOCKS[name]))
    sb = blk.index.series(blk.index.all_postings())
    cb = blk.chunks.read(sb.chunk_ref)
    return Chunks([dict(lab) for lab in sb.labels], np.repeat(np.arange(len(sb)), np.diff(sb.chunk_offsets)),
                  cb.buf, np.asarray(cb.starts), np.asarray(cb.ends), np.asarray(cb.encodings), blk.meta.max_time)


def histogram_chunks(c: Chunks) -> np.ndarray:
    return np.flatnonzero(np.isin(c.encodings, [2, 3]))


@pytest.mark.parametrize("name", list(BLOCKS))
def test_decode_then_encode_gives_the_block_bytes(name: str) -> None:
    c = block_chunks(name)
    sel = histogram_chunks(c)
    assert len(sel) == {"main": 23, "snapshot": 8, "edge": 13}[name]
    ints, floats, is_float = H.decode_by_kind(c.buf, c.starts[sel], c.ends[sel], c.encodings[sel], flavor="2.42")
    trailing = 0
    for batch, chunks in ((ints, sel[~is_float]), (floats, sel[is_float])):
        legacy, legacy_offs = H.encode_batch(batch, flavor="2.42")
        modern, modern_offs = H.encode_batch(batch, flavor="3")
        for j, i in enumerate(chunks):
            want = c.data(i)
            assert legacy[legacy_offs[j]:legacy_offs[j + 1]].tobytes() == want, f"chunk {i}"
            got3 = modern[modern_offs[j]:modern_offs[j + 1]].tobytes()
            if got3 != want:
                assert want == got3 + b"\x00"
                trailing += 1
    assert trailing == (2 if name == "edge" else 0)  # one_int and one_float (H12.4)


def decoded_series(c: Chunks, series: int, flavor: H.Flavor = "2.42") -> list[H.HistogramBatch]:
    sel = histogram_chunks(c)
    sel = sel[c.series_of[sel] == series]
    out = []
    for kinds in (H.INT_ENCODINGS, H.FLOAT_ENCODINGS):
        mine = sel[np.isin(c.encodings[sel], kinds)]
        if len(mine):
            out.append(H.decode_batch(c.buf, c.starts[mine], c.ends[mine], c.encodings[mine], flavor=flavor))
    return out


@pytest.mark.parametrize(("name", "run", "suffix"), [("main", "run1", "raw"), ("snapshot", "run1", "closing.raw"),
                                                      ("edge", "run2", "raw")])
def test_every_sample_renders_as_the_api_answered(name: str, run: str, suffix: str) -> None:
    c = block_chunks(name)
    total = 0
    for series, labels in enumerate(c.labels):
        path = DATA / run / "api" / f"{labels['__name__']}__{labels['case']}.{suffix}.json"
        result = json.loads(path.read_text())["data"]["result"][0]
        want = {round(ts * 1000): h for ts, h in result.get("histograms", [])}
        got = {}
        for batch in decoded_series(c, series):
            for s in np.flatnonzero(~batch.stale).tolist():
                got[int(batch.t[s])] = api_histogram(batch, s)
        if suffix == "raw":
            assert got == want, labels
        else:  # the closing window covers this block's samples only
            assert got == {t: h for t, h in want.items() if t in got} and len(got) == 2
        total += len(got)
    assert total == {"main": 1705, "snapshot": 16, "edge": 202}[name]


def test_worked_example_int_chunk_fields() -> None:
    c = block_chunks("main")
    series = next(i for i, lab in enumerate(c.labels) if lab.get("case") == "worked_int")
    (batch,) = decoded_series(c, series)
    assert batch.t.tolist() == [1796522400000, 1796522410000, 1796522425000]
    assert batch.count.tolist() == [5, 10, 14] and batch.count.dtype == np.int64
    assert batch.zero_count.tolist() == [1, 2, 2]
    assert batch.sum.tolist() == [3.5, 8.25, 12.0]
    assert batch.buckets.tolist() == [2, 1, 1, 4, 3, 1, 5, 5, 2]
    assert batch.layouts.spans(0) == ([(0, 2)], [(0, 1)])
    assert batch.layouts.zero_threshold[0] == 2.0 ** -128


@pytest.mark.parametrize("flavor", H.FLAVORS)
def test_hints_follow_the_chunk_headers(flavor: H.Flavor) -> None:
    c = block_chunks("main")
    series = next(i for i, lab in enumerate(c.labels) if lab.get("case") == "reset")
    (batch,) = decoded_series(c, series, flavor)
    assert batch.header.tolist() == [H.HEADER_UNKNOWN, H.HEADER_NOT_RESET, H.HEADER_RESET]
    first = batch.offsets[:-1]
    assert batch.hint[first].tolist() == [H.HINT_UNKNOWN, H.HINT_UNKNOWN,
                                          H.HINT_RESET if flavor == "2.42" else H.HINT_UNKNOWN]
    rest = np.setdiff1d(np.arange(len(batch)), first)
    assert (batch.hint[rest] == H.HINT_NOT_RESET).all()
    gauge = next(i for i, lab in enumerate(c.labels) if lab.get("case") == "gauge")
    (batch,) = decoded_series(c, gauge, flavor)
    assert (batch.hint == H.HINT_GAUGE).all()


# ---------------------------------------------------------------- head cutting from what was sent


def input_runs(run: str, selector: str, maxt: int) -> list[tuple[bool, list[H.HistogramSample]]]:
    """The samples sent for one series (t < maxt), as runs of one histogram kind; float samples end a run."""
    samples = json.loads((DATA / run / "input.json").read_text())["series"][selector]
    runs: list[tuple[bool, list[H.HistogramSample]]] = []
    for raw in samples:
        if raw["t"] >= maxt or raw.get("closing"):
            continue
        kind = raw["kind"]
        if kind == "float_sample":
            runs.append((False, []))
            continue
        if kind == "stale_float_sample":
            runs[-1][1].append(H.HistogramSample(t=raw["t"], count=0, zero_count=0, sum=0.0, stale=True))
            continue
        is_float = kind == "float"
        if not runs or runs[-1][0] != is_float or (not runs[-1][1] and runs[-1][0] != is_float):
            runs.append((is_float, []))
        runs[-1][1].append(H.HistogramSample(
            t=raw["t"], count=raw["count"], zero_count=raw["zero_count"], sum=raw["sum"], schema=raw["schema"],
            zero_threshold=raw["zero_threshold"], hint=raw["hint"],
            positive_spans=tuple(map(tuple, raw["positive_spans"])), positive_buckets=tuple(raw["positive_buckets"]),
            negative_spans=tuple(map(tuple, raw["negative_spans"])), negative_buckets=tuple(raw["negative_buckets"]),
        ))
    return [(f, s) for f, s in runs if s]


@pytest.mark.parametrize(("name", "run"), [("main", "run1"), ("edge", "run2")])
def test_head_chunks_of_the_sent_samples_are_the_block_chunks(name: str, run: str) -> None:
    c = block_chunks(name)
    checked = 0
    for series, labels in enumerate(c.labels):
        selector = f'{labels["__name__"]}{{case="{labels["case"]}"}}'
        chunks = histogram_chunks(c)
        chunks = chunks[c.series_of[chunks] == series]
        want = [c.data(i) for i in chunks]
        got: list[bytes] = []
        for is_float, samples in input_runs(run, selector, c.maxt):
            cut = H.head_chunks(H.build_batch(samples, is_float=is_float), flavor="2.42")
            out, offs = H.encode_batch(cut, flavor="2.42")
            got.extend(out[offs[j]:offs[j + 1]].tobytes() for j in range(cut.num_chunks))
        assert got == want, selector
        checked += len(got)
    assert checked == {"main": 23, "edge": 13}[name]


# ---------------------------------------------------------------- generated histograms


@st.composite
def layouts(draw: Any) -> tuple[int, float, list[tuple[int, int]], list[tuple[int, int]]]:
    schema = draw(st.integers(-4, 8))
    zt = draw(st.sampled_from([0.0, 2.0 ** -128, 0.001, 0.5, 1024.0, 3.0]))
    sides = []
    for _ in range(2):
        n = draw(st.integers(0, 3))
        spans = [(draw(st.integers(-3000, 3000)) if k == 0 else draw(st.integers(0, 40)), draw(st.integers(0, 4)))
                 for k in range(n)]
        sides.append(spans)
    return schema, zt, sides[0], sides[1]


@st.composite
def chunk_samples(draw: Any, is_float: bool) -> tuple[list[H.HistogramSample], int]:
    schema, zt, pos, neg = draw(layouts())
    npos = sum(n for _, n in pos)
    nneg = sum(n for _, n in neg)
    n = draw(st.integers(1, 12))
    counts = st.floats(0, 1e12, allow_nan=False) if is_float else st.integers(0, 2 ** 62)
    header = draw(st.integers(0, 3))
    stale_from = draw(st.integers(0, n + 2))
    t = draw(st.integers(-(2 ** 50), 2 ** 50))
    samples = []
    for i in range(n):
        t += draw(st.integers(0, 2 ** 40)) if draw(st.booleans()) else 15000
        if i >= stale_from:
            samples.append(H.HistogramSample(t=t, count=0, zero_count=0, sum=0.0, stale=True))
            continue
        samples.append(H.HistogramSample(
            t=t, count=draw(counts), zero_count=draw(counts), sum=draw(st.floats(allow_nan=True)), schema=schema,
            zero_threshold=zt, positive_spans=tuple(pos), negative_spans=tuple(neg),
            positive_buckets=tuple(draw(counts) for _ in range(npos)),
            negative_buckets=tuple(draw(counts) for _ in range(nneg)),
        ))
    return samples, header


def one_layout_per_chunk(batch: H.HistogramBatch) -> H.HistogramBatch:
    """What decoding returns: each sample points at its chunk's layout; a stale-first chunk has the empty one."""
    sizes = np.diff(batch.offsets)
    first = np.repeat(batch.offsets[:-1], sizes)
    return dataclasses.replace(batch, layout=batch.layout[first])


@pytest.mark.parametrize("is_float", [False, True])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_generated_histograms_round_trip(is_float: bool, data: Any) -> None:
    chunks = data.draw(st.lists(chunk_samples(is_float), min_size=1, max_size=4))
    samples = [s for chunk, _ in chunks for s in chunk]
    # a chunk starting with a stale marker is written with the empty layout (H10)
    samples = [dataclasses.replace(chunk[0], schema=0, zero_threshold=0.0, positive_spans=(), negative_spans=())
               if s is chunk[0] and s.stale else s for chunk, _ in chunks for s in chunk]
    batch = one_layout_per_chunk(H.build_batch(samples, is_float=is_float, chunk_sizes=[len(c) for c, _ in chunks],
                                               headers=[h for _, h in chunks]))
    for flavor in H.FLAVORS:
        buf, offsets = H.encode_batch(batch, flavor=flavor)
        encs = np.full(len(chunks), H.ENC_FLOAT_HISTOGRAM if is_float else H.ENC_HISTOGRAM)
        back = H.decode_batch(buf, offsets[:-1], offsets[1:], encs, flavor=flavor)
        assert_same_samples(batch, back)


def assert_same_samples(a: H.HistogramBatch, b: H.HistogramBatch) -> None:
    assert a.offsets.tolist() == b.offsets.tolist()
    assert a.header.tolist() == b.header.tolist()
    assert a.t.tolist() == b.t.tolist()
    assert a.sum_bits.tolist() == b.sum_bits.tolist()
    assert a.count.view(np.uint64).tolist() == b.count.view(np.uint64).tolist()
    assert a.zero_count.view(np.uint64).tolist() == b.zero_count.view(np.uint64).tolist()
    for s in range(len(a)):
        la, lb = int(a.layout[s]), int(b.layout[s])
        assert a.layouts.spans(la) == b.layouts.spans(lb)
        assert a.layouts.schema[la] == b.layouts.schema[lb]
        assert a.layouts.zero_threshold[la] == b.layouts.zero_threshold[lb]
        if not a.stale[s]:
            for x, y in zip(a.sample_buckets(s), b.sample_buckets(s), strict=True):
                assert x.view(np.uint64).tolist() == y.view(np.uint64).tolist()
        else:
            assert b.bucket_offsets[s + 1] == b.bucket_offsets[s]


def test_custom_bounds_round_trip() -> None:
    bounds = (-2.0, 0.0001, 0.5, 1.0, 33554.43, 1e300)
    sample = H.HistogramSample(t=1000, count=7, zero_count=0, sum=3.0, schema=H.CUSTOM_BUCKETS_SCHEMA,
                               positive_spans=((0, 3), (2, 1)), positive_buckets=(1, 2, 3, 1), custom_values=bounds)
    batch = H.build_batch([sample, dataclasses.replace(sample, t=2000, count=9)], is_float=False)
    batch = one_layout_per_chunk(batch)
    buf, offsets = H.encode_batch(batch)
    back = H.decode_batch(buf, offsets[:-1], offsets[1:], [H.ENC_HISTOGRAM])
    assert back.layouts.custom(0).tolist() == list(bounds)
    assert_same_samples(batch, back)
    assert api_buckets(back, 0)[0] == [3, "-Inf", "-2", "1"]


# ---------------------------------------------------------------- corrupt input


def few_chunks() -> list[tuple[bytes, int]]:
    c = block_chunks("edge")
    main = block_chunks("main")
    picks = [(c.data(i), int(c.encodings[i])) for i in histogram_chunks(c)[:6]]
    return picks + [(main.data(i), int(main.encodings[i])) for i in histogram_chunks(main)[-3:]]


def test_truncation_at_every_byte_is_a_corrupt_block_error() -> None:
    for data, enc in few_chunks():
        cut_points = range(len(data)) if len(data) < 300 else range(0, len(data), 7)
        for cut in cut_points:
            buf = np.frombuffer(data[:cut], dtype=np.uint8)
            try:
                H.decode_batch(buf, [0], [cut], [enc])
            except CorruptBlockError as exc:
                assert "histogram chunk 0" in str(exc) and exc.offset is not None and 0 <= exc.offset <= cut
            else:  # only the trailing padding bits/bytes may go
                assert cut >= len(data) - 1, (enc, cut, len(data))


def test_random_bit_flips_raise_only_corrupt_block_errors() -> None:
    rng = np.random.default_rng(11)
    for data, enc in few_chunks():
        for _ in range(150):
            buf = np.frombuffer(data, dtype=np.uint8).copy()
            for bit in rng.integers(0, 8 * len(data), size=rng.integers(1, 4)):
                buf[bit // 8] ^= np.uint8(0x80 >> (bit % 8))
            with contextlib.suppress(CorruptBlockError):  # anything else fails the test
                H.decode_batch(buf, [0], [len(buf)], [enc])


def test_bad_encoding_and_out_of_range_schema_are_reported() -> None:
    with pytest.raises(CorruptBlockError, match="not a histogram chunk encoding"):
        H.decode_batch(np.zeros(8, dtype=np.uint8), [0], [8], [1])
    # 1 sample, header 00, zero threshold 00, schema varbit_int(60) = 1110 000111100
    chunk = bytes([0, 1, 0, 0, 0b11100001, 0b11100000, 0, 0, 0])
    with pytest.raises(CorruptBlockError, match="schema outside") as info:
        H.decode_batch(np.frombuffer(chunk, dtype=np.uint8), [0], [len(chunk)], [2])
    assert info.value.offset == 4


def test_encoder_rejects_samples_prometheus_never_writes() -> None:
    good = H.HistogramSample(t=1, count=1, zero_count=1, sum=1.0)
    stale = H.HistogramSample(t=2, count=0, zero_count=0, sum=0.0, stale=True)
    with pytest.raises(ValueError, match="follows a stale marker"):
        H.encode_batch(one_layout_per_chunk(H.build_batch([good, stale, dataclasses.replace(good, t=3)],
                                                          is_float=False)))
    with pytest.raises(ValueError, match="chunk's layout"):
        H.encode_batch(H.build_batch([good, dataclasses.replace(good, t=3)], is_float=False))


# ---------------------------------------------------------------- bucket boundaries


def test_bucket_bounds_use_the_prometheus_table() -> None:
    table = json.loads((DATA / "exponential_bounds.json").read_text())
    assert [H.bucket_upper(8, j) / 2 for j in range(256)] == [float(x) for x in table["schema8_decimal"]]
    assert H.bucket_upper(1, 1) == 2 * 0.7071067811865475
    assert H.bucket_upper(-4, 64) == H.MAX_FLOAT64 and H.bucket_upper(0, 1024) == H.MAX_FLOAT64
    assert H.bucket_upper(-2, 3) == 4096.0


def test_small_cases_without_numba() -> None:
    """The kernels as plain Python (THANOS_TOOLS_NO_NUMBA): the worked chunks of H12 decode and re-encode."""
    env = dict(os.environ, THANOS_TOOLS_NO_NUMBA="1", PYTHONPATH=str(REPO))
    code = (
        "import numpy as np\n"
        "from thanostools.core.kernels import _jit\n"
        "assert not _jit.HAVE_NUMBA\n"
        "from thanostools.core.chunkenc import histogram as H\n"
        "chunks = [(bytes.fromhex('" + WORKED_INT + "'), 2), (bytes.fromhex('" + WORKED_FLOAT + "'), 3),"
        " (bytes.fromhex('" + STALE_FIRST + "'), 2)]\n"
        "for data, enc in chunks:\n"
        "    b = H.decode_batch(np.frombuffer(data, dtype=np.uint8), [0], [len(data)], [enc], flavor='2.42')\n"
        "    out, offs = H.encode_batch(b, flavor='2.42')\n"
        "    assert out.tobytes() == data, (enc, out.tobytes().hex())\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


WORKED_INT = ("000300744648c5fc0003449228b20158a0060000000000004af1f82710c2c750f6647c09c45ef11bc620")
WORKED_FLOAT = ("000200744647f0000d1248a2c8020020000000000001ff00000000000001ffa0000000000001ff80000000000001ff8"
                "0000000000007c13886b06c26ffff09bffdc25fff")
STALE_FIRST = "00024000" "1fc000344917197003ff800000000000" "17c13880"


def test_worked_examples_are_the_block_chunks_and_round_trip() -> None:
    blocks = {c: block_chunks(name) for name, c in (("main", "worked_int"), ("main", "worked_float"),
                                                   ("edge", "stale_first"))}
    for (case, c), hexdata, nth in zip(blocks.items(), (WORKED_INT, WORKED_FLOAT, STALE_FIRST), (0, 0, 1),
                                       strict=True):
        series = next(i for i, lab in enumerate(c.labels) if lab.get("case") == case)
        chunks = histogram_chunks(c)
        assert c.data(chunks[c.series_of[chunks] == series][nth]) == bytes.fromhex(hexdata)
    for hexdata, enc in ((WORKED_INT, 2), (WORKED_FLOAT, 3), (STALE_FIRST, 2)):
        data = bytes.fromhex(hexdata)
        b = H.decode_batch(np.frombuffer(data, dtype=np.uint8), [0], [len(data)], [enc])
        assert H.encode_batch(b)[0].tobytes() == data


@pytest.mark.parametrize(("enc", "st_enc"), [(2, 5), (3, 6)])
def test_st_encodings_without_start_timestamps_decode_like_their_base(enc: int, st_enc: int) -> None:
    """Encodings 5/6 (H11.2) with ST header 0 carry no ST fields: same samples as 2/3, header moved to byte 0."""
    c = block_chunks("main")
    for i in histogram_chunks(c)[c.encodings[histogram_chunks(c)] == enc][:4]:
        data = bytearray(c.data(i))
        n, header = (data[0] << 8) | data[1], data[2] >> 6
        st_data = bytes([(header << 6) | (n >> 8), n & 0xFF, 0]) + bytes(data[3:])
        base = H.decode_batch(np.frombuffer(bytes(data), dtype=np.uint8), [0], [len(data)], [enc])
        st_batch = H.decode_batch(np.frombuffer(st_data, dtype=np.uint8), [0], [len(st_data)], [st_enc])
        assert_same_samples(base, st_batch)
        assert (st_batch.st == 0).all()
