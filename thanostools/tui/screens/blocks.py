"""The block browser: timeline, block list, details with top cardinality lists, scoping, marking."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, ClassVar, cast

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Checkbox, DataTable, Footer, Header, Input, Label, Static

from thanostools.core.constants import resolution_name
from thanostools.core.errors import ConfigError, ThanosToolsError
from thanostools.core.inspect import BlockFilter, BlockInfo, human_bytes, parse_label_selectors
from thanostools.core.timeutil import format_time_ms, human_duration, parse_time_ms
from thanostools.core.tsdb.markers import DeletionMark, Marker, NoCompactMark, NoDownsampleMark, now_seconds
from thanostools.tui.screens.console import Command
from thanostools.tui.widgets.timeline import Timeline, level_color

if TYPE_CHECKING:
    from thanostools.core.analyze import AnalyzeReport
    from thanostools.core.workspace import BucketWorkspace
    from thanostools.tui.app import ThanosToolsApp

COLUMNS = ("ULID", "from", "until", "range", "lvl", "res", "series", "samples", "size", "labels", "marks")
MARKS = {"deletion": "mark for deletion", "no-compact": "mark no-compact", "no-downsample": "mark no-downsample"}
TOP = 8


def block_row(b: BlockInfo) -> tuple[str, ...]:
    m = b.meta
    return (b.ulid, format_time_ms(m.min_time), format_time_ms(m.max_time), human_duration(m.max_time - m.min_time),
            str(m.level), resolution_name(m.resolution), f"{m.stats.num_series:,}",
            f"{m.stats.num_samples:,}", human_bytes(b.size_bytes),
            ",".join(f"{k}={v}" for k, v in m.external_labels), ",".join(b.marks))


def make_marker(kind: str, ulid: str) -> Marker:
    details = "marked in thanos-tools tui"
    if kind == "deletion":
        return DeletionMark(id=ulid, deletion_time=now_seconds(), details=details)
    if kind == "no-compact":
        return NoCompactMark(id=ulid, no_compact_time=now_seconds(), details=details)
    return NoDownsampleMark(id=ulid, no_downsample_time=now_seconds(), details=details)


def details_table(b: BlockInfo) -> Table:
    m = b.meta
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("block", Text(b.ulid, style=f"bold {level_color(m.level)}"))
    t.add_row("time", f"{format_time_ms(m.min_time)} … {format_time_ms(m.max_time)} "
                      f"({human_duration(m.max_time - m.min_time)})")
    t.add_row("level", f"{m.level} · {len(m.sources)} source block(s) · resolution "
                       f"{resolution_name(m.resolution)}")
    t.add_row("stats", f"{m.stats.num_series:,} series · {m.stats.num_samples:,} samples · "
                       f"{m.stats.num_chunks:,} chunks · {m.stats.num_tombstones:,} tombstones")
    t.add_row("labels", ", ".join(f'{k}="{v}"' for k, v in m.external_labels) or "(none)")
    t.add_row("source", (m.thanos.source if m.thanos else "") or "(unknown)")
    t.add_row("marks", Text(", ".join(b.marks) or "none", style="bold red" if b.marks else ""))
    t.add_row("size", f"{human_bytes(b.size_bytes)} total")
    for name, size in sorted(b.files.items()):
        t.add_row("", f"{name}  {human_bytes(size)}")
    return t


def analyze_table(report: AnalyzeReport) -> Table:
    t = Table(box=None, padding=(0, 1), show_header=True, header_style="bold")
    t.add_column("top cardinality", ratio=1)
    t.add_column("", justify="right")
    sections = (("metric names (series)", report.cardinality_metrics),
                ("label names (values)", report.cardinality_labels),
                ("label pairs (churn)", report.churn_pairs),
                ("common label pairs (series)", report.common_pairs))
    for title, ranked in sections:
        t.add_row(Text(title, style="italic #c586c0"), "")
        for value, name in ranked[:TOP]:
            t.add_row(f"  {name}", f"{value:,}")
    return t


class BlocksScreen(Screen[None]):
    """Block browser. enter: scope console queries to the block · u: unscope · r: refresh · f: filter ·
    escape: back to the console. With --allow-admin: D mark for deletion, C no-compact, S no-downsample
    (each asks for confirmation and writes an audit line)."""

    HELP = __doc__
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Console"),
        Binding("enter", "scope", "Scope to block"),
        Binding("u", "unscope", "Unscope"),
        Binding("r", "refresh", "Refresh"),
        Binding("f", "focus_filter", "Filter"),
        Binding("D", "mark('deletion')", "Mark delete"),
        Binding("C", "mark('no-compact')", "No-compact"),
        Binding("S", "mark('no-downsample')", "No-downsample"),
    ]

    def __init__(self, workspace: BucketWorkspace) -> None:
        super().__init__(id="blocks")
        self.workspace = workspace
        self.all_blocks: list[BlockInfo] = []
        self.blocks: list[BlockInfo] = []
        self.selected: str | None = None
        self.flt = BlockFilter()

    @property
    def tapp(self) -> ThanosToolsApp:
        return cast("ThanosToolsApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="block-filter"):
            yield Label("labels", classes="opt-label")
            yield Input(placeholder='cluster=eu1, env=~"prod.*"', id="flt-labels")
            yield Label("from", classes="opt-label")
            yield Input(placeholder="-2w or RFC3339", id="flt-from", classes="opt-time")
            yield Label("to", classes="opt-label")
            yield Input(placeholder="now", id="flt-to", classes="opt-time")
            yield Checkbox("hide deleted", False, id="flt-deleted", compact=True)
        yield Timeline()
        with Horizontal(id="block-main"):
            yield DataTable[str](id="block-table", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="block-details"):
                yield Static("select a block", id="block-meta")
                yield Static("", id="block-analyze")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#block-table", DataTable).add_columns(*COLUMNS)
        self.load(refresh=False)
        self.query_one("#block-table", DataTable).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "mark":
            return self.tapp.config.allow_admin  # hidden (and inert) when read-only
        return True

    # --- loading and filtering -------------------------------------------------------------------

    def load(self, *, refresh: bool) -> None:
        self.query_one("#block-meta", Static).update(Text("listing blocks…", style="italic"))
        self.run_worker(partial(self._scan, refresh), thread=True, group="scan", exclusive=True, exit_on_error=False)

    def _scan(self, refresh: bool) -> None:
        try:
            scan = self.workspace.scan(refresh=refresh)
        except ThanosToolsError as exc:
            self.app.call_from_thread(self.notify, str(exc), title="Listing failed", severity="error")
            return
        self.app.call_from_thread(self._loaded, list(scan.blocks), len(scan.broken) + len(scan.partial))

    def _loaded(self, blocks: list[BlockInfo], skipped: int) -> None:
        self.all_blocks = blocks
        if skipped:
            self.notify(f"{skipped} block(s) without a readable meta.json are not shown", severity="warning")
        self.apply_filter()

    def apply_filter(self) -> None:
        self.blocks = [b for b in self.all_blocks if self.flt.accepts(b)]
        table = self.query_one("#block-table", DataTable)
        table.clear()
        for b in self.blocks:
            table.add_row(*block_row(b), key=b.ulid)
        if self.selected not in {b.ulid for b in self.blocks}:
            self.selected = self.blocks[0].ulid if self.blocks else None
        if self.selected is not None:
            table.move_cursor(row=table.get_row_index(self.selected))
        self._show_selected()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._update_filter()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self._update_filter()

    def _update_filter(self) -> None:
        try:
            labels = self.query_one("#flt-labels", Input).value
            selectors = tuple(parse_label_selectors([s for s in labels.split(",") if s.strip()]))
            lo = self.query_one("#flt-from", Input).value.strip()
            hi = self.query_one("#flt-to", Input).value.strip()
            self.flt = BlockFilter(min_time=parse_time_ms(lo) if lo else None,
                                   max_time=parse_time_ms(hi) if hi else None, selectors=selectors,
                                   exclude_deleted=self.query_one("#flt-deleted", Checkbox).value)
        except ConfigError as exc:
            self.notify(str(exc), title="Invalid filter", severity="error")
            return
        self.apply_filter()

    # --- selection and details -------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None and event.row_key.value != self.selected:
            self.selected = event.row_key.value
            self._show_selected()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_scope()

    def selected_block(self) -> BlockInfo | None:
        return next((b for b in self.blocks if b.ulid == self.selected), None)

    def _show_selected(self) -> None:
        self.query_one(Timeline).show(self.blocks, self.selected)
        block = self.selected_block()
        meta = self.query_one("#block-meta", Static)
        analysis = self.query_one("#block-analyze", Static)
        if block is None:
            meta.update(Text("no blocks match the filter", style="dim"))
            analysis.update("")
            return
        meta.update(details_table(block))
        analysis.update(Text("analyzing the index…", style="italic dim"))
        self.run_worker(partial(self._analyze, block.ulid), thread=True, group="analyze", exclusive=True,
                        exit_on_error=False)

    def _analyze(self, ulid: str) -> None:
        try:
            report = self.workspace.analyze(ulid, limit=TOP)
        except ThanosToolsError as exc:
            self.app.call_from_thread(self._analyzed, ulid, Text(f"analyze failed: {exc}", style="red"))
            return
        self.app.call_from_thread(self._analyzed, ulid, analyze_table(report))

    def _analyzed(self, ulid: str, renderable: Table | Text) -> None:
        if ulid == self.selected:
            self.query_one("#block-analyze", Static).update(renderable)

    # --- actions ---------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_scope(self) -> None:
        block = self.selected_block()
        if block is not None:
            self.tapp.scope_to(block)
            self.app.pop_screen()

    def action_unscope(self) -> None:
        self.tapp.scope_to(None)
        self.notify("console queries use the whole bucket again")

    def action_refresh(self) -> None:
        self.load(refresh=True)

    def action_focus_filter(self) -> None:
        self.query_one("#flt-labels", Input).focus()

    def action_mark(self, kind: str) -> None:
        from thanostools.tui.screens.dialogs import ConfirmScreen

        block = self.selected_block()
        if not self.tapp.config.allow_admin:
            self.notify("read-only: start with --allow-admin to mark blocks", severity="warning")
            return
        if block is None:
            return
        if kind in block.marks:
            self.notify(f"{block.ulid} already has a {kind} mark", severity="warning")
            return
        message = (f"Write {kind}-mark.json for block {block.ulid}\n"
                   f"({format_time_ms(block.meta.min_time)} … {format_time_ms(block.meta.max_time)}, "
                   f"{block.meta.stats.num_series:,} series) in {self.workspace.bucket.url}?")
        self.app.push_screen(ConfirmScreen(MARKS[kind].capitalize(), message, yes=MARKS[kind]),
                             partial(self._confirmed, kind, block.ulid))

    def _confirmed(self, kind: str, ulid: str, yes: bool | None) -> None:
        if yes:
            self.run_worker(partial(self._write_mark, kind, ulid), thread=True, group="mark", exit_on_error=False)
        else:
            self.notify("nothing written")

    def _write_mark(self, kind: str, ulid: str) -> None:
        from thanostools.core.audit import audit
        from thanostools.core.blockio import write_marker

        try:
            written = write_marker(self.workspace.bucket, make_marker(kind, ulid))
            audit(f"mark-{kind}", [ulid], bucket=self.workspace.bucket.url, details={"via": "tui"})
        except (ThanosToolsError, OSError) as exc:
            self.app.call_from_thread(self.notify, str(exc), title="Marking failed", severity="error")
            return
        note = f"audit: mark-{kind} {ulid}" if written else f"{ulid} already had a {kind} mark"
        self.app.call_from_thread(self._marked, note)

    def _marked(self, note: str) -> None:
        self.notify(note, title="Block marked")
        self.tapp.source_changed()
        self.load(refresh=True)

    def commands(self) -> Iterator[Command]:
        yield Command("Scope console to the selected block", "Queries read only this block (enter)",
                      self.action_scope)
        yield Command("Unscope console", "Queries read the whole bucket (u)", self.action_unscope)
        yield Command("Refresh block list", "List the bucket again (r)", self.action_refresh)
        yield Command("Filter blocks", "By external labels and time (f)", self.action_focus_filter)
        if self.tapp.config.allow_admin:
            for kind, title in MARKS.items():
                yield Command(f"{title.capitalize()} (admin)", "Asks for confirmation; writes an audit line",
                              partial(self.action_mark, kind))

