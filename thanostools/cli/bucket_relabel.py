"""``thanos-tools bucket relabel`` (alias ``bucket rewrite``): relabel or delete series of stored blocks, and edit
their external labels. A dry run by default."""

from __future__ import annotations

import json
from typing import Any

import click

from thanostools.cli.options import bucket_options, open_workspace, parse_label_args, time_range_options
from thanostools.cli.output import emit, output_option, render_table
from thanostools.core.constants import resolution_name
from thanostools.core.errors import ConfigError
from thanostools.core.inspect import BlockFilter, parse_label_selectors, parse_resolution


def register(group: click.Group) -> None:
    group.add_command(relabel_cmd)
    group.add_command(relabel_cmd, name="rewrite")


def _labels_text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _spec(kw: dict[str, Any]) -> Any:
    from thanostools.core.relabel import (
        load_deletion_config_file,
        load_deletion_requests,
        load_relabel_config_file,
        load_relabel_configs,
    )
    from thanostools.core.rewrite import RewriteSpec

    relabels = []
    if kw["relabel_config_file"]:
        relabels += load_relabel_config_file(kw["relabel_config_file"])
    if kw["relabel_config"]:
        relabels += load_relabel_configs(kw["relabel_config"])
    deletions = []
    if kw["delete_config_file"]:
        deletions += load_deletion_config_file(kw["delete_config_file"])
    if kw["delete_config"]:
        deletions += load_deletion_requests(kw["delete_config"])
    return RewriteSpec(tuple(relabels), tuple(deletions),
                       tuple(parse_label_args(kw["external_labels"], "--external-labels").items()),
                       tuple(kw["drop_external_labels"]))


def _filter(kw: dict[str, Any]) -> BlockFilter:
    res = kw["resolution"]
    return BlockFilter(min_time=kw["min_time"], max_time=kw["max_time"],
                       selectors=tuple(parse_label_selectors(kw["selectors"])),
                       resolution=parse_resolution(res) if res else None, ids=tuple(kw["ids"]))


def _block_doc(b: Any) -> dict[str, Any]:
    return {"source": b.source, "status": b.status, "resolution": resolution_name(b.resolution),
            "new_ulid": b.new_ulid, "labels_before": b.labels_before, "labels_after": b.labels_after,
            "stats": b.stats.as_dict() if b.stats else {}, "changes": b.changes, "change_log": b.change_log,
            "marked_for_deletion": b.marked}


def _block_row(b: Any) -> list[str]:
    s = b.stats
    if s is None:
        return [b.source, resolution_name(b.resolution), b.status] + [""] * 7 + [b.new_ulid or ""]
    return [b.source, resolution_name(b.resolution), b.status,
            f"{s.series_in}->{s.series_out}", str(s.series_dropped), str(s.series_deleted),
            str(s.series_relabelled), str(s.series_merged), f"{s.samples_in}->{s.samples_out}",
            str(s.samples_in - s.samples_out), b.new_ulid or ""]


BLOCK_HEADERS = ["ULID", "RES", "STATUS", "SERIES", "DROPPED", "DELETED", "RELABELLED", "MERGED", "SAMPLES",
                 "REMOVED", "NEW-ULID"]


def _render(report: Any, output: str) -> None:
    merges = [{"resolution": resolution_name(g.resolution), "labels": g.labels,
               "merged_from": g.merged_from, "blocks": g.blocks} for g in report.group_merges]
    if output == "json":
        doc = {"dry_run": report.dry_run, "blocks": [_block_doc(b) for b in report.blocks], "group_merges": merges}
        emit(json.dumps(doc, indent=2) + "\n")
        return
    emit(render_table([_block_row(b) for b in report.blocks], BLOCK_HEADERS))
    if any(b.labels_before != b.labels_after for b in report.blocks):
        rows = [[b.source, _labels_text(b.labels_before), _labels_text(b.labels_after)] for b in report.blocks]
        emit("\n" + render_table(rows, ["ULID", "LABELS-BEFORE", "LABELS-AFTER"]))
    if merges:
        rows = [[m["resolution"], _labels_text(m["labels"]), " + ".join(_labels_text(o) for o in m["merged_from"]),
                 str(m["blocks"])] for m in merges]
        emit("\n" + render_table(rows, ["RES", "GROUP-AFTER", "MERGES-GROUPS", "BLOCKS"]))


@click.command("relabel")
@bucket_options
@click.option("--id", "ids", multiple=True, metavar="ULID", help="Only these blocks (repeatable).")
@click.option("--selector", "selectors", multiple=True, metavar="SEL",
              help="External label selector k=v, k!=v, k=~re, k!~re (repeatable).")
@click.option("--resolution", metavar="RES", help="Only blocks of this resolution: raw, 5m or 1h.")
@time_range_options
@click.option("--relabel-config-file", "--rewrite.to-relabel-config-file", "relabel_config_file", metavar="FILE",
              type=click.Path(dir_okay=False), help="Prometheus relabel_configs YAML applied to every series.")
@click.option("--relabel-config", "--rewrite.to-relabel-config", "relabel_config", metavar="YAML",
              help="Relabel configs given inline.")
@click.option("--delete-config-file", "--rewrite.to-delete-config-file", "delete_config_file", metavar="FILE",
              type=click.Path(dir_okay=False), help="Thanos deletion requests YAML (matchers, optional intervals).")
@click.option("--delete-config", "--rewrite.to-delete-config", "delete_config", metavar="YAML",
              help="Deletion requests given inline.")
@click.option("--external-labels", "external_labels", multiple=True, metavar="K=V",
              help="Set an external label of the selected blocks (repeatable; an empty value removes it).")
@click.option("--drop-external-label", "drop_external_labels", multiple=True, metavar="NAME",
              help="Remove an external label of the selected blocks (repeatable).")
@click.option("--dry-run/--no-dry-run", default=True, show_default=True,
              help="Only report what would change (default). --no-dry-run writes new blocks.")
@click.option("--keep-original", is_flag=True, help="Do not mark the rewritten blocks for deletion.")
@click.option("--change-log-dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Keep each block's change log here as <ULID>.change.log (also for dry runs).")
@click.option("--tmp-dir", metavar="DIR", help="Where blocks are downloaded and built (default: system temp).")
@output_option(("table", "json"))
def relabel_cmd(dry_run: bool, keep_original: bool, change_log_dir: str | None, tmp_dir: str | None, output: str,
                **kw: Any) -> None:
    """Rewrite blocks: relabel series, delete series or time ranges, edit external labels.

    Relabelling runs first, then deletions (their matchers see the new labels). Series that end up with the
    same labels are merged; series relabelled to nothing are dropped. Each new block gets a thanos.rewrites
    entry and is uploaded with meta.json last; then the original is marked for deletion. Re-running after an
    interruption finds rewrites already uploaded and does not repeat them.
    """
    from thanostools.core.rewrite import rewrite_bucket

    spec = _spec(kw)
    if not spec.changes_series and not spec.changes_labels:
        raise ConfigError("give --relabel-config-file, --delete-config-file, --external-labels or "
                          "--drop-external-label")
    flt = _filter(kw)
    workspace = open_workspace(kw)
    report = rewrite_bucket(workspace, spec, block_filter=flt, dry_run=dry_run, mark_original=not keep_original,
                            tmp_dir=tmp_dir, change_log_dir=change_log_dir)
    _render(report, output)
    if not report.blocks:
        click.echo("no blocks selected", err=True)
    elif dry_run:
        click.echo("dry run: nothing was changed; run with --no-dry-run to apply", err=True)
