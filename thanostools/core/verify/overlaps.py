"""``overlapped_blocks`` and ``duplicated_compaction``: blocks of one group covering the same time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thanostools.core import groups
from thanostools.core.errors import ThanosToolsError
from thanostools.core.inspect import BlockInfo
from thanostools.core.timeutil import format_time_ms
from thanostools.core.tsdb.meta import BlockMeta
from thanostools.core.verify.context import VerifyContext, log
from thanostools.core.verify.report import DUPLICATED_COMPACTION, OVERLAPPED_BLOCKS, Issue


def _runs(ctx: VerifyContext) -> list[tuple[str, list[BlockMeta]]]:
    metas = [b.meta for b in ctx.blocks]
    return [(key, run) for key, members in groups.group_blocks(metas).items()
            for run in groups.overlapping_runs(members)]


def _block_doc(m: BlockMeta) -> dict[str, Any]:
    return {"ulid": m.ulid, "minTime": m.min_time, "maxTime": m.max_time, "from": format_time_ms(m.min_time),
            "until": format_time_ms(m.max_time), "level": m.level, "sources": len(m.sources),
            "series": m.stats.num_series, "samples": m.stats.num_samples}


def _keep_order(m: BlockMeta) -> tuple[int, int, str]:
    """The block to keep among equivalent ones: most sources, then highest level, then oldest ULID."""
    return -len(groups.block_sources(m)), -m.level, m.ulid


@dataclass
class _Relation:
    kind: str  # same_sources | sources_subset | identical_data | different_data
    reason: str = ""


class _Judge:
    """Decides, pair by pair, whether one block of an overlap holds nothing the other lacks."""

    def __init__(self, ctx: VerifyContext, infos: dict[str, BlockInfo]) -> None:
        self.ctx = ctx
        self.infos = infos

    def relation(self, keep: BlockMeta, other: BlockMeta) -> _Relation:
        ks, os_ = groups.block_sources(keep), groups.block_sources(other)
        if ks == os_:
            return _Relation("same_sources")
        if os_ <= ks:
            return _Relation("sources_subset")
        if (keep.stats.num_series, keep.stats.num_samples) != (other.stats.num_series, other.stats.num_samples):
            return _Relation("different_data", "different series or sample counts in meta.json")
        return self._compare(keep, other)

    def _compare(self, keep: BlockMeta, other: BlockMeta) -> _Relation:
        from thanostools.core.verify.compare import compare_blocks

        try:
            result = compare_blocks(self.ctx.open(self.infos[keep.ulid]), self.ctx.open(self.infos[other.ulid]))
        except ThanosToolsError as exc:
            log.warning("could not compare blocks", extra={"kv": {"blocks": f"{keep.ulid},{other.ulid}",
                                                                   "err": str(exc)}})
            return _Relation("different_data", f"could not compare: {exc}")
        if result.identical:
            return _Relation("identical_data", f"{result.series} series with identical samples")
        return _Relation("different_data", result.reason)


def _pairs(run: list[BlockMeta]) -> list[dict[str, Any]]:
    out = []
    for i, a in enumerate(run):
        for b in run[i + 1:]:
            if groups.overlaps(a, b):
                lo, hi = max(a.min_time, b.min_time), min(a.max_time, b.max_time)
                out.append({"blocks": [a.ulid, b.ulid], "overlap": [lo, hi],
                            "from": format_time_ms(lo), "until": format_time_ms(hi)})
    return out


def _redundant(judge: _Judge, run: list[BlockMeta]) -> dict[str, tuple[str, _Relation]]:
    """Blocks whose data another kept block of the run fully holds: ulid -> (kept ulid, relation)."""
    kept: list[BlockMeta] = []
    out: dict[str, tuple[str, _Relation]] = {}
    for m in sorted(run, key=_keep_order):
        for k in kept:
            rel = judge.relation(k, m) if groups.overlaps(k, m) else _Relation("different_data")
            if rel.kind != "different_data":
                out[m.ulid] = (k.ulid, rel)
                break
        else:
            kept.append(m)
    return out


def _overlap_issue(key: str, run: list[BlockMeta], redundant: dict[str, tuple[str, _Relation]]) -> Issue:
    lo, hi = groups.overlap_range(run)
    labels = ",".join(f"{k}={v}" for k, v in run[0].external_labels)
    ids = [m.ulid for m in run]
    pairs = _pairs(run)
    o_lo, o_hi = min(p["overlap"][0] for p in pairs), max(p["overlap"][1] for p in pairs)
    details: dict[str, Any] = {
        "group": key, "labels": labels, "resolution": run[0].resolution, "range": [lo, hi],
        "overlapping_time": [o_lo, o_hi], "blocks": [_block_doc(m) for m in run], "overlaps": pairs,
        "redundant": [{"ulid": u, "covered_by": k, "relation": r.kind, "reason": r.reason}
                      for u, (k, r) in sorted(redundant.items())],
    }
    message = (f"{len(run)} blocks of group {key} ({labels or 'no labels'}) overlap between "
               f"{format_time_ms(o_lo)} and {format_time_ms(o_hi)}")
    if redundant:
        marks = " ".join(f"--id {u}" for u in sorted(redundant))
        kind = "duplicates" if len(redundant) == len(run) - 1 else "partial_duplicates"
        action = (f"{len(redundant)} block(s) hold nothing the others lack; mark them for deletion: "
                  f"thanos-tools bucket mark --kind deletion {marks} --details 'redundant overlapping block'")
    else:
        kind = "overlap"
        action = ("the blocks hold different data: do not delete any; merge them with vertical compaction "
                  "(bucket compact with vertical compaction / replica deduplication) or inspect with bucket dump")
    return Issue(OVERLAPPED_BLOCKS, kind, ids, message, details, repairable=False, action=action)


def check_overlaps(ctx: VerifyContext) -> list[Issue]:
    judge = _Judge(ctx, {b.ulid: b for b in ctx.blocks})
    issues = []
    for key, run in _runs(ctx):
        if ctx.wanted([m.ulid for m in run]):
            issues.append(_overlap_issue(key, run, _redundant(judge, run)))
    return issues


def _compaction_identity(m: BlockMeta) -> tuple[Any, ...]:
    s = m.stats
    return (m.min_time, m.max_time, m.level, tuple(sorted(m.sources)),
            (s.num_samples, s.num_series, s.num_chunks, s.num_tombstones))


def check_duplicated_compaction(ctx: VerifyContext) -> list[Issue]:
    issues = []
    for key, run in _runs(ctx):
        sets: dict[tuple[Any, ...], list[BlockMeta]] = {}
        for m in run:
            sets.setdefault(_compaction_identity(m), []).append(m)
        for same in sets.values():
            if len(same) < 2:
                continue
            ids = sorted(m.ulid for m in same)
            if not ctx.wanted(ids):
                continue
            keep, others = ids[0], ids[1:]
            message = (f"{len(ids)} blocks of group {key} are outputs of the same compaction "
                       f"(same range, level, sources and stats)")
            issues.append(Issue(
                DUPLICATED_COMPACTION, "duplicated_compaction", ids, message,
                {"group": key, "keep": keep, "redundant": others, "blocks": [_block_doc(m) for m in same]},
                repairable=True,
                action=f"keep {keep}; back up and mark the others for deletion (bucket verify --repair)",
            ))
    return issues
