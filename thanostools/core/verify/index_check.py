"""``index_known_issues``: the index health check on every block under check."""

from __future__ import annotations

from thanostools.core.constants import RESOLUTION_RAW
from thanostools.core.errors import CorruptBlockError, UnsupportedError
from thanostools.core.inspect import BlockInfo
from thanostools.core.verify.context import VerifyContext, log
from thanostools.core.verify.health import IndexHealth, index_health
from thanostools.core.verify.report import INDEX_KNOWN_ISSUES, Issue


def health_kind(h: IndexHealth) -> str:
    """The most serious class of problem, for the issue's kind."""
    if h.hard_errors:
        return "malformed_index"
    if h.critical_outsiders:
        return "chunks_outside_range"
    if h.overlapping_chunks:
        return "out_of_order_chunks"
    if h.issue347_outsiders:
        return "issue347"
    if h.duplicated_chunks:
        return "duplicated_chunks"
    return "out_of_order_labels"


def not_repairable_because(h: IndexHealth, resolution: int) -> str:
    """"" when a rewrite can fix every problem without losing data, else why not."""
    if resolution != RESOLUTION_RAW:
        return "downsampled blocks are not repaired"
    partly_outside = h.outsiders - h.complete_outsiders - h.issue347_outsiders
    if partly_outside:
        return f"{partly_outside} chunks are partly outside the block range (dropping them would lose samples)"
    if h.overlapping_chunks:
        return f"{h.overlapping_chunks} chunks overlap without being duplicates"
    if h.empty_label_series:
        return "series with an empty label set"
    return ""


def health_issue(info: BlockInfo, h: IndexHealth) -> Issue:
    why_not = not_repairable_because(h, info.meta.resolution)
    action = ("repair: rewrite the block without the bad chunks, then mark the original for deletion "
              "(bucket verify --repair --issues index_known_issues)" if not why_not
              else f"not repairable automatically ({why_not}); inspect the block, restore it from a backup "
                   "or mark it no-compact so the compactor does not halt on it")
    return Issue(INDEX_KNOWN_ISSUES, health_kind(h), [info.ulid],
                 f"block {info.ulid}: " + "; ".join(h.problems()), h.to_dict(), repairable=not why_not,
                 action=action)


def check_index(ctx: VerifyContext) -> list[Issue]:
    issues = []
    for info in ctx.blocks:
        if not ctx.wanted([info.ulid]):
            continue
        log.debug("checking index", extra={"kv": {"block": info.ulid}})
        try:
            h = index_health(ctx.open_index(info), info.meta)
        except (CorruptBlockError, UnsupportedError) as exc:
            issues.append(Issue(INDEX_KNOWN_ISSUES, "unreadable_index", [info.ulid], str(exc),
                                {"error": str(exc)}, action="restore the block from a backup or delete it"))
            continue
        if h.any_error:
            issues.append(health_issue(info, h))
    return issues
