"""Result tabs (Table, Graph, Explain, Raw) and the stats line under them."""

from __future__ import annotations

from collections.abc import Iterator

from rich.text import Text
from textual.widgets import Static, TabbedContent, TabPane, TextArea

from thanostools.core.timeutil import format_time_ms, human_duration
from thanostools.tui.sources import Outcome
from thanostools.tui.widgets.explainview import ExplainTree
from thanostools.tui.widgets.graph import GraphView
from thanostools.tui.widgets.histbars import BucketBars
from thanostools.tui.widgets.table import ResultTable

TABS = ("table", "graph", "explain", "raw")
MAX_RAW_CHARS = 200_000


class RawView(TextArea):
    """The JSON the HTTP API returns for the query (read-only; export it with ctrl+s)."""

    HELP = __doc__

    def __init__(self) -> None:
        super().__init__("", id="raw", read_only=True, soft_wrap=True, show_line_numbers=False)

    def show(self, outcomes: list[Outcome]) -> None:
        parts = []
        for o in outcomes:
            if o.kind == "range":
                where = (f"range query {format_time_ms(o.start_ms)} … {format_time_ms(o.end_ms)} "
                         f"step {human_duration(o.step_ms)}")
            else:
                where = f"instant query at {format_time_ms(o.time_ms)}"
            body = o.raw_json
            if len(body) > MAX_RAW_CHARS:
                more = len(o.raw_json) - MAX_RAW_CHARS
                body = body[:MAX_RAW_CHARS] + f"\n… {more} more characters (export to see all)"
            parts.append(f"# {where}\n{body}")
        self.load_text("\n\n".join(parts))


class ResultTabs(TabbedContent):
    """Results: Table (instant query), Graph (range query), Explain (tree), Raw (API JSON). 1-4 switch tabs."""

    def __init__(self) -> None:
        super().__init__(id="results", initial="table-tab")

    @staticmethod
    def panes() -> Iterator[TabPane]:
        yield TabPane("Table", ResultTable(), BucketBars(), id="table-tab")
        yield TabPane("Graph", GraphView(), id="graph-tab")
        yield TabPane("Explain", ExplainTree(), id="explain-tab")
        yield TabPane("Raw", RawView(), id="raw-tab")

    @property
    def current(self) -> str:
        return (self.active or "table-tab").removesuffix("-tab")

    def show_tab(self, name: str) -> None:
        self.active = f"{name}-tab"


def stats_text(outcome: Outcome, other: Outcome | None = None) -> Text:
    """``instant · 12 series · 3,456 samples queried · peak 120 · 42 ms · 0 warnings`` (the samples and peak
    are Prometheus's ``totalQueryableSamples`` and ``peakSamples``)."""
    text = Text()
    text.append(outcome.kind, style="bold")
    text.append(f" · {outcome.series_count:,} series · {outcome.samples:,} {outcome.samples_what}")
    if outcome.peak_samples is not None:
        text.append(f" · peak {outcome.peak_samples:,}")
    text.append(f" · {outcome.elapsed_s * 1000:,.0f} ms")
    n = len(outcome.warnings)
    text.append(f" · {n} warning{'s' if n != 1 else ''}", style="bold yellow" if n else "")
    if n:
        text.append(f": {outcome.warnings[0]}", style="yellow")
    if other is not None:
        text.append(f"   ({other.kind}: {other.series_count:,} series, {other.elapsed_s * 1000:,.0f} ms)", style="dim")
    return text


class StatsLine(Static):
    """Series, samples, elapsed time and warnings of the last query."""

    def __init__(self) -> None:
        super().__init__("ready · enter or ctrl+j runs the query · f1 help · ctrl+p commands", id="stats")
