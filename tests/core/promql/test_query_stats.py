"""Prometheus's query statistics from the engine: samples read per step, native histograms by size, subqueries.

Float counts are checked against a real Prometheus in tests/cli/test_cli_query_stats_vs_prometheus.py; 2.42 cannot
load native histograms from promtool, so their weights are checked here from Prometheus's definition: a
FloatHistogram's in-memory size (168 bytes, 8 per span and per bucket) plus an 8-byte timestamp, in 16-byte units.
"""

from __future__ import annotations

import numpy as np
import pytest

from thanostools.core.promql.engine import PromQLEngine, QueryResult
from thanostools.core.promql.promqltest import LoadCmd, parse_script
from thanostools.core.promql.testrunner import _Store

MIN = 60_000
SCRIPT = """
load 1m
  f{job="a"} 0+1x20
  f{job="b"} 0+2x20
  h {{schema:0 sum:5 count:4 buckets:[1 2 1]}}x20
  hgap {{schema:0 sum:5 count:4 offset:1 buckets:[1 2] n_buckets:[1]}}x20
"""
# h: one span of 3 buckets: 168 + 8 * (1 + 3) = 200 bytes, + 8 for the timestamp -> 13 samples.
H_WEIGHT = 13
# hgap: a positive span of 2 and a negative span of 1: 168 + 8 * (2 + 3) = 208, + 8 -> 13.
HGAP_WEIGHT = 13


@pytest.fixture(scope="module")
def engine() -> PromQLEngine:
    store = _Store()
    for cmd in parse_script(SCRIPT):
        assert isinstance(cmd, LoadCmd)
        store.load(cmd)
    return PromQLEngine(store.querier())


def _steps(res: QueryResult) -> list[int]:
    return [int(n) for n in res.stats.samples.per_step]


def test_instant_selector_counts_one_per_series_and_histograms_by_size(engine: PromQLEngine) -> None:
    assert engine.instant("f", 5 * MIN).stats.samples.total == 2
    assert engine.instant("h", 5 * MIN).stats.samples.total == H_WEIGHT
    assert engine.instant("hgap", 5 * MIN).stats.samples.total == HGAP_WEIGHT
    res = engine.instant("{__name__=~'f|h'}", 5 * MIN)
    assert res.stats.samples.steps() == [(5 * MIN, 2 + H_WEIGHT)]
    assert res.stats.samples.peak == 2 + H_WEIGHT


def test_range_functions_count_their_windows(engine: PromQLEngine) -> None:
    at = 5 * MIN + 30_000  # windows (0:30, 5:30]: samples at 1m..5m
    assert engine.instant("rate(f[5m])", at).stats.samples.total == 2 * 5
    assert engine.instant("rate(h[5m])", at).stats.samples.total == 5 * H_WEIGHT
    assert engine.instant("sum(rate(f[5m])) + sum(rate(f[5m]))", at).stats.samples.total == 4 * 5


def test_range_query_counts_per_step(engine: PromQLEngine) -> None:
    res = engine.range("count_over_time(f[2m])", 0, 4 * MIN, MIN)
    assert res.stats.samples.steps() == [(0, 2), (MIN, 4), (2 * MIN, 4), (3 * MIN, 4), (4 * MIN, 4)]
    assert res.stats.samples.total == 18
    res = engine.range("f @ 300", 0, 3 * MIN, MIN)  # the same lookup at every step, counted at every step
    assert _steps(res) == [2, 2, 2, 2]


def test_subqueries(engine: PromQLEngine) -> None:
    # A whole-query subquery counts what its inner evaluation read (5 steps x 2 series), at the last step.
    res = engine.instant("f[5m:1m]", 10 * MIN)
    assert res.stats.samples.steps() == [(10 * MIN, 10)]
    # Under a function, only the windows over the subquery's points count, not the inner reads.
    res = engine.range("max_over_time(rate(f[3m])[5m:1m])", 10 * MIN, 12 * MIN, MIN)
    assert _steps(res) == [10, 10, 10]
    res = engine.range("max_over_time(rate(f[3m])[5m:1m] offset 8m)", 10 * MIN, 12 * MIN, MIN)
    assert _steps(res) == [4, 6, 8]  # rate has points from 1m on (its first window with two samples)


def test_nothing_read_counts_nothing(engine: PromQLEngine) -> None:
    res = engine.range("vector(1) + scalar(absent(nope))", 0, 2 * MIN, MIN)
    assert res.stats.samples.total == 0
    assert np.array_equal(res.stats.samples.per_step, np.zeros(3, np.int64))
