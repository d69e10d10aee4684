"""The Textual application: source, history and completion cache shared by the screens; global keys;
the command palette with every action."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from thanostools.core.errors import ThanosToolsError
from thanostools.core.inspect import BlockInfo
from thanostools.core.promql.features import NO_PROMQL_FEATURES
from thanostools.core.timeutil import now_ms
from thanostools.tui.complete import CompletionCache
from thanostools.tui.history import History
from thanostools.tui.screens.console import ConsoleScreen
from thanostools.tui.sources import BucketSource, Source
from thanostools.tui.timectl import TimeState

log = logging.getLogger(__name__)


@dataclass
class AppConfig:
    source: Source
    allow_admin: bool = False
    history: History | None = None
    initial_query: str = ""
    promql_features: frozenset[str] = NO_PROMQL_FEATURES
    now: Callable[[], int] = now_ms  # tests fix the clock
    cursor_blink: bool = True
    follow_data: bool = True  # start with the time range on the newest block when "now" shows nothing


class ThanosToolsApp(App[None]):
    """thanos-tools: PromQL console and block browser."""

    CSS_PATH = "styles.tcss"
    TITLE = "thanos-tools"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help"),
        Binding("f2,ctrl+r", "history", "History"),
        Binding("f3,ctrl+t", "metrics", "Metrics"),
        Binding("f4,ctrl+b", "blocks", "Blocks"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, config: AppConfig) -> None:
        super().__init__()
        self.config = config
        self.source = config.source
        self.history = config.history if config.history is not None else History.default()
        self.completion_cache = CompletionCache(self.history.queries)
        self.now: Callable[[], int] = config.now
        self.clipboard_text = ""

    def on_mount(self) -> None:
        self.sub_title = self.source.describe()
        self.push_screen(ConsoleScreen(self.config.initial_query,
                                       promql_features=self.config.promql_features))
        if self.history.load_error:
            self.notify(self.history.load_error, severity="warning")
        if self.config.follow_data and isinstance(self.source, BucketSource):
            self.run_worker(self._newest_data, thread=True, group="startup", exit_on_error=False)

    def _newest_data(self) -> None:
        """A bucket whose data ended long ago shows nothing at "now": start at its newest block instead."""
        assert self.source.workspace is not None
        try:
            blocks = self.source.workspace.blocks()
        except ThanosToolsError as exc:
            self.call_from_thread(self.notify, str(exc), title="Listing failed", severity="error")
            return
        newest = max((b.meta.max_time for b in blocks), default=None)
        if newest is not None and newest < self.now() - TimeState().range_ms:
            self.call_from_thread(self._move_end, newest)

    def _move_end(self, end_ms: int) -> None:
        from dataclasses import replace

        console = self.console_screen
        if console is None or not console.is_mounted:  # the listing can finish before the console is on screen
            self.set_timer(0.05, partial(self._move_end, end_ms))
            return
        if console.time_state.end_ms is None:
            console.set_time(replace(console.time_state, end_ms=end_ms), rerun=bool(console.query_text))
            self.notify("the bucket has no recent data: the time range ends at its newest block (0 goes to now)")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Workers run with exit_on_error=False so that one failure does not end the app; it is shown, never lost."""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            log.error("background task %s failed", event.worker.name, exc_info=error)
            self.notify(f"{type(error).__name__}: {error}", title=f"{event.worker.group} failed", severity="error")

    @property
    def console_screen(self) -> ConsoleScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, ConsoleScreen):
                return screen
        return None

    # --- source ----------------------------------------------------------------------------------

    def source_changed(self) -> None:
        if isinstance(self.source, BucketSource):
            self.source.refresh()
        self.completion_cache.clear()
        self.sub_title = self.source.describe()

    def scope_to(self, block: BlockInfo | None) -> None:
        """Scope console queries to one block (None: the whole bucket) and show its time range."""
        from dataclasses import replace

        try:
            self.source = self.source.scoped(block.ulid if block else None)
        except ThanosToolsError as exc:
            self.notify(str(exc), severity="error")
            return
        self.completion_cache.clear()
        self.sub_title = self.source.describe()
        console = self.console_screen
        if console is not None and block is not None:
            state = replace(console.time_state, end_ms=block.meta.max_time, eval_ms=None,
                            range_ms=max(60_000, block.meta.max_time - block.meta.min_time))
            console.set_time(state, rerun=True)
        elif console is not None:
            console.rerun()

    # --- clipboard -------------------------------------------------------------------------------

    def copy_to_clipboard(self, text: str) -> None:
        self.clipboard_text = text
        super().copy_to_clipboard(text)

    # --- global actions --------------------------------------------------------------------------

    def action_help(self) -> None:
        from thanostools.tui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.focused, dict(self.screen.active_bindings)))

    def action_history(self) -> None:
        from thanostools.tui.screens.history import HistoryChoice, HistoryScreen

        def chosen(choice: HistoryChoice | None) -> None:
            console = self.console_screen
            if choice is not None and console is not None:
                console.load_query(choice.query, run=choice.run)

        self._to_console()
        self.push_screen(HistoryScreen(self.history), chosen)

    def action_metrics(self) -> None:
        from thanostools.tui.screens.metrics import MetricsScreen

        console = self.console_screen
        if console is None:
            return
        now = self.now()
        start, end = console.time_state.start(now), console.time_state.end(now)
        source = self.source

        def chosen(metric: str | None) -> None:
            if metric:
                console.insert_at_cursor(metric)

        self._to_console()
        self.push_screen(MetricsScreen(partial(source.metric_counts, start, end)), chosen)

    def action_blocks(self) -> None:
        from thanostools.tui.screens.blocks import BlocksScreen

        if isinstance(self.screen, BlocksScreen):
            return
        workspace = self.source.workspace if isinstance(self.source, BucketSource) else None
        if workspace is None:
            self.notify(f"the block browser needs a bucket; this source is {self.source.describe()}",
                        severity="warning")
            return
        self.push_screen(BlocksScreen(workspace))

    def action_console(self) -> None:
        self._to_console()

    def _to_console(self) -> None:
        while len(self.screen_stack) > 2 and not isinstance(self.screen, ConsoleScreen):
            self.pop_screen()

    # --- command palette -------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help for the focused widget", "Keys and what they do (F1)", self.action_help)
        yield SystemCommand("History", "Search, re-run and star past queries (F2, ctrl+r)", self.action_history)
        yield SystemCommand("Metrics explorer", "Fuzzy search metric names with series counts (F3, ctrl+t)",
                            self.action_metrics)
        yield SystemCommand("Block browser", "Timeline, details and marks of the bucket's blocks (F4, ctrl+b)",
                            self.action_blocks)
        yield SystemCommand("Console", "Back to the PromQL console", self.action_console)
        commands = getattr(screen, "commands", None)
        if callable(commands):
            for command in commands():
                yield SystemCommand(command.title, command.help, command.action)
