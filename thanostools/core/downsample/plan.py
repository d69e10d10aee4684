"""Which blocks to downsample, as the Thanos compactor decides it (FORMATS.md §7.1)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from thanostools.core.blockio import BlockMarkers
from thanostools.core.constants import RESOLUTION_1H, RESOLUTION_5M, RESOLUTION_RAW
from thanostools.core.downsample.windows import DOWNSAMPLE_RANGE_1H, DOWNSAMPLE_RANGE_5M
from thanostools.core.errors import CorruptBlockError
from thanostools.core.tsdb.meta import BlockMeta, ThanosMeta
from thanostools.core.ulid import new_ulid

# What each resolution is downsampled to, and how long a block must be for it.
NEXT_RESOLUTION = {RESOLUTION_RAW: (RESOLUTION_5M, DOWNSAMPLE_RANGE_5M),
                   RESOLUTION_5M: (RESOLUTION_1H, DOWNSAMPLE_RANGE_1H)}

# Either the parsed markers of a block, or the names of its marks as ``inspect`` lists them.
Marks = BlockMarkers | Collection[str]


def _marked(marks: Marks | None, name: str) -> bool:
    if marks is None:
        return False
    if isinstance(marks, BlockMarkers):
        return (marks.no_downsample if name == "no-downsample" else marks.deletion) is not None
    return name in marks


def _covered_sources(metas: Iterable[BlockMeta]) -> dict[int, set[str]]:
    covered: dict[int, set[str]] = {RESOLUTION_5M: set(), RESOLUTION_1H: set()}
    for m in metas:
        if m.resolution in covered:
            covered[m.resolution].update(m.sources)
        elif m.resolution != RESOLUTION_RAW:
            raise CorruptBlockError(f"unexpected downsampling resolution {m.resolution}", block=m.ulid,
                                    file="meta.json")
    return covered


def plan_downsampling(metas: Iterable[BlockMeta], markers: Mapping[str, Marks] | None = None, *,
                      skip_deleted: bool = True) -> list[tuple[BlockMeta, int]]:
    """(block, target resolution) for every block that needs a downsampled version now, in ULID order.

    A raw block needs a 5m version unless every one of its sources is already inside some 5m block, and only
    once it spans 40h; a 5m block likewise needs a 1h version once it spans 10 days. Blocks with a
    no-downsample mark (and, by default, blocks marked for deletion) are left out, and their sources do not
    count as covered.
    """
    marks = markers or {}
    live = [m for m in metas
            if not _marked(marks.get(m.ulid), "no-downsample")
            and not (skip_deleted and _marked(marks.get(m.ulid), "deletion"))]
    covered = _covered_sources(live)
    plan: list[tuple[BlockMeta, int]] = []
    for m in sorted(live, key=lambda b: b.ulid):
        step = NEXT_RESOLUTION.get(m.resolution)
        if step is None:
            continue
        target, min_span = step
        if all(s in covered[target] for s in m.sources):
            continue  # also a block without sources, as upstream
        if m.max_time - m.min_time < min_span:
            continue
        plan.append((m, target))
    return plan


@dataclass(frozen=True)
class PlannedStep:
    """One downsampling a run will do. In later passes the input is a block made by an earlier pass: ``meta``
    is then a stand-in for it and ``origin`` the ULID of the existing block it comes from."""

    meta: BlockMeta
    target: int
    origin: str
    pass_no: int


def plan_passes(metas: Iterable[BlockMeta], markers: Mapping[str, Marks] | None = None,
                passes: int = 2) -> list[PlannedStep]:
    """What ``passes`` rounds of downsampling would do (the compactor runs two, so a 14-day raw block gets
    both its 5m and its 1h version). Later rounds plan on stand-in metas of the blocks earlier rounds make."""
    current = list(metas)
    origin: dict[str, str] = {m.ulid: m.ulid for m in current}
    steps: list[PlannedStep] = []
    for pass_no in range(1, passes + 1):
        planned = plan_downsampling(current, markers)
        if not planned:
            break
        for meta, target in planned:
            steps.append(PlannedStep(meta, target, origin[meta.ulid], pass_no))
            stand_in = _stand_in(meta, target)
            origin[stand_in.ulid] = origin[meta.ulid]
            current.append(stand_in)
    return steps


def _stand_in(meta: BlockMeta, target: int) -> BlockMeta:
    out = meta.copy()
    out.ulid = new_ulid()
    out.thanos = out.thanos or ThanosMeta()
    out.thanos.resolution = target
    return out
