"""The Thanos planner (FORMATS.md §8.3) and the reasons given for blocks it leaves alone."""

from __future__ import annotations

from thanostools.core.compact.planner import (
    DEFAULT_RANGES,
    KIND_COMPACT,
    KIND_MARK_NO_COMPACT,
    KIND_TOMBSTONES,
    KIND_VERTICAL,
    R_DELETION,
    R_DUPLICATE,
    R_FAILED,
    R_HALTED,
    R_INCOMPLETE,
    R_MISALIGNED,
    R_NEWEST,
    R_NO_COMPACT,
    R_ONLY,
    R_TOO_BIG,
    R_TOO_YOUNG,
    BlockState,
    PlanOptions,
    Unplanned,
    plan_bucket,
    plan_group,
    split_by_range,
    tombstone_threshold_range,
)
from thanostools.core.constants import RESOLUTION_5M
from thanostools.core.tsdb.markers import DeletionMark, NoCompactMark
from thanostools.core.tsdb.meta import BlockMeta, BlockStats, ThanosMeta, format_go_time_ns
from thanostools.core.ulid import new_ulid

H = 3_600_000
NOW = 1_800_000_000_000
RANGES = DEFAULT_RANGES


def meta(mint_h: float, maxt_h: float, *, labels: dict[str, str] | None = None, res: int = 0, level: int = 1,
         sources: list[str] | None = None, tombstones: int = 0, series: int = 100, failed: bool = False,
         upload_ms: int | None = None, ulid_ms: int = NOW - 100 * H) -> BlockMeta:
    ulid = new_ulid(ulid_ms)
    thanos = ThanosMeta(labels=labels if labels is not None else {"cluster": "a"}, resolution=res, source="sidecar")
    if upload_ms is not None:
        thanos.upload_time = format_go_time_ns(upload_ms * 1_000_000)
    return BlockMeta(ulid=ulid, min_time=int(mint_h * H), max_time=int(maxt_h * H), level=level,
                     sources=sources or [ulid], failed=failed, thanos=thanos,
                     stats=BlockStats(num_series=series, num_tombstones=tombstones, num_samples=1000))


def blocks(*spans: tuple[float, float]) -> list[BlockMeta]:
    return [meta(a, b) for a, b in spans]


def ids(metas: tuple[BlockMeta, ...] | list[BlockMeta]) -> list[str]:
    return [m.ulid for m in metas]


def twos(start_h: int, n: int) -> list[BlockMeta]:
    return blocks(*[(start_h + 2 * i, start_h + 2 * i + 2) for i in range(n)])


# --- plan_group -------------------------------------------------------------------------------------------------


def test_nothing_to_plan_for_empty_and_single_groups() -> None:
    assert plan_group([], RANGES) is None
    assert plan_group(twos(0, 1), RANGES) is None


def test_full_aligned_range_is_compacted() -> None:
    ms = twos(0, 5)  # [0,2) … [8,10): the first four fill the 8h range
    plan = plan_group(ms, RANGES)
    assert plan is not None and plan.kind == KIND_COMPACT and plan.range_ms == 8 * H
    assert ids(plan.blocks) == ids(ms[:4])
    assert (plan.min_time, plan.max_time, plan.level) == (0, 8 * H, 2)


def test_newest_block_is_never_compacted() -> None:
    # four blocks fill [0, 8h) but the last of them is the newest block: nothing to do yet
    assert plan_group(twos(0, 4), RANGES) is None
    # three 2h blocks: the range is incomplete and reaches past the newest block still considered
    assert plan_group(twos(0, 3), RANGES) is None


def test_incomplete_range_before_the_newest_block_is_compacted() -> None:
    ms = blocks((4, 6), (6, 8), (8, 10), (10, 12))
    plan = plan_group(ms, RANGES)
    assert plan is not None and ids(plan.blocks) == ids(ms[:2]) and plan.range_ms == 8 * H


def test_gaps_inside_a_range_are_fine() -> None:
    ms = blocks((0, 2), (4, 6), (8, 10), (10, 12))
    plan = plan_group(ms, RANGES)
    assert plan is not None and ids(plan.blocks) == ids(ms[:2])


def test_smallest_range_first() -> None:
    ms = blocks((0, 1), (1, 2), (2, 4), (4, 6), (6, 8), (8, 10))
    plan = plan_group(ms, RANGES)
    assert plan is not None and plan.range_ms == 2 * H and ids(plan.blocks) == ids(ms[:2])


def test_bigger_ranges_after_smaller_ones() -> None:
    eights = [meta(8 * i, 8 * i + 8, level=2) for i in range(6)]  # 48h in 8h blocks + a newer block
    plan = plan_group([*eights, meta(48, 50)], RANGES)
    assert plan is not None and plan.range_ms == 48 * H and ids(plan.blocks) == ids(eights)
    assert plan.level == 3


def test_misaligned_block_is_skipped_by_its_range() -> None:
    assert split_by_range(blocks((1, 3)), 2 * H) == []
    ms = blocks((0, 1), (1, 3), (3, 4), (4, 6), (6, 8), (8, 10))
    plan = plan_group(ms, RANGES)
    assert plan is not None and plan.range_ms == 8 * H and ids(plan.blocks) == ids(ms[:5])
    assert plan_group(ms[1:], RANGES) is None  # 7h of the 8h range, reaching past the newest block's start


def test_negative_times_use_floor_alignment() -> None:
    parts = split_by_range(blocks((-2, 0), (0, 2)), 8 * H)
    assert [len(p) for p in parts] == [1, 1]


def test_failed_compaction_blocks_its_range() -> None:
    ms = twos(0, 5)
    ms[1].failed = True
    assert plan_group(ms, RANGES) is None


def test_no_compact_marks_split_a_range() -> None:
    ms = twos(0, 5)
    plan = plan_group(ms, RANGES, excluded={ms[1].ulid})
    assert plan is not None and ids(plan.blocks) == ids(ms[2:4])
    plan = plan_group(ms, RANGES, excluded={ms[2].ulid})
    assert plan is not None and ids(plan.blocks) == ids(ms[:2])
    assert plan_group(ms, RANGES, excluded={ms[0].ulid, ms[2].ulid}) is None


def test_overlaps_first_and_only_the_first_run() -> None:
    ms = blocks((0, 2), (1, 3), (2, 4), (6, 8), (7, 9))
    plan = plan_group(ms, RANGES)
    assert plan is not None and plan.kind == KIND_VERTICAL and ids(plan.blocks) == ids(ms[:3])


def test_overlap_detection_keeps_the_greatest_max_time() -> None:
    ms = blocks((0, 8), (2, 4), (5, 6), (8, 10))
    plan = plan_group(ms, RANGES)
    assert plan is not None and ids(plan.blocks) == ids(ms[:3])


def test_no_compact_blocks_do_not_take_part_in_overlaps() -> None:
    ms = blocks((0, 2), (1, 3), (4, 6))
    assert plan_group(ms, RANGES, excluded={ms[1].ulid}) is None


def test_tombstone_rule() -> None:
    assert tombstone_threshold_range(RANGES) == 8 * H
    big = meta(0, 8, tombstones=10, series=100)
    plan = plan_group([big, meta(8, 16)], RANGES)
    assert plan is not None and plan.kind == KIND_TOMBSTONES and ids(plan.blocks) == [big.ulid]
    few = meta(0, 8, tombstones=5, series=100)  # 5/101 is below 5 %
    assert plan_group([few, meta(8, 16)], RANGES) is None
    short = meta(0, 2, tombstones=50, series=10)  # shorter than 8h: the walk stops
    assert plan_group([short, meta(8, 10)], RANGES) is None
    assert plan_group([meta(8, 16, tombstones=50)], RANGES) is None  # the newest block is left alone


# --- plan_bucket: filters, groups, simulation and reasons -------------------------------------------------------


def states(metas: list[BlockMeta], deletion: dict[str, DeletionMark] | None = None,
           no_compact: dict[str, NoCompactMark] | None = None) -> list[BlockState]:
    return [BlockState(m, (deletion or {}).get(m.ulid), (no_compact or {}).get(m.ulid)) for m in metas]


def reasons(unplanned: list[Unplanned]) -> dict[str, str]:
    return {u.meta.ulid: u.reason for u in unplanned}


def test_simulation_cascades_and_explains_the_rest() -> None:
    ms = twos(0, 12)  # one day of 2h blocks
    result = plan_bucket(states(ms), PlanOptions(), now_ms=NOW, simulate=True)
    assert [ids(p.blocks) for p in result.plans] == [ids(ms[0:4]), ids(ms[4:8])]
    why = reasons(result.unplanned)
    assert set(why) == set(ids(ms[8:]))
    assert why[ms[-1].ulid] == R_NEWEST
    assert {why[u] for u in ids(ms[8:11])} == {R_INCOMPLETE}
    # without simulation each group gets its next plan only
    assert len(plan_bucket(states(ms), PlanOptions(), now_ms=NOW).plans) == 1


def test_simulated_outputs_are_planned_again() -> None:
    ms = twos(0, 25)  # 50h: the 8h outputs fill a 2d range
    result = plan_bucket(states(ms), PlanOptions(), now_ms=NOW, simulate=True)
    assert [p.range_ms for p in result.plans] == [8 * H] * 6 + [48 * H]
    assert result.plans[-1].after == (1, 2, 3, 4, 5, 6)
    assert result.plans[-1].level == 3


def test_filters_give_reasons() -> None:
    a, b, c, d = twos(0, 4)
    young = meta(8, 10, upload_ms=NOW - 60_000)
    dup = meta(0, 2, sources=[a.ulid], ulid_ms=NOW - 50 * H)  # same sources, later ULID: the leftover
    e = meta(10, 12)
    marked = states([a, b, c, d, young, dup, e], deletion={b.ulid: DeletionMark(b.ulid, NOW // 1000)},
                    no_compact={c.ulid: NoCompactMark(c.ulid, NOW // 1000, details="broken")})
    result = plan_bucket(marked, PlanOptions(), now_ms=NOW)
    why = reasons(result.unplanned)
    assert why[b.ulid] == R_DELETION
    assert why[young.ulid] == R_TOO_YOUNG
    assert why[dup.ulid] == R_DUPLICATE
    assert why[c.ulid] == R_NO_COMPACT
    assert why[e.ulid] == R_NEWEST
    assert result.plans == []
    detail = {u.meta.ulid: u.detail for u in result.unplanned}
    assert "broken" in detail[c.ulid] and a.ulid in detail[dup.ulid]


def test_compactor_output_is_never_too_young() -> None:
    ms = twos(0, 5)
    for m in ms:
        assert m.thanos is not None
        m.thanos.upload_time = format_go_time_ns(NOW * 1_000_000)
    assert plan_bucket(states(ms), PlanOptions(), now_ms=NOW).plans == []
    for m in ms:
        assert m.thanos is not None
        m.thanos.source = "compactor"
    assert len(plan_bucket(states(ms), PlanOptions(), now_ms=NOW).plans) == 1


def test_groups_are_planned_separately() -> None:
    a = [meta(2 * i, 2 * i + 2, labels={"cluster": "a"}) for i in range(5)]
    b = [meta(2 * i, 2 * i + 2, labels={"cluster": "b"}) for i in range(2)]
    c = [meta(0, 8, res=RESOLUTION_5M)]
    result = plan_bucket(states(a + b + c), PlanOptions(), now_ms=NOW, simulate=True)
    assert len(result.groups) == 3
    assert [ids(p.blocks) for p in result.plans] == [ids(a[:4])]
    why = reasons(result.unplanned)
    assert why[c[0].ulid] == R_ONLY and why[b[1].ulid] == R_NEWEST


def test_overlaps_halt_the_group_without_vertical_compaction() -> None:
    ms = blocks((0, 2), (1, 3), (4, 6))
    other = [meta(2 * i, 2 * i + 2, labels={"cluster": "b"}) for i in range(5)]
    result = plan_bucket(states(ms + other), PlanOptions(), now_ms=NOW)
    assert len(result.halted) == 1
    assert "overlapping blocks" in next(iter(result.halted.values()))
    assert {reasons(result.unplanned)[u] for u in ids(ms)} == {R_HALTED}
    assert len(result.plans) == 1  # the other group goes on
    vertical = plan_bucket(states(ms), PlanOptions(vertical=True), now_ms=NOW)
    assert vertical.halted == {} and vertical.plans[0].kind == KIND_VERTICAL


def test_replica_labels_merge_replicas_vertically() -> None:
    r0 = [meta(2 * i, 2 * i + 2, labels={"cluster": "a", "replica": "0"}) for i in range(3)]
    r1 = [meta(2 * i, 2 * i + 2, labels={"cluster": "a", "replica": "1"}) for i in range(3)]
    result = plan_bucket(states(r0 + r1), PlanOptions(replica_labels=("replica",)), now_ms=NOW, simulate=True)
    assert len(result.groups) == 1
    assert [p.kind for p in result.plans[:3]] == [KIND_VERTICAL] * 3
    assert sorted(ids(result.plans[0].blocks)) == sorted([r0[0].ulid, r1[0].ulid])
    assert dict(next(iter(result.groups.values())).labels) == {"cluster": "a"}


def test_overlapping_downsampled_blocks_get_marked_instead() -> None:
    ms = [meta(0, 48, res=RESOLUTION_5M), meta(24, 72, res=RESOLUTION_5M)]
    result = plan_bucket(states(ms), PlanOptions(vertical=True), now_ms=NOW, simulate=True)
    assert [p.kind for p in result.plans] == [KIND_MARK_NO_COMPACT]


def test_reasons_for_big_and_misaligned_blocks() -> None:
    big = meta(0, 336, level=5)
    odd = meta(340, 341.5)
    odd2 = meta(341.5, 345)  # crosses the 2h, 8h boundaries... fits the 2d range with odd
    newest = meta(400, 402)
    result = plan_bucket(states([big, odd, odd2, newest]), PlanOptions(), now_ms=NOW)
    why = reasons(result.unplanned)
    assert why[big.ulid] == R_TOO_BIG
    assert why[odd.ulid] == R_INCOMPLETE
    lone = meta(1, 2.5)  # crosses the 2h boundary
    result = plan_bucket(states([lone, meta(20, 22)]), PlanOptions(ranges=(2 * H,)), now_ms=NOW)
    assert reasons(result.unplanned)[lone.ulid] == R_MISALIGNED


def test_failed_reason() -> None:
    ms = twos(0, 5)
    ms[0].failed = True
    result = plan_bucket(states(ms), PlanOptions(), now_ms=NOW)
    assert reasons(result.unplanned)[ms[1].ulid] == R_FAILED
