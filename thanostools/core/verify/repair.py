"""Repair what `bucket verify` found (FORMATS.md §8.9), as a plan that runs only when not a dry run.

* ``index_known_issues``: rewrite the block without the bad chunks, verify the new block, back up the
  original to the backup bucket, upload the new block (meta.json last), then mark the original for deletion.
* ``duplicated_compaction``: keep the first block of each set; back up and mark the others.

Nothing is ever changed in place, and nothing is deleted: originals are only marked.
"""

from __future__ import annotations

import numpy as np

from thanostools.core.audit import audit
from thanostools.core.blockio import upload_block, work_dir, write_marker
from thanostools.core.errors import ConfigError, HaltError
from thanostools.core.inspect import BlockInfo, BucketScan, scan_bucket
from thanostools.core.lifecycle import Action, Plan, copy_block, make_marker, skip
from thanostools.core.objstore.bucket import Bucket
from thanostools.core.tsdb.markers import MarkerKind
from thanostools.core.tsdb.meta import META_FILENAME, SOURCE_BUCKET_REPAIR
from thanostools.core.verify.context import log
from thanostools.core.verify.index_check import not_repairable_because
from thanostools.core.verify.report import DUPLICATED_COMPACTION, INDEX_KNOWN_ISSUES, Issue, VerifyReport


def backup_block(bucket: Bucket, backup: Bucket, ulid: str, tmp_dir: str | None) -> None:
    """Copy the block to the backup bucket unless a complete copy is already there."""
    if backup.exists(f"{ulid}/{META_FILENAME}"):
        log.info("block already backed up", extra={"kv": {"block": ulid, "backup": backup.url}})
        return
    copy_block(bucket, backup, ulid, tmp_dir=tmp_dir)
    audit("backup", [ulid], bucket=backup.url, details={"from": bucket.url})


def _mark_replaced(bucket: Bucket, ulid: str, details: str) -> None:
    write_marker(bucket, make_marker(MarkerKind.DELETION, ulid, details=details))
    audit("mark-deletion", [ulid], bucket=bucket.url, details={"reason": details})


def _check_new_block(block_dir: str) -> None:
    """The rewritten block must pass the health check and every chunk must read back with a good CRC."""
    from thanostools.core.tsdb.block import Block
    from thanostools.core.verify.health import index_health

    block = Block.open_dir(block_dir)
    health = index_health(block.index, block.meta)
    if health.any_error:
        raise HaltError(f"repaired block {block.ulid} still has issues: {'; '.join(health.problems())}")
    for raw in block.index.iter_series_raw():
        block.chunks.read(np.unique(raw.chunk_ref), check_crc=True)


def repair_index(bucket: Bucket, backup: Bucket, info: BlockInfo, *, tmp_dir: str | None = None) -> str:
    """Rewrite one block; returns the new block's ULID."""
    from thanostools.core.tsdb.block import open_bucket_block
    from thanostools.core.verify.health import index_health
    from thanostools.core.verify.rewrite import rewrite_repaired

    block = open_bucket_block(bucket, info.ulid, meta=info.meta, files=info.files)
    health = index_health(block.index, block.meta)
    why_not = not_repairable_because(health, info.meta.resolution)
    if why_not:
        raise HaltError(f"block {info.ulid} cannot be repaired: {why_not}")
    with work_dir(bucket, "repair", tmp_dir) as work:
        reorder = bool(health.unsorted_series or health.out_of_order_labels)
        meta, block_dir, stats = rewrite_repaired(block, work.path, reorder=reorder)
        _check_new_block(block_dir)
        backup_block(bucket, backup, info.ulid, tmp_dir)
        upload_block(block_dir, bucket, source=SOURCE_BUCKET_REPAIR, private=True, work=work)
        audit("upload", [meta.ulid], bucket=bucket.url, details={"repair_of": info.ulid, **stats.to_dict()})
        _mark_replaced(bucket, info.ulid, f"repaired: replaced by {meta.ulid}")
        return meta.ulid


def _dedup_actions(bucket: Bucket, backup: Bucket | None, issue: Issue, tmp_dir: str | None) -> list[Action]:
    keep = str(issue.details["keep"])
    actions = []
    for ulid in issue.details["redundant"]:
        def run(u: str = str(ulid)) -> None:
            assert backup is not None
            backup_block(bucket, backup, u, tmp_dir)
            _mark_replaced(bucket, u, f"duplicated compaction: same as {keep}")

        actions.append(Action("backup-and-mark", str(ulid), f"duplicate compaction output of {keep}",
                              {"keep": keep}, run, self_audit=True))
    return actions


def _index_action(bucket: Bucket, backup: Bucket | None, issue: Issue, info: BlockInfo,
                  tmp_dir: str | None) -> Action:
    if not issue.repairable:
        return skip(info.ulid, f"not repairable: {issue.message}")

    def run() -> None:
        assert backup is not None
        new = repair_index(bucket, backup, info, tmp_dir=tmp_dir)
        action.details["new_block"] = new

    action = Action("repair-index", info.ulid, f"rewrite without bad chunks: {issue.message}",
                    {"kind": issue.kind}, run, self_audit=True)
    return action


def plan_repair(bucket: Bucket, report: VerifyReport, *, backup: Bucket | None, dry_run: bool = True,
                tmp_dir: str | None = None, scan: BucketScan | None = None) -> Plan:
    """The repair plan for a verify report; executed when not ``dry_run`` (needs ``backup`` then)."""
    if not dry_run and backup is None:
        raise ConfigError("repair needs a backup bucket (--backup.bucket or --backup.objstore.config-file)")
    if backup is not None and backup.identity == bucket.identity:
        raise ConfigError("the backup bucket must differ from the bucket being repaired")
    scan = scan or scan_bucket(bucket)
    infos = {b.ulid: b for b in scan.blocks}
    plan = Plan("repair", bucket.url, dry_run)
    marked: set[str] = set()
    for issue in report.by_check(DUPLICATED_COMPACTION):
        actions = _dedup_actions(bucket, backup, issue, tmp_dir)
        marked |= {a.block for a in actions}
        plan.actions += actions
    for issue in report.by_check(INDEX_KNOWN_ISSUES):
        ulid = issue.blocks[0]
        if ulid in marked:
            plan.actions.append(skip(ulid, "marked for deletion as a duplicated compaction instead"))
        elif ulid not in infos:
            plan.actions.append(skip(ulid, "block no longer in the bucket"))
        else:
            plan.actions.append(_index_action(bucket, backup, issue, infos[ulid], tmp_dir))
    return plan.execute()


__all__ = ["backup_block", "plan_repair", "repair_index"]
