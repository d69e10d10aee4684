"""load_with_nhcb: classic histogram samples that make no valid native histogram fail the load, as in Prometheus."""

from __future__ import annotations

import pytest

from thanostools.core.promql.testrunner import run_script

_EVAL = """

eval instant at 0 x
  {} 1
"""


@pytest.mark.parametrize(("series", "message"), [
    ('  x_bucket{le="1"} 5\n  x_bucket{le="2"} 3\n  x_bucket{le="+Inf"} 6', "count is not cumulative: 3 < 5"),
    ('  x_bucket{le="1"} 2\n  x_bucket{le="+Inf"} 6\n  x_count 7', "count mismatch: count=7 != le=+Inf count=6"),
    ('  x_bucket{le="1"} -1', "bucket count must be non-negative: le=1, count=-1"),
    ("  x_sum 3", "count must be provided when no buckets are present"),
])
def test_inconsistent_classic_histogram_fails_the_load(series: str, message: str) -> None:
    report = run_script("load_with_nhcb 1m\n" + series + _EVAL)
    assert [(o.line, o.status, o.message) for o in report.outcomes] == [(1, "failed", f"load_with_nhcb: {message}")]


def test_count_series_alone_makes_a_single_bucket_histogram() -> None:
    report = run_script("""load_with_nhcb 1m
  x_count 7

eval instant at 0 x
  x {{schema:-53 count:7 sum:0 buckets:[7]}}

# The one bucket is (-Inf, +Inf], taken to start at 0.
eval instant at 0 histogram_quantile(0.5, x)
  {} +Inf
""")
    assert (report.passed, report.failed) == (2, 0), [o.message for o in report.failures]


def test_unparsable_and_nan_bounds_are_left_out() -> None:
    report = run_script("""load_with_nhcb 1m
  x_bucket{le="a"}    1
  x_bucket{le="NaN"}  1
  x_bucket{le="1"}    2
  x_bucket{le="+Inf"} 4

eval instant at 0 x
  x {{schema:-53 count:4 sum:0 custom_values:[1] buckets:[2 2]}}
""")
    assert (report.passed, report.failed) == (1, 0), [o.message for o in report.failures]
