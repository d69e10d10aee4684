"""The Thanos compaction planner (FORMATS.md §8.3), per group, and why every other block is left alone.

``plan_group`` is the upstream planner: overlaps first, then aligned ranges (the newest block kept
out), then the tombstone rule. ``plan_bucket`` applies the meta filters (§8.7), groups the blocks
(§8.1) and plans every group; with ``simulate`` it keeps planning on the virtual outputs of earlier
plans, which is what the compactor's re-planning will do, so a dry run shows the whole cascade.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from thanostools.core import groups
from thanostools.core.labels import Labels, format_labels
from thanostools.core.timeutil import format_time_ms, human_duration
from thanostools.core.tsdb.markers import DeletionMark, NoCompactMark
from thanostools.core.tsdb.meta import SOURCE_COMPACTOR, BlockMeta, BlockStats, ThanosMeta
from thanostools.core.ulid import new_ulid

H = 3_600_000
DEFAULT_RANGES: tuple[int, ...] = (2 * H, 8 * H, 48 * H, 336 * H)
DEFAULT_CONSISTENCY_DELAY_MS = 30 * 60_000
TOMBSTONE_RATIO = 0.05

KIND_COMPACT = "compact"
KIND_VERTICAL = "vertical"
KIND_TOMBSTONES = "tombstones"
# Overlapping downsampled blocks are not merged; they get a no-compact mark instead (as Thanos does).
KIND_MARK_NO_COMPACT = "mark-no-compact"

# Why a block is in no plan.
R_DELETION = "marked-for-deletion"
R_TOO_YOUNG = "too-young"
R_DUPLICATE = "duplicate"
R_NO_COMPACT = "no-compact"
R_HALTED = "group-halted"
R_ONLY = "only-block-in-group"
R_NEWEST = "newest-block"
R_ALONE = "alone-in-range"
R_INCOMPLETE = "range-incomplete"
R_FAILED = "failed-compaction"
R_SPLIT = "split-by-no-compact"
R_TOO_BIG = "largest-range"
R_MISALIGNED = "fits-no-range"


@dataclass(frozen=True)
class Plan:
    group: str
    kind: str
    blocks: tuple[BlockMeta, ...]
    range_ms: int = 0  # the aligned target range of a "compact" plan
    # simulated plans only: the plans whose outputs are among the inputs (their numbers, 1-based)
    after: tuple[int, ...] = ()

    @property
    def min_time(self) -> int:
        return min(m.min_time for m in self.blocks)

    @property
    def max_time(self) -> int:
        return max(m.max_time for m in self.blocks)

    @property
    def level(self) -> int:
        return max(m.level for m in self.blocks) + 1


@dataclass(frozen=True)
class Unplanned:
    meta: BlockMeta
    group: str
    reason: str
    detail: str


@dataclass(frozen=True)
class GroupInfo:
    key: str
    labels: Labels
    resolution: int
    blocks: int


@dataclass
class PlanResult:
    plans: list[Plan] = field(default_factory=list)
    unplanned: list[Unplanned] = field(default_factory=list)
    halted: dict[str, str] = field(default_factory=dict)  # group key -> why
    groups: dict[str, GroupInfo] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanOptions:
    ranges: tuple[int, ...] = DEFAULT_RANGES
    consistency_delay_ms: int = DEFAULT_CONSISTENCY_DELAY_MS
    replica_labels: tuple[str, ...] = ()
    vertical: bool = False

    def __post_init__(self) -> None:
        if not self.ranges or any(r <= 0 for r in self.ranges) or list(self.ranges) != sorted(set(self.ranges)):
            raise ValueError("compaction ranges must be positive and strictly increasing")

    @property
    def vertical_enabled(self) -> bool:
        """Replica labels imply vertical compaction (§8.5)."""
        return self.vertical or bool(self.replica_labels)


@dataclass(frozen=True)
class BlockState:
    """One block as the planner sees it: meta plus the markers that matter."""

    meta: BlockMeta
    deletion: DeletionMark | None = None
    no_compact: NoCompactMark | None = None
    index_size: int = 0  # bytes of its index file, from the bucket listing


# --- the upstream planner --------------------------------------------------------------------------------------


def overlapping_run(metas: Sequence[BlockMeta]) -> list[BlockMeta]:
    """The first run of overlapping blocks (metas sorted by minTime), or []."""
    run: list[BlockMeta] = []
    reach = metas[0].max_time if metas else 0
    for prev, m in itertools.pairwise(metas):
        if m.min_time < reach:
            if not run:
                run.append(prev)
            run.append(m)
        elif run:
            break
        reach = max(reach, m.max_time)
    return run


def split_by_range(metas: Sequence[BlockMeta], tr: int) -> list[list[BlockMeta]]:
    """Consecutive metas falling into the same ``tr``-aligned window; blocks fitting no window are skipped."""
    out: list[list[BlockMeta]] = []
    i = 0
    while i < len(metas):
        t0 = tr * (metas[i].min_time // tr)  # floor division, also for negative times
        if metas[i].max_time > t0 + tr:
            i += 1
            continue
        part: list[BlockMeta] = []
        while i < len(metas) and metas[i].max_time <= t0 + tr:
            part.append(metas[i])
            i += 1
        out.append(part)
    return out


def _select_by_ranges(metas: Sequence[BlockMeta], targets: Sequence[int], excluded: Collection[str]) -> Plan | None:
    if not metas:
        return None
    high_time = metas[-1].min_time
    for tr in targets:
        for part in split_by_range(metas, tr):
            if len(part) < 2 or any(m.failed for m in part):
                continue
            if part[-1].max_time - part[0].min_time != tr and part[-1].max_time > high_time:
                continue
            for run in _split_excluded(part, excluded):
                if len(run) > 1:
                    return Plan("", KIND_COMPACT, tuple(run), tr)
    return None


def _split_excluded(part: Sequence[BlockMeta], excluded: Collection[str]) -> list[list[BlockMeta]]:
    runs: list[list[BlockMeta]] = [[]]
    for m in part:
        if m.ulid in excluded:
            runs.append([])
        else:
            runs[-1].append(m)
    return runs


def tombstone_threshold_range(targets: Sequence[int]) -> int:
    """Upstream ``ranges[len(ranges)/2]`` over the full set (one range below the targets): 8h by default."""
    return targets[max((len(targets) + 1) // 2 - 1, 0)]


def plan_group(metas: Sequence[BlockMeta], targets: Sequence[int], excluded: Collection[str] = (),
               group: str = "") -> Plan | None:
    """The Thanos planner for one group; ``metas`` sorted by minTime, ``excluded`` = no-compact marked."""
    if not metas:
        return None
    candidates = [m for m in metas if m.ulid not in excluded]
    run = overlapping_run(candidates)
    if run:
        return Plan(group, KIND_VERTICAL, tuple(run))
    plan = _select_by_ranges(metas[:-1], targets, excluded)
    if plan is not None:
        return replace(plan, group=group)
    if metas[-1].ulid not in excluded:
        candidates = candidates[:-1]
    threshold = tombstone_threshold_range(targets)
    for m in reversed(candidates):
        if m.max_time - m.min_time < threshold:
            break
        if m.stats.num_tombstones / (m.stats.num_series + 1) > TOMBSTONE_RATIO:
            return Plan(group, KIND_TOMBSTONES, (m,))
    return None


# --- why a block is not planned --------------------------------------------------------------------------------


def _span(t0: int, tr: int) -> str:
    return f"[{format_time_ms(t0)}, {format_time_ms(t0 + tr)})"


def _range_reason(m: BlockMeta, considered: Sequence[BlockMeta], tr: int, high_time: int) -> tuple[str, str] | None:
    """Why ``m`` is not compacted within its ``tr`` window, or None if it fits no such window."""
    for part in split_by_range(considered, tr):
        if m not in part:
            continue
        window = tr * (part[0].min_time // tr)
        name = human_duration(tr)
        if len(part) < 2:
            return R_ALONE, f"only block in its {name} range {_span(window, tr)}"
        if any(p.failed for p in part):
            return R_FAILED, f"a block in its {name} range has compaction.failed set"
        span = part[-1].max_time - part[0].min_time
        if span != tr and part[-1].max_time > high_time:
            return R_INCOMPLETE, (f"its {name} range {_span(window, tr)} holds {len(part)} blocks covering "
                                  f"{human_duration(span)} and reaches past the start of the newest block "
                                  "still considered; waiting for more blocks")
        return R_SPLIT, f"no-compact marked blocks leave it without a neighbour in its {name} range"
    return None


def explain_group(metas: Sequence[BlockMeta], targets: Sequence[int], excluded: Mapping[str, NoCompactMark],
                  group: str) -> list[Unplanned]:
    """Reasons for the blocks of a group the planner found nothing for (``metas`` sorted by minTime)."""
    out: list[Unplanned] = []
    considered = list(metas[:-1])
    high_time = considered[-1].min_time if considered else 0
    for m in metas:
        mark = excluded.get(m.ulid)
        if mark is not None:
            why = f": {mark.details}" if mark.details else ""
            out.append(Unplanned(m, group, R_NO_COMPACT, f"no-compact mark ({mark.reason}){why}"))
        elif len(metas) == 1:
            labels = format_labels(m.external_labels, with_name=False)
            res = human_duration(m.resolution) if m.resolution else "raw"
            out.append(Unplanned(m, group, R_ONLY, f"only block in its group (resolution {res}, labels {labels})"))
        elif m is metas[-1]:
            out.append(Unplanned(m, group, R_NEWEST, "newest block of its group: kept out of compaction until "
                                                     "another block follows it"))
        else:
            out.append(Unplanned(m, group, *_first_range_reason(m, considered, targets, high_time)))
    return out


def _first_range_reason(m: BlockMeta, considered: Sequence[BlockMeta], targets: Sequence[int],
                        high_time: int) -> tuple[str, str]:
    reasons = [r for r in (_range_reason(m, considered, tr, high_time) for tr in targets) if r]
    for reason in reasons:
        if reason[0] != R_ALONE:
            return reason
    if m.max_time - m.min_time >= targets[-1]:
        return R_TOO_BIG, f"already spans the largest compaction range ({human_duration(targets[-1])})"
    if reasons:
        return reasons[-1]
    names = ", ".join(human_duration(t) for t in targets)
    return R_MISALIGNED, f"fits no aligned compaction range ({names}): misaligned or too long"


# --- the whole bucket ------------------------------------------------------------------------------------------


def plan_bucket(states: Sequence[BlockState], opts: PlanOptions, *, now_ms: int, simulate: bool = False) -> PlanResult:
    """Filter, group and plan. Without ``simulate`` each group gets at most its next plan."""
    result = PlanResult()
    metas = _filter(states, opts, now_ms, result)
    no_compact = {s.meta.ulid: s.no_compact for s in states if s.no_compact is not None}
    for key, members in groups.group_blocks(metas, opts.replica_labels).items():
        labels = groups.group_labels(members[0], opts.replica_labels)
        result.groups[key] = GroupInfo(key, labels, members[0].resolution, len(members))
        _plan_one_group(key, labels, members, no_compact, opts, simulate, result)
    return result


def _filter(states: Sequence[BlockState], opts: PlanOptions, now_ms: int, result: PlanResult) -> list[BlockMeta]:
    def skip(m: BlockMeta, reason: str, detail: str) -> None:
        key = groups.group_key(m, opts.replica_labels)
        result.unplanned.append(Unplanned(m, key, reason, detail))

    live: list[BlockMeta] = []
    for s in states:
        if s.deletion is not None:
            skip(s.meta, R_DELETION, f"marked for deletion{': ' + s.deletion.details if s.deletion.details else ''}")
        else:
            live.append(s.meta)
    kept, fresh = groups.consistency_filter(live, opts.consistency_delay_ms, now_ms)
    for m in fresh:
        age = now_ms - groups.block_age_reference_ms(m)
        skip(m, R_TOO_YOUNG, f"too young: appeared {human_duration(max(age, 0))} ago, consistency delay is "
                             f"{human_duration(opts.consistency_delay_ms)}")
    kept, dups = groups.deduplicate_filter(kept, opts.replica_labels)
    for m in dups:
        holder = next((k.ulid for k in kept if groups.block_sources(m) <= groups.block_sources(k)
                       and groups.group_key(k, opts.replica_labels) == groups.group_key(m, opts.replica_labels)), "?")
        skip(m, R_DUPLICATE, f"its data is already in block {holder} (leftover of a finished compaction)")
    return kept


def _plan_one_group(key: str, labels: Labels, members: list[BlockMeta], no_compact: Mapping[str, NoCompactMark],
                    opts: PlanOptions, simulate: bool, result: PlanResult) -> None:
    metas = list(members)
    produced: dict[str, int] = {}  # virtual output ulid -> plan number
    planned: set[str] = set()
    while True:
        run = groups.overlapping_runs(metas)
        if run and not opts.vertical_enabled:
            result.halted[key] = _overlap_message(key, labels, run[0])
            for m in metas:
                if m.ulid not in planned and m.ulid not in produced:
                    result.unplanned.append(Unplanned(m, key, R_HALTED, result.halted[key]))
            return
        plan = plan_group(metas, opts.ranges, no_compact, key)
        if plan is None:
            break
        if plan.kind == KIND_VERTICAL and members[0].resolution != 0:
            plan = replace(plan, kind=KIND_MARK_NO_COMPACT)
        after = tuple(sorted({produced[m.ulid] for m in plan.blocks if m.ulid in produced}))
        result.plans.append(replace(plan, after=after))
        planned |= {m.ulid for m in plan.blocks}
        if not simulate or plan.kind == KIND_MARK_NO_COMPACT:
            return
        out = virtual_output(plan, labels)
        produced[out.ulid] = len(result.plans)
        metas = groups.sort_by_time([m for m in metas if m.ulid not in planned] + [out])
    for u in explain_group(metas, opts.ranges, no_compact, key):
        if u.meta.ulid not in produced:
            result.unplanned.append(u)


def _overlap_message(key: str, labels: Labels, run: Sequence[BlockMeta]) -> str:
    ids = ", ".join(m.ulid for m in run)
    return (f"group {key} {format_labels(labels, with_name=False)}: overlapping blocks {ids}; "
            "enable --compact.enable-vertical-compaction (or --dedup.replica-label) to merge them")


def virtual_output(plan: Plan, labels: Labels) -> BlockMeta:
    """What a plan's output will look like (for simulated re-planning)."""
    first = plan.blocks[0]
    sources: set[str] = set()
    for m in plan.blocks:
        sources |= groups.block_sources(m)
    stats = BlockStats(num_samples=sum(m.stats.num_samples for m in plan.blocks),
                       num_series=max(m.stats.num_series for m in plan.blocks),
                       num_chunks=sum(m.stats.num_chunks for m in plan.blocks))
    thanos = ThanosMeta(labels=dict(labels), resolution=first.resolution, source=SOURCE_COMPACTOR)
    return BlockMeta(ulid=new_ulid(), min_time=plan.min_time, max_time=plan.max_time, stats=stats,
                     level=plan.level, sources=sorted(sources), thanos=thanos)
