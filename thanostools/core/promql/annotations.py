"""PromQL warnings and infos, worded and positioned as Prometheus words them."""

from __future__ import annotations

from dataclasses import dataclass, field

from thanostools.core.goformat import format_g, go_quote

WARNING = "PromQL warning"
INFO = "PromQL info"


def position(query: str, pos: int) -> str:
    """``line:column`` of a 0-based offset, as Prometheus' ``StartPosInput`` renders it."""
    if not query:
        return "unknown position"
    if pos < 0 or pos > len(query):
        return "invalid position"
    head = query[:pos]
    last_break = head.rfind("\n")
    return f"{head.count(chr(10)) + 1}:{pos - last_break}"


@dataclass
class Annotations:
    """Deduplicated annotations in insertion order; ``query`` is used to render positions."""

    query: str = ""
    _items: dict[str, tuple[str, int]] = field(default_factory=dict)

    def add(self, kind: str, message: str, pos: int) -> None:
        self._items.setdefault(f"{kind}: {message}", (kind, pos))

    def warn(self, message: str, pos: int) -> None:
        self.add(WARNING, message, pos)

    def info(self, message: str, pos: int) -> None:
        self.add(INFO, message, pos)

    def rendered(self, kind: str) -> list[str]:
        if not self.query:
            return [text for text, (k, _) in self._items.items() if k == kind]
        return [f"{text} ({position(self.query, pos)})" for text, (k, pos) in self._items.items() if k == kind]

    @property
    def warnings(self) -> list[str]:
        return self.rendered(WARNING)

    @property
    def infos(self) -> list[str]:
        return self.rendered(INFO)


def fmt_g(x: float) -> str:
    """Go ``%g``."""
    return format_g(x)


def invalid_quantile(q: float) -> str:
    return f"quantile value should be between 0 and 1, got {fmt_g(q)}"


def invalid_ratio(r: float, capped: float) -> str:
    return f"ratio value should be between -1 and 1, got {fmt_g(r)}, capping to {fmt_g(capped)}"


def bad_bucket_label(metric_name: str, le: str) -> str:
    return with_metric_name(f'bucket label "le" is missing or has a malformed value of {go_quote(le)}', metric_name)


def forced_monotonicity(metric_name: str) -> str:
    return with_metric_name(
        "input to histogram_quantile needed to be fixed for monotonicity "
        "(see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)",
        metric_name)


def possible_non_counter(metric_name: str) -> str:
    return f"metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {go_quote(metric_name)}"


SORT_IN_RANGE_QUERY = "sort is ineffective for range queries since results are always ordered by labels"


def with_metric_name(text: str, metric_name: str) -> str:
    return f"{text} for metric name {go_quote(metric_name)}" if metric_name else text


def openmetrics_float(x: float) -> str:
    """Prometheus ``labels.FormatOpenMetricsFloat``: Go ``%g`` digits, integers keep a ``.0``."""
    text = format_g(x)
    if text.lstrip("-").isdigit():
        text += ".0"
    return text


# -- aggregations and binary operators over native histograms -------------------------------------

MIXED_FLOATS_HISTOGRAMS_AGG = "encountered a mix of histograms and floats for aggregation"
HISTOGRAM_AGGREGATION = "aggregation"
HISTOGRAM_ADDITION = "addition"
HISTOGRAM_SUBTRACTION = "subtraction"


def histogram_ignored_in_aggregation(aggregation: str) -> str:
    return f"ignored histogram in {aggregation} aggregation"


# -- native histograms in range-vector functions -------------------------------------------------

def mixed_floats_histograms(metric_name: str) -> str:
    return f"encountered a mix of histograms and floats for metric name {go_quote(metric_name)}"


def histogram_not_counter(metric_name: str) -> str:
    return f"this native histogram metric is not a counter: {go_quote(metric_name)}"


def histogram_not_gauge(metric_name: str) -> str:
    return f"this native histogram metric is not a gauge: {go_quote(metric_name)}"


def mixed_exponential_custom(metric_name: str) -> str:
    return ("vector contains a mix of histograms with exponential and custom buckets schemas for metric name "
            f"{go_quote(metric_name)}")


def counter_reset_collision(operation: str) -> str:
    return f"conflicting counter resets during histogram {operation}"


def mismatched_custom_buckets(operation: str) -> str:
    return f"mismatched custom buckets were reconciled during {operation}"


def incompatible_types_in_binop(lhs_type: str, op: str, rhs_type: str) -> str:
    return f"incompatible sample types encountered for binary operator {go_quote(op)}: {lhs_type} {op} {rhs_type}"


def incompatible_bucket_layout_in_binop(op: str) -> str:
    return f"incompatible bucket layout encountered for binary operator {op}"


# -- histogram functions over native histograms (fn_hist) -----------------------------------------

def mixed_classic_native(metric_name: str) -> str:
    return with_metric_name("vector contains a mix of classic and native histograms", metric_name)


def quantile_nan_result(metric_name: str) -> str:
    return with_metric_name("input to histogram_quantile has NaN observations, result is NaN", metric_name)


def quantile_nan_skew(metric_name: str) -> str:
    return with_metric_name("input to histogram_quantile has NaN observations, result is skewed higher", metric_name)


def fraction_nans(metric_name: str) -> str:
    return with_metric_name(
        "input to histogram_fraction has NaN observations, which are excluded from all fractions", metric_name)


def histograms_ignored_in_mixed_range(metric_name: str) -> str:
    return ("ignored histograms in a range containing both floats and histograms for metric name "
            f"{go_quote(metric_name)}")
