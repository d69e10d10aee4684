"""``thanos-tools bucket downsample``: make the 5m and 1h versions of blocks, as the Thanos compactor does
(a dry run unless --no-dry-run)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from thanostools.cli.bucket_lifecycle import dry_run_options, finish_plan
from thanostools.cli.options import bucket_options, open_workspace, report_broken_blocks, time_range_options
from thanostools.cli.output import emit, output_option, render_table
from thanostools.core.constants import resolution_name
from thanostools.core.inspect import BlockFilter, parse_label_selectors, parse_resolution
from thanostools.core.timeutil import format_time_ms, go_duration

if TYPE_CHECKING:
    from thanostools.core.lifecycle import Plan


def register(group: click.Group) -> None:
    group.add_command(downsample_cmd)



def _filter(ids: tuple[str, ...], selectors: tuple[str, ...], resolution: str | None, min_time: int | None,
            max_time: int | None) -> BlockFilter | None:
    if not (ids or selectors or resolution or min_time is not None or max_time is not None):
        return None
    return BlockFilter(min_time=min_time, max_time=max_time, selectors=tuple(parse_label_selectors(selectors)),
                       resolution=parse_resolution(resolution) if resolution else None, ids=ids)


def _plan_row(step: Any) -> dict[str, Any]:
    m = step.meta
    derived = m.ulid != step.origin
    return {
        "pass": step.pass_no, "input": f"(5m of {step.origin})" if derived else m.ulid, "origin": step.origin,
        "from": format_time_ms(m.min_time), "until": format_time_ms(m.max_time),
        "range": go_duration(m.max_time - m.min_time), "resolution": resolution_name(m.resolution),
        "target": resolution_name(step.target),
        "series": "" if derived else m.stats.num_series, "samples": "" if derived else m.stats.num_samples,
    }


def _result_row(r: Any) -> dict[str, Any]:
    out = r.output
    return {
        "pass": r.pass_no, "input": r.input, "origin": r.source, "target": resolution_name(r.target),
        "output": out.ulid if out else "", "series": out.stats.num_series if out else 0,
        "input_samples": r.input_samples, "samples": out.stats.num_samples if out else 0,
        "chunks": out.stats.num_chunks if out else 0, "seconds": round(r.seconds, 3),
        "status": "uploaded" if r.uploaded else "dry-run",
    }


PLAN_COLUMNS = [("PASS", "pass"), ("INPUT", "input"), ("FROM", "from"), ("UNTIL", "until"), ("RANGE", "range"),
                ("RES", "resolution"), ("TARGET", "target"), ("SERIES", "series"), ("SAMPLES", "samples")]
RESULT_COLUMNS = [("PASS", "pass"), ("INPUT", "input"), ("TARGET", "target"), ("OUTPUT", "output"),
                  ("SERIES", "series"), ("IN-SAMPLES", "input_samples"), ("OUT-SAMPLES", "samples"),
                  ("CHUNKS", "chunks"), ("SECONDS", "seconds"), ("STATUS", "status")]


def _write(output: str, rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    if output == "json":
        emit(json.dumps(rows, indent=2) + "\n")
    else:
        emit(render_table([[str(r[k]) for _, k in columns] for r in rows], [h for h, _ in columns]))


@click.command("downsample")
@bucket_options
@click.option("--id", "ids", multiple=True, metavar="ULID", help="Only these blocks (repeatable).")
@click.option("--selector", "selectors", multiple=True, metavar="SEL",
              help="External label selector k=v, k!=v, k=~re, k!~re (repeatable).")
@click.option("--resolution", metavar="RES", help="Only blocks of this resolution: raw or 5m.")
@time_range_options
@dry_run_options("--plan")
@click.option("--compute", is_flag=True,
              help="With a dry run: also build the blocks in the work directory and report their figures "
                   "(nothing is uploaded).")
@click.option("--passes", default=2, show_default=True, type=click.IntRange(1, 2),
              help="Rounds of downsampling (two: a long raw block gets its 5m and then its 1h version).")
@click.option("--tmp-dir", metavar="DIR",
              help="Where blocks are downloaded and built, in a directory per run that is removed afterwards, or "
                   "by the next run if this one is killed (default: <cache dir>/work).")
@output_option(("table", "json"))
def downsample_cmd(ids: tuple[str, ...], selectors: tuple[str, ...], resolution: str | None, min_time: int | None,
                   max_time: int | None, dry_run: bool, compute: bool, passes: int, tmp_dir: str | None,
                   output: str, **kw: Any) -> None:
    """Downsample raw blocks spanning at least 40h to 5m, and 5m blocks spanning 10 days to 1h.

    Blocks whose sources are already covered at the target resolution, and blocks with a no-downsample or
    deletion mark, are skipped. New blocks are uploaded with meta.json last; source blocks stay. Without
    --no-dry-run it only prints the plan (reading metas only; --compute builds the blocks too) and uploads
    nothing.
    """
    from thanostools.core.downsample import downsample_bucket, plan_bucket

    if compute and not dry_run:
        raise click.UsageError("--compute goes with a dry run: --no-dry-run computes and uploads anyway")
    engine = open_workspace(kw)
    flt = _filter(ids, selectors, resolution, min_time, max_time)
    if dry_run and not compute:
        steps = plan_bucket(engine, block_filter=flt, passes=passes)
        _write(output, [_plan_row(s) for s in steps], PLAN_COLUMNS)
        if not steps:
            click.echo("nothing to downsample", err=True)
        finish_plan(_lifecycle_plan(engine.bucket.url, steps))
        report_broken_blocks(engine)
        return

    def progress(message: str) -> None:
        click.echo(message, err=True)

    report = downsample_bucket(engine, dry_run=dry_run, block_filter=flt, passes=passes, tmp_dir=tmp_dir,
                               progress=progress if sys.stderr.isatty() else None)
    _write(output, [_result_row(r) for r in report.results], RESULT_COLUMNS)
    if not report.results:
        click.echo("nothing to downsample", err=True)
    elif dry_run:
        click.echo("dry run: nothing was uploaded; run with --no-dry-run to upload", err=True)
    report_broken_blocks(engine)


def _lifecycle_plan(bucket_url: str, steps: list[Any]) -> Plan:
    """The planned steps as a dry-run plan, for the summary every bucket-changing command prints."""
    from thanostools.core.lifecycle import Action, Plan

    rows = [_plan_row(s) for s in steps]
    return Plan("downsample", bucket_url, dry_run=True,
                actions=[Action("downsample", r["input"], f"pass {r['pass']}: {r['resolution']} to {r['target']}")
                         for r in rows])
