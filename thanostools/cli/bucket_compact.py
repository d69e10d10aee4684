"""``thanos-tools bucket compact``: the Thanos compactor over a bucket (a dry run unless --no-dry-run)."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from thanostools.cli.bucket_lifecycle import PLAN_COLUMNS, dry_run_options, finish_plan
from thanostools.cli.options import bucket_options, open_workspace, parse_size
from thanostools.cli.output import emit, output_option, render_table, write_rows
from thanostools.core.constants import resolution_name
from thanostools.core.errors import ConfigError
from thanostools.core.labels import format_labels
from thanostools.core.timeutil import format_time_ms, human_duration, parse_duration_ms

if TYPE_CHECKING:
    from thanostools.core.compact.compactor import CompactOptions, CompactReport
    from thanostools.core.compact.planner import GroupInfo, PlanResult
    from thanostools.core.lifecycle import Plan

DEFAULT_RANGES = "2h,8h,2d,14d"


def _options(func: Any) -> Any:
    opts = [
        click.option("--compact.ranges", "ranges", default=DEFAULT_RANGES, show_default=True, metavar="LIST",
                     help="Target block ranges, comma separated, increasing."),
        click.option("--consistency-delay", default="30m", show_default=True, metavar="DURATION",
                     help="Ignore blocks uploaded more recently than this (except compactor output)."),
        click.option("--compact.enable-vertical-compaction", "vertical", is_flag=True,
                     help="Merge overlapping blocks of a group instead of halting it."),
        click.option("--dedup.replica-label", "--deduplication.replica-label", "replica_labels", multiple=True,
                     metavar="NAME", help="External label telling replicas apart (repeatable); replicas are "
                                          "grouped together and merged (implies vertical compaction)."),
        click.option("--dedup.func", "--deduplication.func", "dedup_func", type=click.Choice(["chain", "penalty"]),
                     default="chain", show_default=True,
                     help="How overlapping samples are merged: chain (identical timestamps once) or penalty."),
        click.option("--compact.max-index-size", "max_index_size", default="64GiB", show_default=True,
                     metavar="SIZE", help="Never build an index bigger than this: when the inputs' indexes add up "
                                          "to more, the largest gets a no-compact mark (index-size-exceeding)."),
        click.option("--halt-on-error", is_flag=True,
                     help="Stop at the first unreadable block or halted group instead of quarantining it "
                          "(no-compact mark) and going on."),
        click.option("--downsampling.disable", "no_downsampling", is_flag=True, help="Do not downsample."),
        click.option("--retention.resolution-raw", "ret_raw", default="0d", show_default=True, metavar="DURATION",
                     help="Mark raw blocks for deletion this long after their end (0d: keep forever)."),
        click.option("--retention.resolution-5m", "ret_5m", default="0d", show_default=True, metavar="DURATION"),
        click.option("--retention.resolution-1h", "ret_1h", default="0d", show_default=True, metavar="DURATION"),
        click.option("--delete-delay", default="48h", show_default=True, metavar="DURATION",
                     help="Delete blocks marked for deletion longer ago than this, as the Thanos compactor does."),
        click.option("--partial-upload-age", default="48h", show_default=True, metavar="DURATION",
                     help="Delete partial uploads (no meta.json) older than max(this, --consistency-delay) by their "
                          "ULID time. 48h is the Thanos compactor's fixed threshold: an upload may still be in "
                          "progress, so shorten it only when no uploader is running."),
        click.option("--cleanup.disable", "no_cleanup", is_flag=True,
                     help="Delete nothing: leave marked blocks and partial uploads to `bucket cleanup`."),
        click.option("--wait", is_flag=True, help="Keep running: compact again every --wait-interval (needs "
                                                  "--no-dry-run; a dry run plans once)."),
        click.option("--wait-interval", default="5m", show_default=True, metavar="DURATION"),
        click.option("--work-dir", metavar="DIR", type=click.Path(file_okay=False),
                     help="Where inputs are downloaded and outputs built, in a directory per run that is removed "
                          "afterwards, or by the next run if this one is killed (default: <cache dir>/work)."),
        output_option(("table", "json")),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def _ranges(text: str) -> tuple[int, ...]:
    try:
        ranges = tuple(parse_duration_ms(p) for p in text.split(",") if p.strip())
    except ConfigError as exc:
        raise ConfigError(f"--compact.ranges: {exc}") from None
    if not ranges or list(ranges) != sorted(set(ranges)) or ranges[0] <= 0:
        raise ConfigError(f"--compact.ranges {text!r}: give positive durations in increasing order, e.g. 2h,8h,2d")
    return ranges


def _build_options(kw: dict[str, Any]) -> CompactOptions:
    from thanostools.core.compact.compactor import CompactOptions
    from thanostools.core.compact.planner import PlanOptions

    plan = PlanOptions(ranges=_ranges(kw["ranges"]), consistency_delay_ms=parse_duration_ms(kw["consistency_delay"]),
                       replica_labels=tuple(kw["replica_labels"]), vertical=kw["vertical"])
    retention = {0: parse_duration_ms(kw["ret_raw"]), 300_000: parse_duration_ms(kw["ret_5m"]),
                 3_600_000: parse_duration_ms(kw["ret_1h"])}
    return CompactOptions(plan=plan, dedup_func=kw["dedup_func"], halt_on_error=kw["halt_on_error"],
                          downsampling=not kw["no_downsampling"], retention=retention, work_dir=kw["work_dir"],
                          max_index_size=parse_size(kw["max_index_size"], "--compact.max-index-size"),
                          delete_delay_ms=None if kw["no_cleanup"] else parse_duration_ms(kw["delete_delay"]),
                          partial_upload_age_ms=parse_duration_ms(kw["partial_upload_age"]))


def compact_cmd(dry_run: bool, output: str, wait: bool, wait_interval: str, **kw: Any) -> None:
    """Compact blocks the way the Thanos compactor does, then downsample, apply retention and clean up.

    Blocks of one group (resolution and external labels) are merged into aligned ranges; inputs are
    marked for deletion once the new block is uploaded. An unreadable block gets a no-compact mark and
    the others go on; overlapping blocks halt their group unless vertical compaction is enabled. The
    command fails when anything was quarantined or halted. Without --no-dry-run it only prints the plan
    (why every other block waits, and what would be marked, downsampled and deleted) and changes nothing.
    """
    from thanostools.core.compact.compactor import Compactor

    opts = _build_options(kw)
    interval = parse_duration_ms(wait_interval)
    if dry_run and wait:
        raise ConfigError("--wait needs --no-dry-run: a dry run prints the plan once and changes nothing")
    engine = open_workspace(kw)
    if dry_run:
        compactor = Compactor(engine.bucket, opts)
        result, plan = compactor.dry_run()
        _print_plan(result, plan, output)
        _report_unreadable_metas(compactor.report)
        if compactor.report.unreadable_metas:
            sys.exit(1)  # the real run would skip these blocks and fail at the end
        return
    while True:
        report = Compactor(engine.bucket, opts).run()
        _print_report(report, output)
        if not wait or (report.stopped and opts.halt_on_error):
            break
        time.sleep(interval / 1000)
    if report.failed:
        sys.exit(1)


# --- rendering ---------------------------------------------------------------------------------------------------


def _plan_docs(result: PlanResult) -> dict[str, Any]:
    plans = []
    for n, p in enumerate(result.plans, 1):
        group = result.groups[p.group]
        plans.append({
            "plan": n, "group": p.group, "labels": dict(group.labels), "resolution": group.resolution,
            "kind": p.kind, "range_ms": p.range_ms, "min_time": p.min_time, "max_time": p.max_time,
            "level": p.level, "after": list(p.after),
            "blocks": [{"ulid": m.ulid, "min_time": m.min_time, "max_time": m.max_time, "level": m.level}
                       for m in p.blocks],
        })
    unplanned = [{"ulid": u.meta.ulid, "group": u.group, "min_time": u.meta.min_time, "max_time": u.meta.max_time,
                  "level": u.meta.level, "reason": u.reason, "detail": u.detail}
                 for u in sorted(result.unplanned, key=lambda u: (u.group, u.meta.min_time, u.meta.ulid))]
    return {"plans": plans, "unplanned": unplanned, "halted": dict(result.halted)}


def _group_name(group: GroupInfo) -> str:
    res = resolution_name(group.resolution)
    return f"{res} {format_labels(group.labels, with_name=False)}"


def _print_plan(result: PlanResult, plan: Plan, output: str) -> None:
    doc = _plan_docs(result)
    if output == "json":
        emit(json.dumps({**doc, **plan.to_dict()}, indent=2) + "\n")
    else:
        _print_plan_tables(result, doc)
        if plan.actions:
            emit("\n")
            write_rows(output, [a.to_dict() for a in plan.actions], PLAN_COLUMNS)
    for group, why in doc["halted"].items():
        click.echo(f"halted: {group}: {why}", err=True)
    finish_plan(plan)


def _print_plan_tables(result: PlanResult, doc: dict[str, Any]) -> None:
    rows = []
    for p in doc["plans"]:
        labels = _group_name(result.groups[p["group"]])
        target = human_duration(p["range_ms"]) if p["range_ms"] else "-"
        after = ",".join(f"#{a}" for a in p["after"]) or "-"
        for b in p["blocks"]:
            rows.append([f"#{p['plan']}", labels, p["kind"], target, str(p["level"]), after, b["ulid"],
                         format_time_ms(b["min_time"]), format_time_ms(b["max_time"]), str(b["level"])])
    emit(render_table(rows, ["PLAN", "GROUP", "KIND", "RANGE", "OUT-LEVEL", "AFTER", "INPUT", "FROM", "UNTIL",
                             "LEVEL"]) if rows else "nothing to compact\n")
    if doc["unplanned"]:
        emit("\n" + render_table([[u["ulid"], format_time_ms(u["min_time"]), format_time_ms(u["max_time"]),
                                   str(u["level"]), u["reason"], u["detail"]] for u in doc["unplanned"]],
                                 ["NOT-PLANNED", "FROM", "UNTIL", "LEVEL", "REASON", "DETAIL"]))


def _report_doc(report: CompactReport) -> dict[str, Any]:
    return {
        "compactions": [{
            "block": c.output.ulid if c.output else None, "kind": c.plan.kind, "group": c.plan.group,
            "level": c.output.level if c.output else None, "min_time": c.plan.min_time, "max_time": c.plan.max_time,
            "series": c.stats.series, "samples": c.stats.samples, "chunks": c.stats.chunks,
            "copied_chunks": c.stats.copied_chunks, "reencoded_chunks": c.stats.reencoded_chunks,
            "inputs": [m.ulid for m in c.plan.blocks], "marked_for_deletion": c.marked_for_deletion,
            "seconds": round(c.seconds, 3)} for c in report.compactions],
        "quarantined": [vars(p) for p in report.quarantined],
        "marked_no_compact": [vars(p) for p in report.marked_no_compact],
        "halted": dict(report.halted),
        "unreadable_metas": dict(report.unreadable_metas),
        "downsampled": [m.ulid for m in report.downsampled],
        "garbage_collected": list(report.garbage_collected),
        "retention": [a.to_dict() for a in report.retention],
        "cleanup": [a.to_dict() for a in report.cleanup],
        "errors": list(report.errors),
        "failed": report.failed,
    }


def _print_report(report: CompactReport, output: str) -> None:
    doc = _report_doc(report)
    if output == "json":
        emit(json.dumps(doc, indent=2) + "\n")
    elif doc["compactions"]:
        emit(render_table([[c["block"] or "(empty)", c["kind"], str(c["level"] or "-"), format_time_ms(c["min_time"]),
                            format_time_ms(c["max_time"]), str(c["series"]), str(c["samples"]),
                            str(len(c["inputs"])), f"{c['seconds']:.1f}s"] for c in doc["compactions"]],
                          ["BLOCK", "KIND", "LEVEL", "FROM", "UNTIL", "SERIES", "SAMPLES", "INPUTS", "TIME"]))
    _summary(report)


def _summary(report: CompactReport) -> None:
    marked = sum(len(c.marked_for_deletion) for c in report.compactions) + len(report.garbage_collected)
    expired = sum(1 for a in report.retention if a.status == "done")
    deleted = sum(1 for a in report.cleanup if a.status == "done")
    click.echo(f"compact: {len(report.compactions)} compactions, {marked} blocks marked for deletion, "
               f"{len(report.downsampled)} downsampled, {expired} expired by retention, {deleted} deleted, "
               f"{len(report.quarantined)} quarantined, {len(report.halted)} groups halted", err=True)
    for p in report.quarantined:
        click.echo(f"error: quarantined block {p.block} (no-compact mark, reason {p.reason}): {p.message}", err=True)
    for p in report.marked_no_compact:
        click.echo(f"warning: block {p.block} marked no-compact ({p.reason}): {p.message}", err=True)
    for group, why in report.halted.items():
        click.echo(f"error: halted group {group}: {why}", err=True)
    _report_unreadable_metas(report)
    for err in report.errors:
        click.echo(f"error: {err}", err=True)


def _report_unreadable_metas(report: CompactReport) -> None:
    """One line per block left out because its meta.json cannot be read (the error names block and file)."""
    for _, err in sorted(report.unreadable_metas.items()):
        click.echo(f"error: {err}", err=True)


def register(group: click.Group) -> None:
    cmd = click.command("compact")(bucket_options(dry_run_options("--plan")(_options(compact_cmd))))
    group.add_command(cmd)
