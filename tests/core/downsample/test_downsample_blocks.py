"""Downsampling whole blocks: the decoded aggregates equal a straightforward, independent computation of
FORMATS.md §7 written here in plain Python; rate()-style increases and max_over_time over the 5m block match
the raw data; output meta (§7.7); planning (§7.1); the bucket procedure."""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.aggr import Aggr, counter_reset_series, split_aggr
from thanostools.core.downsample import downsample_block, downsample_bucket, plan_downsampling, plan_passes
from thanostools.core.errors import CorruptBlockError, UnsupportedError
from thanostools.core.labels import Labels
from thanostools.core.pipeline.read import each_series
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.meta import BlockMeta, ThanosMeta
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.ulid import new_ulid
from thanostools.core.workspace import BucketWorkspace

STALE = 0x7FF0000000000002
NAN = 0x7FF8000000000001
HOUR = 3_600_000
DAY = 24 * HOUR
START = 1_700_006_400_000  # a multiple of 2h
MAXF = 1.7976931348623157e308
Agg = list[tuple[int, float]]
RawSeries = tuple[Labels, NDArray[np.int64], NDArray[np.uint64]]  # v: raw float bits


# --- an independent reference: §7.3–§7.6 written plainly --------------------------------------------------


def f64(b: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", b))[0])


def ref_window_end(t: int, r: int) -> int:
    rem = abs(t) % r * (1 if t >= 0 else -1)
    return t - rem + r - 1


def ref_chunk_count(mint: int, maxt: int, in_res: int, out_res: int, count: int) -> int:
    max_samples = float(int((maxt - mint) / out_res))
    span = (maxt - mint) / in_res
    fullness = 1.0 if span == 0 else min(1.0, count / span)
    expected = int(max_samples * fullness) + 1
    x = 1
    while expected // x > 140:
        x += 1
    return x


class Window:
    def __init__(self) -> None:
        self.total, self.counter, self.last = 0, 0.0, 0.0
        self.reset()

    def reset(self) -> None:
        self.count, self.sum, self.min, self.max = 0, 0.0, MAXF, -MAXF

    def add(self, v: float) -> None:
        if self.total == 0:
            self.counter = v
        elif v < self.last:
            self.counter += v
        else:
            self.counter += v - self.last
        self.last = v
        self.sum += v
        self.count += 1
        self.total += 1
        self.min = v if v < self.min else self.min
        self.max = v if v > self.max else self.max


def walk(samples: list[tuple[int, float]], r: int) -> Iterator[tuple[int, Window]]:
    """Yields (window timestamp, accumulator) at the end of every window; the last one ends at the last sample."""
    w = Window()
    next_t = -1
    last_t = samples[-1][0]
    for t, v in samples:
        if t > next_t:
            if next_t != -1:
                yield next_t, w
            w.reset()
            next_t = min(ref_window_end(t, r), last_t)
        w.add(v)
    yield next_t, w


def expand(chunk: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, last = [], 0
    for t, b in chunk:
        if b == STALE or t < last:
            continue
        out.append((t, b))
        last = t
    return out


def ref_raw(chunks: list[list[tuple[int, int]]], r: int) -> list[dict[Aggr, Agg]]:
    samples = [s for c in chunks for s in expand(c)]
    if not samples:
        return []
    batch_size = len(samples) // ref_chunk_count(samples[0][0], samples[-1][0], 60_000, r, len(samples)) + 1
    out = []
    while samples:
        j = min(batch_size, len(samples))
        end = ref_window_end(samples[j - 1][0], r)
        while j < len(samples) and samples[j][0] <= end:
            j += 1
        batch = [(t, f64(b)) for t, b in samples[:j] if not math.isnan(f64(b))]
        samples = samples[j:]
        if not batch:
            continue
        chunk: dict[Aggr, Agg] = {a: [] for a in Aggr}
        chunk[Aggr.COUNTER].append(batch[0])
        last_window = 0
        for t, w in walk(batch, r):
            for a, x in ((Aggr.COUNT, float(w.count)), (Aggr.SUM, w.sum), (Aggr.MIN, w.min), (Aggr.MAX, w.max),
                         (Aggr.COUNTER, w.counter)):
                chunk[a].append((t, x))
            last_window = t
        chunk[Aggr.COUNTER].append((last_window, batch[-1][1]))
        out.append(chunk)
    return out


def reset_iterator(samples: list[tuple[int, float]]) -> tuple[list[tuple[int, float]], float]:
    out: list[tuple[int, float]] = []
    total = last_v = 0.0
    last_t = 0
    for t, v in samples:
        if math.isnan(v):
            continue
        if not out:
            total = v
        elif t > last_t:
            total += v - last_v if v >= last_v else v
        else:
            if t == last_t:
                last_v = v
            continue
        last_t, last_v = t, v
        out.append((t, total))
    return [s for s in out if s[0] >= 0], last_v


def ref_aggr(chunks: list[dict[Aggr, list[tuple[int, int]]]], mint: int, maxt: int, in_res: int,
             r: int) -> list[dict[Aggr, Agg]]:
    count = sum(len(c[Aggr.COUNT]) for c in chunks)
    size = max(1, len(chunks) // ref_chunk_count(mint, maxt, in_res, r, count))
    out = []
    for g in range(0, len(chunks), size):
        group = chunks[g : g + size]
        res: dict[Aggr, Agg] = {}
        for a, pick in ((Aggr.COUNT, "sum"), (Aggr.SUM, "sum"), (Aggr.MIN, "min"), (Aggr.MAX, "max")):
            samples = [(t, f64(b)) for c in group for t, b in expand(c[a])]
            if samples:
                res[a] = [(t, getattr(w, pick)) for t, w in walk(samples, r)]
        totals, last_raw = reset_iterator([(t, f64(b)) for c in group for t, b in c[Aggr.COUNTER]])
        if totals:
            windows = [(t, w.counter) for t, w in walk(totals, r)]
            res[Aggr.COUNTER] = [totals[0], *windows, (windows[-1][0], last_raw)]
        out.append(res)
    return out


# --- data --------------------------------------------------------------------------------------------------


def _counter(rng: np.random.Generator, n: int) -> NDArray[np.float64]:
    inc = rng.poisson(30, n).astype(np.float64)
    v = np.empty(n)
    total = 100.0
    for i in range(n):
        total = inc[i] if rng.random() < 0.002 else total + inc[i]  # occasional restarts
        v[i] = total
    return v


def make_series(hours: int = 48, seed: int = 7) -> list[RawSeries]:
    """Counters with resets, gauges, gaps with stale markers, NaN values, a sparse and an all-NaN series."""
    rng = np.random.default_rng(seed)
    base = START + np.arange(0, hours * HOUR, 15_000, dtype=np.int64)
    out: list[RawSeries] = []
    for k in range(6):
        t = base + rng.integers(-500, 500, base.shape[0])
        t[0] = base[0]
        keep = ~((t > START + (5 + k) * HOUR) & (t < START + (7 + 2 * k) * HOUR))  # a gap per series
        t = np.sort(t[keep])
        v = (_counter(rng, t.shape[0]) if k % 2 == 0 else rng.normal(50, 20, len(t))).view(np.uint64).copy()
        v[rng.random(t.shape[0]) < 0.003] = NAN
        gap_end = int(np.searchsorted(t, START + (7 + 2 * k) * HOUR))
        v[gap_end - 1] = STALE  # a stale marker right before the gap ends
        out.append(((("__name__", "c" if k % 2 == 0 else "g"), ("k", str(k))), t, v))
    sparse = START + np.arange(0, hours * HOUR, 1_800_000, dtype=np.int64)
    out.append(((("__name__", "sparse"),), sparse, np.arange(sparse.shape[0], dtype=np.float64).view(np.uint64)))
    out.append(((("__name__", "zz_nan"),), base[:50], np.full(50, NAN, dtype=np.uint64)))
    return sorted(out, key=lambda s: s[0])


def write_raw_block(parent: Path, series: Sequence[RawSeries], *, hours: int = 48,
                    labels: dict[str, str] | None = None) -> Path:
    w = BlockWriter(str(parent), min_time=START, max_time=START + hours * HOUR,
                    external_labels=labels or {"cluster": "eu1"}, source="sidecar")
    for lab, t, v in series:
        w.add_samples(lab, t, v)
    w.finish()
    return Path(w.dir)


def block_chunks(path: Path) -> dict[Labels, list[tuple[int, int, int, bytes]]]:
    """Series -> [(encoding, mint, maxt, payload)] as stored."""
    block = Block.open_dir(str(path))
    out = {}
    for sc in each_series(block):
        c = sc.chunks
        out[sc.labels.labels(0)] = [(int(c.enc[j]), int(c.mint[j]), int(c.maxt[j]), c.payload(j))
                                    for j in range(len(c))]
    return out


def decoded(payload: bytes) -> dict[Aggr, list[tuple[int, int]]]:
    out = {}
    for a, sub in zip(Aggr, split_aggr(payload), strict=True):
        if sub is not None:
            t, v = xor.decode(sub[1])
            out[a] = list(zip(t.tolist(), v.tolist(), strict=True))
    return out


def as_floats(chunk: dict[Aggr, list[tuple[int, int]]]) -> dict[Aggr, Agg]:
    return {a: [(t, f64(b)) for t, b in s] for a, s in chunk.items()}


@pytest.fixture(scope="module")
def blocks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("ds")
    raw = write_raw_block(root / "raw", make_series())
    five = downsample_block(Block.open_dir(str(raw)), 300_000, str(root / "5m"))
    hour = downsample_block(Block.open_dir(str(root / "5m" / five.ulid)), 3_600_000, str(root / "1h"))
    return raw, root / "5m" / five.ulid, root / "1h" / hour.ulid


# --- tests ---------------------------------------------------------------------------------------------------


def test_raw_to_5m_equals_reference(blocks: tuple[Path, Path, Path]) -> None:
    raw, five, _ = blocks
    source = block_chunks(raw)
    result = block_chunks(five)
    assert ((("__name__", "zz_nan"),)) not in result  # nothing left: not written
    assert set(result) == set(source) - {(("__name__", "zz_nan"),)}
    for lab, chunks in source.items():
        samples = []
        for _, _, _, payload in chunks:
            t, v = xor.decode(payload)
            samples.append(list(zip(t.tolist(), v.tolist(), strict=True)))
        expected = ref_raw(samples, 300_000)
        got = [as_floats(decoded(p)) for _, _, _, p in result.get(lab, [])]
        assert got == expected, lab
        for (enc, mint, maxt, _), exp in zip(result.get(lab, []), expected, strict=True):
            assert enc == 0xFF and (mint, maxt) == (exp[Aggr.COUNT][0][0], exp[Aggr.COUNT][-1][0])


def test_5m_to_1h_equals_reference(blocks: tuple[Path, Path, Path]) -> None:
    _, five, hour = blocks
    source = block_chunks(five)
    result = block_chunks(hour)
    assert set(result) == set(source)
    for lab, chunks in source.items():
        expected = ref_aggr([decoded(p) for _, _, _, p in chunks], chunks[0][1], chunks[-1][2], 300_000, 3_600_000)
        got = [as_floats(decoded(p)) for _, _, _, p in result[lab]]
        assert got == expected, lab


def _raw_floats(path: Path, lab: Labels) -> tuple[np.ndarray, np.ndarray]:
    block = Block.open_dir(str(path))
    batch = next(block.select([]))
    i = batch.labels.index(lab)
    _, t, v = batch.series(i)
    f = v.view(np.float64)
    keep = ~np.isnan(f)
    return t[keep], f[keep]


def test_increase_from_5m_counter_matches_raw(blocks: tuple[Path, Path, Path]) -> None:
    raw, five, _ = blocks
    ds = Block.open_dir(str(five))
    counters = next(ds.select([], aggregate=Aggr.COUNTER))
    for lab in ((("__name__", "c"), ("k", "0")), (("__name__", "c"), ("k", "2"))):
        rt, rv = _raw_floats(raw, lab)
        _, total = counter_reset_series(rt, rv)  # raw reset-corrected cumulative counter
        _, ct, cv = counters.series(counters.labels.index(lab))
        dt, dv = counter_reset_series(ct, cv.view(np.float64))
        # At every downsampled timestamp the increase since the first sample equals the raw increase up to the
        # last raw sample at or before it (what rate()/increase() over window-aligned ranges see).
        idx = np.searchsorted(rt, dt, side="right") - 1
        np.testing.assert_allclose(dv - dv[0], total[idx] - total[0], rtol=1e-12, atol=1e-6)


def test_max_over_time_from_5m_matches_raw(blocks: tuple[Path, Path, Path]) -> None:
    raw, five, _ = blocks
    maxes = next(Block.open_dir(str(five)).select([], aggregate=Aggr.MAX))
    for lab in maxes.labels:
        rt, rv = _raw_floats(raw, lab)
        _, mt, mv = maxes.series(maxes.labels.index(lab))
        for lo in range(START, START + 48 * HOUR, HOUR):
            hi = lo + HOUR - 1
            raw_sel = rv[(rt >= lo) & (rt <= hi)]
            ds_sel = mv.view(np.float64)[(mt >= lo) & (mt <= hi)]
            if raw_sel.size:
                assert ds_sel.max() == raw_sel.max()
            else:
                assert ds_sel.size == 0


def test_downsampled_meta(blocks: tuple[Path, Path, Path]) -> None:
    raw, five, hour = blocks
    src = BlockMeta.from_json((raw / "meta.json").read_bytes())
    for path, res in ((five, 300_000), (hour, 3_600_000)):
        doc = json.loads((path / "meta.json").read_text())
        meta = BlockMeta.from_json((path / "meta.json").read_bytes())
        assert meta.ulid == path.name != src.ulid
        assert (meta.min_time, meta.max_time) == (src.min_time, src.max_time)
        assert doc["compaction"] == json.loads((raw / "meta.json").read_text())["compaction"]
        assert doc["thanos"]["downsample"] == {"resolution": res}
        assert doc["thanos"]["source"] == "compactor"
        assert doc["thanos"]["labels"] == {"cluster": "eu1"}
        assert doc["thanos"]["segment_files"] == sorted(os.listdir(path / "chunks"))
        assert set(doc["thanos"]["index_stats"]) == {"series_max_size", "chunk_max_size"}
        assert not (path / "tombstones").exists()
        chunks = block_chunks(path)
        assert meta.stats.num_series == len(chunks)
        assert meta.stats.num_chunks == sum(len(c) for c in chunks.values())
        assert meta.stats.num_samples == sum(len(decoded(p)[Aggr.COUNT]) for c in chunks.values() for *_, p in c)


def test_raw_block_with_overlapping_chunks_is_refused(tmp_path: Path) -> None:
    t = np.arange(10, dtype=np.int64) * 1000
    buf, offs = xor.encode_batch(t, np.ones(10), np.array([0, 6, 10]))
    w = BlockWriter(str(tmp_path))
    w.add_chunks((("__name__", "x"),), np.array([1, 1]), buf, offs, np.array([0, 4000]), np.array([5000, 9000]), 10)
    w.finish()
    path = w.dir
    with pytest.raises(CorruptBlockError, match="overlapping chunks"):
        downsample_block(Block.open_dir(path), 300_000, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_corrupt_histogram_chunk_and_bad_resolution_are_refused(tmp_path: Path) -> None:
    w = BlockWriter(str(tmp_path))
    payload = np.frombuffer(b"\x00\x00", np.uint8)
    w.add_chunks((("__name__", "h"),), np.array([2]), payload, np.array([0, 2]), np.array([0]), np.array([0]), 0)
    w.finish()
    path = w.dir
    with pytest.raises(CorruptBlockError, match="histogram chunk 0: shorter than its 3-byte header"):
        downsample_block(Block.open_dir(path), 300_000, str(tmp_path / "out"))
    with pytest.raises(UnsupportedError, match="only raw to 5m and 5m to 1h"):
        downsample_block(Block.open_dir(path), 3_600_000, str(tmp_path / "out"))


def test_raw_chunk_inside_a_5m_block_is_downsampled_first(tmp_path: Path, blocks: tuple[Path, Path, Path]) -> None:
    """An old Thanos bug left raw chunks in downsampled blocks: they are turned into 5m AggrChunks first."""
    t = START + np.arange(0, 12 * HOUR, 60_000, dtype=np.int64)
    v = np.arange(t.shape[0], dtype=np.float64)
    buf, offs = xor.encode_batch(t, v, np.array([0, t.shape[0]]))
    w = BlockWriter(str(tmp_path), resolution=300_000, min_time=START, max_time=START + 12 * HOUR)
    w.add_chunks((("__name__", "odd"),), np.array([1]), buf, offs, t[:1], t[-1:], int(t.shape[0]))
    w.add_chunks((("__name__", "z_empty"),), np.array([1]), np.frombuffer(b"\x00\x00", np.uint8),
                 np.array([0, 2]), t[:1], t[:1], 0)
    w.finish()
    path = Path(w.dir)
    meta = downsample_block(Block.open_dir(str(path)), 3_600_000, str(tmp_path / "out"))
    out = block_chunks(tmp_path / "out" / meta.ulid)
    assert list(out) == [(("__name__", "odd"),)]
    counts = [decoded(p)[Aggr.COUNT] for *_, p in out[(("__name__", "odd"),)]]
    assert sum(f64(b) for c in counts for _, b in c) == t.shape[0]


# --- planning ----------------------------------------------------------------------------------------------


def meta(res: int, hours: float, sources: list[str] | None = None, ulid: str | None = None) -> BlockMeta:
    u = ulid or new_ulid()
    return BlockMeta(ulid=u, min_time=0, max_time=int(hours * HOUR), sources=[u] if sources is None else sources,
                     thanos=ThanosMeta(resolution=res))


def test_plan_thresholds_and_coverage() -> None:
    short = meta(0, 39.9)
    long_raw = meta(0, 40)
    covered = meta(0, 48)
    five_of_covered = meta(300_000, 48, covered.sources)
    partly = meta(0, 48, [covered.sources[0], new_ulid()])
    five_long = meta(300_000, 240)
    five_short = meta(300_000, 239)
    hour = meta(3_600_000, 500)
    no_sources = meta(0, 100, [])
    plan = plan_downsampling([short, long_raw, covered, five_of_covered, partly, five_long, five_short, hour,
                              no_sources])
    assert sorted((m.ulid, r) for m, r in plan) == sorted(
        [(long_raw.ulid, 300_000), (partly.ulid, 300_000), (five_long.ulid, 3_600_000)])
    assert [m.ulid for m, _ in plan] == sorted(m.ulid for m, _ in plan)


def test_plan_respects_marks() -> None:
    a, b, c = meta(0, 48), meta(0, 48), meta(0, 48)
    five_of_c = meta(300_000, 48, c.sources)
    plan = plan_downsampling([a, b, c, five_of_c], {a.ulid: ["no-downsample"], five_of_c.ulid: ["deletion"]})
    assert sorted(m.ulid for m, _ in plan) == sorted([b.ulid, c.ulid])


def test_plan_passes_predicts_the_second_round() -> None:
    two_weeks = meta(0, 14 * 24)
    steps = plan_passes([two_weeks])
    assert [(s.pass_no, s.target, s.origin) for s in steps] == [(1, 300_000, two_weeks.ulid),
                                                                 (2, 3_600_000, two_weeks.ulid)]
    assert steps[1].meta.ulid != two_weeks.ulid and steps[1].meta.resolution == 300_000


# --- the bucket procedure --------------------------------------------------------------------------------


def test_downsample_bucket_two_passes_and_rerun(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    t = START + np.arange(0, 10 * DAY, 120_000, dtype=np.int64)
    series = [((("__name__", "m"), ("i", str(i))), t, (np.arange(t.shape[0]) * (i + 1.0)).view(np.uint64))
              for i in range(3)]
    src = write_raw_block(bucket, series, hours=240)
    engine = BucketWorkspace.open(str(bucket))
    dry = downsample_bucket(engine, dry_run=True)
    assert [(r.pass_no, r.target, r.uploaded) for r in dry.results] == [(1, 300_000, False), (2, 3_600_000, False)]
    assert sorted(os.listdir(bucket)) == [src.name]
    report = downsample_bucket(engine)
    assert [(r.target, r.uploaded) for r in report.results] == [(300_000, True), (3_600_000, True)]
    five, hour = (r.output for r in report.results)
    assert five is not None and hour is not None
    assert report.results[1].input == report.planned[1].meta.ulid and report.results[1].source == src.name
    metas = {m.ulid: m for m in (b.meta for b in BucketWorkspace.open(str(bucket)).blocks())}
    assert metas[five.ulid].resolution == 300_000 and metas[hour.ulid].resolution == 3_600_000
    assert metas[hour.ulid].sources == metas[src.name].sources
    hour_thanos = metas[hour.ulid].thanos
    assert hour_thanos is not None and hour_thanos.upload_time != "0001-01-01T00:00:00Z"
    assert downsample_bucket(BucketWorkspace.open(str(bucket))).results == []


def test_plan_bucket_ignores_compaction_leftovers(tmp_path: Path) -> None:
    from thanostools.core.downsample import plan_bucket

    t = START + np.arange(0, 48 * HOUR, 600_000, dtype=np.int64)
    series = [((("__name__", "m"),), t, np.ones(t.shape[0]).view(np.uint64))]
    leftover = write_raw_block(tmp_path, series)
    w = BlockWriter(str(tmp_path), min_time=START, max_time=START + 48 * HOUR, external_labels={"cluster": "eu1"},
                    sources=[leftover.name, new_ulid()], level=2)
    w.add_samples(*series[0])
    compacted = w.finish().ulid
    steps = plan_bucket(BucketWorkspace.open(str(tmp_path)))
    assert [(s.meta.ulid, s.target) for s in steps] == [(compacted, 300_000)]
