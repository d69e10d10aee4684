"""Helpers for the TUI tests: a deterministic bucket, the app on it, and the screen as text."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from textual.screen import Screen

from tests.clihelp import START_MS
from thanostools.core.labels import Labels
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.workspace import BucketWorkspace
from thanostools.tui.app import AppConfig, ThanosToolsApp
from thanostools.tui.history import History
from thanostools.tui.sources import BucketSource, Source

H2 = 7_200_000
STEP = 15_000
NOW = START_MS + 2 * H2 - 60_000  # one minute before the newest data ends
ULID_EU_1 = "01HF0000000000000000000EA1"
ULID_EU_2 = "01HF0000000000000000000EA2"
ULID_US = "01HF0000000000000000000SA1"


def lab(**kw: str) -> Labels:
    return tuple(sorted(kw.items()))


def _series(start: int, end: int, offset: float) -> list[tuple[Labels, np.ndarray, np.ndarray]]:
    t = np.arange(start, end, STEP, dtype=np.int64)
    i = (t - START_MS) // STEP
    return sorted([
        (lab(__name__="http_requests_total", job="api", code="200"), t, (i * 10.0 + offset).astype(np.float64)),
        (lab(__name__="http_requests_total", job="api", code="500"), t, (i * 1.0).astype(np.float64)),
        (lab(__name__="temperature_celsius", room="lab"), t, 20 + 5 * np.sin(i / 40.0 + offset)),
        (lab(__name__="up", job="api", instance="a:80"), t, np.ones(t.shape[0])),
        (lab(__name__="up", job="db", instance="b:90"), t, np.zeros(t.shape[0])),
    ], key=lambda s: s[0])


def _write(bucket: Path, ulid: str, start: int, end: int, ext: dict[str, str], level: int = 1,
           sources: list[str] | None = None, offset: float = 0.0) -> None:
    w = BlockWriter(str(bucket), ulid=ulid, min_time=start, max_time=end, external_labels=ext, level=level,
                    sources=sources)
    for labels, t, v in _series(start, end, offset):
        w.add_samples(labels, t, v)
    w.finish()


def make_bucket(bucket: Path) -> Path:
    """Two level-1 blocks of cluster eu1 and one level-2 block of cluster us1, at fixed times and ULIDs."""
    bucket.mkdir(parents=True, exist_ok=True)
    _write(bucket, ULID_EU_1, START_MS, START_MS + H2, {"cluster": "eu1"})
    _write(bucket, ULID_EU_2, START_MS + H2, START_MS + 2 * H2, {"cluster": "eu1"})
    _write(bucket, ULID_US, START_MS, START_MS + 2 * H2, {"cluster": "us1"}, level=2,
           sources=["01HF00000000000000000000S1", "01HF00000000000000000000S2"], offset=math.pi)
    return bucket


def make_app(bucket: Path | None, data_dir: Path, *, source: Source | None = None, now: int = NOW,
             **kw: Any) -> ThanosToolsApp:
    if source is None:
        assert bucket is not None
        source = BucketSource(BucketWorkspace.open(str(bucket)))
    history = History(data_dir / "history.json")
    return ThanosToolsApp(AppConfig(source, history=history, now=lambda: now, cursor_blink=False, **kw))


async def settle(app: ThanosToolsApp, pilot: Any, delay: float = 0.05) -> None:
    """Let workers finish and their results reach the screen."""
    await pilot.pause(delay)
    await app.workers.wait_for_complete()
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


async def type_text(pilot: Any, text: str) -> None:
    await pilot.press(*["space" if c == " " else c for c in text])


def screen_text(app: ThanosToolsApp) -> str:
    """What the terminal shows, as plain text."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, color_system="truecolor",
                      record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def current_screen(app: ThanosToolsApp) -> Screen[Any]:
    """``app.screen`` for identity checks: textual declares it ``Screen[object]``, which mypy deems disjoint from
    our ``Screen[None]`` screens (so ``app.screen is screen`` would narrow both sides to nonsense)."""
    return app.screen
