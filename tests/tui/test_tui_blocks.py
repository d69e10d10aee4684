"""The block browser: listing, details, scoping, filtering, and admin marking with confirmation."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input

from tests.clihelp import START_MS
from tests.tui.tuihelp import (
    H2,
    ULID_EU_1,
    ULID_EU_2,
    ULID_US,
    current_screen,
    make_app,
    make_bucket,
    screen_text,
    settle,
)
from thanostools.tui.app import ThanosToolsApp
from thanostools.tui.screens.blocks import BlocksScreen
from thanostools.tui.widgets.table import ResultTable


def drive(app: ThanosToolsApp, scenario: Any) -> None:
    async def main() -> None:
        async with app.run_test(size=(140, 40)) as pilot:
            await settle(app, pilot)
            await pilot.press("f4")
            await settle(app, pilot)
            assert isinstance(app.screen, BlocksScreen)
            await scenario(app, pilot)

    asyncio.run(main())


def test_browser_lists_blocks_shows_details_and_scopes_queries(tmp_path: Path) -> None:
    bucket = make_bucket(tmp_path / "b")

    async def scenario(app: ThanosToolsApp, pilot: Any) -> None:
        assert isinstance(app.screen, BlocksScreen)
        screen: BlocksScreen = app.screen
        assert [b.ulid for b in screen.blocks] == [ULID_EU_1, ULID_US, ULID_EU_2]
        text = screen_text(app)
        assert "cluster=eu1 raw" in text and "cluster=us1 raw" in text  # one timeline line per stream
        assert ULID_EU_1 in text and "5 series · 2,400 samples" in text  # details of the first block
        assert "metric names (series)" in text and "http_requests_total" in text  # top cardinality (analyze)
        await pilot.press("down")
        await settle(app, pilot)
        assert screen.selected == ULID_US and "level   2 · 2 source block(s)" in screen_text(app)
        await pilot.press("D")  # read-only: no marking keys, no dialog, nothing written
        await settle(app, pilot)
        assert current_screen(app) is screen and "D Mark" not in screen_text(app)
        assert not list(bucket.glob("*/deletion-mark.json"))
        screen.query_one("#flt-labels", Input).value = "cluster=eu1"
        screen.query_one("#flt-labels", Input).focus()
        await pilot.press("enter")
        await settle(app, pilot)
        assert [b.ulid for b in screen.blocks] == [ULID_EU_1, ULID_EU_2]
        screen.query_one("#block-table", DataTable).focus()
        await pilot.press("down", "enter")  # scope the console to the second eu1 block
        await settle(app, pilot)
        console = app.console_screen
        assert console is not None and current_screen(app) is console
        assert app.sub_title.endswith(f" · block {ULID_EU_2}")  # the header shows the scope
        assert console.time_state.end_ms == START_MS + 2 * H2 and console.time_state.range_ms == H2
        console.editor.load_text("count(up)")
        await pilot.press("ctrl+j")
        await settle(app, pilot)
        assert [r.value_text for r in console.query_one(ResultTable).shown] == ["2"]  # only the eu1 block
        await pilot.press("f4", "u", "escape")
        await settle(app, pilot)
        assert [r.value_text for r in console.query_one(ResultTable).shown] == ["4"]

    drive(make_app(bucket, tmp_path), scenario)


def test_admin_marking_writes_the_marker_only_after_confirmation(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    bucket = make_bucket(tmp_path / "b")
    mark = bucket / ULID_EU_1 / "deletion-mark.json"

    async def admin(app: ThanosToolsApp, pilot: Any) -> None:
        assert "D Mark delete" in screen_text(app)
        await pilot.press("D")
        await settle(app, pilot)
        assert "Write deletion-mark.json for block" in screen_text(app)
        await pilot.press("n")  # refused: nothing is written
        await settle(app, pilot)
        assert not mark.exists()
        await pilot.press("D")
        await settle(app, pilot)
        await pilot.press("y")
        await settle(app, pilot, 0.2)
        assert mark.exists()
        screen = app.screen
        assert isinstance(screen, BlocksScreen)
        assert next(b for b in screen.blocks if b.ulid == ULID_EU_1).marks == ["deletion"]
        await pilot.press("C")
        await settle(app, pilot)
        await pilot.press("y")
        await settle(app, pilot, 0.2)

    with caplog.at_level(logging.WARNING, logger="thanostools.audit"):
        drive(make_app(bucket, tmp_path, allow_admin=True), admin)
    doc = json.loads(mark.read_text())
    assert doc["id"] == ULID_EU_1 and doc["version"] == 1 and doc["deletion_time"] > 0
    assert (bucket / ULID_EU_1 / "no-compact-mark.json").exists()
    audits = [r.kv for r in caplog.records if hasattr(r, "kv")]
    assert [(a["audit"], a["blocks"], a["via"]) for a in audits] == [
        ("mark-deletion", ULID_EU_1, "tui"), ("mark-no-compact", ULID_EU_1, "tui")]
