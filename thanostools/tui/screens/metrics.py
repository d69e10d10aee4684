"""Metrics explorer: fuzzy search over metric names with series counts; enter inserts at the cursor."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from thanostools.core.errors import ThanosToolsError
from thanostools.tui.complete import fuzzy_match

MAX_SHOWN = 500


def rank(counts: dict[str, int], query: str) -> list[tuple[str, int, list[int]]]:
    """(name, series, matched positions), best fuzzy matches first, then by series count."""
    hits = []
    for name, n in counts.items():
        m = fuzzy_match(query, name)
        if m is not None:
            hits.append((-m[0], -n, name, m[1]))
    hits.sort()
    return [(name, -neg_n, pos) for _, neg_n, name, pos in hits[:MAX_SHOWN]]


class MetricsScreen(ModalScreen[str | None]):
    """Type to fuzzy-search metric names (series counts on the right). enter inserts the metric at the
    editor's cursor; up/down move; escape closes."""

    HELP = __doc__
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("down", "move(1)", "Down", show=False, priority=True),
        Binding("up", "move(-1)", "Up", show=False, priority=True),
    ]

    def __init__(self, load: Callable[[], dict[str, int]]) -> None:
        super().__init__(classes="dialog")
        self.load = load
        self.counts: dict[str, int] = {}
        self.shown: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box list-box"):
            yield Label("Metrics", classes="dialog-title", id="metrics-title")
            yield Input(placeholder="fuzzy search metric names…", id="metrics-search")
            yield OptionList(Option(Text("loading series counts…", style="dim italic"), disabled=True),
                             id="metrics-list")

    def on_mount(self) -> None:
        self.query_one("#metrics-list", OptionList).can_focus = False
        self._fetch()

    @work(thread=True, exclusive=True, group="metrics")
    def _fetch(self) -> None:
        try:
            counts = self.load()
        except ThanosToolsError as exc:
            self.app.call_from_thread(self.notify, str(exc), title="Metrics", severity="error")
            counts = {}
        self.app.call_from_thread(self._loaded, counts)

    def _loaded(self, counts: dict[str, int]) -> None:
        self.counts = counts
        total = sum(counts.values())
        self.query_one("#metrics-title", Label).update(f"Metrics · {len(counts):,} names · {total:,} series")
        self._fill(self.query_one("#metrics-search", Input).value)

    def _fill(self, query: str) -> None:
        ranked = rank(self.counts, query)
        self.shown = [name for name, _, _ in ranked]
        options = self.query_one("#metrics-list", OptionList)
        options.clear_options()
        width = max((len(n) for n in self.shown), default=0)
        for name, n, positions in ranked:
            text = Text(name.ljust(width))
            for p in positions:
                text.stylize("bold underline #4fc1ff", p, p + 1)
            text.append(f"  {n:>9,}", style="dim")
            options.add_option(Option(text))
        options.highlighted = 0 if self.shown else None

    def on_input_changed(self, event: Input.Changed) -> None:
        self._fill(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._choose()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self._choose()

    def _choose(self) -> None:
        index = self.query_one("#metrics-list", OptionList).highlighted
        self.dismiss(self.shown[index] if index is not None and 0 <= index < len(self.shown) else None)

    def action_move(self, delta: int) -> None:
        options = self.query_one("#metrics-list", OptionList)
        if self.shown:
            options.highlighted = ((options.highlighted or 0) + delta) % len(self.shown)

    def action_close(self) -> None:
        self.dismiss(None)
