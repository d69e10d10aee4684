"""FloatHistogram arithmetic against Prometheus' float_histogram.go semantics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from thanostools.core.promql.floathist import (
    HINT_GAUGE,
    HINT_NOT_RESET,
    HINT_RESET,
    HINT_UNKNOWN,
    FloatHistogram,
    IncompatibleSchemaError,
    hints_collide,
)


def exp(pos: list[float], *, sum_: float = 0.0, hint: int = HINT_UNKNOWN, schema: int = 0,
        zero: tuple[float, float] = (0.0, 0.0)) -> FloatHistogram:
    counts = np.asarray(pos, np.float64)
    return FloatHistogram(schema=schema, zero_threshold=zero[0], zero_count=zero[1],
                          count=float(counts.sum()) + zero[1], sum=sum_, pos_idx=np.arange(len(pos), dtype=np.int64),
                          pos=counts, hint=hint)


@pytest.mark.parametrize(("a", "b", "want"), [
    (HINT_NOT_RESET, HINT_NOT_RESET, HINT_NOT_RESET),
    (HINT_GAUGE, HINT_NOT_RESET, HINT_GAUGE),
    (HINT_NOT_RESET, HINT_UNKNOWN, HINT_UNKNOWN),
    (HINT_RESET, HINT_NOT_RESET, HINT_UNKNOWN),
])
def test_sum_hint_follows_prometheus(a: int, b: int, want: int) -> None:
    out, _ = exp([1], hint=a).add(exp([2], hint=b))
    assert out.hint == want
    assert hints_collide(exp([1], hint=a), exp([2], hint=b)) == ({a, b} == {HINT_RESET, HINT_NOT_RESET})


def test_kahan_add_keeps_small_terms_next_to_huge_ones() -> None:
    acc, comp = exp([1], sum_=3.1), None
    for s in (1e100, -1e100, 1.3):
        acc, comp, _ = acc.kahan_add(comp, exp([1], sum_=s))
    assert comp is not None
    assert acc.add(comp)[0].sum == pytest.approx(4.4)
    plain = exp([1], sum_=3.1)
    for s in (1e100, -1e100, 1.3):
        plain = plain.add(exp([1], sum_=s))[0]
    assert plain.sum != pytest.approx(4.4)


def test_adding_mixed_resolutions_merges_to_the_lower_schema() -> None:
    fine = exp([1, 1, 1, 1], schema=1)  # indices 0..3 at schema 1 are 0, 1, 1, 2 at schema 0
    out, _ = fine.add(exp([1], schema=0))
    assert out.schema == 0
    assert out.pos_idx.tolist() == [0, 1, 2]
    assert out.pos.tolist() == [2.0, 2.0, 1.0]


def test_custom_bounds_reconcile_to_their_intersection() -> None:
    a = FloatHistogram(schema=-53, count=3, pos_idx=np.arange(3, dtype=np.int64), pos=np.ones(3),
                       custom_values=np.array([1.0, 2.0]))
    b = FloatHistogram(schema=-53, count=2, pos_idx=np.arange(2, dtype=np.int64), pos=np.ones(2),
                       custom_values=np.array([2.0]))
    out, reconciled = a.add(b)
    assert reconciled
    assert out.custom_values.tolist() == [2.0]
    assert out.pos.tolist() == [3.0, 2.0]
    with pytest.raises(IncompatibleSchemaError):
        a.add(exp([1]))


def test_equals_compares_bits_and_layout() -> None:
    assert exp([1, 0]).equals(exp([1, 0]))
    assert not exp([1, 0]).equals(exp([1]).with_hint(HINT_UNKNOWN))  # an explicit empty bucket is layout
    assert not exp([1], sum_=0.0).equals(exp([1], sum_=-0.0))


def test_scale_and_divide_hints_and_zero_division() -> None:
    assert exp([1], hint=HINT_NOT_RESET).scale(-1).hint == HINT_GAUGE
    assert exp([1], hint=HINT_NOT_RESET).scale(2).hint == HINT_NOT_RESET
    gone = exp([1, 2]).divide(0)
    assert gone.pos.shape == (0,)
    assert math.isinf(gone.count)


def test_trim_interpolates_exponential_buckets_log_linearly() -> None:
    h = exp([2, 4], sum_=7.0)  # (0.5,1]:2 (1,2]:4
    kept = h.trim(math.sqrt(2), upper=True)
    assert kept.count == pytest.approx(4.0)
    assert kept.sum == pytest.approx(2 * math.sqrt(0.5) + 2 * math.sqrt(math.sqrt(2)))
    assert h.trim(0.25, upper=False) is h  # nothing removed: the histogram stays as it is


@pytest.mark.parametrize("mean", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_one_layout_sum_equals_the_sample_by_sample_fold_bit_for_bit(mean: bool, seed: int) -> None:
    from thanostools.core.promql.aggregate import _HistogramSum, _sum_one_layout

    rng = np.random.default_rng(seed)
    hs = []
    for _ in range(int(rng.integers(2, 40))):
        idx = np.sort(rng.choice(np.arange(-5, 30), size=int(rng.integers(1, 12)), replace=False)).astype(np.int64)
        counts = rng.uniform(0, 1e6, idx.shape[0]) * rng.choice([1e-9, 1.0, 1e12], idx.shape[0])
        hs.append(FloatHistogram(schema=2, zero_threshold=1e-3, zero_count=float(rng.uniform(0, 10)),
                                 count=float(counts.sum()), sum=float(rng.uniform(-1e9, 1e9)), pos_idx=idx,
                                 pos=counts, hint=int(rng.choice([0, 2]))))
    fold = _HistogramSum(hs[0], mean)
    for n, h in enumerate(hs[1:], start=2):
        fold.add(h, n)
    want = fold.result(len(hs))
    got = _sum_one_layout(list(hs), mean)
    assert got is not None
    assert got.equals(want) and got.hint == want.hint
