"""``thanos-tools query EXPR``: evaluate PromQL over the bucket's blocks, instant or range."""

from __future__ import annotations

import csv
import io
import re
from typing import TYPE_CHECKING, Any

import click

from thanostools.cli.options import TIME, bucket_options, enable_feature_option, open_workspace
from thanostools.cli.output import emit, render_table
from thanostools.core.constants import RESOLUTIONS_BY_NAME
from thanostools.core.errors import ConfigError
from thanostools.core.timeutil import format_time_ms, now_ms, parse_duration_ms

if TYPE_CHECKING:
    from thanostools.core.promql.engine import QueryResult
    from thanostools.core.promql.features import Features

_SECONDS = re.compile(r"^\d+(\.\d+)?$")


def parse_step_ms(text: str, what: str = "--step") -> int:
    """A duration (``1m30s``) or a number of seconds (``15``, ``15.25``) in milliseconds."""
    s = text.strip()
    if _SECONDS.match(s):
        return round(float(s) * 1000)
    try:
        return parse_duration_ms(s)
    except ConfigError:
        raise ConfigError(f"invalid {what} {text!r} (use seconds like 15 or a duration like 1m)") from None


def parse_max_source_resolution(text: str, step_ms: int | None) -> int:
    """``raw``, ``5m``, ``1h``, any duration, or ``auto`` (step/5 for range queries, raw for instant ones,
    as the Thanos querier does)."""
    s = text.strip().lower()
    if s == "auto":
        return step_ms // 5 if step_ms else 0
    if s in RESOLUTIONS_BY_NAME:
        return RESOLUTIONS_BY_NAME[s]
    return parse_step_ms(s, "--max-source-resolution")


def _table(result: QueryResult) -> str:
    from thanostools.core.render.fastjson import result_points
    from thanostools.core.render.histjson import histogram_summary

    points = list(result_points(result, histogram_summary))
    if result.result_type == "vector":
        return render_table([[m, v] for m, _, v in points], ["metric", "value"])
    if result.result_type == "matrix":
        return render_table([[m, format_time_ms(t), v] for m, t, v in points], ["metric", "time", "value"])
    return render_table([[format_time_ms(t), v] for _, t, v in points], ["time", result.result_type])


def _csv(result: QueryResult) -> str:
    from thanostools.core.render.apijson import format_sample_ts
    from thanostools.core.render.fastjson import result_points

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["metric", "timestamp", "value"])
    w.writerows([m, format_sample_ts(t), v] for m, t, v in result_points(result))
    return buf.getvalue()


def render(result: QueryResult, output: str, stats: str = "") -> str:
    """The result as ``output``; ``stats`` ("", "on" or "all"): json gets the API's ``stats`` object in its data
    object, the other formats print it to stderr."""
    from thanostools.core.render.fastjson import query_data_json
    from thanostools.core.render.statsjson import stats_json

    stats_text = stats_json(result.stats, per_step=stats == "all") if stats else ""
    if output == "json":
        data = query_data_json(result)
        return (data[:-1] + f',"stats":{stats_text}}}' if stats else data) + "\n"
    if stats:
        click.echo(f"stats: {stats_text}", err=True)
    if output == "csv":
        return _csv(result)
    return _table(result)


def _report(result: QueryResult) -> None:
    for w in result.warnings:
        click.echo(f"warning: {w}", err=True)
    for i in result.infos:
        click.echo(f"info: {i}", err=True)


def _check_range(time_ms: int | None, start: int | None, end: int | None, step: str | None) -> bool:
    """Whether this is a range query; rejects incomplete or mixed flag sets."""
    given = [x is not None for x in (start, end, step)]
    if any(given) and not all(given):
        raise click.UsageError("a range query needs all of --start, --end and --step")
    if all(given) and time_ms is not None:
        raise click.UsageError("--time is for instant queries; do not combine it with --start/--end/--step")
    return all(given)


@click.command("query")
@click.argument("expr")
@click.option("--time", "time_ms", type=TIME, default=None, metavar="TIME",
              help="Evaluation time of an instant query (RFC3339, unix ms, now-1h; default now).")
@click.option("--start", type=TIME, default=None, metavar="TIME", help="Start of a range query.")
@click.option("--end", type=TIME, default=None, metavar="TIME", help="End of a range query (inclusive).")
@click.option("--step", default=None, metavar="DURATION", help="Range query resolution: seconds or a duration.")
@click.option("-o", "--output", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="Output format; json prints the `data` object of Prometheus's query API.")
@click.option("--lookback-delta", default="5m", show_default=True, metavar="DURATION",
              help="How far back an instant selector looks for a sample.")
@click.option("--dedup", is_flag=True, help="Merge replicas (series equal but for --replica-label labels).")
@click.option("--replica-label", "replica_labels", multiple=True, metavar="NAME",
              help="Label that tells replicas apart (repeatable).")
@click.option("--max-source-resolution", default="0s", show_default=True, metavar="RES",
              help="Coarsest downsampled data to use: raw, 5m, 1h, a duration, or auto (step/5).")
@click.option("--timeout", default="2m", show_default=True, metavar="DURATION", help="Give up after this long.")
@click.option("--max-samples", default=50_000_000, show_default=True,
              help="Most samples a query may hold in memory at once.")
@click.option("--partial-response/--no-partial-response", default=True, show_default=True,
              help="Answer from the readable blocks with a warning per block left out (as the Thanos querier "
                   "does by default), or fail when a block's meta.json or data cannot be read.")
@click.option("--stats", "stats", flag_value="on", default="",
              help="Add Prometheus's query statistics (timings, samples read, peak samples held): inside the data "
                   "object with -o json, else on stderr.")
@click.option("--per-step-stats", "stats", flag_value="all",
              help="As --stats, with the samples read at each step (the API's stats=all).")
@enable_feature_option
@bucket_options
def query(expr: str, time_ms: int | None, start: int | None, end: int | None, step: str | None, output: str,
          lookback_delta: str, dedup: bool, replica_labels: tuple[str, ...], max_source_resolution: str,
          timeout: str, max_samples: int, partial_response: bool, stats: str, features: Features,
          **kw: Any) -> None:
    """Evaluate the PromQL expression EXPR over the bucket's blocks (instant, or range with --start/--end/--step).

    Put `--` before an EXPR that starts with a minus sign: `thanos-tools query -- -up`.
    """
    from thanostools.core.catalog import CompactionLeftovers
    from thanostools.core.dedup import deduplicated
    from thanostools.core.partial import PartialResponse
    from thanostools.core.promql.engine import PromQLEngine, QueryOptions
    from thanostools.core.promql.parser.parse import parse_expr
    from thanostools.core.querier import bucket_querier

    is_range = _check_range(time_ms, start, end, step)
    step_ms = parse_step_ms(step) if step is not None else None
    if step_ms is not None and step_ms <= 0:
        raise ConfigError("zero or negative query resolution step widths are not accepted")
    if is_range and end is not None and start is not None and end < start:
        raise ConfigError("end timestamp must not be before start time")
    parse_expr(expr, features=features.promql)  # syntax errors before the bucket is opened
    options = QueryOptions(lookback_delta_ms=parse_step_ms(lookback_delta, "--lookback-delta"),
                           timeout_s=parse_step_ms(timeout, "--timeout") / 1000, max_samples=max_samples,
                           features=features.promql)
    workspace = open_workspace(kw)
    blocks = bucket_querier(workspace.catalog.view(CompactionLeftovers()), PartialResponse(partial_response),
                            max_source_resolution_ms=parse_max_source_resolution(max_source_resolution, step_ms))
    querier = deduplicated(blocks, replica_labels, dedup)
    engine = PromQLEngine(querier, options)
    if is_range:
        assert start is not None and end is not None and step_ms is not None
        result = engine.range(expr, start, end, step_ms)
    else:
        result = engine.instant(expr, time_ms if time_ms is not None else now_ms())
    _report(result)
    emit(render(result, output, stats))
