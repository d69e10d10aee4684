"""The TUI's UI-free parts: completion contexts, highlighting, time controls, plots, exports, history."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from tests.tui.tuihelp import NOW, make_bucket
from thanostools.core.errors import ParseError
from thanostools.core.promql.parser.parse import parse_expr
from thanostools.core.workspace import BucketWorkspace
from thanostools.tui import complete
from thanostools.tui.braille import PlotSeries, render_plot, stack
from thanostools.tui.complete import CompletionCache, Where, candidates, context_at, fuzzy_match
from thanostools.tui.explain import build_tree, flatten, summarize
from thanostools.tui.export import curl_command, query_command, to_csv, write_export
from thanostools.tui.highlight import highlights
from thanostools.tui.history import History
from thanostools.tui.sources import BucketSource, CancelToken, QuerySettings
from thanostools.tui.timectl import TimeState, parse_step


@pytest.mark.parametrize(("text", "where", "prefix", "extra"), [
    ('up{job="ap', Where.LABEL_VALUE, "ap", {"label": "job", "metric": "up", "quote": '"'}),
    ("up{job=", Where.LABEL_VALUE, "", {"label": "job", "quote": None}),
    ("up{job!~'x", Where.LABEL_VALUE, "x", {"label": "job", "quote": "'"}),
    ("up{jo", Where.LABEL_NAME, "jo", {"metric": "up"}),
    ('{__name__="up", jo', Where.LABEL_NAME, "jo", {"metric": "up"}),
    ("sum by (jo", Where.LABEL_NAME, "jo", {}),
    ("sum(rate(x_total[5m])) by (", Where.LABEL_NAME, "", {"metric": "x_total"}),
    ("a * on(", Where.LABEL_NAME, "", {}),
    ("rate(up[5", Where.DURATION, "5", {}),
    ("up a", Where.OPERATOR, "a", {}),
    ("rat", Where.EXPRESSION, "rat", {"history": True}),
    ("histogram_quantile(0.9, ", Where.EXPRESSION, "", {"history": False}),
    ('label_replace(up, "a', Where.NOTHING, "", {}),
    ("up offset 5m", Where.NOTHING, "m", {}),
])
def test_completion_context(text: str, where: Where, prefix: str, extra: dict[str, object]) -> None:
    ctx = context_at(text, len(text))
    assert (ctx.where, ctx.prefix) == (where, prefix)
    for key, value in extra.items():
        assert getattr(ctx, key) == value


class FakeData:
    def metric_names(self) -> list[str] | None:
        return ["rate_limited_total", "up", "http_requests_total"]

    def label_names(self, metric: str | None) -> list[str] | None:
        return ["__name__", "code", "job"] if metric == "http_requests_total" else None

    def label_values(self, label: str, metric: str | None) -> list[str] | None:
        return ["api", 'we"ird'] if label == "job" else None

    def history(self) -> list[str]:
        return ["rate(foo[1m])", "up == 0"]


def test_candidates_by_context() -> None:
    data = FakeData()
    items = candidates(context_at("rat", 3), data)
    assert items is not None
    labels = [i.label for i in items]
    assert labels[:2] == ["rate(foo[1m])", "rate_limited_total"]  # history first, then metrics
    rate = next(i for i in items if i.label == "rate")
    assert rate.insert == "rate(" and rate.detail == "rate(range vector) → instant vector" and rate.help
    values = candidates(context_at('http_requests_total{job="', 25), data)
    assert values is not None and [v.insert for v in values] == ['"api"', '"we\\"ird"']
    names = candidates(context_at("http_requests_total{", 20), data)
    assert names is not None and [n.label for n in names] == ["code", "job"]  # __name__ is not offered
    assert candidates(context_at("up{", 3), data) is None  # not fetched yet
    assert [i.label for i in candidates(context_at("up o", 4), data) or []] == ["or", "offset", "on"]


def test_completion_cache_never_waits_and_expires() -> None:
    clock = [0.0]
    cache = CompletionCache(ttl_s=10, clock=lambda: clock[0])
    assert cache.label_values("job", "up") is None
    assert cache.take_missing() == [("values", "up", "job")]
    assert cache.label_values("job", "up") is None and cache.take_missing() == []  # already pending
    cache.put(("values", "up", "job"), ["api"])
    assert cache.label_values("job", "up") == ["api"]
    clock[0] = 11
    assert cache.label_values("job", "up") == ["api"]  # stale value served while refreshing
    assert cache.take_missing() == [("values", "up", "job")]


def test_completion_fetches_from_the_bucket(tmp_path: Path) -> None:
    source = BucketSource(BucketWorkspace.open(str(make_bucket(tmp_path / "b"))))
    start, end = NOW - 3_600_000, NOW
    assert complete.fetch(source, ("values", "up", "job"), start, end) == ["api", "db"]
    assert "code" in complete.fetch(source, ("names", "http_requests_total", ""), start, end)
    assert complete.fetch(source, ("values", "", "__name__"), start, end) == [
        "http_requests_total", "temperature_celsius", "up"]


def test_fuzzy_match_prefers_substrings() -> None:
    assert fuzzy_match("req", "http_requests_total") is not None
    assert fuzzy_match("htrq", "http_requests_total") is not None
    assert fuzzy_match("zz", "up") is None
    sub = fuzzy_match("up", "up")
    scattered = fuzzy_match("up", "u_p")
    assert sub is not None and scattered is not None and sub[0] > scattered[0]


def test_highlights_from_our_lexer() -> None:
    hl = highlights('sum by (job) (rate(x{a="é"}[5m]))')
    names = {(a, b): n for a, b, n in hl[0]}
    assert names[(0, 3)] == "pq.keyword" and names[(8, 11)] == "pq.label" and names[(14, 18)] == "pq.function"
    assert names[(19, 20)] == "pq.metric" and names[(23, 27)] == "pq.string"  # byte offsets: é is 2 bytes
    assert (3, 4, "pq.error") in highlights("up\nfoo)", error_pos=6)[1]


def test_time_controls() -> None:
    state = TimeState()
    assert state.zoom(1).range_ms == 1_800_000 and state.zoom(-1).range_ms == 7_200_000
    panned = state.pan(-1, NOW)
    assert panned.end_ms == NOW - 1_800_000 and panned.pan(1, NOW).end_ms is None  # back at now: follow the clock
    assert state.step(120) == 30_000 and state.cycle_resolution().step(120) == 15_000
    assert parse_step("15") == 15_000 and parse_step("1m") == 60_000 and parse_step("auto") is None


def test_braille_plot_draws_lines_gaps_and_stacks() -> None:
    t = np.arange(0, 600_000, 15_000, dtype=np.int64)
    series = [PlotSeries(t, np.linspace(0, 10, t.size), "red"), PlotSeries(t, np.full(t.size, 5.0), "blue")]
    lines = render_plot(series, 0, int(t[-1]), 60, 12, step_ms=15_000)
    text = "\n".join(line.plain for line in lines)
    assert len(lines) == 12 and "┤" in text and "00:00" in text
    assert any("\u2800" < ch <= "\u28ff" for ch in text)
    stacked = stack(series)
    assert stacked[1].v[0] == 5.0 and stacked[1].v[-1] == 15.0
    gap = PlotSeries(np.array([0, 15_000, 300_000]), np.array([1.0, 2.0, 3.0]), "red")
    assert render_plot([gap], 0, 300_000, 40, 8, step_ms=15_000)
    assert render_plot([], 0, 1, 40, 8)[0].plain == "no data points in range"


def test_exports_and_commands(tmp_path: Path) -> None:
    source = BucketSource(BucketWorkspace.open(str(make_bucket(tmp_path / "b"))))
    settings = QuerySettings()
    out = source.range("up", NOW - 60_000, NOW, 30_000, settings, CancelToken())
    rows = list(csv.reader(io.StringIO(to_csv(out))))
    assert rows[0] == ["series", "timestamp", "value"] and len(rows) == 1 + 2 * 2 * 3  # 2 clusters × 2 jobs × 3
    path = write_export(out, tmp_path / "r.json")
    assert json.loads(path.read_text())["data"]["resultType"] == "matrix"
    cmd = query_command(out, source, settings)
    assert cmd.startswith("thanos-tools query up --start ") and "--step 30s" in cmd and "--dedup" in cmd
    assert f"--bucket {tmp_path / 'b'}" in cmd
    curl = curl_command(out, source, settings)
    assert "/api/v1/query_range" in curl and "--data-urlencode step=30" in curl


def test_experimental_functions_follow_the_feature_flag(tmp_path: Path) -> None:
    source = BucketSource(BucketWorkspace.open(str(make_bucket(tmp_path / "b"))))
    query = 'sort_by_label(up, "job")'
    with pytest.raises(ParseError, match='function "sort_by_label" is not enabled'):
        source.instant(query, NOW, QuerySettings(), CancelToken())
    enabled = QuerySettings(promql_features=frozenset({"promql-experimental-functions"}))
    out = source.instant(query, NOW, enabled, CancelToken())
    assert out.result.series
    assert query_command(out, source, enabled).endswith(" --enable-feature=promql-experimental-functions")
    assert "--enable-feature" not in query_command(source.instant("up", NOW, QuerySettings(), CancelToken()),
                                                   source, QuerySettings())


def test_history_persists_searches_and_keeps_stars(tmp_path: Path) -> None:
    path = tmp_path / "h" / "history.json"
    h = History(path, max_unstarred=2)
    h.add("up", 1)
    h.add("rate(x[5m])", 2)
    h.toggle_star("up")
    h.add("sum(up)", 3)
    h.add("count(up)", 4)
    again = History(path, max_unstarred=2)
    assert again.queries() == ["count(up)", "sum(up)", "up"]  # the oldest unstarred one was pruned
    assert again.search("up")[0].query == "up"  # starred first
    assert [e.query for e in again.search("sum up")] == ["sum(up)"]
    path.write_text("{broken")
    assert History(path).load_error is not None


def test_explain_tree_summaries(tmp_path: Path) -> None:
    root = build_tree(parse_expr('sum by (job) (rate(http_requests_total{code="200"}[5m])) / 2'))
    nodes = flatten(root)
    assert [n.what for n in nodes] == ["binary /", "aggregation sum by (job)", "function rate", "range selector",
                                       "selector", "number"]
    source = BucketSource(BucketWorkspace.open(str(make_bucket(tmp_path / "b"))))
    out = source.instant(nodes[4].text, NOW, QuerySettings(), CancelToken())
    assert summarize(out.result) == "2 series · cluster: 2, __name__: 1, code: 1, job: 1"
