"""Native-histogram downsampling: the histogram AggrChunks of a generated block decode to per-window values
computed here in plain Python from the raw histograms (FORMATS.md §7.2, §7.4 step 5)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from thanostools.cli.main import cli
from thanostools.core.chunkenc import histogram as hc
from thanostools.core.chunkenc import xor
from thanostools.core.chunkenc.aggr import Aggr, split_aggr
from thanostools.core.downsample import downsample_block, histseries
from thanostools.core.errors import CorruptBlockError, UnsupportedError
from thanostools.core.pipeline.read import each_series
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.writer import BlockWriter

RES = 300_000
Hist = tuple[float, float, dict[int, float]]  # count, sum, {signed bucket key: value}


def as_hist(b: hc.HistogramBatch, s: int) -> Hist:
    """Sample s as (count, sum, buckets by signed key) for plain-Python reference sums."""
    pos, neg = b.sample_buckets(s)
    ip, ineg = b.layouts.indices(int(b.layout[s]))
    buckets = {i: float(v) for i, v in zip(ip, pos, strict=True)}
    buckets.update({-1_000_000 - i: float(v) for i, v in zip(ineg, neg, strict=True)})
    return float(b.count[s]), float(b.sum[s]), buckets


def hist_samples(payload: bytes, enc: int) -> list[tuple[int, Hist]]:
    data = np.frombuffer(payload, np.uint8)
    b = hc.decode_batch(data, np.array([0]), np.array([len(payload)]), np.array([enc]))
    return [(int(b.t[s]), as_hist(b, s)) for s in range(len(b))]


def add(a: Hist, b: Hist, sign: float = 1.0) -> Hist:
    buckets = dict(a[2])
    for k, v in b[2].items():
        buckets[k] = buckets.get(k, 0.0) + sign * v
    return a[0] + sign * b[0], a[1] + sign * b[1], buckets


def reference(samples: list[tuple[int, Hist]]) -> tuple[list[tuple[int, float]], list[tuple[int, Hist]],
                                                        list[tuple[int, Hist]]]:
    """Windows of one batch: count, sum of histograms, running counter (reset when any count drops)."""
    last_t = samples[-1][0]
    windows: dict[int, list[Hist]] = {}
    for t, h in samples:
        windows.setdefault(min(t - t % RES + RES - 1, last_t), []).append(h)
    counts, sums, counters = [], [], []
    counter: Hist | None = None
    prev: Hist | None = None
    for wt, hs in windows.items():
        total = hs[0]
        for h in hs[1:]:
            total = add(total, h)
        for h in hs:
            if counter is None or prev is None:
                counter = h
            elif h[0] < prev[0] or any(h[2].get(k, 0.0) < v for k, v in prev[2].items()):
                counter = add(counter, h)
            else:
                counter = add(counter, add(h, prev, -1.0))
            prev = h
        assert counter is not None
        counts.append((wt, float(len(hs))))
        sums.append((wt, total))
        counters.append((wt, counter))
    return counts, sums, counters


def close(a: Hist, b: Hist) -> bool:
    keys = set(a[2]) | set(b[2])
    return (a[0] == pytest.approx(b[0]) and a[1] == pytest.approx(b[1])
            and all(a[2].get(k, 0.0) == pytest.approx(b[2].get(k, 0.0)) for k in keys))


@pytest.fixture(scope="module")
def raw_block(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dsh")
    from click.testing import CliRunner
    res = CliRunner().invoke(cli, ["bucket", "generate", "--bucket", str(root), "--series", "40", "--duration", "6h",
                                   "--block-duration", "6h", "--scrape-interval", "60s", "--native-histograms",
                                   "--start", "2023-11-15T00:00:00Z", "-o", "ids"])
    assert res.exit_code == 0, res.output
    return root / res.output.split()[0]


def test_raw_to_5m_histograms_equal_reference(raw_block: Path, tmp_path: Path) -> None:
    meta = downsample_block(Block.open_dir(str(raw_block)), RES, str(tmp_path))
    out = {s.labels.labels(0): s for s in each_series(Block.open_dir(str(tmp_path / meta.ulid)))}
    checked = 0
    for raw in each_series(Block.open_dir(str(raw_block))):
        c = raw.chunks
        if not (c.enc == hc.ENC_HISTOGRAM).any():
            continue
        samples = [s for j in range(len(c)) for s in hist_samples(c.payload(j), int(c.enc[j]))]
        counts, sums, counters = reference(samples)  # 6h at 1m: one batch per series
        ds = out[raw.labels.labels(0)].chunks
        assert len(ds) == 1
        subs = split_aggr(ds.payload(0))
        assert subs[Aggr.MIN] is None and subs[Aggr.MAX] is None
        count_sub, sum_sub, ctr_sub = subs[Aggr.COUNT], subs[Aggr.SUM], subs[Aggr.COUNTER]
        assert count_sub is not None and sum_sub is not None and ctr_sub is not None
        assert (count_sub[0], sum_sub[0], ctr_sub[0]) == (1, 3, 3)
        assert sum_sub[1][2] >> 6 == hc.HEADER_GAUGE  # the sum chunk is a gauge
        t, v = xor.decode(count_sub[1])
        assert list(zip(t.tolist(), v.view(np.float64).tolist(), strict=True)) == counts
        got_sums = hist_samples(sum_sub[1], 3)
        got_ctr = hist_samples(ctr_sub[1], 3)
        assert [t for t, _ in got_sums] == [t for t, _ in sums] == [t for t, _ in got_ctr]
        assert all(close(a, b) for (_, a), (_, b) in zip(got_sums, sums, strict=True))
        assert all(close(a, b) for (_, a), (_, b) in zip(got_ctr, counters, strict=True))
        assert (int(ds.mint[0]), int(ds.maxt[0])) == (counts[0][0], counts[-1][0])
        checked += 1
    assert checked > 5


def test_5m_to_1h_histograms(raw_block: Path, tmp_path: Path) -> None:
    five = downsample_block(Block.open_dir(str(raw_block)), RES, str(tmp_path / "5m"))
    hour = downsample_block(Block.open_dir(str(tmp_path / "5m" / five.ulid)), 3_600_000, str(tmp_path / "1h"))
    fives = {s.labels.labels(0): s for s in each_series(Block.open_dir(str(tmp_path / "5m" / five.ulid)))}
    checked = 0
    for s in each_series(Block.open_dir(str(tmp_path / "1h" / hour.ulid))):
        subs = split_aggr(s.chunks.payload(0))
        ctr = subs[Aggr.COUNTER]
        if ctr is None or ctr[0] != 3:
            continue
        inp = split_aggr(fives[s.labels.labels(0)].chunks.payload(0))
        in_ctr, in_count = inp[Aggr.COUNTER], inp[Aggr.COUNT]
        assert in_ctr is not None and in_count is not None
        five_ctr = hist_samples(in_ctr[1], 3)
        hour_ctr = hist_samples(ctr[1], 3)
        # the 1h counter at each window is the 5m counter at the last 5m window inside it
        by_t = dict(five_ctr)
        assert all(close(h, by_t[max(t for t in by_t if t <= wt)]) for wt, h in hour_ctr)
        count = subs[Aggr.COUNT]
        assert count is not None
        _, cv = xor.decode(count[1])
        assert float(cv.view(np.float64).sum()) == float(xor.decode(in_count[1])[1].view(np.float64).sum())
        checked += 1
    assert checked > 5


def test_corrupt_histogram_chunk_is_one_clear_error(tmp_path: Path) -> None:
    w = BlockWriter(str(tmp_path))
    payload = np.frombuffer(b"\x00\x00", np.uint8)
    w.add_chunks((("__name__", "h"),), np.array([2]), payload, np.array([0, 2]), np.array([0]), np.array([0]), 0)
    w.finish()
    with pytest.raises(CorruptBlockError, match="histogram chunk 0: shorter than its 3-byte header"):
        downsample_block(Block.open_dir(w.dir), RES, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def _hists(thresholds: list[float], pos: list[list[tuple[int, float]]]) -> histseries.FloatHists:
    n = len(thresholds)
    sizes = [len(p) for p in pos]
    off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    return histseries.FloatHists(
        t=np.arange(n, dtype=np.int64), hint=np.zeros(n, np.uint8), schema=np.zeros(n, np.int64),
        zero_threshold=np.array(thresholds), count=np.zeros(n), zero_count=np.zeros(n), total=np.zeros(n),
        p_off=off, p_idx=np.array([i for p in pos for i, _ in p], np.int64),
        p_val=np.array([v for p in pos for _, v in p], np.float64), n_off=np.zeros(n + 1, np.int64),
        n_idx=np.zeros(0, np.int64), n_val=np.zeros(0))


def test_narrower_zero_buckets_widen_to_the_chunks_widest() -> None:
    # schema 0: bucket -1 is (0.25, 0.5], 0 is (0.5, 1], 1 is (1, 2]
    h = _hists([0.0, 0.5], [[(-1, 1.0), (0, 2.0), (1, 3.0)], [(0, 5.0)]])
    out = histseries.widen_zero_buckets(h, np.array([0.5, 0.5]), "B")
    assert out.zero_threshold.tolist() == [0.5, 0.5]
    assert out.zero_count.tolist() == [1.0, 0.0]
    assert out.p_off.tolist() == [0, 2, 3] and out.p_idx.tolist() == [0, 1, 0]
    assert out.p_val.tolist() == [2.0, 3.0, 5.0]


def test_zero_bucket_widening_into_a_populated_bucket_is_refused() -> None:
    h = _hists([0.0, 0.7], [[(0, 2.0)], []])
    with pytest.raises(UnsupportedError, match=r"^block B: .*zero bucket widens into a populated bucket.*t=0\)$"):
        histseries.widen_zero_buckets(h, np.array([0.7, 0.7]), "B")
