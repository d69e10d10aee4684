"""The console: editor, options, result tabs and stats. Queries and label lookups run in thread workers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Footer, Header, Input, Static, TabbedContent

from thanostools.core.errors import ConfigError, ParseError, ThanosToolsError
from thanostools.core.promql.features import NO_PROMQL_FEATURES
from thanostools.tui import complete
from thanostools.tui.complete import CompletionCache, Context, Where
from thanostools.tui.explain import ExplainNode, build_tree, flatten, summarize
from thanostools.tui.sources import Cancelled, CancelToken, Outcome, QuerySettings
from thanostools.tui.timectl import TimeState, parse_end, parse_step
from thanostools.tui.widgets.completion import CompletionMenu
from thanostools.tui.widgets.editor import QueryEditor
from thanostools.tui.widgets.explainview import ExplainTree
from thanostools.tui.widgets.graph import GraphView, Plot
from thanostools.tui.widgets.results import RawView, ResultTabs, StatsLine, stats_text
from thanostools.tui.widgets.table import ResultTable
from thanostools.tui.widgets.timebar import OptionsBar

if TYPE_CHECKING:
    from thanostools.tui.app import ThanosToolsApp

SYNTAX_CHECK_DELAY_S = 0.3
_AUTO_WHERE = frozenset({Where.LABEL_NAME, Where.LABEL_VALUE, Where.DURATION})


@dataclass(frozen=True)
class Plan:
    """One query run: what to evaluate and when (resolved on the UI thread, used by workers)."""

    query: str
    generation: int
    time_ms: int
    start_ms: int
    end_ms: int
    step_ms: int
    settings: QuerySettings
    token: CancelToken


@dataclass(frozen=True)
class Command:
    title: str
    help: str
    action: Callable[[], object]


def error_caret(text: str, exc: ParseError) -> Text:
    """The parse error with the offending line and a caret under the position."""
    out = Text(str(exc), style="bold red")
    if exc.position is None:
        return out
    pos = min(max(exc.position, 0), len(text))
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line = text[line_start:line_end if line_end >= 0 else len(text)]
    out.append("\n  " + line, style="")
    out.append("\n  " + " " * (pos - line_start) + "^", style="bold red")
    return out


class ConsoleScreen(Screen[None]):
    """PromQL console. Results keys: +/- zoom, [/] pan, 0 now, 1-4 tabs, d dedup, p partial response,
    m max source resolution, t auto-step resolution, e back to the editor, ctrl+s export."""

    HELP = __doc__
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+j,ctrl+enter", "run", "Run", priority=True),
        Binding("escape", "cancel", "Cancel", show=False),
        Binding("ctrl+s", "export", "Export"),
        Binding("+", "zoom(1)", "Zoom in", show=False),
        Binding("-", "zoom(-1)", "Zoom out", show=False),
        Binding("[", "pan(-1)", "Back", show=False),
        Binding("]", "pan(1)", "Forward", show=False),
        Binding("0", "now", "Now", show=False),
        Binding("1", "tab('table')", "Table", show=False),
        Binding("2", "tab('graph')", "Graph", show=False),
        Binding("3", "tab('explain')", "Explain", show=False),
        Binding("4", "tab('raw')", "Raw", show=False),
        Binding("d", "toggle_dedup", "Dedup", show=False),
        Binding("p", "toggle_partial", "Partial", show=False),
        Binding("m", "cycle_max_resolution", "Max res", show=False),
        Binding("t", "cycle_step_resolution", "Step res", show=False),
        Binding("e", "focus_editor", "Editor", show=False),
    ]

    def __init__(self, initial_query: str = "", *, promql_features: frozenset[str] = NO_PROMQL_FEATURES) -> None:
        super().__init__(id="console")
        self.initial_query = initial_query
        self.time_state = TimeState()
        self.settings = QuerySettings(promql_features=promql_features)
        self.instant: Outcome | None = None
        self.range_outcome: Outcome | None = None
        self.query_text = ""
        self.generation = 0
        self.shown: dict[str, int] = {}  # tab kind → generation it shows
        self.token: CancelToken | None = None
        self.active: set[tuple[int, str]] = set()  # (generation, kind) of queries in flight
        self._syntax_timer: Timer | None = None

    @property
    def tapp(self) -> ThanosToolsApp:
        return cast("ThanosToolsApp", self.app)

    @property
    def cache(self) -> CompletionCache:
        return self.tapp.completion_cache

    # --- layout ----------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="top"):
            yield QueryEditor(self.initial_query, id="editor")
            yield Static("", id="parse-error")
            yield OptionsBar(self.time_state, self.settings)
        with ResultTabs():
            yield from ResultTabs.panes()
        yield StatsLine()
        yield Footer()
        yield CompletionMenu()

    def on_mount(self) -> None:
        self.editor.cursor_blink = self.tapp.config.cursor_blink
        self.editor.move_cursor(self.editor.document.end)
        self.query_one(CompletionMenu).close()
        self.query_one("#parse-error", Static).display = False
        self.editor.focus()

    @property
    def editor(self) -> QueryEditor:
        return self.query_one(QueryEditor)

    @property
    def tabs(self) -> ResultTabs:
        return self.query_one(ResultTabs)

    @property
    def menu(self) -> CompletionMenu:
        return self.query_one(CompletionMenu)

    def set_stats(self, text: str | Text) -> None:
        self.query_one(StatsLine).update(text)

    # --- running ---------------------------------------------------------------------------------

    def on_query_editor_submitted(self, event: QueryEditor.Submitted) -> None:
        event.stop()
        self.action_run()

    def action_run(self) -> None:
        text = self.editor.text.strip()
        self.menu.close()
        if not text:
            self.notify("type a PromQL expression first", severity="warning")
            return
        if not self.check_syntax(show=True):
            return
        self.tapp.history.add(text, self.tapp.now())
        self.query_text = text
        self.rerun()

    def rerun(self) -> None:
        """Run the current query for the instant tabs, plus the active tab's own query."""
        if not self.query_text:
            return
        if self.token is not None:
            self.token.cancel()
        self.token = CancelToken()
        self.generation += 1
        self._start("instant")
        if self.tabs.current in ("graph", "explain"):
            self._start(self.tabs.current)

    def _plan(self) -> Plan:
        assert self.token is not None
        now = self.tapp.now()
        state = self.time_state
        return Plan(self.query_text, self.generation, state.eval_time(now), state.start(now), state.end(now),
                    state.step(self.plot_cells()), self.settings, self.token)

    def plot_cells(self) -> int:
        width = self.query_one(Plot).content_region.width
        return width if width > 10 else max(20, self.size.width - 12)

    def _start(self, kind: str) -> None:
        if self.shown.get(kind) == self.generation or not self.query_text:
            return
        self.shown[kind] = self.generation
        plan = self._plan()
        self.active.add((plan.generation, kind))
        self.set_stats(Text(f"running {kind} query… (escape cancels)", style="italic"))
        job = {"instant": self._run_instant, "graph": self._run_range, "explain": self._run_explain}[kind]
        self.run_worker(partial(self._guarded, job, plan, kind), thread=True, group=kind, exclusive=True,
                        exit_on_error=False)

    @property
    def running(self) -> bool:
        return any(gen == self.generation for gen, _ in self.active)

    def _guarded(self, job: Callable[[Plan], None], plan: Plan, kind: str) -> None:
        """Worker body: every error ends as a notification, never as a crash of the UI."""
        try:
            job(plan)
        except Cancelled:
            self.app.call_from_thread(self._finished, plan, kind, "cancelled")
        except ThanosToolsError as exc:
            self.app.call_from_thread(self._failed, plan, kind, str(exc))
        except Exception as exc:  # a bug of ours: show it, keep the UI alive
            self.app.call_from_thread(self._failed, plan, kind, f"internal error: {type(exc).__name__}: {exc}")
        else:
            self.app.call_from_thread(self._finished, plan, kind, "")

    def _run_instant(self, plan: Plan) -> None:
        out = self.tapp.source.instant(plan.query, plan.time_ms, plan.settings, plan.token)
        plan.token.check()
        self.app.call_from_thread(self._show_instant, plan, out)

    def _run_range(self, plan: Plan) -> None:
        out = self.tapp.source.range(plan.query, plan.start_ms, plan.end_ms, plan.step_ms, plan.settings, plan.token)
        plan.token.check()
        self.app.call_from_thread(self._show_range, plan, out)

    def _run_explain(self, plan: Plan) -> None:
        from thanostools.core.promql.parser.parse import parse_expr

        root = build_tree(parse_expr(plan.query, features=self.settings.promql_features))
        self.app.call_from_thread(self._show_explain, plan, root, None, "")
        for i, node in enumerate(flatten(root)):
            plan.token.check()
            self.app.call_from_thread(self._show_explain, plan, None, i, self._explain_node(node, plan))

    def _show_explain(self, plan: Plan, root: ExplainNode | None, index: int | None, summary: str) -> None:
        if not self._current(plan):
            return
        tree = self.query_one(ExplainTree)
        if root is not None:
            tree.show(root)
        if index is not None:
            tree.set_summary(index, summary)

    def _explain_node(self, node: ExplainNode, plan: Plan) -> str:
        if not node.needs_eval:
            return ""
        try:
            out = self.tapp.source.instant(node.text, plan.time_ms, plan.settings, plan.token)
        except Cancelled:
            raise
        except ThanosToolsError as exc:
            return f"error: {exc}"
        return summarize(out.result)

    def _current(self, plan: Plan) -> bool:
        return plan.generation == self.generation and not plan.token.cancelled

    def _show_instant(self, plan: Plan, out: Outcome) -> None:
        if not self._current(plan):
            return
        self.instant = out
        self.query_one(ResultTable).show(out)
        self._show_raw()
        self._update_stats()

    def _show_range(self, plan: Plan, out: Outcome) -> None:
        if not self._current(plan):
            return
        self.range_outcome = out
        self.query_one(GraphView).show(out)
        self._show_raw()
        self._update_stats()

    def _show_raw(self) -> None:
        outs = [o for o in (self.instant, self.range_outcome) if o is not None and o.query == self.query_text]
        self.query_one(RawView).show(outs)

    def _update_stats(self) -> None:
        main, other = self.current_outcome(), None
        if main is None:
            return
        if main is self.range_outcome and self.instant is not None:
            other = self.instant
        table = self.query_one(ResultTable)
        text = stats_text(main, other)
        if table.truncated and main is self.instant:
            text.append(f" · table shows the first {len(table.shown):,} rows", style="yellow")
        self.set_stats(text)

    def _finished(self, plan: Plan, kind: str, status: str) -> None:
        self.active.discard((plan.generation, kind))
        if status == "cancelled" and plan.generation == self.generation:
            self.set_stats(Text("query cancelled", style="bold yellow"))
            self.shown = {}

    def _failed(self, plan: Plan, kind: str, message: str) -> None:
        self.active.discard((plan.generation, kind))
        if plan.generation != self.generation:
            return
        self.shown = {k: g for k, g in self.shown.items() if g != plan.generation}
        self.set_stats(Text(f"error: {message}", style="bold red"))
        self.notify(message, title="Query failed", severity="error", timeout=8)

    def action_cancel(self) -> None:
        """Escape: close the completion menu, else cancel the running query, else leave the editor."""
        if self.menu.is_open:
            self.menu.close()
            self.editor.menu_open = False
            return
        if not self.running:
            if self.editor.has_focus:
                self.focus_results()
            return
        if self.token is not None:
            self.token.cancel()
            for group in ("instant", "graph", "explain"):
                self.workers.cancel_group(self, group)
            self.active.clear()
            self.shown = {}
            self.set_stats(Text("query cancelled", style="bold yellow"))

    def current_outcome(self) -> Outcome | None:
        """The range outcome when the Graph tab is showing, else the instant one."""
        if self.tabs.current == "graph" and self.range_outcome is not None:
            return self.range_outcome
        return self.instant

    # --- tabs --------------------------------------------------------------------------------------

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        focused = self.focused
        if focused is not None and focused is not self.editor and self.tabs in focused.ancestors_with_self:
            self.focus_results()
        kind = self.tabs.current
        if kind in ("graph", "explain") and self.query_text and self.token is not None:
            self._start(kind)
        self._update_stats()

    def action_tab(self, name: str) -> None:
        self.tabs.show_tab(name)

    def action_focus_editor(self) -> None:
        self.editor.focus()

    def focus_results(self) -> None:
        pane = self.tabs.get_pane(self.tabs.active)
        target = next((w for w in pane.walk_children(Widget) if w.focusable), None)
        (target or self.tabs).focus()

    # --- syntax ----------------------------------------------------------------------------------

    def check_syntax(self, *, show: bool) -> bool:
        from thanostools.core.promql.parser.parse import parse_expr

        text = self.editor.text
        error = self.query_one("#parse-error", Static)
        try:
            if text.strip():
                parse_expr(text, features=self.settings.promql_features)
        except ParseError as exc:
            self.editor.mark_error(exc.position)
            if show:
                error.update(error_caret(text, exc))
                error.display = True
            return False
        self.editor.mark_error(None)
        error.display = False
        return True

    def on_text_area_changed(self, event: QueryEditor.Changed) -> None:
        if event.text_area is not self.editor:
            return
        self.editor.mark_error(None)
        if self._syntax_timer is not None:
            self._syntax_timer.stop()
        self._syntax_timer = self.set_timer(SYNTAX_CHECK_DELAY_S, partial(self.check_syntax, show=True))
        self.update_completion(explicit=False)

    def on_text_area_selection_changed(self, event: QueryEditor.SelectionChanged) -> None:
        if event.text_area is self.editor and self.menu.is_open:
            self.update_completion(explicit=True)

    # --- completion ------------------------------------------------------------------------------

    def update_completion(self, *, explicit: bool) -> None:
        editor = self.editor
        ctx = complete.context_at(editor.text, editor.cursor_offset)
        if not explicit and not (ctx.where in _AUTO_WHERE or (ctx.prefix and ctx.where is not Where.NOTHING)):
            self.menu.close()
            return
        items = complete.candidates(ctx, self.cache)
        self._fetch_missing()
        at = editor.cursor_screen_offset
        if items is None:
            self.menu.show_loading(ctx, at)
        elif not items or (len(items) == 1 and items[0].insert == ctx.prefix):
            self.menu.close()
        else:
            self.menu.open(items, ctx, at)
        self.editor.menu_open = self.menu.is_open

    def on_query_editor_completion_key(self, event: QueryEditor.CompletionKey) -> None:
        event.stop()
        menu = self.menu
        if event.key == "open":
            self.update_completion(explicit=True)
            if not menu.is_open:
                self.focus_next()
        elif event.key == "close":
            menu.close()
        elif event.key in ("up", "down"):
            menu.move(-1 if event.key == "up" else 1)
        elif event.key == "accept" or (event.key == "enter" and menu.navigated):
            self.accept_completion()
        elif event.key == "enter":
            menu.close()
            if "\n" in self.editor.text:
                self.editor.insert("\n")
            else:
                self.action_run()
        self.editor.menu_open = menu.is_open

    def on_option_list_option_selected(self, event: object) -> None:
        if self.menu.is_open:
            self.accept_completion()

    def accept_completion(self) -> None:
        item, ctx = self.menu.selected(), self.menu.context
        self.menu.close()
        self.editor.menu_open = False
        if item is None or ctx is None:
            return
        self.editor.replace_span(ctx.start, self.editor.cursor_offset, item.insert)
        if item.kind is complete.Kind.HISTORY:
            self.menu.close()

    def _label_range(self) -> tuple[int, int]:
        now = self.tapp.now()
        return self.time_state.start(now), self.time_state.end(now)

    def _fetch_missing(self) -> None:
        start, end = self._label_range()
        for key in self.cache.take_missing():
            self.run_worker(partial(self._fetch_key, key, start, end), thread=True, group="labels",
                            exit_on_error=False)

    def _fetch_key(self, key: complete.Key, start: int, end: int) -> None:
        try:
            values = complete.fetch(self.tapp.source, key, start, end)
        except ThanosToolsError:
            self.cache.failed(key)
            return
        self.app.call_from_thread(self._fetched, key, values)

    def _fetched(self, key: complete.Key, values: list[str]) -> None:
        self.cache.put(key, values)
        if self.menu.is_open and self.editor.has_focus:
            self.update_completion(explicit=True)

    def completion_context(self) -> Context:
        return complete.context_at(self.editor.text, self.editor.cursor_offset)

    # --- time and options ------------------------------------------------------------------------

    def set_time(self, state: TimeState, *, rerun: bool = True) -> None:
        self.time_state = state
        self.query_one(OptionsBar).show(state, self.settings)
        if rerun:
            self.rerun()

    def set_settings(self, settings: QuerySettings) -> None:
        self.settings = settings
        self.query_one(OptionsBar).show(self.time_state, settings)
        self.rerun()

    def action_zoom(self, direction: int) -> None:
        self.set_time(self.time_state.zoom(direction))

    def action_pan(self, direction: int) -> None:
        self.set_time(self.time_state.pan(direction, self.tapp.now()))

    def action_now(self) -> None:
        self.set_time(self.time_state.now())

    def action_toggle_dedup(self) -> None:
        self.set_settings(dataclasses.replace(self.settings, dedup=not self.settings.dedup))
        self.notify(f"dedup {'on' if self.settings.dedup else 'off'}")

    def action_toggle_partial(self) -> None:
        self.set_settings(dataclasses.replace(self.settings, partial_response=not self.settings.partial_response))
        self.notify(f"partial response {'on' if self.settings.partial_response else 'off'}")

    def action_cycle_max_resolution(self) -> None:
        choices = ("auto", "raw", "5m", "1h")
        nxt = choices[(choices.index(self.settings.max_source_resolution) + 1) % len(choices)]
        self.set_settings(dataclasses.replace(self.settings, max_source_resolution=nxt))
        self.notify(f"max source resolution {nxt}")

    def action_cycle_step_resolution(self) -> None:
        self.set_time(dataclasses.replace(self.time_state.cycle_resolution(), step_ms=None))
        self.notify(f"auto step, {self.time_state.resolution} resolution")

    def on_options_bar_changed(self, event: OptionsBar.Changed) -> None:
        try:
            self._apply_option(event.name, event.value)
        except (ConfigError, ValueError) as exc:
            self.notify(str(exc), title=f"Invalid {event.name}", severity="error")
            self.query_one(OptionsBar).show(self.time_state, self.settings)

    def _apply_option(self, name: str, value: str | bool) -> None:
        state, settings = self.time_state, self.settings
        if isinstance(value, bool):
            if name == "dedup":
                new_settings = dataclasses.replace(settings, dedup=value)
            else:
                new_settings = dataclasses.replace(settings, partial_response=value)
            if new_settings != settings:
                self.set_settings(new_settings)
            return
        now = self.tapp.now()
        new_state = self._time_option(state, name, value, now)
        if new_state is not None:
            if new_state != state:
                self.set_time(new_state)
            return
        if name == "replicas":
            labels = tuple(x.strip() for x in value.split(",") if x.strip())
            if labels != settings.replica_labels:
                self.set_settings(dataclasses.replace(settings, replica_labels=labels))
        elif name == "maxres" and value != settings.max_source_resolution:
            self.set_settings(dataclasses.replace(settings, max_source_resolution=value))

    @staticmethod
    def _time_option(state: TimeState, name: str, value: str, now: int) -> TimeState | None:
        from thanostools.core.timeutil import parse_duration_ms

        if name == "range":
            return dataclasses.replace(state, range_ms=parse_duration_ms(value))
        if name == "end":
            return dataclasses.replace(state, end_ms=parse_end(value, now))
        if name == "eval":
            return dataclasses.replace(state, eval_ms=parse_end("" if value.strip() == "end" else value, now))
        if name == "step":
            return dataclasses.replace(state, step_ms=parse_step(value))
        if name == "resolution":
            return dataclasses.replace(state, resolution=value)
        return None

    # --- editor helpers --------------------------------------------------------------------------

    def load_query(self, query: str, *, run: bool) -> None:
        self.editor.load_text(query)
        self.editor.move_cursor(self.editor.document.end)
        self.editor.focus()
        self.menu.close()
        if run:
            self.action_run()

    def insert_at_cursor(self, text: str) -> None:
        offset = self.editor.cursor_offset
        self.editor.replace_span(offset, offset, text)
        self.editor.focus()

    # --- export and copy -------------------------------------------------------------------------

    def action_export(self) -> None:
        from thanostools.tui.screens.dialogs import PromptScreen

        if self.current_outcome() is None:
            self.notify("run a query first", severity="warning")
            return
        self.app.push_screen(PromptScreen("Export the current result (.csv for CSV, anything else: API JSON)",
                                          "thanos-tools-result.csv"), self._export_to)

    def _export_to(self, path: str | None) -> None:
        outcome = self.current_outcome()
        if path and outcome is not None:
            self.export(outcome, path)

    def export(self, outcome: Outcome, path: str) -> None:
        self.run_worker(partial(self._write_export, outcome, path), thread=True, group="export", exit_on_error=False)

    def _write_export(self, outcome: Outcome, path: str) -> None:
        from thanostools.tui.export import write_export

        try:
            target = write_export(outcome, path)
        except OSError as exc:
            self.app.call_from_thread(self.notify, f"{path}: {exc.strerror or exc}", title="Export failed",
                                      severity="error")
            return
        self.app.call_from_thread(self.notify, str(target), title="Exported")

    def copy_command(self, kind: str) -> None:
        from thanostools.tui.export import curl_command, query_command

        outcome = self.current_outcome()
        if outcome is None:
            self.notify("run a query first", severity="warning")
            return
        make = query_command if kind == "query" else curl_command
        text = make(outcome, self.tapp.source, self.settings)
        self.tapp.copy_to_clipboard(text)
        self.notify(text, title="Copied to the clipboard")

    # --- commands for the palette ----------------------------------------------------------------

    def commands(self) -> Iterator[Command]:
        yield Command("Run query", "Evaluate the editor's query (enter / ctrl+j)", self.action_run)
        yield Command("Cancel query", "Stop the running query (escape)", self.action_cancel)
        for name in ("table", "graph", "explain", "raw"):
            yield Command(f"Show {name.title()} tab", f"Switch the results to {name}", partial(self.action_tab, name))
        yield Command("Zoom in", "Shorter time range (+)", partial(self.action_zoom, 1))
        yield Command("Zoom out", "Longer time range (-)", partial(self.action_zoom, -1))
        yield Command("Pan back", "Move the time range back by half ([)", partial(self.action_pan, -1))
        yield Command("Pan forward", "Move the time range forward by half (])", partial(self.action_pan, 1))
        yield Command("Back to now", "End the time range now (0)", self.action_now)
        yield Command("Toggle dedup", "Merge replicas by the replica labels (d)", self.action_toggle_dedup)
        yield Command("Toggle partial response", "Accept answers with missing data (p)", self.action_toggle_partial)
        yield Command("Cycle max source resolution", "auto, raw, 5m, 1h (m)", self.action_cycle_max_resolution)
        yield Command("Cycle auto step resolution", "low, medium, high points per cell (t)",
                      self.action_cycle_step_resolution)
        graph = self.query_one(GraphView)
        yield Command("Graph: toggle y from zero", "Start the y axis at zero (z in the graph)", graph.action_from_zero)
        yield Command("Graph: toggle stacked", "Stack the series (s in the graph)", graph.action_stacked)
        yield Command("Graph: all series on/off", "Toggle every legend entry (a in the graph)", graph.action_toggle_all)
        table = self.query_one(ResultTable)
        yield Command("Table: sort by next column", "series, value, timestamp (s in the table)", table.action_sort)
        yield Command("Table: reverse sort", "(r in the table)", table.action_reverse)
        yield Command("Table: copy row", "Copy the selected row (c in the table)", table.action_copy_row)
        yield Command("Export result", "Write CSV or the API JSON to a file (ctrl+s)", self.action_export)
        yield Command("Copy as thanos-tools query command", "A shell command reproducing the result",
                      partial(self.copy_command, "query"))
        yield Command("Copy as curl command", "The HTTP API call reproducing the result",
                      partial(self.copy_command, "curl"))
        yield Command("Focus the editor", "(e)", self.action_focus_editor)
        yield Command("Focus the time range", "Edit range, end, step, options",
                      lambda: self.query_one("#opt-range", Input).focus())
