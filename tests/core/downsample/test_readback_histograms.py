"""Downsampled native histograms read back through the querier (FORMATS.md §7.8): the average of each window
for a plain selector, the counter made monotone for ``rate``; expected values computed here in plain Python from
the raw block."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.core.downsample.test_downsample_histograms import Hist, add, as_hist
from thanostools.cli.main import cli
from thanostools.core.catalog import CompactionLeftovers
from thanostools.core.downsample import downsample_block
from thanostools.core.errors import UnsupportedError
from thanostools.core.histograms import HINT_NOT_RESET, HistogramSample, build_batch
from thanostools.core.labels import Labels
from thanostools.core.querier import BlockQuerier
from thanostools.core.series import KIND_FLOAT, KIND_INT_HISTOGRAM, HistogramColumns, SampleBatch, SelectHints
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.workspace import BucketWorkspace

RES = 300_000
START = 1_700_006_400_000  # 2023-11-15T00:00:00Z
HOUR = 3_600_000
def series_hists(batch: SampleBatch) -> dict[Labels, list[tuple[int, Hist]]]:
    """Every histogram sample of a batch, per series."""
    out: dict[Labels, list[tuple[int, Hist]]] = {}
    cols = batch.hist
    assert cols is not None
    for i, lab in enumerate(batch.labels):
        for s in range(int(batch.offsets[i]), int(batch.offsets[i + 1])):
            if int(cols.kind[s]) != KIND_FLOAT:
                out.setdefault(lab, []).append((int(batch.t[s]), as_hist(cols.batch_of(s), int(cols.row[s]))))
    return out


def scale(a: Hist, f: float) -> Hist:
    return a[0] * f, a[1] * f, {k: v * f for k, v in a[2].items()}


def close(a: Hist, b: Hist) -> bool:
    keys = set(a[2]) | set(b[2])
    return (a[0] == pytest.approx(b[0]) and a[1] == pytest.approx(b[1])
            and all(a[2].get(k, 0.0) == pytest.approx(b[2].get(k, 0.0), abs=1e-6) for k in keys))


def is_reset(cur: Hist, prev: Hist) -> bool:
    return cur[0] < prev[0] or any(cur[2].get(k, 0.0) < v for k, v in prev[2].items() if v)


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dsread")
    runner = CliRunner()
    res = runner.invoke(cli, ["bucket", "generate", "--bucket", str(root), "--series", "40", "--duration", "48h",
                              "--block-duration", "48h", "--scrape-interval", "120s", "--native-histograms",
                              "--start", "2023-11-15T00:00:00Z", "-o", "ids"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["bucket", "downsample", "--bucket", str(root), "--no-dry-run", "--passes", "1"])
    assert res.exit_code == 0, res.output
    return root


def raw_hists(root: Path) -> dict[Labels, list[tuple[int, Hist]]]:
    raw = next(Block.open_dir(str(p)) for p in root.iterdir() if (p / "meta.json").exists()
               and Block.open_dir(str(p)).meta.resolution == 0)
    out: dict[Labels, list[tuple[int, Hist]]] = {}
    for b in raw.select(histograms=True):
        if b.hist is not None:
            out.update(series_hists(b))
    return out


def select(root: Path, func: str, rng: int) -> SampleBatch:
    catalog = BucketWorkspace.open(str(root)).catalog.view(CompactionLeftovers())
    q = BlockQuerier(catalog, max_source_resolution_ms=RES)
    end = START + 48 * HOUR
    return q.select([], START, end, SelectHints(start=START, end=end, func=func, range=rng)).collect()


def test_plain_selector_gives_window_averages(bucket: Path) -> None:
    raw = raw_hists(bucket)
    got = series_hists(select(bucket, "", 0))
    assert set(got) == set(raw) and len(raw) > 5
    for lab, samples in got.items():
        covered = 0
        for t, avg in samples:
            window = [h for rt, h in raw[lab] if t - t % RES <= rt <= t]
            assert window, (lab, t)
            total = window[0]
            for h in window[1:]:
                total = add(total, h)
            assert close(avg, scale(total, 1.0 / len(window))), (lab, t)
            covered += len(window)
        assert covered == len(raw[lab])  # every raw histogram sits in exactly one window


def test_rate_hint_gives_monotone_counter_with_raw_increases(bucket: Path) -> None:
    raw = raw_hists(bucket)
    batch = select(bucket, "rate", HOUR)
    assert batch.hist is not None
    got = series_hists(batch)
    assert set(got) == set(raw)
    for lab, samples in got.items():
        series = raw[lab]
        ts = [t for t, _ in series]
        for (t1, c1), (t2, c2) in itertools.pairwise(samples):
            assert c2[0] >= c1[0]
            # the counter's increase between two windows is the raw increase over the samples between them
            lo = max(i for i, t in enumerate(ts) if t <= t1)
            hi = max(i for i, t in enumerate(ts) if t <= t2)
            inc: Hist = (0.0, 0.0, {})
            for k in range(lo + 1, hi + 1):
                cur, prev = series[k][1], series[k - 1][1]
                inc = add(inc, cur if is_reset(cur, prev) else add(cur, prev, -1.0))
            assert close(add(c2, c1, -1.0), inc), (lab, t1, t2)
    rows = np.flatnonzero(batch.hist.kind != KIND_FLOAT)
    hints = batch.hist.floats.hint[batch.hist.row[rows]]
    assert (hints == HINT_NOT_RESET).sum() >= len(rows) - len(got)


def test_min_over_histogram_aggregates_is_refused(bucket: Path) -> None:
    with pytest.raises(UnsupportedError, match="aggregate min does not exist for native histograms"):
        select(bucket, "min_over_time", 0)


# --- a series that turns from floats into histograms -------------------------------------------------------


def mixed_block(root: Path) -> tuple[list[tuple[int, float]], list[tuple[int, Hist]]]:
    """One series: floats for 20h, then integer histograms for 20h (every 60 s)."""
    step = 60_000
    n = 20 * 60
    floats = [(START + i * step, float(i % 7)) for i in range(n)]
    hs = [HistogramSample(t=START + (n + i) * step, count=float(3 * i + 3), zero_count=0.0, sum=float(i),
                          schema=0, positive_spans=((0, 3),), positive_buckets=(float(i), float(i + 1), float(i + 2)))
          for i in range(n)]
    ints = build_batch(hs, is_float=False)
    total = 2 * n
    kind = np.array([KIND_FLOAT] * n + [KIND_INT_HISTOGRAM] * n, np.uint8)
    row = np.array([-1] * n + list(range(n)), np.int64)
    v = np.concatenate([np.array([f for _, f in floats]).view(np.uint64), ints.sum_bits])
    empty = build_batch([], is_float=True)
    batch = SampleBatch([(("__name__", "mixed"),)], np.array([-1]), np.array([0, total]),
                        np.array([t for t, _ in floats] + [h.t for h in hs], np.int64), v,
                        hist=HistogramColumns(kind, row, ints, empty))
    w = BlockWriter(str(root))
    w.add_sample_batch(batch)
    meta = w.finish()
    downsample_block(Block.open_dir(str(root / meta.ulid)), RES, str(root))
    expected_h = [(h.t, (h.count, h.sum, dict(enumerate(h.positive_buckets)))) for h in hs]
    return floats, expected_h


def test_mixed_series_reads_back_floats_then_histograms(tmp_path: Path) -> None:
    floats, hists = mixed_block(tmp_path)
    batch = select(tmp_path, "", 0)
    assert batch.labels == [(("__name__", "mixed"),)] and batch.hist is not None
    kinds = batch.hist.kind
    is_hist = kinds != KIND_FLOAT
    first_hist = int(np.argmax(is_hist))
    assert not is_hist[:first_hist].any() and is_hist[first_hist:].all()
    for t, v in zip(batch.t[:first_hist].tolist(), batch.v[:first_hist].view(np.float64).tolist(), strict=True):
        values = [f for ft, f in floats if t - t % RES <= ft <= t]
        assert v == pytest.approx(sum(values) / len(values))
    got = series_hists(batch)[(("__name__", "mixed"),)]
    for t, avg in got:
        window = [h for ht, h in hists if t - t % RES <= ht <= t]
        total = window[0]
        for h in window[1:]:
            total = add(total, h)
        assert close(avg, scale(total, 1.0 / len(window))), t
    assert sum(1 for _ in got) == len(range(0, len(hists), RES // 60_000))
