"""TUI responsiveness on a big bucket: completion latency from cache, and drawing a 1,000-series range result.

    .venv/bin/python bench/bench_tui.py [--series 100000] [--runs 30] [--workdir /tmp/thanos-tools-bench-tui]

Data: `thanos-tools bucket generate` (2 h at 15 s scrape), reused when the workdir already holds it.
Completion is measured three ways: the label lookups that fill the cache (in a worker, never on the UI
thread), the pure completion step from cache (context + candidates), and the whole UI-thread handler
in the headless app (context, candidates, dropdown rebuilt) plus one screen refresh. The graph is
measured as the plot function alone and as the Graph tab taking a 1,000-series range result and
refreshing the screen. Prints a Markdown table; writes bench/results/tui.json. Nothing asserts timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONTEXTS = {
    "metric name prefix": "http_req",
    "label names in {}": "http_requests_total{",
    "label values after =": 'http_requests_total{instance="10.',
    "grouping labels": "sum by (",
    "function prefix": "histogram_q",
}


def generate(data: Path, series: int) -> None:
    if data.exists() and any(data.iterdir()):
        return
    subprocess.run([sys.executable, "-m", "thanostools", "bucket", "generate", "--bucket", str(data), "--series",
                    str(series), "--duration", "2h", "--seed", "1"], check=True)


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"median_ms": statistics.median(times) * 1000, "p99_ms": p99 * 1000}


def fill_cache(source: Any, start: int, end: int) -> tuple[Any, dict[str, float]]:
    """Fetch every key the contexts need (as the workers do) and time each fetch."""
    from thanostools.tui import complete

    cache = complete.CompletionCache()
    fetch_ms: dict[str, float] = {}
    for text in CONTEXTS.values():
        complete.candidates(complete.context_at(text, len(text)), cache)
        for key in cache.take_missing():
            t0 = time.perf_counter()
            values = complete.fetch(source, key, start, end)
            fetch_ms[f"{key[0]} {key[2] or ''} {key[1] or '(all)'}".strip()] = (time.perf_counter() - t0) * 1000
            cache.put(key, values)
    return cache, fetch_ms


async def ui_figures(source: Any, cache: Any, now: int, outcome: Any, runs: int) -> dict[str, Any]:
    from thanostools.tui.app import AppConfig, ThanosToolsApp
    from thanostools.tui.history import History
    from thanostools.tui.widgets.graph import GraphView

    history = History(Path(tempfile.mkdtemp()) / "history.json")
    app = ThanosToolsApp(AppConfig(source, history=history, now=lambda: now, cursor_blink=False))
    out: dict[str, Any] = {}
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        console = app.console_screen
        assert console is not None
        app.completion_cache = cache
        for name, text in CONTEXTS.items():
            console.editor.load_text(text)
            console.editor.move_cursor(console.editor.document.end)
            handler, with_refresh = [], []
            for _ in range(runs):
                t0 = time.perf_counter()
                console.update_completion(explicit=True)
                handler.append(time.perf_counter() - t0)
                await pilot.pause()
                with_refresh.append(time.perf_counter() - t0)
            out[f"completion UI: {name}"] = {**summary(handler), "with_refresh": summary(with_refresh),
                                             "items": len(console.menu.items)}
        console.menu.close()
        console.tabs.show_tab("graph")
        await pilot.pause()
        graph = console.query_one(GraphView)
        times = []
        for _ in range(max(3, runs // 5)):
            t0 = time.perf_counter()
            graph.show(outcome)
            await pilot.pause()
            times.append(time.perf_counter() - t0)
        out["graph tab: 1,000 series shown and refreshed"] = summary(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--workdir", default="/tmp/thanos-tools-bench-tui")
    args = ap.parse_args()
    os.environ.setdefault("THANOS_TOOLS_DATA_DIR", tempfile.mkdtemp())

    from thanostools.core.workspace import BucketWorkspace
    from thanostools.tui import complete
    from thanostools.tui.braille import PlotSeries, color_for, render_plot
    from thanostools.tui.sources import BucketSource, CancelToken, Outcome, QuerySettings

    data = Path(args.workdir) / "data"
    data.mkdir(parents=True, exist_ok=True)
    generate(data, args.series)
    workspace = BucketWorkspace.open(str(data))
    blocks = workspace.blocks()
    series_total = sum(b.meta.stats.num_series for b in blocks)
    now = max(b.meta.max_time for b in blocks) - 60_000
    source = BucketSource(workspace)
    start = now - 3_600_000

    cache, fetch_ms = fill_cache(source, start, now)
    results: dict[str, Any] = {"series_in_bucket": series_total, "label_fetch_ms (worker, cold)": fetch_ms}
    for name, text in CONTEXTS.items():
        ctx = complete.context_at(text, len(text))
        items = complete.candidates(ctx, cache) or []
        results[f"completion from cache: {name}"] = {
            **summary(timed(lambda t=text: complete.candidates(complete.context_at(t, len(t)), cache), args.runs)),
            "items": len(items)}

    t0 = time.perf_counter()
    full = source.range("rate(http_requests_total[5m])", start, now, 30_000, QuerySettings(), CancelToken())
    results["range query rate(http_requests_total[5m]) 1h/30s (engine)"] = {
        "seconds": time.perf_counter() - t0, "series": len(full.result.series)}
    full.result.series = full.result.series[:1000]
    outcome = Outcome(full.query, "range", full.result, "", 0.0, 0, start_ms=start, end_ms=now, step_ms=30_000)
    plot = [PlotSeries(s.t, s.v, color_for(i)) for i, s in enumerate(outcome.result.series)]
    results["plot function: 1,000 series × 121 points, 190×40 cells"] = summary(
        timed(lambda: render_plot(plot, start, now, 190, 40, step_ms=30_000), 5))
    results["plot function, stacked"] = summary(
        timed(lambda: render_plot(plot, start, now, 190, 40, step_ms=30_000, stacked=True), 5))
    results.update(asyncio.run(ui_figures(source, cache, now, outcome, args.runs)))

    print(f"bucket: {series_total:,} series in {len(blocks)} block(s)\n")
    print("| measurement | median ms | p99 ms | items |\n| --- | ---: | ---: | ---: |")
    for name, value in results.items():
        if isinstance(value, dict) and "median_ms" in value:
            refresh = value.get("with_refresh")
            extra = f" (+ refresh: {refresh['median_ms']:.1f} / {refresh['p99_ms']:.1f})" if refresh else ""
            print(f"| {name}{extra} | {value['median_ms']:.2f} | {value['p99_ms']:.2f} | {value.get('items', '')} |")
    for name, ms in fetch_ms.items():
        print(f"| label fetch into the cache (worker): {name} | {ms:.1f} | | |")
    q = results["range query rate(http_requests_total[5m]) 1h/30s (engine)"]
    print(f"\nrange query feeding the graph: {q['seconds']:.2f} s for {q['series']:,} series (graph gets 1,000)")
    out = ROOT / "bench" / "results" / "tui.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
