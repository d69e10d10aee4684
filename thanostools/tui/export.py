"""Exports of a query outcome: CSV and JSON files, a ``thanos-tools query`` command, a curl command."""

from __future__ import annotations

import csv
import io
import shlex
from pathlib import Path

from thanostools.core.render.apijson import format_sample_ts
from thanostools.core.render.fastjson import result_points
from thanostools.core.timeutil import format_time_ms
from thanostools.tui.httpsource import seconds
from thanostools.tui.sources import HttpSource, Outcome, QuerySettings, Source

SERVE_URL = "http://127.0.0.1:10902"  # `thanos-tools serve` listens here by default


def to_csv(outcome: Outcome) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["series", "timestamp", "value"])
    w.writerows([m, format_sample_ts(t), v] for m, t, v in result_points(outcome.result))
    return buf.getvalue()


def write_export(outcome: Outcome, path: str | Path) -> Path:
    """CSV for ``.csv`` files, otherwise the API JSON exactly as the Raw tab shows it."""
    target = Path(path).expanduser()
    text = to_csv(outcome) if target.suffix.lower() == ".csv" else outcome.raw_json + "\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def query_command(outcome: Outcome, source: Source, settings: QuerySettings) -> str:
    """The ``thanos-tools query`` command that reproduces the outcome on the same bucket."""
    args = ["thanos-tools", "query", outcome.query]
    if outcome.kind == "range":
        args += ["--start", format_time_ms(outcome.start_ms), "--end", format_time_ms(outcome.end_ms),
                 "--step", f"{outcome.step_ms / 1000:g}s"]
    else:
        args += ["--time", format_time_ms(outcome.time_ms)]
    if settings.dedup and settings.replica_labels:
        args.append("--dedup")
        for r in settings.replica_labels:
            args += ["--replica-label", r]
    if settings.max_source_resolution != "raw":
        args += ["--max-source-resolution", settings.max_source_resolution]
    if source.workspace is not None:
        args += ["--bucket", source.workspace.bucket.url]
    if settings.promql_features:
        args.append(f"--enable-feature={','.join(sorted(settings.promql_features))}")
    if outcome.query.startswith("-"):
        args.insert(2, "--")
    return shlex.join(args)


def curl_command(outcome: Outcome, source: Source, settings: QuerySettings) -> str:
    """A curl call of the HTTP API (the source's own URL, or ``thanos-tools serve``'s default)."""
    base = source.client.url if isinstance(source, HttpSource) else SERVE_URL
    if outcome.kind == "range":
        path = "/api/v1/query_range"
        params = [("query", outcome.query), ("start", seconds(outcome.start_ms)), ("end", seconds(outcome.end_ms)),
                  ("step", seconds(outcome.step_ms))]
    else:
        path = "/api/v1/query"
        params = [("query", outcome.query), ("time", seconds(outcome.time_ms))]
    params += HttpSource.thanos_params(settings)[:3]
    params += [("replicaLabels[]", r) for r in settings.replica_labels]
    parts = ["curl", "-sG", base + path]
    for k, v in params:
        parts += ["--data-urlencode", f"{k}={v}"]
    text = shlex.join(parts)
    if isinstance(source, HttpSource) and source.client.auth.header():
        text += ' -H "Authorization: $AUTH_HEADER"'
    return text
