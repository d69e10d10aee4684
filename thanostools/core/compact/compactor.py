"""The compactor: plan, merge, verify, upload, mark — group after group until nothing is left (§8.4).

One ``run`` is one iteration of the Thanos compactor: compaction passes until no group has a plan,
then downsampling and retention. A block that cannot be read is quarantined (no-compact mark) and the
others go on; a group whose blocks overlap without vertical compaction is halted; either makes the run
fail. ``halt_on_error`` turns both into an immediate stop, as upstream does.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from thanostools.core import lifecycle
from thanostools.core.audit import audit
from thanostools.core.blockio import (
    BlockMarkers,
    download_block,
    fetch_markers,
    upload_block,
    work_dir,
    write_marker,
)
from thanostools.core.compact.merge import (
    DEDUP_CHAIN,
    DEFAULT_BATCH_SERIES,
    InputBlockError,
    MergeStats,
    compact_blocks,
)
from thanostools.core.compact.planner import (
    KIND_MARK_NO_COMPACT,
    KIND_VERTICAL,
    R_DUPLICATE,
    BlockState,
    GroupInfo,
    Plan,
    PlanOptions,
    PlanResult,
    plan_bucket,
)
from thanostools.core.downsample.plan import PlannedStep
from thanostools.core.downsample.run import downsample_bucket
from thanostools.core.downsample.run import plan_bucket as plan_downsampling
from thanostools.core.errors import (
    CorruptBlockError,
    FormatError,
    HaltError,
    NotFoundError,
    ThanosToolsError,
    UnsupportedError,
)
from thanostools.core.groups import block_sources
from thanostools.core.inspect import scan_bucket
from thanostools.core.localfs import WorkDir
from thanostools.core.objstore.bucket import Bucket
from thanostools.core.timeutil import now_ms
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.markers import (
    REASON_DOWNSAMPLE_VERTICAL_COMPACTION,
    REASON_INDEX_SIZE_EXCEEDING,
    REASON_MANUAL,
    REASON_OUT_OF_ORDER_CHUNK,
    DeletionMark,
    NoCompactMark,
)
from thanostools.core.tsdb.meta import SOURCE_COMPACTOR, BlockMeta
from thanostools.core.verify.health import IndexHealth, index_health
from thanostools.core.workspace import BucketWorkspace

log = logging.getLogger("thanostools.compact")

DELETION_DETAILS = "source of compacted block"
GARBAGE_DETAILS = "duplicate"


@dataclass(frozen=True)
class CompactOptions:
    plan: PlanOptions = field(default_factory=PlanOptions)
    dedup_func: str = DEDUP_CHAIN
    halt_on_error: bool = False
    downsampling: bool = True
    retention: Mapping[int, int] = field(default_factory=dict)  # resolution -> ms (0: keep forever)
    work_dir: str | None = None
    batch_series: int = DEFAULT_BATCH_SERIES
    # An index v2 addresses series in 16-byte units with 32-bit references: 64 GiB at most (as Thanos).
    max_index_size: int = 64 * 2**30
    # Then, as the Thanos compactor: blocks marked for deletion longer than this are deleted (None: never),
    # with partial uploads older than max(consistency delay, partial_upload_age_ms).
    delete_delay_ms: int | None = lifecycle.DEFAULT_DELETE_DELAY_MS
    partial_upload_age_ms: int = lifecycle.PARTIAL_UPLOAD_THRESHOLD_MS


@dataclass
class Compaction:
    plan: Plan
    output: BlockMeta | None  # None: the output held no samples
    stats: MergeStats
    seconds: float
    marked_for_deletion: list[str] = field(default_factory=list)


@dataclass
class Problem:
    """A block given a no-compact mark, or a group that was stopped."""

    block: str
    group: str
    reason: str
    message: str


@dataclass
class CompactReport:
    compactions: list[Compaction] = field(default_factory=list)
    quarantined: list[Problem] = field(default_factory=list)
    marked_no_compact: list[Problem] = field(default_factory=list)  # overlapping downsampled blocks
    halted: dict[str, str] = field(default_factory=dict)  # group key -> why it stopped
    unreadable_metas: dict[str, str] = field(default_factory=dict)
    downsampled: list[BlockMeta] = field(default_factory=list)
    garbage_collected: list[str] = field(default_factory=list)  # leftovers of compactions, marked for deletion
    retention: list[lifecycle.Action] = field(default_factory=list)
    cleanup: list[lifecycle.Action] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stopped: bool = False  # --halt-on-error stopped the run early

    @property
    def failed(self) -> bool:
        return bool(self.quarantined or self.halted or self.unreadable_metas or self.errors)


class _Stop(Exception):
    """--halt-on-error: stop the whole run now."""


class _BadInput(Exception):
    """An input block that must be quarantined."""

    def __init__(self, block: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.block = block
        self.reason = reason
        self.message = message


# --- reading the bucket ----------------------------------------------------------------------------------------


def load_states(bucket: Bucket, report: CompactReport | None = None) -> list[BlockState]:
    """Every block with a readable meta, and its deletion / no-compact marks."""
    scan = scan_bucket(bucket)
    if report is not None:
        report.unreadable_metas.update({u: str(e) for u, e in scan.broken.items()})
    marked = [b.ulid for b in scan.blocks if b.marks]
    markers: dict[str, BlockMarkers] = fetch_markers(bucket, marked) if marked else {}
    states = []
    for info in scan.blocks:
        mk = markers.get(info.ulid, BlockMarkers())
        for name, err in mk.broken.items():
            log.warning("ignoring unreadable marker", extra={"kv": {"block": info.ulid, "marker": name,
                                                                     "err": str(err)}})
        states.append(BlockState(info.meta, mk.deletion, mk.no_compact, info.files.get("index", 0)))
    return states


# --- the compactor -----------------------------------------------------------------------------------------------


class Compactor:
    def __init__(self, bucket: Bucket, opts: CompactOptions, *, clock: Callable[[], int] = now_ms) -> None:
        self.bucket = bucket
        self.opts = opts
        self.clock = clock
        self.report = CompactReport()

    def plan(self, *, simulate: bool = True) -> PlanResult:
        """What would be done now (no changes)."""
        return plan_bucket(load_states(self.bucket, self.report), self.opts.plan, now_ms=self.clock(),
                           simulate=simulate)

    def dry_run(self) -> tuple[PlanResult, lifecycle.Plan]:
        """The compaction plan, and every bucket change a run would make now as a dry-run ``lifecycle.Plan``:
        compactions and the marks they leave, then downsampling, retention and cleanup as the bucket is now
        (a real run does them after compacting, so they may differ then). Changes nothing."""
        states = load_states(self.bucket, self.report)
        result = plan_bucket(states, self.opts.plan, now_ms=self.clock(), simulate=True)
        plan = lifecycle.Plan("compact", self.bucket.url, dry_run=True)
        existing = {st.meta.ulid for st in states}
        for n, p in enumerate(result.plans, 1):
            plan.actions += _compaction_actions(n, p, existing)
        plan.actions += [lifecycle.Action("mark-deletion", u.meta.ulid, f"{GARBAGE_DETAILS}: {u.detail}")
                         for u in result.unplanned if u.reason == R_DUPLICATE]
        if self.opts.downsampling:
            plan.actions += [_downsample_action(s) for s in plan_downsampling(BucketWorkspace(self.bucket))]
        if any(self.opts.retention.values()):
            plan.actions += lifecycle.retention(self.bucket, self.opts.retention, now=self.clock()).actions
        if self.opts.delete_delay_ms is not None:
            plan.actions += lifecycle.cleanup(self.bucket, delete_delay_ms=self.opts.delete_delay_ms,
                                              consistency_delay_ms=self.opts.plan.consistency_delay_ms,
                                              partial_upload_age_ms=self.opts.partial_upload_age_ms,
                                              now=self.clock()).actions
        return result, plan

    def run(self) -> CompactReport:
        try:
            with work_dir(self.bucket, "compact", self.opts.work_dir) as work:
                self._compact_until_done(work)
            if self.opts.downsampling:
                self._downsample()
            if any(self.opts.retention.values()):
                self._retention()
            if self.opts.delete_delay_ms is not None:
                self._cleanup(self.opts.delete_delay_ms)
        except _Stop:
            self.report.stopped = True
        return self.report

    # --- compaction passes ------------------------------------------------------------------------------------

    def _compact_until_done(self, work: WorkDir) -> None:
        done: set[frozenset[str]] = set()
        while True:
            states = load_states(self.bucket, self.report)
            index_sizes = {st.meta.ulid: st.index_size for st in states}
            result = plan_bucket(states, self.opts.plan, now_ms=self.clock())
            for key, why in result.halted.items():
                self._halt(key, why)
            todo = [p for p in result.plans if p.group not in self.report.halted
                    and frozenset(m.ulid for m in p.blocks) not in done]
            if not todo:
                self._collect_garbage(result)
                return
            for plan in todo:
                done.add(frozenset(m.ulid for m in plan.blocks))
                if self._index_too_big(plan, index_sizes):
                    break  # plan again without the marked block
                self._run_plan(plan, result.groups[plan.group], work)

    def _collect_garbage(self, result: PlanResult) -> None:
        """As the Thanos compactor does: blocks whose data another block of their group already holds (inputs
        of a compaction interrupted before it marked them) are marked for deletion."""
        for u in result.unplanned:
            if u.reason == R_DUPLICATE:
                self._mark_deleted(u.meta.ulid, f"{GARBAGE_DETAILS}: {u.detail}")
                self.report.garbage_collected.append(u.meta.ulid)

    def _index_too_big(self, plan: Plan, index_sizes: Mapping[str, int]) -> bool:
        """When the inputs' indexes add up to more than an index can hold, give the input with the largest
        index a no-compact mark (as Thanos does) and say so; the group is then planned without it."""
        total = sum(index_sizes.get(m.ulid, 0) for m in plan.blocks)
        if plan.kind == KIND_MARK_NO_COMPACT or total <= self.opts.max_index_size:
            return False
        biggest = max(plan.blocks, key=lambda m: (index_sizes.get(m.ulid, 0), m.ulid)).ulid
        details = (f"thanos-tools compact: the indexes of the {len(plan.blocks)} blocks to compact add up to {total} "
                   f"bytes, more than the {self.opts.max_index_size} an index may hold; this block has the largest")
        write_marker(self.bucket, NoCompactMark(id=biggest, no_compact_time=self.clock() // 1000,
                                                reason=REASON_INDEX_SIZE_EXCEEDING, details=details))
        audit("mark-no-compact", [biggest], bucket=self.bucket.url, details={"reason": REASON_INDEX_SIZE_EXCEEDING,
                                                                            "details": details})
        log.warning("index size limit", extra={"kv": {"block": biggest, "group": plan.group, "total": total}})
        self.report.marked_no_compact.append(Problem(biggest, plan.group, REASON_INDEX_SIZE_EXCEEDING, details))
        return True

    def _halt(self, group: str, why: str) -> None:
        if group in self.report.halted:
            return
        log.error("group halted", extra={"kv": {"group": group, "err": why}})
        self.report.halted[group] = why
        if self.opts.halt_on_error:
            raise _Stop

    def _run_plan(self, plan: Plan, group: GroupInfo, work: WorkDir) -> None:
        try:
            if plan.kind == KIND_MARK_NO_COMPACT:
                self._mark_downsampled_overlap(plan)
            else:
                self._compact(plan, group, work)
        except _BadInput as bad:
            self._quarantine(plan.group, bad)
        except HaltError as exc:
            self._halt(plan.group, str(exc))
        except ThanosToolsError as exc:
            self._halt(plan.group, f"compaction of {', '.join(m.ulid for m in plan.blocks)} failed: {exc}")

    def _quarantine(self, group: str, bad: _BadInput) -> None:
        if self.opts.halt_on_error:
            self._halt(group, f"block {bad.block}: {bad.message}")
        details = f"thanos-tools compact: {bad.message}"
        marker = NoCompactMark(id=bad.block, no_compact_time=self.clock() // 1000, reason=bad.reason,
                               details=details)
        write_marker(self.bucket, marker)
        audit("mark-no-compact", [bad.block], bucket=self.bucket.url, details={"reason": bad.reason,
                                                                              "details": details})
        log.error("block quarantined", extra={"kv": {"block": bad.block, "reason": bad.reason, "err": bad.message}})
        self.report.quarantined.append(Problem(bad.block, group, bad.reason, bad.message))

    def _mark_downsampled_overlap(self, plan: Plan) -> None:
        details = "overlapping downsampled blocks cannot be compacted vertically"
        for m in plan.blocks:
            marker = NoCompactMark(id=m.ulid, no_compact_time=self.clock() // 1000,
                                   reason=REASON_DOWNSAMPLE_VERTICAL_COMPACTION, details=details)
            write_marker(self.bucket, marker)
            audit("mark-no-compact", [m.ulid], bucket=self.bucket.url, details={"details": details})
            self.report.marked_no_compact.append(Problem(m.ulid, plan.group, marker.reason, details))

    # --- one plan ---------------------------------------------------------------------------------------------

    def _compact(self, plan: Plan, group: GroupInfo, work: WorkDir) -> None:
        if plan.kind != KIND_VERTICAL:
            _check_disjoint_sources(plan)
        started = time.perf_counter()
        ids = [m.ulid for m in plan.blocks]
        log.info("compacting", extra={"kv": {"group": plan.group, "kind": plan.kind, "blocks": ",".join(ids)}})
        plan_dir = tempfile.mkdtemp(prefix="plan-", dir=work.path)
        try:
            inputs = [self._open_input(m, plan_dir) for m in plan.blocks]
            for block in inputs:
                _health_check(block)
            out_dir = os.path.join(plan_dir, "out")
            os.makedirs(out_dir)
            try:
                result = compact_blocks(inputs, out_dir, external_labels=dict(group.labels),
                                        resolution=group.resolution, dedup=self.opts.dedup_func,
                                        batch_series=self.opts.batch_series)
            except (CorruptBlockError, InputBlockError) as exc:
                raise _blame(exc, ids) from None
            done = Compaction(plan, result.meta, result.stats, 0.0)
            if result.meta is None:
                done.marked_for_deletion = self._drop_empty(plan)
            else:
                self._publish(os.path.join(out_dir, result.meta.ulid), result.meta, plan, done, work)
        finally:
            shutil.rmtree(plan_dir, ignore_errors=True)
        done.seconds = time.perf_counter() - started
        self.report.compactions.append(done)

    def _open_input(self, meta: BlockMeta, plan_dir: str) -> Block:
        try:
            local = self.bucket.local_path(meta.ulid)
            path = local if local is not None else download_block(self.bucket, meta.ulid, plan_dir)
            return Block.open_dir(path)
        except NotFoundError as exc:
            raise ThanosToolsError(f"block {meta.ulid} disappeared: {exc}") from None
        except (FormatError, UnsupportedError) as exc:
            raise _BadInput(meta.ulid, REASON_MANUAL, f"cannot be read: {exc}") from None

    def _publish(self, path: str, meta: BlockMeta, plan: Plan, done: Compaction, work: WorkDir) -> None:
        _verify_output(path, meta)
        upload_block(path, self.bucket, source=SOURCE_COMPACTOR, private=True, work=work)
        inputs = [m.ulid for m in plan.blocks]
        kv = {"sources": ",".join(inputs), "compaction_level": meta.level}
        audit("compact", [meta.ulid], bucket=self.bucket.url, details=kv)
        log.info("compacted", extra={"kv": {"block": meta.ulid, **kv, "series": meta.stats.num_series,
                                            "samples": meta.stats.num_samples}})
        for ulid in inputs:
            self._mark_deleted(ulid, DELETION_DETAILS)
            done.marked_for_deletion.append(ulid)

    def _mark_deleted(self, ulid: str, details: str) -> None:
        write_marker(self.bucket, DeletionMark(id=ulid, deletion_time=self.clock() // 1000, details=details))
        audit("mark-deletion", [ulid], bucket=self.bucket.url, details={"details": details})

    def _drop_empty(self, plan: Plan) -> list[str]:
        """The output would hold no samples: only inputs that hold none either are deleted (as upstream)."""
        empty = [m.ulid for m in plan.blocks if m.stats.num_samples == 0]
        log.info("compacted block would have no samples", extra={"kv": {"blocks": ",".join(empty)}})
        for ulid in empty:
            self._mark_deleted(ulid, "compacted block would have no samples")
        return empty

    # --- after compaction -------------------------------------------------------------------------------------

    def _downsample(self) -> None:
        """Both downsampling passes (raw -> 5m -> 1h) over the whole bucket, as the Thanos compactor does."""
        try:
            done = downsample_bucket(BucketWorkspace(self.bucket), tmp_dir=self.opts.work_dir)
        except ThanosToolsError as exc:
            self.report.errors.append(f"downsampling failed: {exc}")
            return
        self.report.downsampled += [r.output for r in done.results if r.uploaded and r.output is not None]

    def _retention(self) -> None:
        plan = lifecycle.retention(self.bucket, self.opts.retention, now=self.clock(), dry_run=False)
        self.report.retention = plan.actions
        self.report.errors += [f"retention of {a.block} failed: {a.error}" for a in plan.failed]


    def _cleanup(self, delete_delay_ms: int) -> None:
        plan = lifecycle.cleanup(self.bucket, delete_delay_ms=delete_delay_ms,
                                 consistency_delay_ms=self.opts.plan.consistency_delay_ms,
                                 partial_upload_age_ms=self.opts.partial_upload_age_ms, now=self.clock(),
                                 dry_run=False)
        self.report.cleanup = [a for a in plan.actions if a.status != "skipped"]
        self.report.errors += [f"deleting {a.block} failed: {a.error}" for a in plan.failed]


def _compaction_actions(n: int, plan: Plan, existing: set[str]) -> list[lifecycle.Action]:
    """What compaction plan number ``n`` changes; inputs made by earlier plans of the run are "(new block)"."""
    names = [m.ulid if m.ulid in existing else "(new block)" for m in plan.blocks]
    if plan.kind == KIND_MARK_NO_COMPACT:
        return [lifecycle.Action("mark-no-compact", u, f"plan #{n}: overlapping downsampled blocks",
                                 {"plan": n}) for u in names]
    out = [lifecycle.Action("compact", "(new block)", f"plan #{n}: {plan.kind} {len(names)} blocks of group "
                                                       f"{plan.group} into one", {"plan": n, "inputs": names})]
    out += [lifecycle.Action("mark-deletion", u, f"plan #{n}: input, marked once the new block is uploaded",
                             {"plan": n}) for u in names]
    return out


def _downsample_action(step: PlannedStep) -> lifecycle.Action:
    name = step.meta.ulid if step.meta.ulid == step.origin else f"(from {step.origin})"
    return lifecycle.Action("downsample", name, f"pass {step.pass_no}: to resolution {step.target // 60_000}m",
                            {"origin": step.origin, "target": step.target})


def _check_disjoint_sources(plan: Plan) -> None:
    seen: dict[str, str] = {}
    for m in plan.blocks:
        for s in block_sources(m):
            if s in seen:
                raise HaltError(f"overlapping sources detected for plan {', '.join(b.ulid for b in plan.blocks)}: "
                                f"{s} is in both {seen[s]} and {m.ulid}")
            seen[s] = m.ulid


def _health_check(block: Block) -> None:
    """Upstream refuses inputs whose index is broken; Issue-347 chunks are dropped by the merge instead."""
    try:
        h = index_health(block.index, block.meta)
    except (FormatError, UnsupportedError) as exc:
        raise _BadInput(block.ulid, REASON_MANUAL, f"index cannot be read: {exc}") from None
    if h.hard_errors or h.critical_outsiders or h.out_of_order_labels:
        raise _BadInput(block.ulid, REASON_MANUAL, f"index health check failed: {_problems(h)}")
    if h.out_of_order_chunks:
        raise _BadInput(block.ulid, REASON_OUT_OF_ORDER_CHUNK, f"index health check failed: {_problems(h)}")
    if h.issue347_outsiders:
        log.warning("dropping Issue-347 chunks", extra={"kv": {"block": block.ulid,
                                                               "chunks": h.issue347_outsiders}})


def _problems(h: IndexHealth) -> str:
    return "; ".join(h.problems())


def _verify_output(path: str, meta: BlockMeta) -> None:
    block = Block.open_dir(path)
    h = index_health(block.index, block.meta)
    if h.any_error or h.total_series != meta.stats.num_series or h.total_chunks != meta.stats.num_chunks:
        raise HaltError(f"compacted block {meta.ulid} failed verification: {_problems(h) or 'stats differ'}")


def _blame(exc: CorruptBlockError | InputBlockError, ids: list[str]) -> Exception:
    block = exc.block
    if block in ids:
        assert block is not None
        return _BadInput(block, REASON_MANUAL, f"cannot be read: {exc}")
    return exc
