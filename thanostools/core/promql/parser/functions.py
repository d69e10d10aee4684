"""Catalogue of PromQL functions and aggregation operators (Prometheus 3.x).

``variadic`` follows Prometheus: 0 means exactly ``len(arg_types)`` arguments; n > 0 means the
last argument type may appear between 0 and n times; -1 means it may repeat without limit.
``experimental`` functions need Prometheus' ``promql-experimental-functions`` feature flag.
"""

from __future__ import annotations

from dataclasses import dataclass

from thanostools.core.promql.parser.ast import ValueType

S = ValueType.SCALAR
V = ValueType.VECTOR
M = ValueType.MATRIX
STR = ValueType.STRING


@dataclass(frozen=True)
class Function:
    name: str
    arg_types: tuple[ValueType, ...]
    return_type: ValueType
    variadic: int = 0
    experimental: bool = False
    help: str = ""

    @property
    def min_args(self) -> int:
        return len(self.arg_types) if self.variadic == 0 else len(self.arg_types) - 1

    @property
    def max_args(self) -> int | None:
        """Largest accepted argument count; None when unlimited."""
        if self.variadic == 0:
            return len(self.arg_types)
        if self.variadic < 0:
            return None
        return len(self.arg_types) - 1 + self.variadic

    def arg_type(self, index: int) -> ValueType:
        """Expected type of argument ``index`` (variadic tails repeat the last type)."""
        return self.arg_types[min(index, len(self.arg_types) - 1)]


@dataclass(frozen=True)
class Aggregation:
    name: str
    param_type: ValueType | None = None
    experimental: bool = False
    help: str = ""


def _f(name: str, args: tuple[ValueType, ...], ret: ValueType, help_text: str, *,
       variadic: int = 0, experimental: bool = False) -> Function:
    return Function(name, args, ret, variadic, experimental, help_text)


_FUNCTIONS: tuple[Function, ...] = (
    _f("abs", (V,), V, "Absolute value of every sample."),
    _f("absent", (V,), V, "A 1-valued series when the argument has no series, else nothing."),
    _f("absent_over_time", (M,), V, "A 1-valued series when the range holds no samples at all."),
    _f("acos", (V,), V, "Arc cosine, in radians."),
    _f("acosh", (V,), V, "Inverse hyperbolic cosine."),
    _f("asin", (V,), V, "Arc sine, in radians."),
    _f("asinh", (V,), V, "Inverse hyperbolic sine."),
    _f("atan", (V,), V, "Arc tangent, in radians."),
    _f("atanh", (V,), V, "Inverse hyperbolic tangent."),
    _f("avg_over_time", (M,), V, "Mean of the samples in each range."),
    _f("ceil", (V,), V, "Round up to the nearest integer."),
    _f("changes", (M,), V, "How many times the value changed within the range."),
    _f("clamp", (V, S, S), V, "Limit values to the interval [min, max]."),
    _f("clamp_max", (V, S), V, "Limit values to at most the given maximum."),
    _f("clamp_min", (V, S), V, "Limit values to at least the given minimum."),
    _f("cos", (V,), V, "Cosine of radians."),
    _f("cosh", (V,), V, "Hyperbolic cosine."),
    _f("count_over_time", (M,), V, "Number of samples in each range."),
    _f("day_of_month", (V,), V, "Day of the month (1-31) in UTC, of the value or of now.", variadic=1),
    _f("day_of_week", (V,), V, "Day of the week (0 = Sunday) in UTC, of the value or of now.", variadic=1),
    _f("day_of_year", (V,), V, "Day of the year (1-366) in UTC, of the value or of now.", variadic=1),
    _f("days_in_month", (V,), V, "Number of days in the month (28-31) in UTC.", variadic=1),
    _f("deg", (V,), V, "Convert radians to degrees."),
    _f("delta", (M,), V, "Difference between first and last value, extrapolated to the range (gauges)."),
    _f("deriv", (M,), V, "Per-second derivative by simple linear regression (gauges)."),
    _f("double_exponential_smoothing", (M, S, S), V,
       "Smoothed value by double exponential smoothing (smoothing factor, trend factor).",
       experimental=True),
    _f("exp", (V,), V, "e raised to the power of the value."),
    _f("floor", (V,), V, "Round down to the nearest integer."),
    _f("first_over_time", (M,), V, "Oldest sample value in each range."),
    _f("histogram_avg", (V,), V, "Mean of the observations in each native histogram."),
    _f("histogram_count", (V,), V, "Count of observations in each native histogram."),
    _f("histogram_fraction", (S, S, V), V,
       "Estimated fraction of observations between a lower and an upper bound."),
    _f("histogram_quantile", (S, V), V, "Estimated quantile from classic buckets or native histograms."),
    _f("histogram_quantiles", (V, STR, S), V,
       "Several quantiles at once, one output series per quantile labelled by the given name.",
       variadic=-1, experimental=True),
    _f("histogram_stddev", (V,), V, "Estimated standard deviation of the observations."),
    _f("histogram_stdvar", (V,), V, "Estimated variance of the observations."),
    _f("histogram_sum", (V,), V, "Sum of the observations in each native histogram."),
    _f("hour", (V,), V, "Hour of the day (0-23) in UTC, of the value or of now.", variadic=1),
    _f("idelta", (M,), V, "Difference between the last two samples in each range."),
    _f("increase", (M,), V, "Counter increase over the range, reset-aware and extrapolated."),
    _f("info", (V, V), V, "Enrich series with labels from matching info metrics.",
       variadic=1, experimental=True),
    _f("irate", (M,), V, "Per-second rate from the last two samples of each range."),
    _f("label_join", (V, STR, STR, STR), V,
       "Join the values of source labels with a separator into a destination label.", variadic=-1),
    _f("label_replace", (V, STR, STR, STR, STR), V,
       "Set a destination label from a regex match on a source label."),
    _f("last_over_time", (M,), V, "Newest sample value in each range."),
    _f("ln", (V,), V, "Natural logarithm."),
    _f("log10", (V,), V, "Decimal logarithm."),
    _f("log2", (V,), V, "Binary logarithm."),
    _f("mad_over_time", (M,), V, "Median absolute deviation of the samples in each range.",
       experimental=True),
    _f("max_of", (S, S), S, "The larger of two scalars.", experimental=True),
    _f("max_over_time", (M,), V, "Largest sample value in each range."),
    _f("min_of", (S, S), S, "The smaller of two scalars.", experimental=True),
    _f("min_over_time", (M,), V, "Smallest sample value in each range."),
    _f("minute", (V,), V, "Minute of the hour (0-59) in UTC, of the value or of now.", variadic=1),
    _f("month", (V,), V, "Month of the year (1-12) in UTC, of the value or of now.", variadic=1),
    _f("pi", (), S, "The constant pi."),
    _f("predict_linear", (M, S), V, "Value predicted some seconds ahead by linear regression."),
    _f("present_over_time", (M,), V, "1 for every series that has any sample in the range."),
    _f("quantile_over_time", (S, M), V, "The given quantile of the samples in each range."),
    _f("rad", (V,), V, "Convert degrees to radians."),
    _f("range", (), S, "Length of the query's time range in seconds (0 for instant queries).",
       experimental=True),
    _f("rate", (M,), V, "Per-second average rate of increase of a counter, extrapolated."),
    _f("resets", (M,), V, "Number of counter resets within the range."),
    _f("round", (V, S), V, "Round to the nearest integer, or to the nearest multiple of the argument.",
       variadic=1),
    _f("scalar", (V,), S, "The value of a one-element vector as a scalar, else NaN."),
    _f("sgn", (V,), V, "Sign of the value: -1, 0 or 1."),
    _f("sin", (V,), V, "Sine of radians."),
    _f("sinh", (V,), V, "Hyperbolic sine."),
    _f("sort", (V,), V, "Sort by value, ascending (instant queries)."),
    _f("sort_by_label", (V, STR), V, "Sort by the given label values, ascending.",
       variadic=-1, experimental=True),
    _f("sort_by_label_desc", (V, STR), V, "Sort by the given label values, descending.",
       variadic=-1, experimental=True),
    _f("sort_desc", (V,), V, "Sort by value, descending (instant queries)."),
    _f("sqrt", (V,), V, "Square root."),
    _f("start", (), S, "Start time of the query in seconds since the epoch.", experimental=True),
    _f("end", (), S, "End time of the query in seconds since the epoch.", experimental=True),
    _f("stddev_over_time", (M,), V, "Population standard deviation of the samples in each range."),
    _f("stdvar_over_time", (M,), V, "Population variance of the samples in each range."),
    _f("step", (), S, "Resolution step of the query in seconds (0 for instant queries).",
       experimental=True),
    _f("sum_over_time", (M,), V, "Sum of the samples in each range."),
    _f("tan", (V,), V, "Tangent of radians."),
    _f("tanh", (V,), V, "Hyperbolic tangent."),
    _f("time", (), S, "Evaluation time in seconds since the epoch."),
    _f("timestamp", (V,), V, "Timestamp of each sample, in seconds since the epoch."),
    _f("ts_of_first_over_time", (M,), V, "Timestamp of the oldest sample in each range.",
       experimental=True),
    _f("ts_of_last_over_time", (M,), V, "Timestamp of the newest sample in each range.",
       experimental=True),
    _f("ts_of_max_over_time", (M,), V, "Timestamp of the (last) largest sample in each range.",
       experimental=True),
    _f("ts_of_min_over_time", (M,), V, "Timestamp of the (last) smallest sample in each range.",
       experimental=True),
    _f("vector", (S,), V, "A label-less one-element vector holding the scalar."),
    _f("year", (V,), V, "Year in UTC, of the value or of now.", variadic=1),
)

FUNCTIONS: dict[str, Function] = {fn.name: fn for fn in _FUNCTIONS}

AGGREGATIONS: dict[str, Aggregation] = {
    a.name: a for a in (
        Aggregation("sum", help="Sum over dimensions."),
        Aggregation("avg", help="Arithmetic mean over dimensions."),
        Aggregation("count", help="Number of elements."),
        Aggregation("min", help="Smallest value."),
        Aggregation("max", help="Largest value."),
        Aggregation("group", help="1 for every group."),
        Aggregation("stddev", help="Population standard deviation."),
        Aggregation("stdvar", help="Population variance."),
        Aggregation("topk", S, help="The k largest elements by value."),
        Aggregation("bottomk", S, help="The k smallest elements by value."),
        Aggregation("count_values", STR, help="Count of elements with the same value, per value."),
        Aggregation("quantile", S, help="The phi-quantile (0 <= phi <= 1) of the values."),
        Aggregation("limitk", S, experimental=True, help="Some k elements, chosen deterministically."),
        Aggregation("limit_ratio", S, experimental=True,
                    help="A deterministic sample of about the given ratio of elements."),
    )
}


def get_function(name: str) -> Function | None:
    return FUNCTIONS.get(name)
