"""`bucket generate --native-histograms`: reproducible, realistic integer native histograms that our writer cuts as the
2.42 head does, our reader decodes back exactly and the real prometheus 2.42 serves identically."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.clihelp import run_cli
from tests.core.pipeline.test_histogram_pipeline import STALE, block_samples
from tests.fixtures_prom import StartPrometheus, needs_prometheus
from thanostools.core.constants import CUSTOM_BUCKETS_SCHEMA
from thanostools.core.errors import ConfigError
from thanostools.core.ingest.generate import (
    NATIVE_SCHEMA,
    GenerateSpec,
    generate_batches,
    generate_series,
    series_count,
)
from thanostools.core.labels import get
from thanostools.core.series import KIND_FLOAT, KIND_INT_HISTOGRAM, SampleBatch
from thanostools.core.tsdb.block import Block

START = 1_699_999_200_000
SPEC = GenerateSpec(series=800, start_ms=START, duration_ms=3600 * 1000, churn=0.5, seed=5, native_histograms=True)


@pytest.fixture(scope="module")
def batch() -> SampleBatch:
    return SampleBatch.concat(list(generate_batches(SPEC, batch_series=300)))


def native_rows(batch: SampleBatch) -> np.ndarray:
    assert batch.hist is not None
    return np.flatnonzero(batch.hist.kind == KIND_INT_HISTOGRAM)


def test_one_native_series_per_histogram_and_no_classic_parts(batch: SampleBatch) -> None:
    names = {get(lab, "__name__") for lab in batch.labels}
    assert {"http_request_duration_seconds", "db_query_duration_seconds"} <= names
    assert not any(n.endswith(("_bucket", "_count", "_sum")) and "duration" in n for n in names)
    assert len(batch) == series_count(SPEC)
    assert batch.labels == sorted(batch.labels) and len(set(batch.labels)) == len(batch)
    assert batch.hist is not None
    kinds_by_series = [set(batch.hist.kind[a:b].tolist()) for a, b in itertools.pairwise(batch.offsets.tolist())]
    native = [i for i, k in enumerate(kinds_by_series) if k == {KIND_INT_HISTOGRAM}]
    assert all(get(batch.labels[i], "__name__").endswith("_duration_seconds") for i in native)
    assert all(k == {KIND_FLOAT} for i, k in enumerate(kinds_by_series) if i not in native)


def test_histograms_are_consistent_and_realistic(batch: SampleBatch) -> None:
    assert batch.hist is not None
    h = batch.hist.ints
    live = ~h.stale
    assert 0 < int((~live).sum()) < len(h) // 20  # churned targets end with a stale marker
    assert (h.layouts.schema == NATIVE_SCHEMA).all()
    sums = np.add.reduceat(h.buckets, h.bucket_offsets[:-1][live]) if h.buckets.size else np.zeros(0)
    assert (sums == h.count[live]).all() and (h.zero_count == 0).all()
    assert (h.sum[live] > 0).all()
    # latencies: the busiest bucket lies within a factor 4 of the series' median (2 ms .. 1 s here)
    pos = np.array([int(np.argmax(h.sample_buckets(s)[0])) for s in np.flatnonzero(live)[::97].tolist()])
    upper = 2.0 ** ((h.layouts.span_offset[h.layout[np.flatnonzero(live)[::97]]] + pos) / 8)
    assert ((upper > 0.0005) & (upper < 4)).all()


def test_reproducible_for_a_seed(batch: SampleBatch) -> None:
    again = SampleBatch.concat(list(generate_batches(SPEC, batch_series=1000)))
    assert again.labels == batch.labels and (again.t == batch.t).all() and (again.v == batch.v).all()
    assert batch.hist is not None and again.hist is not None
    assert (again.hist.ints.buckets == batch.hist.ints.buckets).all()
    other = SampleBatch.concat(list(generate_batches(GenerateSpec(**{**SPEC.__dict__, "seed": 6}))))
    assert other.hist is not None and not np.array_equal(other.hist.ints.count[:50], batch.hist.ints.count[:50])


def test_float_series_generator_refuses_a_native_spec() -> None:
    with pytest.raises(ConfigError):
        next(generate_series(SPEC))


def generate(bucket: Path, *extra: str) -> list[dict[str, Any]]:
    res = run_cli("bucket", "generate", "--bucket", str(bucket), "--series", "400", "--duration", "1h",
                  "--start", "2023-11-14T22:00:00Z", "--churn", "0.5", "--native-histograms", "-o", "json", *extra)
    assert res.exit_code == 0, res.stderr
    metas: list[dict[str, Any]] = res.json()
    return metas


def test_cli_blocks_hold_histogram_chunks_cut_by_the_head_rules(tmp_path: Path) -> None:
    metas = generate(tmp_path / "a", "--seed", "2")
    assert generate(tmp_path / "b", "--seed", "2")[0]["stats"] == metas[0]["stats"]
    a = (tmp_path / "a" / metas[0]["ulid"] / "chunks" / "000001").read_bytes()
    b_meta = json.loads(run_cli("bucket", "ls", "--bucket", str(tmp_path / "b"), "-o", "json").stdout)[0]
    assert (tmp_path / "b" / b_meta["ulid"] / "chunks" / "000001").read_bytes() == a
    block = Block.open_dir(str(tmp_path / "a" / metas[0]["ulid"]))
    samples = block_samples(block)
    hist_series = {lab: s for lab, s in samples.items() if any(isinstance(v, dict) for v in s.values())}
    assert hist_series and all(get(lab, "__name__").endswith("_duration_seconds") for lab in hist_series)
    assert any(STALE in s.values() for s in hist_series.values())



@needs_prometheus
def test_prometheus_serves_generated_histograms_as_we_read_them(tmp_path: Path,
                                                                 prometheus_server: StartPrometheus) -> None:
    bucket = tmp_path / "data"
    metas = generate(bucket, "--churn", "0.2")
    block = Block.open_dir(str(bucket / metas[0]["ulid"]))
    ours = {lab: {t: v for t, v in s.items() if isinstance(v, dict)} for lab, s in block_samples(block).items()}
    ours = {lab: s for lab, s in ours.items() if s}
    work = tmp_path / "work"
    work.mkdir()
    server = prometheus_server(bucket, work, ["--enable-feature=native-histograms"])
    at = metas[0]["minTime"] + 3_600_000  # the data's hour (the block covers the aligned 2 h)
    answer = server.query('{__name__=~".+_duration_seconds"}[1h]', at)
    quantile = server.query("histogram_quantile(0.9, sum(rate(http_request_duration_seconds[5m])))", at)
    server.stop()
    theirs = {tuple(sorted(r["metric"].items())): {round(ts * 1000): h for ts, h in r["histograms"]}
              for r in answer["data"]["result"]}
    assert theirs == {lab: {t: v for t, v in s.items() if at - 3_600_000 <= t <= at} for lab, s in ours.items()}
    value = float(quantile["data"]["result"][0]["value"][1])
    assert 0.01 < value < 2.0  # a 90th percentile latency in seconds


def test_nhcb_histograms_use_the_classic_bounds_as_custom_buckets() -> None:
    spec = GenerateSpec(**{**SPEC.__dict__, "custom_buckets": True})
    nhcb = SampleBatch.concat(list(generate_batches(spec, batch_series=300)))
    assert nhcb.hist is not None
    h = nhcb.hist.ints
    live = ~h.stale
    assert (h.layouts.schema == CUSTOM_BUCKETS_SCHEMA).all() and (h.layouts.zero_threshold == 0).all()
    assert (h.layouts.n_pos == 12).all() and (h.layouts.span_offset == 0).all()  # 11 finite bounds and +Inf
    assert h.layouts.custom(0).tolist() == [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    sums = np.add.reduceat(h.buckets, h.bucket_offsets[:-1][live])
    assert (sums == h.count[live]).all() and (h.buckets >= 0).all()
    assert nhcb.labels == SampleBatch.concat(list(generate_batches(SPEC, batch_series=300))).labels


def test_cli_nhcb_answers_histogram_quantile_between_the_bounds(tmp_path: Path) -> None:
    metas = generate(tmp_path / "b", "--nhcb")
    at = metas[0]["minTime"] + 3_600_000
    res = run_cli("query", "histogram_quantile(0.9, sum(rate(http_request_duration_seconds[5m])))",
                  "--bucket", str(tmp_path / "b"), "--time", str(at), "-o", "json")
    assert res.exit_code == 0, res.stderr
    [row] = res.json()["result"]
    assert 0.005 < float(row["value"][1]) < 10.0
