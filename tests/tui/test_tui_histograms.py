"""The console over native histograms (the real 2.42 block of the shared test data, run 2), driven with Pilot."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.server.servehelp import ServeFactory
from tests.sharedfiles import native_histograms_dir
from tests.tui.test_tui_console import drive, run_query
from tests.tui.tuihelp import make_app, screen_text, settle
from thanostools.core.promql.floathist import FloatHistogram
from thanostools.tui.app import ThanosToolsApp
from thanostools.tui.httpsource import HISTOGRAMS_RAW_ONLY, PromHTTPClient
from thanostools.tui.sources import CancelToken, HttpSource, QuerySettings
from thanostools.tui.widgets.histbars import BucketBars, bucket_bars
from thanostools.tui.widgets.table import ResultTable

T0 = 1796515200000


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = native_histograms_dir()
    if data is None:
        pytest.skip("shared native-histogram test data absent")
    root = tmp_path_factory.mktemp("tui-nh")
    shutil.copytree(data / "run2" / "01M94ZPHPTYFJKBQ1PMXW21M19", root / "01M94ZPHPTYFJKBQ1PMXW21M19")
    return root


def test_table_shows_count_and_sum_and_b_toggles_the_bucket_bars(bucket: Path, tmp_path: Path) -> None:
    async def scenario(app: ThanosToolsApp, pilot: Any) -> None:
        # Replica deduplication carries histograms only once the StoreAPI branch (dedup with histograms) is in.
        screen = app.console_screen
        assert screen is not None
        screen.settings = dataclasses.replace(screen.settings, dedup=False)
        await run_query(app, pilot, 'nh_edge{case=~"mixed|hint_yes"}')
        table = app.screen.query_one(ResultTable)
        texts = {r.series: r.value_text for r in table.shown}
        assert texts['nh_edge{case="mixed"}'].startswith("{count:12 sum:10 buckets:3 ")
        assert texts['nh_edge{case="hint_yes"}'].startswith("{count:")
        bars = app.screen.query_one(BucketBars)
        assert not bars.display
        table.focus()
        table.move_cursor(row=[r.series for r in table.shown].index('nh_edge{case="mixed"}'))
        await pilot.press("b")
        await settle(app, pilot)
        assert bars.display
        text = screen_text(app)
        assert "(0.7071, 1]" in text and "count 12  sum 10" in text
        await pilot.press("b")
        await settle(app, pilot)
        assert not bars.display

    drive(make_app(bucket, tmp_path, now=T0 + 105_000), scenario)


def test_bucket_bars_scale_to_the_largest_bucket() -> None:
    h = FloatHistogram(schema=0, count=6.0, sum=9.0, pos_idx=np.array([1, 2, 3], np.int64),
                       pos=np.array([4.0, 0.0, 2.0]))
    assert bucket_bars(h, width=8) == ["(1, 2] ████████ 4", "(4, 8] ████     2"]
    assert bucket_bars(h, width=8, limit=1) == ["(1, 2] ████████ 4", "… 1 more buckets"]
    assert bucket_bars(FloatHistogram()) == ["no populated buckets"]


def test_http_source_says_histograms_are_in_the_raw_tab(bucket: Path, tmp_path: Path) -> None:
    """Over an HTTP API (our own serve on the block) histogram samples are not dropped silently."""
    with ServeFactory(tmp_path) as factory:
        server = factory("--bucket", str(bucket))
        source = HttpSource(PromHTTPClient(server.url))
        out = source.instant('nh_edge{case="mixed"}', T0 + 105_000, QuerySettings(dedup=False), CancelToken())
    assert HISTOGRAMS_RAW_ONLY in out.warnings
    assert '"histogram":[1796515305,{"count":"12","sum":"10"' in out.raw_json
