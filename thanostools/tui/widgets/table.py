"""The Table tab: one row per series (labels, value, timestamp); sortable; rows copy to the clipboard; a native
histogram's buckets as bars under the table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from thanostools.core.labels import format_labels
from thanostools.core.promql.floathist import FloatHistogram
from thanostools.core.render.apijson import format_sample_value, format_scalar_value
from thanostools.core.render.histjson import histogram_summary
from thanostools.core.timeutil import format_time_ms
from thanostools.tui.sources import Outcome
from thanostools.tui.widgets.histbars import BucketBars

MAX_ROWS = 10_000
COLUMNS = ("series", "value", "timestamp")


@dataclass(frozen=True)
class Row:
    series: str
    value: float
    value_text: str
    timestamp: int
    histogram: FloatHistogram | None = None  # the value is then the histogram's count

    def cells(self) -> tuple[str, str, str]:
        return self.series, self.value_text, format_time_ms(self.timestamp) if self.timestamp else ""

    def sort_key(self, column: int) -> tuple[int, float | str]:
        if column == 1:
            return (1, 0.0) if math.isnan(self.value) else (0, self.value)
        if column == 2:
            return 0, float(self.timestamp)
        return 0, self.series


def rows_of(outcome: Outcome) -> list[Row]:
    """Rows of any result type. A range vector (``x[5m]`` at an instant) shows its newest sample
    with the sample count; a range query shows the last point of each series."""
    result = outcome.result
    if result.result_type == "scalar" and result.scalar is not None:
        t, v = result.scalar
        return [Row("scalar", v, format_scalar_value(v), t)]
    if result.result_type == "string" and result.string is not None:
        return [Row("string", math.nan, result.string[1], result.string[0])]
    rows = []
    for s in result.series:
        if not s.t.shape[0]:
            continue
        h = s.h[-1] if s.h is not None else None
        v = float(s.v[-1]) if h is None else h.count
        text = format_sample_value(v) if h is None else histogram_summary(h)
        if result.result_type == "matrix":
            text += f"  ({s.t.shape[0]} samples)"
        rows.append(Row(format_labels(s.labels), v, text, int(s.t[-1]), h))
    return rows


class ResultTable(DataTable[str]):
    """Result rows. s: sort by the next column, r: reverse, c: copy the row, y: copy all rows (TSV), b: show or hide
    the buckets of the selected row's native histogram as bars (a histogram's value column shows its count, sum
    and populated buckets)."""

    HELP = __doc__
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "sort", "Sort"),
        Binding("r", "reverse", "Reverse"),
        Binding("c", "copy_row", "Copy row"),
        Binding("y", "copy_all", "Copy all"),
        Binding("b", "toggle_buckets", "Buckets"),
    ]

    def __init__(self) -> None:
        super().__init__(id="table", cursor_type="row", zebra_stripes=True)
        self.rows_data: list[Row] = []
        self.sort_column = 0
        self.sort_reverse = False
        self.truncated = 0
        self.shown: list[Row] = []

    def on_mount(self) -> None:
        self.add_columns(*COLUMNS)

    def show(self, outcome: Outcome | None) -> None:
        self.rows_data = rows_of(outcome) if outcome is not None else []
        self._fill()

    def _fill(self) -> None:
        rows = sorted(self.rows_data, key=lambda r: r.sort_key(self.sort_column), reverse=self.sort_reverse)
        self.truncated = max(0, len(rows) - MAX_ROWS)
        self.shown = rows[:MAX_ROWS]
        self.clear()
        self.add_rows(r.cells() for r in self.shown)
        self._show_buckets()
        arrow = "▼" if self.sort_reverse else "▲"
        for i, column in enumerate(self.columns.values()):
            column.label = Text(COLUMNS[i] + (f" {arrow}" if i == self.sort_column else ""))
        self.refresh()

    def _bars(self) -> BucketBars | None:
        found = self.screen.query(BucketBars)
        return found.first() if found else None

    def _show_buckets(self) -> None:
        bars = self._bars()
        if bars is None or not bars.display:
            return
        row = self.shown[self.cursor_row] if 0 <= self.cursor_row < len(self.shown) else None
        if row is None:
            bars.show_histogram("no row selected", None)
        else:
            bars.show_histogram(row.series, row.histogram)

    def action_toggle_buckets(self) -> None:
        bars = self._bars()
        if bars is not None:
            bars.display = not bars.display
            self._show_buckets()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_buckets()

    def action_sort(self) -> None:
        self.sort_column = (self.sort_column + 1) % len(COLUMNS)
        self._fill()

    def action_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._fill()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        if event.column_index == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = event.column_index, False
        self._fill()

    def action_copy_row(self) -> None:
        rows = self.shown
        if rows and 0 <= self.cursor_row < len(rows):
            text = "\t".join(rows[self.cursor_row].cells())
            self.app.copy_to_clipboard(text)
            self.notify(text, title="Copied row")

    def action_copy_all(self) -> None:
        rows = self.shown
        self.app.copy_to_clipboard("\n".join("\t".join(r.cells()) for r in rows))
        self.notify(f"{len(rows)} rows", title="Copied")
