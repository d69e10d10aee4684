"""``bucket verify``: find overlaps, index problems, duplicated compactions (and more with --deep); repair."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from thanostools.cli.bucket_lifecycle import dry_run_option, finish_plan, open_other_bucket, render_plan
from thanostools.cli.options import bucket_options, open_workspace
from thanostools.cli.output import emit, output_option, write_rows
from thanostools.core.errors import VerifyIssuesFound

if TYPE_CHECKING:
    from thanostools.core.verify.report import VerifyReport

ISSUE_COLUMNS = [("CHECK", "id"), ("KIND", "kind"), ("BLOCKS", "blocks"), ("REPAIRABLE", "repairable"),
                 ("MESSAGE", "message")]
CHECK_NAMES = ("overlapped_blocks", "index_known_issues", "duplicated_compaction", "index_integrity",
               "chunk_integrity", "meta_files", "partial_uploads", "markers")


def _split(values: tuple[str, ...]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _render_report(report: VerifyReport, output: str, extra: dict[str, Any] | None = None) -> None:
    if output == "json":
        emit(json.dumps({**report.to_dict(), **(extra or {})}, indent=2, default=str) + "\n")
        return
    if not report.issues:
        click.echo(f"no issues found ({report.checked_blocks} blocks checked: {', '.join(report.checks)})", err=True)
        return
    write_rows("table", [i.to_dict() for i in report.issues], ISSUE_COLUMNS)
    emit("\nsuggested actions:\n")
    for n, issue in enumerate(report.issues, 1):
        emit(f"  {n}. [{issue.id}/{issue.kind}] {issue.action}\n")


@click.command("verify")
@bucket_options
@click.option("--issues", "issue_names", multiple=True, metavar="CHECK",
              help=f"Checks to run (repeatable or comma-separated): {', '.join(CHECK_NAMES)}. Default: the first "
                   "three (Thanos'), plus the others with --deep.")
@click.option("--id", "block_ids", multiple=True, metavar="ULID", help="Only report issues involving this block.")
@click.option("--deep", is_flag=True,
              help="Also check every CRC of the index and of every chunk record, compare objects with meta.json's "
                   "file list (sizes, hashes), and look for partial uploads and bad markers.")
@click.option("--include-marked", is_flag=True, help="Also check blocks that are marked for deletion.")
@click.option("--repair", is_flag=True, help="Plan (and with --no-dry-run carry out) repairs of what was found.")
@click.option("--backup.bucket", "backup_url", metavar="URL", help="Where originals are copied before repair.")
@click.option("--backup.objstore.config-file", "backup_config", metavar="FILE", type=click.Path(dir_okay=False),
              help="Backup bucket as Thanos objstore YAML.")
@click.option("--tmp-dir", metavar="DIR", help="Where repaired blocks are built.")
@dry_run_option
@output_option(("table", "json"))
def verify_cmd(issue_names: tuple[str, ...], block_ids: tuple[str, ...], deep: bool, include_marked: bool,
               repair: bool, backup_url: str | None, backup_config: str | None, tmp_dir: str | None,
               dry_run: bool, output: str, **kw: Any) -> None:
    """Verify the blocks of a bucket. Exit 0: clean, 3: issues found, 1: could not check."""
    from thanostools.core.verify.runner import verify_bucket

    checks = _split(issue_names)
    backup = open_other_bucket(backup_url, backup_config, "--backup.bucket")
    workspace = open_workspace(kw)

    def run() -> VerifyReport:
        return verify_bucket(workspace.bucket, checks=checks, deep=deep, ids=block_ids, include_deleted=include_marked,
                             cache=workspace.cache)

    report = run()
    if not repair:
        _render_report(report, output)
        _exit(report)
        return
    from thanostools.core.verify.repair import plan_repair

    plan = plan_repair(workspace.bucket, report, backup=backup, dry_run=dry_run, tmp_dir=tmp_dir)
    if output == "json":
        _render_report(report, output, {"repair": plan.to_dict()})
        finish_plan(plan)
    else:
        _render_report(report, output)
        emit("\nrepair plan:\n")
        render_plan(plan, "table")
    if not dry_run and plan.pending:
        after = run()
        click.echo(f"after repair: {len(after.issues)} issue(s) remain", err=True)
        _exit(after)
        return
    _exit(report)


def _exit(report: VerifyReport) -> None:
    if report.issues:
        raise VerifyIssuesFound(f"{len(report.issues)} issue(s) found")


def register(group: click.Group) -> None:
    group.add_command(verify_cmd)
