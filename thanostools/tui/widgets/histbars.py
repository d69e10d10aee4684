"""The bucket bars under the Table tab: the selected row's native histogram, one bar per populated bucket."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from thanostools.core.goformat import format_g
from thanostools.core.promql.floathist import FloatHistogram
from thanostools.core.render.histjson import float_histogram_buckets

MAX_BARS = 60
BAR_WIDTH = 40
_EIGHTHS = " ▏▎▍▌▋▊▉"
_OPEN = {0: "(", 1: "[", 2: "(", 3: "["}
_CLOSE = {0: "]", 1: ")", 2: ")", 3: "]"}


def _bar(count: float, largest: float, width: int) -> str:
    """A horizontal bar of ``count / largest`` of ``width`` cells, in eighths of a cell (negative counts: none)."""
    if largest <= 0 or not count > 0:
        return ""
    eighths = round(min(count / largest, 1.0) * width * 8)
    return "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")


def bucket_bars(h: FloatHistogram, *, width: int = BAR_WIDTH, limit: int = MAX_BARS) -> list[str]:
    """One line per populated bucket, lowest first: the bucket (Prometheus' interval notation), a bar
    proportional to its count, the count; a last line says how many more there are past ``limit``."""
    buckets = float_histogram_buckets(h)
    if not buckets:
        return ["no populated buckets"]
    largest = max(float(b[3]) for b in buckets)
    names = [f"{_OPEN[rule]}{lower:.4g}, {upper:.4g}{_CLOSE[rule]}" for rule, lower, upper, _ in buckets[:limit]]
    pad = max(len(n) for n in names)
    lines = [f"{name:>{pad}} {_bar(float(b[3]), largest, width):<{width}} {format_g(float(b[3]))}"
             for name, b in zip(names, buckets, strict=False)]
    if len(buckets) > limit:
        lines.append(f"… {len(buckets) - limit} more buckets")
    return lines


class BucketBars(Static):
    """The buckets of the selected row's native histogram (b in the table shows or hides them)."""

    def __init__(self) -> None:
        super().__init__("", id="bucket-bars")
        self.display = False

    def show_histogram(self, title: str, h: FloatHistogram | None) -> None:
        text = Text(title + "\n", style="bold")
        if h is None:
            text.append("not a native histogram", style="dim")
        else:
            text.append(f"count {format_g(h.count)}  sum {format_g(h.sum)}\n", style="dim")
            text.append("\n".join(bucket_bars(h)))
        self.update(text)
