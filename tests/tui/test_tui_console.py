"""The console driven headless with Textual's Pilot on a deterministic bucket."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input

from tests.tui.tuihelp import NOW, make_app, make_bucket, screen_text, settle, type_text
from thanostools.core.render.apijson import render_success
from thanostools.core.render.fastjson import query_data_json
from thanostools.core.workspace import BucketWorkspace
from thanostools.tui.app import ThanosToolsApp
from thanostools.tui.screens.console import ConsoleScreen
from thanostools.tui.sources import BucketSource, QuerySettings
from thanostools.tui.widgets.completion import CompletionMenu
from thanostools.tui.widgets.explainview import ExplainTree
from thanostools.tui.widgets.graph import GraphView
from thanostools.tui.widgets.results import RawView
from thanostools.tui.widgets.table import ResultTable

Scenario = Callable[[ThanosToolsApp, Any], Awaitable[None]]


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bucket(tmp_path_factory.mktemp("tui") / "bucket")


def drive(app: ThanosToolsApp, scenario: Scenario, size: tuple[int, int] = (120, 36)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await settle(app, pilot)
            await scenario(app, pilot)

    asyncio.run(main())


def console(app: ThanosToolsApp) -> ConsoleScreen:
    screen = app.console_screen
    assert screen is not None
    return screen


async def run_query(app: ThanosToolsApp, pilot: Any, query: str, *, key: str = "enter") -> None:
    """Put the query in the editor (typing is tested on its own: each Pilot key press costs ~0.1 s) and run it."""
    editor = console(app).editor
    editor.load_text(query)
    editor.move_cursor(editor.document.end)
    editor.focus()
    await pilot.press(key)
    await settle(app, pilot)


def test_typing_a_query_and_running_it_shows_the_rows(bucket: Path, tmp_path: Path) -> None:
    async def scenario(app: ThanosToolsApp, pilot: Any) -> None:
        await type_text(pilot, 'up{job="api"}')
        await pilot.press("enter")
        await settle(app, pilot)
        table = app.screen.query_one(ResultTable)
        assert [r.series for r in table.shown] == ['up{cluster="eu1", instance="a:80", job="api"}',
                                                   'up{cluster="us1", instance="a:80", job="api"}']
        assert [r.value_text for r in table.shown] == ["1", "1"]
        text = screen_text(app)
        assert 'up{cluster="eu1", instance="a:80", job="api"}' in text
        assert "instant · 2 series" in text
        await run_query(app, pilot, "sum(http_requests_total)", key="ctrl+j")
        assert [r.series for r in table.shown] == ["{}"]
        # Sorting: by value descending through the keys of the focused table.
        await run_query(app, pilot, "temperature_celsius")
        table.focus()
        await pilot.press("s", "r")
        values = [r.value for r in table.shown]
        assert values == sorted(values, reverse=True) and table.sort_column == 1
        await pilot.press("c")
        assert app.clipboard_text.startswith("temperature_celsius{")

    drive(make_app(bucket, tmp_path), scenario)


def test_stats_line_shows_prometheus_sample_counts(bucket: Path, tmp_path: Path) -> None:
    async def scenario(app: ThanosToolsApp, pilot: Any) -> None:
        await run_query(app, pilot, 'up{job="api"}')
        assert "instant · 2 series · 2 samples queried · peak 2 · " in screen_text(app)
        # The samples a range selector reads are what count_over_time counts in its windows.
        await run_query(app, pilot, 'count_over_time(up{job="api"}[5m])')
        counted = sum(r.value for r in app.screen.query_one(ResultTable).shown)
        assert counted > 2
        assert f"instant · 2 series · {counted:,.0f} samples queried · " in screen_text(app)

    drive(make_app(bucket, tmp_path), scenario)


def test_parse_error_is_shown_inline_with_its_position(bucket: Path, tmp_path: Path) -> None:
    async def scenario(app: ThanosToolsApp, pilot: Any) -> None:
        await run_query(app, pilot, "sum(rate(up[5m])")
        text = screen_text(app)
        assert "parse error: 1:17: unclosed left parenthesis" in text
        lines = text.splitlines()
        row = next(i for i, line in enumerate(lines) if line.strip() == "sum(rate(up[5m])")
        assert lines[row + 1].index("^") == lines[row].index("sum(") + 16
        assert console(app).editor.error_position == 16
        assert not app.screen.query_one(ResultTable).shown  # nothing ran
        editor = console(app).editor
        editor.load_text("sum(\n  up")
        editor.move_cursor(editor.document.end)
        await pilot.press("enter", ")")  # enter in a multi-line query is a newline; ctrl+j runs it
        assert editor.text == "sum(\n  up\n)"
        await pilot.press("ctrl+j")
        await settle(app, pilot)
        assert [r.value_text for r in app.screen.query_one(ResultTable).shown] == ["2"]

    drive(make_app(bucket, tmp_path), scenario)


def test_completion_offers_label_values_from_the_bucket(bucket: Path, tmp_path: Path) -> None:
    async def scenario(app: ThanosToolsApp, pilot: Any) -> None:
        await type_text(pilot, 'up{job="')
        await settle(app, pilot)
        menu = app.screen.query_one(CompletionMenu)
        assert menu.is_open and [i.label for i in menu.items] == ["api", "db"]
        assert "db" in screen_text(app)
        await pilot.press("down", "tab")  # accept "db": the closing quote comes with it
        assert console(app).editor.text == 'up{job="db"'
        await type_text(pilot, ", ")
        await settle(app, pilot)
        assert [i.label for i in menu.items] == ["cluster", "instance", "job"]
        await pilot.press("escape")
        assert not menu.is_open
        await pilot.press("}", "space", "a", "n")
        await settle(app, pilot)
        assert [i.label for i in menu.items] == ["and"]
        console(app).editor.load_text("his")
        console(app).editor.move_cursor((0, 3))
        await pilot.press("t")
        await settle(app, pilot)
        item = next(i for i in menu.items if i.label == "histogram_quantile")
        assert item.detail.startswith("histogram_quantile(scalar, instant vector)")

    drive(make_app(bucket, tmp_path), scenario)


def test_graph_renders_for_a_range_query(bucket: Path, tmp_path: Path) -> None:
    async def scenario(app: ThanosToolsApp, pilot: Any) -> None:
        await run_query(app, pilot, "rate(http_requests_total[5m])")
        await pilot.press("escape", "2")  # leave the editor, show the Graph tab
        await settle(app, pilot)
        graph = app.screen.query_one(GraphView)
        outcome = graph.outcome
        assert outcome is not None and outcome.kind == "range" and len(outcome.result.series) == 4
        assert outcome.end_ms == NOW and outcome.start_ms == NOW - 3_600_000
        text = screen_text(app)
        assert "4/4 series" in text and "range · 4 series" in text
        assert sum(1 for ch in text if "\u2801" <= ch <= "\u28ff") > 100  # braille dots
        await pilot.press("z", "s", "a")
        plot = graph.plot
        assert plot.from_zero and plot.stacked and plot.series == []
        await pilot.press("a", "-")  # all series back; zoom out reruns over 2h
        await settle(app, pilot)
        assert len(plot.series) == 4 and graph.outcome is not None
        assert graph.outcome.start_ms == NOW - 7_200_000

    drive(make_app(bucket, tmp_path), scenario)


def test_explain_and_raw_tabs(bucket: Path, tmp_path: Path) -> None:
    async def scenario(app: ThanosToolsApp, pilot: Any) -> None:
        await run_query(app, pilot, "sum by (job) (up) * 2")
        await pilot.press("escape", "3")
        await settle(app, pilot)
        tree = app.screen.query_one(ExplainTree)
        assert tree.summaries[0] == "2 series · job: 2"
        assert tree.summaries[2] == "4 series · cluster: 2, instance: 2, job: 2, __name__: 1"
        assert "aggregation sum by (job)" in screen_text(app)
        await pilot.press("4")
        await settle(app, pilot)
        screen = console(app)
        assert screen.instant is not None
        expected = render_success(query_data_json(screen.instant.result))
        raw = app.screen.query_one(RawView).text
        assert expected in raw and json.loads(expected)["data"]["resultType"] == "vector"

    drive(make_app(bucket, tmp_path), scenario)


def test_history_survives_a_restart(bucket: Path, tmp_path: Path) -> None:
    async def first(app: ThanosToolsApp, pilot: Any) -> None:
        await run_query(app, pilot, "up")
        await run_query(app, pilot, "count(up)")

    drive(make_app(bucket, tmp_path), first)

    async def second(app: ThanosToolsApp, pilot: Any) -> None:
        assert app.history.queries() == ["count(up)", "up"]
        await pilot.press("f2")
        await settle(app, pilot)
        await type_text(pilot, "count")
        await pilot.press("ctrl+s")  # star it
        await pilot.press("enter")  # and run it again
        await settle(app, pilot)
        assert console(app).editor.text == "count(up)"
        assert [r.value_text for r in app.screen.query_one(ResultTable).shown] == ["4"]
        console(app).editor.load_text("co")
        console(app).editor.move_cursor((0, 2))
        await pilot.press("ctrl+space")
        await settle(app, pilot)
        menu = app.screen.query_one(CompletionMenu)
        assert menu.items[0].label == "count(up)"  # past queries complete at the start of the line

    drive(make_app(bucket, tmp_path), second)
    entry = make_app(bucket, tmp_path).history.find("count(up)")
    assert entry is not None and entry.starred and entry.runs == 2


def test_export_writes_the_file(bucket: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "result.csv"

    async def scenario(app: ThanosToolsApp, pilot: Any) -> None:
        await run_query(app, pilot, 'up{cluster="eu1"}')
        await pilot.press("ctrl+s")
        await settle(app, pilot)
        app.screen.query_one("#prompt-input", Input).value = str(target)
        await pilot.press("enter")
        await settle(app, pilot)

    drive(make_app(bucket, tmp_path), scenario)
    rows = list(csv.reader(target.open()))
    assert rows == [["series", "timestamp", "value"],
                    ['up{cluster="eu1", instance="a:80", job="api"}', str(NOW // 1000), "1"],
                    ['up{cluster="eu1", instance="b:90", job="db"}', str(NOW // 1000), "0"]]


def test_palette_copy_commands_metrics_explorer_and_help(bucket: Path, tmp_path: Path) -> None:
    async def scenario(app: ThanosToolsApp, pilot: Any) -> None:
        await run_query(app, pilot, "up")
        await pilot.press("ctrl+p")
        await settle(app, pilot)
        await type_text(pilot, "copy as thanos")
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.clipboard_text.startswith("thanos-tools query up --time ")
        assert app.clipboard_text.endswith(f"--bucket {bucket}")
        await pilot.press("ctrl+a", "ctrl+k", "f3")
        await settle(app, pilot)
        assert "3 names · 10 series" in screen_text(app)
        await type_text(pilot, "tmpc")
        await pilot.press("enter")
        await settle(app, pilot)
        assert console(app).editor.text == "temperature_celsius"
        await pilot.press("f1")
        await settle(app, pilot)
        text = screen_text(app)
        assert "Help: QueryEditor" in text and "ctrl+j" in text.lower().replace("^j", "ctrl+j")

    drive(make_app(bucket, tmp_path), scenario)


def test_time_and_thanos_options(bucket: Path, tmp_path: Path) -> None:
    async def scenario(app: ThanosToolsApp, pilot: Any) -> None:
        await run_query(app, pilot, "count(up)")
        screen = console(app)
        await pilot.press("escape", "d")  # dedup off: replica labels no longer merge (none here: same answer)
        await settle(app, pilot)
        assert not screen.settings.dedup
        await pilot.press("[")
        await settle(app, pilot)
        assert screen.time_state.end_ms == NOW - 1_800_000
        assert screen.instant is not None and screen.instant.time_ms == NOW - 1_800_000
        await pilot.press("0")
        assert screen.time_state.end_ms is None
        screen.query_one("#opt-range").focus()
        screen.query_one("#opt-range", Input).value = "bogus"
        await pilot.press("enter")
        await settle(app, pilot)
        assert screen.time_state.range_ms == 3_600_000  # invalid input is refused with a notification

    drive(make_app(bucket, tmp_path), scenario)


class SlowQuerier:
    """Selections take 1.5 s (like a big remote bucket)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def select(self, *args: Any, **kw: Any) -> Any:
        time.sleep(1.5)
        return self.inner.select(*args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SlowSource(BucketSource):
    def querier(self, settings: QuerySettings, resolution_ms: int) -> Any:
        return SlowQuerier(super().querier(settings, resolution_ms))


def test_escape_cancels_a_long_query_and_the_ui_stays_responsive(bucket: Path, tmp_path: Path) -> None:
    async def scenario(app: ThanosToolsApp, pilot: Any) -> None:
        screen = console(app)
        screen.editor.load_text("up")
        screen.editor.move_cursor(screen.editor.document.end)
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert screen.running and "running instant query" in screen_text(app)
        await pilot.press("x")  # typing works while the query runs
        assert screen.editor.text == "upx"
        await pilot.press("escape")
        assert "query cancelled" in screen_text(app) and not screen.running
        await settle(app, pilot, 1.6)  # the abandoned selection ends in the background: nothing is shown
        assert not app.screen.query_one(ResultTable).shown and "query cancelled" in screen_text(app)

    source = SlowSource(BucketWorkspace.open(str(bucket)))
    drive(make_app(None, tmp_path, source=source), scenario)


def test_a_failing_background_task_is_shown_not_swallowed(bucket: Path, tmp_path: Path) -> None:
    def broken() -> None:
        raise OSError("the cache directory vanished")

    async def scenario(app: ThanosToolsApp, pilot: Any) -> None:
        app.run_worker(broken, thread=True, group="labels", exit_on_error=False)
        await settle(app, pilot)
        assert any("the cache directory vanished" in str(n.message) and n.severity == "error"
                   for n in app._notifications)
        assert app.is_running

    drive(make_app(bucket, tmp_path), scenario)
