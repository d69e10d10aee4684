"""The Graph tab: a braille line plot of a range query, with a legend whose entries toggle series."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import SelectionList, Static
from textual.widgets.selection_list import Selection

from thanostools.core.labels import format_labels
from thanostools.core.promql.engine import SeriesResult
from thanostools.core.timeutil import human_duration
from thanostools.tui.braille import PlotSeries, color_for, render_plot
from thanostools.tui.sources import Outcome

MAX_LEGEND = 200  # legend entries (toggles); series beyond them are always drawn


class Plot(Widget):
    """The plot area; redrawn from the series at its current size."""

    def __init__(self) -> None:
        super().__init__(id="plot")
        self.series: list[PlotSeries] = []
        self.x0 = 0
        self.x1 = 1
        self.step_ms = 0
        self.from_zero = False
        self.stacked = False
        self.message = "run a query to see a graph (range query over the time range)"

    def render(self) -> Text:
        if not self.series:
            return Text(self.message, style="dim")
        size = self.content_region.size
        lines = render_plot(self.series, self.x0, self.x1, size.width, size.height, from_zero=self.from_zero,
                            stacked=self.stacked, step_ms=self.step_ms)
        return Text("\n").join(lines)


def plotted_values(s: SeriesResult) -> np.ndarray:
    """The series' values as float64, a native histogram point as its count."""
    v = s.v.astype("float64")
    if s.h is not None:
        v = v.copy()
        for i, h in enumerate(s.h):
            if h is not None:
                v[i] = h.count
    return v


class GraphView(Vertical):
    """Range query plot. z: y axis from zero, s: stacked, a: all series on/off, space (legend): toggle one.
    Native histogram points are drawn as their count (the Table tab's b shows a histogram's buckets)."""

    HELP = __doc__
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("z", "from_zero", "Y from 0"),
        Binding("s", "stacked", "Stacked"),
        Binding("a", "toggle_all", "All on/off"),
    ]

    def __init__(self) -> None:
        super().__init__(id="graph")
        self.outcome: Outcome | None = None
        self.all_series: list[PlotSeries] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="graph-status")
        yield Plot()
        yield SelectionList[int](id="legend")

    @property
    def plot(self) -> Plot:
        return self.query_one(Plot)

    @property
    def legend(self) -> SelectionList[int]:
        return self.query_one("#legend", SelectionList)

    def show(self, outcome: Outcome | None, message: str = "") -> None:
        self.outcome = outcome
        plot = self.plot
        if outcome is None or outcome.kind != "range":
            self.all_series = []
            plot.series = []
            plot.message = message or plot.message
            self.legend.clear_options()
            self._status()
            plot.refresh()
            return
        self.all_series = [PlotSeries(s.t, plotted_values(s), color_for(i))
                           for i, s in enumerate(outcome.result.series)]
        plot.x0, plot.x1, plot.step_ms = outcome.start_ms, outcome.end_ms, outcome.step_ms
        self._fill_legend(outcome)
        self._apply_selection()

    def _fill_legend(self, outcome: Outcome) -> None:
        legend = self.legend
        legend.clear_options()
        entries = []
        for i, s in enumerate(outcome.result.series[:MAX_LEGEND]):
            label = Text("■ ", style=color_for(i))
            label.append(format_labels(s.labels))
            entries.append(Selection(label, i, True))
        legend.add_options(entries)

    def _apply_selection(self) -> None:
        chosen = set(self.legend.selected) if self.all_series else set()
        self.plot.series = [s for i, s in enumerate(self.all_series) if i in chosen or i >= MAX_LEGEND]
        self._status()
        self.plot.refresh()

    def _status(self) -> None:
        plot = self.plot
        if self.outcome is None or self.outcome.kind != "range":
            self.query_one("#graph-status", Static).update("")
            return
        more = len(self.all_series) - MAX_LEGEND
        parts = [f"{len(plot.series)}/{len(self.all_series)} series"
                 + (f" (legend: first {MAX_LEGEND}, the other {more} always drawn)" if more > 0 else ""),
                 f"step {human_duration(plot.step_ms)}",
                 f"y from zero: {'on' if plot.from_zero else 'off'} (z)",
                 f"stacked: {'on' if plot.stacked else 'off'} (s)", "a: all on/off"]
        text = " · ".join(parts)
        self.query_one("#graph-status", Static).update(Text(text, style="dim"))

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged[int]) -> None:
        self._apply_selection()

    def action_from_zero(self) -> None:
        self.plot.from_zero = not self.plot.from_zero
        self._status()
        self.plot.refresh()

    def action_stacked(self) -> None:
        self.plot.stacked = not self.plot.stacked
        self._status()
        self.plot.refresh()

    def action_toggle_all(self) -> None:
        legend = self.legend
        if len(legend.selected) == legend.option_count:
            legend.deselect_all()
        else:
            legend.select_all()
