"""Block lifecycle in a bucket: mark / unmark, retention, cleanup, replicate (FORMATS.md §1.5, §1.6, §8.8).

Every function builds a ``Plan`` (one action per block, each with its reason) and carries it out only
when ``dry_run`` is false. Each executed action is recorded with ``audit``; a failed action does not stop
the others and is reported in the plan.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from thanostools.core.audit import audit
from thanostools.core.blockio import block_files, delete_block, fetch_markers, work_dir, write_marker
from thanostools.core.constants import resolution_name
from thanostools.core.errors import ConfigError, NotFoundError, SourceError, ThanosToolsError
from thanostools.core.inspect import MARK_NAMES, BlockFilter, BlockInfo, BucketScan, scan_bucket
from thanostools.core.objstore.bucket import Bucket
from thanostools.core.timeutil import format_time_ms, go_duration, now_ms
from thanostools.core.tsdb.markers import (
    DELETION_MARK as DELETION_MARK_FILE,
)
from thanostools.core.tsdb.markers import (
    MARKER_FILENAMES,
    REASON_MANUAL,
    DeletionMark,
    Marker,
    MarkerKind,
    NoCompactMark,
    NoDownsampleMark,
    marker_kind_from_filename,
)
from thanostools.core.tsdb.meta import META_FILENAME
from thanostools.core.tsdb.tombstones import EMPTY_TOMBSTONES
from thanostools.core.ulid import is_ulid, ulid_time_ms

DEFAULT_DELETE_DELAY_MS = 48 * 3_600_000
DEFAULT_CONSISTENCY_DELAY_MS = 30 * 60_000
PARTIAL_UPLOAD_THRESHOLD_MS = 48 * 3_600_000
TOMBSTONES = "tombstones"

KIND_NAMES = {"deletion": MarkerKind.DELETION, "no-compact": MarkerKind.NO_COMPACT,
              "no-downsample": MarkerKind.NO_DOWNSAMPLE}


def kind_name(kind: MarkerKind) -> str:
    return MARK_NAMES[kind.filename]


def parse_kind(name: str) -> MarkerKind:
    """A marker kind by our name (``no-compact``) or by its file name, as Thanos's ``--marker`` takes it
    (``no-compact-mark.json``)."""
    kind = KIND_NAMES.get(name) or marker_kind_from_filename(name)
    if kind is None or "/" in name:
        raise ConfigError(f"unknown marker kind {name!r} (use {', '.join(KIND_NAMES)} or "
                          f"{', '.join(k.filename for k in MarkerKind)})")
    return kind


# --- plans -------------------------------------------------------------------------------------------


@dataclass
class Action:
    """One step of a plan. ``run`` does it; actions without ``run`` are only reported (skipped)."""

    action: str
    block: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    run: Callable[[], object] | None = field(default=None, repr=False, compare=False)
    self_audit: bool = False  # ``run`` records each bucket change itself
    status: str = "planned"
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "block": self.block, "reason": self.reason, "status": self.status,
                "error": self.error, "details": self.details}


def skip(block: str, reason: str, **details: Any) -> Action:
    return Action("skip", block, reason, dict(details), status="skipped")


@dataclass
class Plan:
    command: str
    bucket: str
    dry_run: bool = True
    actions: list[Action] = field(default_factory=list)

    @property
    def pending(self) -> list[Action]:
        return [a for a in self.actions if a.run is not None]

    @property
    def planned(self) -> list[Action]:
        """What a run would do: every action not skipped (``pending`` only counts those this plan runs itself;
        a dry run may also list steps another component carries out)."""
        return [a for a in self.actions if a.status == "planned"]

    @property
    def failed(self) -> list[Action]:
        return [a for a in self.actions if a.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "bucket": self.bucket, "dry_run": self.dry_run,
                "actions": [a.to_dict() for a in self.actions]}

    def execute(self, bucket_url: str | None = None) -> Plan:
        """Carry out every runnable action unless this is a dry run; failures are recorded, not raised."""
        for a in self.pending:
            if self.dry_run:
                continue
            assert a.run is not None
            try:
                a.run()
            except (ThanosToolsError, OSError) as exc:
                a.status, a.error = "failed", str(exc)
                continue
            a.status = "done"
            if not a.self_audit:
                audit(a.action, [a.block], bucket=bucket_url or self.bucket,
                      details={"reason": a.reason})
        return self


# --- selecting blocks --------------------------------------------------------------------------------


def _is_empty_filter(flt: BlockFilter | None) -> bool:
    return flt is None or replace(flt, exclude_deleted=False) == BlockFilter()


def select_blocks(scan: BucketScan, ids: Sequence[str] = (), flt: BlockFilter | None = None) -> list[BlockInfo]:
    """Blocks named by ``ids`` (each must exist) and accepted by ``flt``; in time order."""
    for ulid in ids:
        if not is_ulid(ulid):
            raise ConfigError(f"--id {ulid!r} is not a ULID")
        scan.by_id(ulid)  # raises NotFoundError / the meta error for unknown or broken blocks
    flt = replace(flt or BlockFilter(), ids=tuple(ids)) if ids else flt
    return [b for b in scan.blocks if flt is None or flt.accepts(b)]


def _require_selection(ids: Sequence[str], flt: BlockFilter | None, what: str) -> None:
    if not ids and _is_empty_filter(flt):
        raise ConfigError(f"choose the blocks to {what} with --id or a filter (--selector, --min-time, "
                          "--max-time, --resolution)")


# --- mark / unmark -----------------------------------------------------------------------------------


def make_marker(kind: MarkerKind, ulid: str, *, details: str = "", reason: str = REASON_MANUAL,
                now_s: int | None = None) -> Marker:
    at = int(now_ms() // 1000) if now_s is None else now_s
    if kind is MarkerKind.DELETION:
        return DeletionMark(id=ulid, deletion_time=at, details=details)
    if kind is MarkerKind.NO_COMPACT:
        return NoCompactMark(id=ulid, no_compact_time=at, reason=reason or REASON_MANUAL, details=details)
    return NoDownsampleMark(id=ulid, no_downsample_time=at, reason=reason or REASON_MANUAL, details=details)


def mark_action(bucket: Bucket, marker: Marker, reason: str, *, overwrite: bool = False) -> Action:
    def run() -> None:
        write_marker(bucket, marker, overwrite=overwrite)

    return Action(f"mark-{kind_name(marker.kind)}", marker.id, reason, {"marker": marker.to_dict()}, run)


def _mark_targets(bucket: Bucket, scan: BucketScan, kind: MarkerKind, ids: Sequence[str],
                  flt: BlockFilter | None) -> list[tuple[str, bool]]:
    """(ulid, already has the marker). A block whose meta.json is unreadable or missing (a partial upload) can
    still be marked by id, so that cleanup removes it."""
    broken = [u for u in ids if u in scan.broken or u in scan.partial]
    healthy = [u for u in ids if u not in broken]
    out = [(u, bucket.exists(f"{u}/{kind.filename}")) for u in broken]
    if healthy or not ids:
        out += [(b.ulid, kind_name(kind) in b.marks) for b in select_blocks(scan, healthy, flt)]
    return out


def mark(bucket: Bucket, kind: MarkerKind, *, ids: Sequence[str] = (), flt: BlockFilter | None = None,
         details: str = "", reason: str = REASON_MANUAL, overwrite: bool = False, dry_run: bool = True,
         now_s: int | None = None, scan: BucketScan | None = None) -> Plan:
    """Mark blocks; an existing mark of the same kind is kept unless ``overwrite``."""
    _require_selection(ids, flt, "mark")
    scan = scan or scan_bucket(bucket)
    plan = Plan(f"mark {kind_name(kind)}", bucket.url, dry_run)
    why = details or f"marked by hand ({kind_name(kind)})"
    for ulid, marked in _mark_targets(bucket, scan, kind, ids, flt):
        if marked and not overwrite:
            plan.actions.append(skip(ulid, f"already has {kind.filename} (use --overwrite to replace it)"))
            continue
        marker = make_marker(kind, ulid, details=details, reason=reason, now_s=now_s)
        plan.actions.append(mark_action(bucket, marker, why, overwrite=True))
    return plan.execute()


def _unmark_targets(bucket: Bucket, scan: BucketScan, kind: MarkerKind, ids: Sequence[str],
                    flt: BlockFilter | None) -> list[tuple[str, bool]]:
    """(ulid, has the marker) for the chosen blocks; ids may also name prefixes without meta.json."""
    known = {b.ulid: b for b in scan.blocks}
    out: list[tuple[str, bool]] = []
    for ulid in ids:
        if not is_ulid(ulid):
            raise ConfigError(f"--id {ulid!r} is not a ULID")
        if ulid in known:
            continue
        if not bucket.exists(f"{ulid}/{kind.filename}"):
            raise NotFoundError(f"block {ulid} not found in {bucket.url}")
        out.append((ulid, True))
    chosen = [known[u] for u in ids if u in known] if ids else scan.blocks
    if flt is not None and not _is_empty_filter(flt):
        chosen = [b for b in chosen if flt.accepts(b)]
    out += [(b.ulid, kind_name(kind) in b.marks) for b in chosen]
    return out


def unmark(bucket: Bucket, kind: MarkerKind, *, ids: Sequence[str] = (), flt: BlockFilter | None = None,
           dry_run: bool = True, scan: BucketScan | None = None) -> Plan:
    """Remove a marker from blocks."""
    _require_selection(ids, flt, "unmark")
    scan = scan or scan_bucket(bucket)
    plan = Plan(f"unmark {kind_name(kind)}", bucket.url, dry_run)
    for ulid, marked in _unmark_targets(bucket, scan, kind, ids, flt):
        if not marked:
            plan.actions.append(skip(ulid, f"has no {kind.filename}"))
            continue
        key = f"{ulid}/{kind.filename}"
        plan.actions.append(Action(f"unmark-{kind_name(kind)}", ulid, f"remove {kind.filename}", {},
                                   partial(bucket.delete, key)))
    return plan.execute()


# --- retention ---------------------------------------------------------------------------------------


def retention(bucket: Bucket, retentions: Mapping[int, int], *, now: int | None = None, dry_run: bool = True,
              flt: BlockFilter | None = None, scan: BucketScan | None = None) -> Plan:
    """Mark for deletion every block with ``now > maxTime + retention[resolution]`` (0 or absent: keep)."""
    if any(r < 0 for r in retentions.values()):
        raise ConfigError("retention durations must not be negative")
    now = now_ms() if now is None else now
    scan = scan or scan_bucket(bucket)
    plan = Plan("retention", bucket.url, dry_run)
    for info in scan.blocks:
        meta = info.meta
        keep_for = retentions.get(meta.resolution, 0)
        if keep_for <= 0 or now <= meta.max_time + keep_for or (flt is not None and not flt.accepts(info)):
            continue
        res = resolution_name(meta.resolution)
        reason = (f"expired: maxTime {format_time_ms(meta.max_time)} + retention {go_duration(keep_for)} "
                  f"({res}) is before now")
        if "deletion" in info.marks:
            plan.actions.append(skip(info.ulid, "already marked for deletion; " + reason))
            continue
        marker = make_marker(MarkerKind.DELETION, info.ulid, details=f"retention ({res}: {go_duration(keep_for)})",
                             now_s=now // 1000)
        plan.actions.append(mark_action(bucket, marker, reason))
    return plan.execute()


# --- cleanup -----------------------------------------------------------------------------------------


def _partial_actions(bucket: Bucket, ulids: Sequence[str], consistency_delay_ms: int, partial_age_ms: int,
                     now: int) -> list[Action]:
    threshold_ms = max(consistency_delay_ms, partial_age_ms)
    actions = []
    for ulid in ulids:
        age = now - ulid_time_ms(ulid)
        if age <= threshold_ms:
            actions.append(skip(ulid, f"partial upload only {go_duration(max(age, 0))} old: deleted after "
                                      f"max(--consistency-delay {go_duration(consistency_delay_ms)}, "
                                      f"--partial-upload-age {go_duration(partial_age_ms)}) = "
                                      f"{go_duration(threshold_ms)} (an upload may still be in progress)"))
            continue
        reason = f"partial upload (no meta.json), {go_duration(age)} old > {go_duration(threshold_ms)}"
        actions.append(Action("delete-partial", ulid, reason, {"age_ms": age},
                              partial(delete_block, bucket, ulid)))
    return actions


def _marked_actions(bucket: Bucket, scan: BucketScan, marked_partial: Sequence[str], delete_delay_ms: int,
                    now: int) -> list[Action]:
    marked = [b.ulid for b in scan.blocks if "deletion" in b.marks] + sorted(scan.broken) + list(marked_partial)
    markers = fetch_markers(bucket, marked) if marked else {}
    actions = []
    for ulid in marked:
        mark_ = markers[ulid].deletion
        err = markers[ulid].broken.get(MarkerKind.DELETION.filename)
        if mark_ is None and err is None:
            continue  # a block with a broken meta.json and no deletion mark
        if mark_ is None:
            actions.append(skip(ulid, f"deletion mark unreadable: {err}"))
            continue
        age = now - mark_.deletion_time * 1000
        if age <= delete_delay_ms:
            actions.append(skip(ulid, f"marked for deletion {go_duration(max(age, 0))} ago; deleted after "
                                      f"{go_duration(delete_delay_ms)}"))
            continue
        reason = f"marked for deletion {go_duration(age)} ago > delete delay {go_duration(delete_delay_ms)}"
        actions.append(Action("delete", ulid, reason, {"deletion_mark": mark_.to_dict()},
                              partial(delete_block, bucket, ulid)))
    return actions


def cleanup(bucket: Bucket, *, delete_delay_ms: int = DEFAULT_DELETE_DELAY_MS,
            consistency_delay_ms: int = DEFAULT_CONSISTENCY_DELAY_MS,
            partial_upload_age_ms: int = PARTIAL_UPLOAD_THRESHOLD_MS, now: int | None = None,
            dry_run: bool = True, scan: BucketScan | None = None) -> Plan:
    """Delete partial uploads older than max(consistency delay, partial upload age — 48h by default, the fixed
    ``PartialUploadThresholdAge`` of the Thanos compactor) by their ULID time, and blocks (also partial ones) whose
    deletion mark is older than ``delete_delay_ms``. Deletion follows Thanos' order (meta.json first)."""
    if delete_delay_ms < 0 or consistency_delay_ms < 0 or partial_upload_age_ms < 0:
        raise ConfigError("--delete-delay, --consistency-delay and --partial-upload-age must not be negative")
    now = now_ms() if now is None else now
    scan = scan or scan_bucket(bucket)
    plan = Plan("cleanup", bucket.url, dry_run)
    partial_marks = fetch_markers(bucket, scan.partial) if scan.partial else {}
    marked_partial = [u for u, m in partial_marks.items() if DELETION_MARK_FILE in m.broken or m.deletion]
    plan.actions += _partial_actions(bucket, [u for u in scan.partial if u not in marked_partial],
                                     consistency_delay_ms, partial_upload_age_ms, now)
    plan.actions += _marked_actions(bucket, scan, sorted(marked_partial), delete_delay_ms, now)
    return plan.execute()


# --- copying blocks between buckets ------------------------------------------------------------------


def _copy_order(files: Mapping[str, int]) -> list[str]:
    """Data objects in upload order: chunk segments, the index, anything else; never meta.json, markers
    or an empty tombstones file (Thanos never uploads tombstones; non-empty ones hide data, so they go along)."""
    data = [f for f, size in files.items() if f != META_FILENAME and f not in MARKER_FILENAMES
            and not (f == TOMBSTONES and size == len(EMPTY_TOMBSTONES))]

    def rank(rel: str) -> tuple[int, str]:
        return (0 if rel.startswith("chunks/") else 1 if rel == "index" else 2), rel

    return sorted(data, key=rank)


def _copy_object(src: Bucket, dst: Bucket, key: str, tmp_dir: str) -> None:
    local = src.local_path(key)
    if local is not None:
        dst.put_file(local, key)
        return
    path = os.path.join(tmp_dir, "object")
    src.get_file(key, path)
    try:
        dst.put_file(path, key)
    finally:
        os.unlink(path)


def _undo(dst: Bucket, written: list[str]) -> None:
    for key in sorted(written, key=lambda k: not k.endswith(f"/{META_FILENAME}")):  # meta.json first
        with contextlib.suppress(ThanosToolsError):
            dst.delete(key)


def copy_block(src: Bucket, dst: Bucket, ulid: str, *, with_markers: Collection[str] = (),
               tmp_dir: str | None = None) -> int:
    """Copy a block's objects byte for byte, meta.json last, then the named marker files if present.

    Refuses when the destination already has the block's meta.json. On failure what was written is
    removed again (meta.json first), so the destination never keeps a partial block. Returns bytes copied.
    """
    files = block_files(src, ulid)
    if META_FILENAME not in files:
        raise NotFoundError(f"block {ulid} not found in {src.url} (no meta.json)")
    meta_key = f"{ulid}/{META_FILENAME}"
    if dst.exists(meta_key):
        raise SourceError(f"block {ulid} already exists in {dst.url}")
    written: list[str] = []
    try:
        with work_dir(dst, "copy", tmp_dir) as work:
            work.note_upload(dst.identity, ulid)
            for rel in _copy_order(files):
                written.append(f"{ulid}/{rel}")
                _copy_object(src, dst, written[-1], work.path)
        written.append(meta_key)
        dst.put(meta_key, src.get(meta_key))
    except BaseException as exc:
        _undo(dst, written)
        if isinstance(exc, ThanosToolsError):
            raise SourceError(f"copy of block {ulid} to {dst.url} failed (removed the partial copy): {exc}") from exc
        raise
    for name in sorted(set(with_markers) & set(files)):
        dst.put(f"{ulid}/{name}", src.get(f"{ulid}/{name}"))
    return sum(size for rel, size in files.items() if rel not in MARKER_FILENAMES)


def _dest_blocks(dst: Bucket) -> set[str]:
    """ULIDs with a meta.json in the destination (one listing); a local directory not made yet is empty."""
    root = dst.local_path("")
    if root is not None and not os.path.isdir(root):
        return set()
    out = set()
    for key in dst.list_prefix(""):
        ulid, _, rest = key.partition("/")
        if rest == META_FILENAME and is_ulid(ulid):
            out.add(ulid)
    return out


@dataclass(frozen=True)
class ReplicateFilter:
    """Which source blocks to copy: a BlockFilter plus sets of resolutions and compaction levels."""

    flt: BlockFilter = field(default_factory=BlockFilter)
    resolutions: frozenset[int] = frozenset()
    levels: frozenset[int] = frozenset()
    ids: tuple[str, ...] = ()

    def accepts(self, info: BlockInfo) -> bool:
        m = info.meta
        if self.resolutions and m.resolution not in self.resolutions:
            return False
        if self.levels and m.level not in self.levels:
            return False
        return self.flt.accepts(info)


def replicate(src: Bucket, dst: Bucket, *, rf: ReplicateFilter | None = None, with_markers: bool = False,
              dry_run: bool = True, tmp_dir: str | None = None, scan: BucketScan | None = None) -> Plan:
    """Copy chosen blocks to ``dst``; blocks already there and blocks marked for deletion are skipped.

    ``with_markers`` also copies no-compact and no-downsample marks.
    """
    if src.identity == dst.identity:
        raise ConfigError("source and destination bucket are the same")
    rf = rf or ReplicateFilter()
    scan = scan or scan_bucket(src)
    present = _dest_blocks(dst)
    plan = Plan("replicate", src.url, dry_run)
    markers = (MarkerKind.NO_COMPACT.filename, MarkerKind.NO_DOWNSAMPLE.filename) if with_markers else ()
    for info in select_blocks(scan, rf.ids):
        if not rf.accepts(info):
            continue
        if "deletion" in info.marks:
            plan.actions.append(skip(info.ulid, "marked for deletion in the source"))
        elif info.ulid in present:
            plan.actions.append(skip(info.ulid, f"already in {dst.url}"))
        else:
            reason = f"copy to {dst.url} ({info.size_bytes} bytes)"
            plan.actions.append(Action("replicate", info.ulid, reason, {"to": dst.url, "size_bytes": info.size_bytes},
                                       partial(copy_block, src, dst, info.ulid, with_markers=markers,
                                               tmp_dir=tmp_dir)))
    return plan.execute(f"{src.url} -> {dst.url}")
