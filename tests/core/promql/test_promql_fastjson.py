"""The bulk JSON writer produces exactly what ``apijson`` writes, for every kind of value."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from thanostools.core.labels import Labels
from thanostools.core.promql.floathist import FloatHistogram
from thanostools.core.render import apijson, fastjson

SPECIAL = [0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, -5e-324, 1e-7, 1e-6, 9.99e-5, 1e-4, 0.0001000001, 0.1, 1.0,
           -3.0, 123.0, 0.30000000000000004, 1e15 + 0.5, 9999999999999998.0, 1e16, -1e16, 12345678901234567890.0,
           1e20, 1e21, 1.5e21, 1e22, 1.7976931348623157e308, 2.0**53, 2.0**53 + 2, 123456.789e-10]


def _random_values(n: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    mags = rng.uniform(-12, 25, n)
    values = np.sign(rng.normal(size=n)) * 10.0**mags
    values[::7] = np.round(values[::7])
    bits = rng.integers(0, 2**63, 200, dtype=np.uint64)
    return np.concatenate([values, bits.view(np.float64), np.array(SPECIAL)])


def test_sample_values_match_apijson() -> None:
    values = _random_values(20_000)
    payload_nan = np.array([0x7FF8000000000001, 0xFFF0000000000001], np.uint64).view(np.float64)
    values = np.concatenate([values, payload_nan])
    assert fastjson.sample_values(values) == [apijson.format_sample_value(v) for v in values.tolist()]


def test_runs_of_equal_values() -> None:
    payload_nan = np.array([0x7FF8000000000001], np.uint64).view(np.float64)[0]
    values = np.repeat([1.5, 1.5, 0.0, -0.0, np.nan, payload_nan, 2.0, 1e22, 3.25], [3, 1, 2, 2, 1, 2, 4, 2, 1])
    assert fastjson.sample_values(values) == [apijson.format_sample_value(v) for v in values.tolist()]
    assert fastjson.sample_values(np.full(5, 7.0)) == ["7"] * 5
    assert fastjson.sample_values(np.zeros(0)) == []


@dataclass
class _Series:
    labels: Labels
    t: np.ndarray
    v: np.ndarray
    h: list[FloatHistogram | None] | None = None


@dataclass
class _Result:
    result_type: str
    series: list[_Series]
    scalar: tuple[int, float] | None = None
    string: tuple[int, str] | None = None


def _series() -> list[_Series]:
    rng = np.random.default_rng(5)
    grid = np.arange(-5_000, 900_000, 15_007, dtype=np.int64)
    out = []
    for i in range(40):
        keep = rng.random(grid.shape[0]) < 0.7
        labels = (("__name__", "m<&>"), ("i", str(i)), ("q", 'a"b\\c\n\u2028'))
        out.append(_Series(labels, grid[keep], _random_values(int(keep.sum()))[: int(keep.sum())]))
    out.append(_Series((), np.array([1000], np.int64), np.array([np.nan]).view(np.uint64)))
    return out + _histogram_series()


def _histogram(i: int) -> FloatHistogram:
    return FloatHistogram(schema=1, zero_threshold=0.001, zero_count=float(i % 3), count=10.0 + i, sum=i * 0.1,
                          pos_idx=np.array([-2, 0, 1], np.int64), pos=np.array([1.0, 0.0, 2.5 + i]),
                          neg_idx=np.array([3], np.int64), neg=np.array([float(i)]))


def _histogram_series() -> list[_Series]:
    """Native histograms only, then floats and histograms mixed (histogram points' ``v`` is meaningless)."""
    t = np.arange(0, 60_000, 15_000, dtype=np.int64)
    only: list[FloatHistogram | None] = [_histogram(i) for i in range(4)]
    mixed: list[FloatHistogram | None] = [None, _histogram(5), None, _histogram(6)]
    return [_Series((("h", "only"),), t, np.full(4, 99.0), only),
            _Series((("h", "mixed"),), t, np.array([1.0, 99.0, 3.0, 99.0]), mixed)]


@pytest.mark.parametrize("kind", ["matrix", "vector"])
def test_results_match_apijson(kind: str) -> None:
    series = _series()
    if kind == "vector":
        series = [_Series(s.labels, s.t[:1], s.v[:1], None if s.h is None else s.h[:1]) for s in series if s.t.shape[0]]
        series.append(_Series((("h", "vector"),), np.array([5], np.int64), np.zeros(1), [_histogram(1)]))
    result = _Result(kind, series)
    assert fastjson.query_data_json(result) == apijson.query_data_json_reference(result)
    empty = _Result(kind, [])
    assert fastjson.query_data_json(empty) == apijson.query_data_json_reference(empty)


def test_float_vectors_at_several_times_and_in_bits_match_apijson() -> None:
    """Vectors without histograms take the columnar path: per-series times, float or raw-bit values, escaping."""
    values = _random_values(300)
    series = [_Series((("__name__", "m"), ("i", str(i)), ("q", 'x"\u2028' if i % 5 else "<&>")),
                      np.array([1000 * (i % 4) - 7], np.int64), values[i : i + 1].copy()) for i in range(300)]
    for s in series[::3]:
        s.v = s.v.view(np.uint64)
    result = _Result("vector", series)
    assert fastjson.query_data_json(result) == apijson.query_data_json_reference(result)
    one = _Result("vector", series[1:2])
    assert fastjson.query_data_json(one) == apijson.query_data_json_reference(one)


def test_other_result_types_are_delegated() -> None:
    for result in (_Result("scalar", [], scalar=(1500, 0.25)), _Result("string", [], string=(-7, "x\n"))):
        assert fastjson.query_data_json(result) == apijson.query_data_json_reference(result)


def test_label_pairs_beyond_the_cache_size_render_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastjson, "_MAX_CACHED_PAIRS", 8)
    series = [_Series((("__name__", "m"), ("i", str(i)), ("j", f"<{i % 11}>")), np.array([1000], np.int64),
                      np.array([float(i)])) for i in range(50)]
    result = _Result("vector", series)
    assert fastjson.query_data_json(result) == apijson.query_data_json_reference(result)
    assert len(fastjson._PAIR_TEXTS) <= 8
