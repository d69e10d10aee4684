"""``bucket mark``, ``unmark``, ``retention``, ``cleanup``, ``replicate``: plans first, ``--no-dry-run`` acts."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from thanostools.cli.options import F, bucket_options, open_workspace, time_range_options
from thanostools.cli.output import emit, output_option, write_rows
from thanostools.core.errors import ConfigError, ThanosToolsError

if TYPE_CHECKING:
    from thanostools.core.inspect import BlockFilter
    from thanostools.core.lifecycle import Plan
    from thanostools.core.objstore.bucket import Bucket
    from thanostools.core.tsdb.markers import MarkerKind

KINDS = ("deletion", "no-compact", "no-downsample")
PLAN_COLUMNS = [("ACTION", "action"), ("BLOCK", "block"), ("STATUS", "status"), ("REASON", "reason"),
                ("ERROR", "error")]


def dry_run_options(*aliases: str) -> Callable[[F], F]:
    """``--dry-run/--no-dry-run`` (default: dry run), for every command that changes a bucket;
    ``aliases`` are more names for ``--dry-run``."""

    def decorate(func: F) -> F:
        return click.option("--dry-run/--no-dry-run", *aliases, "dry_run", default=True, show_default=True,
                            help="Only print the plan (default); --no-dry-run carries it out.")(func)

    return decorate


dry_run_option = dry_run_options()


def select_options(func: Any) -> Any:
    func = click.option("--resolution", metavar="RES", help="Only blocks of this resolution: raw, 5m or 1h.")(func)
    func = click.option("--selector", "selectors", multiple=True, metavar="SEL",
                        help="External label selector k=v, k!=v, k=~re, k!~re (repeatable).")(func)
    func = time_range_options(func)
    return click.option("--id", "block_ids", multiple=True, metavar="ULID", help="Block ULID (repeatable).")(func)


def block_filter(kw: dict[str, Any]) -> BlockFilter:
    from thanostools.core.inspect import BlockFilter, parse_label_selectors, parse_resolution

    res = kw.pop("resolution", None)
    return BlockFilter(min_time=kw.pop("min_time", None), max_time=kw.pop("max_time", None),
                       selectors=tuple(parse_label_selectors(kw.pop("selectors", ()))),
                       resolution=parse_resolution(res) if res else None)


def render_plan(plan: Plan, output: str) -> None:
    """The plan on stdout (table or one JSON document), then ``finish_plan``."""
    if output == "json":
        emit(json.dumps(plan.to_dict(), indent=2) + "\n")
    else:
        write_rows(output, [a.to_dict() for a in plan.actions], PLAN_COLUMNS)
    finish_plan(plan)


def finish_plan(plan: Plan) -> None:
    """A summary on stderr; an error (exit 1) if an action failed."""
    if plan.dry_run:
        todo = len(plan.planned)
        hint = "; run with --no-dry-run to apply it" if todo else ""
        click.echo(f"dry run: {todo} action(s) planned, nothing changed{hint}", err=True)
    else:
        todo = len(plan.pending)
        done = sum(1 for a in plan.actions if a.status == "done")
        click.echo(f"{plan.command}: {done} of {todo} action(s) done", err=True)
    if plan.failed:
        raise ThanosToolsError(f"{len(plan.failed)} action(s) failed; first: {plan.failed[0].error}")


def open_other_bucket(url: str | None, config_file: str | None, what: str) -> Bucket | None:
    from thanostools.core.objstore.bucket import open_bucket

    if url and config_file:
        raise ConfigError(f"give either {what} or {what.replace('bucket', 'objstore.config-file')}, not both")
    if not url and not config_file:
        return None
    return open_bucket(url, objstore_config_file=config_file)


@click.command("mark")
@bucket_options
@click.option("--kind", type=click.Choice(KINDS), help="Which marker to write.")
@click.option("--marker", metavar="FILE", help="The marker as Thanos names it: deletion-mark.json, "
              "no-compact-mark.json or no-downsample-mark.json (same as --kind).")
@select_options
@click.option("--details", default="", help="Human readable note stored in the marker.")
@click.option("--reason", default="manual", show_default=True, help="Reason (no-compact / no-downsample marks).")
@click.option("--overwrite", is_flag=True, help="Replace an existing marker of the same kind.")
@click.option("--remove", is_flag=True, help="Remove the marker instead (as `bucket unmark`; Thanos's spelling).")
@dry_run_option
@output_option(("table", "json"))
def mark_cmd(kind: str | None, marker: str | None, block_ids: tuple[str, ...], details: str, reason: str,
             overwrite: bool, remove: bool, dry_run: bool, output: str, **kw: Any) -> None:
    """Mark blocks for deletion, no-compact or no-downsample (by --id or by filters); Thanos's
    `--marker FILE` and `--remove` work too."""
    from thanostools.core import lifecycle

    chosen = _marker_kind(kind, marker)
    flt = block_filter(kw)
    workspace = open_workspace(kw)
    if remove:
        plan = lifecycle.unmark(workspace.bucket, chosen, ids=block_ids, flt=flt, dry_run=dry_run)
    else:
        plan = lifecycle.mark(workspace.bucket, chosen, ids=block_ids, flt=flt, details=details, reason=reason,
                              overwrite=overwrite, dry_run=dry_run)
    render_plan(plan, output)


def _marker_kind(kind: str | None, marker: str | None) -> MarkerKind:
    from thanostools.core import lifecycle

    if kind is None and marker is None:
        raise click.UsageError("name the marker: --kind (deletion, no-compact, no-downsample) or --marker FILE")
    try:
        chosen = [lifecycle.parse_kind(name) for name in (kind, marker) if name is not None]
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--marker") from None
    if len(set(chosen)) > 1:
        raise click.UsageError(f"--kind {kind} and --marker {marker} name different markers")
    return chosen[0]


@click.command("unmark")
@bucket_options
@click.option("--kind", type=click.Choice(KINDS), required=True, help="Which marker to remove.")
@select_options
@dry_run_option
@output_option(("table", "json"))
def unmark_cmd(kind: str, block_ids: tuple[str, ...], dry_run: bool, output: str, **kw: Any) -> None:
    """Remove a marker from blocks (by --id or by filters)."""
    from thanostools.core import lifecycle

    flt = block_filter(kw)
    workspace = open_workspace(kw)
    plan = lifecycle.unmark(workspace.bucket, lifecycle.parse_kind(kind), ids=block_ids, flt=flt, dry_run=dry_run)
    render_plan(plan, output)


@click.command("retention")
@bucket_options
@click.option("--retention.resolution-raw", "raw", default="0d", show_default=True, metavar="DURATION",
              help="How long to keep raw blocks (0 = forever).")
@click.option("--retention.resolution-5m", "five_m", default="0d", show_default=True, metavar="DURATION",
              help="How long to keep 5m downsampled blocks (0 = forever).")
@click.option("--retention.resolution-1h", "one_h", default="0d", show_default=True, metavar="DURATION",
              help="How long to keep 1h downsampled blocks (0 = forever).")
@click.option("--selector", "selectors", multiple=True, metavar="SEL",
              help="Only blocks whose external labels match (repeatable).")
@dry_run_option
@output_option(("table", "json"))
def retention_cmd(raw: str, five_m: str, one_h: str, selectors: tuple[str, ...], dry_run: bool, output: str,
                  **kw: Any) -> None:
    """Mark blocks for deletion once maxTime + retention of their resolution has passed."""
    from thanostools.core import lifecycle
    from thanostools.core.inspect import BlockFilter, parse_label_selectors
    from thanostools.core.timeutil import parse_duration_ms

    retentions = {0: parse_duration_ms(raw), 300_000: parse_duration_ms(five_m),
                  3_600_000: parse_duration_ms(one_h)}
    flt = BlockFilter(selectors=tuple(parse_label_selectors(selectors))) if selectors else None
    workspace = open_workspace(kw)
    render_plan(lifecycle.retention(workspace.bucket, retentions, dry_run=dry_run, flt=flt), output)


@click.command("cleanup")
@bucket_options
@click.option("--delete-delay", default="48h", show_default=True, metavar="DURATION",
              help="Delete blocks whose deletion mark is older than this.")
@click.option("--consistency-delay", default="30m", show_default=True, metavar="DURATION",
              help="Blocks younger than this are not yet complete for readers (partial uploads wait at least "
                   "this long too).")
@click.option("--partial-upload-age", default="48h", show_default=True, metavar="DURATION",
              help="Delete partial uploads (no meta.json) older than max(this, --consistency-delay) by their "
                   "ULID time. 48h is the Thanos compactor's fixed threshold: an upload may still be in "
                   "progress, so shorten it only when no uploader is running.")
@dry_run_option
@output_option(("table", "json"))
def cleanup_cmd(delete_delay: str, consistency_delay: str, partial_upload_age: str, dry_run: bool, output: str,
                **kw: Any) -> None:
    """Delete partial uploads and blocks marked for deletion long enough ago (meta.json first)."""
    from thanostools.core import lifecycle
    from thanostools.core.timeutil import parse_duration_ms

    dd, cd = parse_duration_ms(delete_delay), parse_duration_ms(consistency_delay)
    workspace = open_workspace(kw)
    render_plan(lifecycle.cleanup(workspace.bucket, delete_delay_ms=dd, consistency_delay_ms=cd,
                                  partial_upload_age_ms=parse_duration_ms(partial_upload_age), dry_run=dry_run),
                output)


@click.command("replicate")
@bucket_options
@click.option("--to", "to_url", metavar="URL", help="Destination bucket URL.")
@click.option("--to.objstore.config-file", "to_config", metavar="FILE", type=click.Path(dir_okay=False),
              help="Destination bucket as Thanos objstore YAML.")
@select_options
@click.option("--compaction-level", "levels", multiple=True, type=int, metavar="N",
              help="Only blocks of this compaction level (repeatable).")
@click.option("--with-markers", is_flag=True, help="Also copy no-compact and no-downsample marks.")
@click.option("--tmp-dir", metavar="DIR", help="Where remote objects are staged while copying.")
@dry_run_option
@output_option(("table", "json"))
def replicate_cmd(to_url: str | None, to_config: str | None, block_ids: tuple[str, ...], levels: tuple[int, ...],
                  with_markers: bool, tmp_dir: str | None, dry_run: bool, output: str, **kw: Any) -> None:
    """Copy blocks to another bucket (meta.json last); blocks already there are skipped."""
    from thanostools.core import lifecycle

    res = kw.pop("resolution", None)
    flt = block_filter(kw)
    dst = open_other_bucket(to_url, to_config, "--to")
    if dst is None:
        raise ConfigError("replicate needs a destination: --to URL or --to.objstore.config-file FILE")
    resolutions = frozenset(_resolutions(res))
    rf = lifecycle.ReplicateFilter(flt=flt, resolutions=resolutions, levels=frozenset(levels), ids=block_ids)
    workspace = open_workspace(kw)
    render_plan(lifecycle.replicate(workspace.bucket, dst, rf=rf, with_markers=with_markers, dry_run=dry_run,
                                    tmp_dir=tmp_dir), output)


def _resolutions(text: str | None) -> list[int]:
    from thanostools.core.inspect import parse_resolution

    return [parse_resolution(r) for r in text.split(",")] if text else []


def register(group: click.Group) -> None:
    for cmd in (mark_cmd, unmark_cmd, retention_cmd, cleanup_cmd, replicate_cmd):
        group.add_command(cmd)
