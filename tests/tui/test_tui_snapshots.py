"""SVG snapshots of the main screens at a fixed terminal size, on fixed data and a frozen clock.

Snapshots live in ``tests/tui/snapshots``. After an intended change of the look (or a Textual upgrade),
regenerate them with ``THANOS_TOOLS_UPDATE_SNAPSHOTS=1 pytest tests/tui/test_tui_snapshots.py`` and
review the new SVGs (they open in any browser).
"""

from __future__ import annotations

import asyncio
import difflib
import html
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.tui.tuihelp import make_app, make_bucket, screen_text, settle, type_text
from thanostools.core.workspace import BucketWorkspace
from thanostools.tui.app import ThanosToolsApp
from thanostools.tui.sources import BucketSource

SNAPSHOTS = Path(__file__).parent / "snapshots"
SIZE = (120, 36)
UPDATE = os.environ.get("THANOS_TOOLS_UPDATE_SNAPSHOTS") == "1"
CHAR_WIDTH = 12.2  # Rich's SVG export: pixels per terminal cell


class SnapshotSource(BucketSource):
    """Same data, a fixed name in the header and no elapsed time (the bucket lives in a tmp dir)."""

    clock = staticmethod(lambda: 0.0)

    def describe(self) -> str:
        return "bucket ./demo"


def _text_of(svg: str) -> str:
    """The visible characters of a Textual SVG screenshot, placed by their x position, for readable diffs."""
    rows: dict[float, list[str]] = {}
    for x, y, text in re.findall(r'<text class="[^"]*" x="([^"]*)" y="([^"]*)"[^>]*>(.*?)</text>', svg):
        row = rows.setdefault(float(y), [])
        col = round(float(x) / CHAR_WIDTH)
        chars = html.unescape(text).replace("\xa0", " ")
        row.extend(" " * (col + len(chars) - len(row)))
        row[col:col + len(chars)] = chars
    return "\n".join("".join(rows[y]).rstrip() for y in sorted(rows))


def assert_snapshot(name: str, svg: str, tmp_path: Path) -> None:
    path = SNAPSHOTS / f"{name}.svg"
    if UPDATE:
        path.write_text(svg, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no snapshot {path}; create it with THANOS_TOOLS_UPDATE_SNAPSHOTS=1")
    expected = path.read_text(encoding="utf-8")
    if svg != expected:
        actual = tmp_path / f"{name}.actual.svg"
        actual.write_text(svg, encoding="utf-8")
        diff = "\n".join(difflib.unified_diff(_text_of(expected).splitlines(), _text_of(svg).splitlines(),
                                              "snapshot", "actual", lineterm="", n=1))
        pytest.fail(f"screen differs from {path} (actual: {actual}):\n{diff or '(styles only)'}")


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bucket(tmp_path_factory.mktemp("snap") / "bucket")


def shoot(bucket: Path, tmp_path: Path, steps: Callable[[ThanosToolsApp, Any], Awaitable[None]]) -> str:
    app = make_app(None, tmp_path, source=SnapshotSource(BucketWorkspace.open(str(bucket))))
    out: list[str] = []

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot)
            await steps(app, pilot)
            await settle(app, pilot)
            app.screen.clear_notifications() if hasattr(app.screen, "clear_notifications") else None
            app.clear_notifications()
            await pilot.pause()
            out.append(app.export_screenshot())
            out.append(screen_text(app))

    asyncio.run(main())
    return out[0]


async def run(app: ThanosToolsApp, pilot: Any, query: str) -> None:
    console = app.console_screen
    assert console is not None
    console.editor.load_text(query)
    console.editor.move_cursor(console.editor.document.end)
    await pilot.press("enter")
    await settle(app, pilot)


def test_snapshot_console_table(bucket: Path, tmp_path: Path) -> None:
    async def steps(app: ThanosToolsApp, pilot: Any) -> None:
        await run(app, pilot, "sort_desc(rate(http_requests_total[5m]))")

    assert_snapshot("console_table", shoot(bucket, tmp_path, steps), tmp_path)


def test_snapshot_console_graph(bucket: Path, tmp_path: Path) -> None:
    async def steps(app: ThanosToolsApp, pilot: Any) -> None:
        await run(app, pilot, "temperature_celsius")
        await pilot.press("escape", "2")

    assert_snapshot("console_graph", shoot(bucket, tmp_path, steps), tmp_path)


def test_snapshot_completion_and_parse_error(bucket: Path, tmp_path: Path) -> None:
    async def steps(app: ThanosToolsApp, pilot: Any) -> None:
        await type_text(pilot, "sum by (")
        await settle(app, pilot, 0.4)  # the parse error appears after a short pause in typing

    assert_snapshot("console_completion", shoot(bucket, tmp_path, steps), tmp_path)


def test_snapshot_block_browser(bucket: Path, tmp_path: Path) -> None:
    async def steps(app: ThanosToolsApp, pilot: Any) -> None:
        await pilot.press("f4")
        await settle(app, pilot)

    assert_snapshot("blocks", shoot(bucket, tmp_path, steps), tmp_path)
