"""Query history: search as you type, enter runs, tab puts the query in the editor, ctrl+s stars."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from thanostools.core.timeutil import format_time_ms
from thanostools.tui.history import History, HistoryEntry


@dataclass(frozen=True)
class HistoryChoice:
    query: str
    run: bool


class HistoryScreen(ModalScreen[HistoryChoice | None]):
    """Type to search (every word must match). enter: run · tab: edit · ctrl+s: star/unstar ·
    ctrl+d: delete · up/down: move · escape: close. Starred queries come first and are never pruned."""

    HELP = __doc__
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("tab", "choose(False)", "Edit", priority=True),
        Binding("ctrl+s", "star", "Star", priority=True),
        Binding("ctrl+d", "delete", "Delete", priority=True),
        Binding("down", "move(1)", "Down", show=False, priority=True),
        Binding("up", "move(-1)", "Up", show=False, priority=True),
    ]

    def __init__(self, history: History) -> None:
        super().__init__(classes="dialog")
        self.history = history
        self.entries: list[HistoryEntry] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box list-box"):
            yield Label("History", classes="dialog-title")
            yield Input(placeholder="search history…", id="history-search")
            yield OptionList(id="history-list")

    def on_mount(self) -> None:
        self.query_one("#history-list", OptionList).can_focus = False
        self._fill("")

    def _fill(self, text: str) -> None:
        self.entries = self.history.search(text)
        options = self.query_one("#history-list", OptionList)
        options.clear_options()
        options.add_options([Option(self._prompt(e)) for e in self.entries])
        options.highlighted = 0 if self.entries else None

    @staticmethod
    def _prompt(entry: HistoryEntry) -> Text:
        text = Text("★ " if entry.starred else "  ", style="bold yellow")
        text.append(entry.query.replace("\n", " ⏎ "))
        text.append(f"   {format_time_ms(entry.last_run_ms)} · {entry.runs}×", style="dim")
        return text

    def on_input_changed(self, event: Input.Changed) -> None:
        self._fill(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_choose(True)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.action_choose(True)

    def _current(self) -> HistoryEntry | None:
        index = self.query_one("#history-list", OptionList).highlighted
        return self.entries[index] if index is not None and 0 <= index < len(self.entries) else None

    def action_choose(self, run: bool) -> None:
        entry = self._current()
        self.dismiss(HistoryChoice(entry.query, run) if entry else None)

    def action_move(self, delta: int) -> None:
        options = self.query_one("#history-list", OptionList)
        if self.entries:
            options.highlighted = ((options.highlighted or 0) + delta) % len(self.entries)

    def action_star(self) -> None:
        entry = self._current()
        if entry is not None:
            self.history.toggle_star(entry.query)
            self._refill_keeping(entry.query)

    def action_delete(self) -> None:
        entry = self._current()
        if entry is not None:
            self.history.remove(entry.query)
            self._fill(self.query_one("#history-search", Input).value)

    def _refill_keeping(self, query: str) -> None:
        self._fill(self.query_one("#history-search", Input).value)
        for i, e in enumerate(self.entries):
            if e.query == query:
                self.query_one("#history-list", OptionList).highlighted = i

    def action_close(self) -> None:
        self.dismiss(None)
