"""``verify_bucket``: run the chosen checks over a bucket and collect one report. Never writes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from thanostools.core.errors import ConfigError, NotFoundError
from thanostools.core.inspect import BucketScan, scan_bucket
from thanostools.core.objstore.bucket import Bucket
from thanostools.core.objstore.cache import RangeCache
from thanostools.core.ulid import is_ulid
from thanostools.core.verify import deep, index_check, overlaps
from thanostools.core.verify.context import VerifyContext
from thanostools.core.verify.deep import broken_metas
from thanostools.core.verify.report import (
    ALL_CHECKS,
    CHUNK_INTEGRITY,
    DEEP_CHECKS,
    DUPLICATED_COMPACTION,
    INDEX_INTEGRITY,
    INDEX_KNOWN_ISSUES,
    MARKERS,
    META_FILES,
    OVERLAPPED_BLOCKS,
    PARTIAL_UPLOADS,
    THANOS_CHECKS,
    Issue,
    VerifyReport,
)

CHECKS: dict[str, Callable[[VerifyContext], list[Issue]]] = {
    OVERLAPPED_BLOCKS: overlaps.check_overlaps,
    INDEX_KNOWN_ISSUES: index_check.check_index,
    DUPLICATED_COMPACTION: overlaps.check_duplicated_compaction,
    INDEX_INTEGRITY: deep.check_index_crcs,
    CHUNK_INTEGRITY: deep.check_chunks,
    META_FILES: deep.check_files,
    PARTIAL_UPLOADS: deep.check_partial,
    MARKERS: deep.check_markers,
}


def choose_checks(names: Sequence[str] = (), *, deep: bool = False) -> list[str]:
    """The checks to run, in a fixed order: the named ones, else Thanos' three (plus ours with ``deep``)."""
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown verify check {unknown[0]!r} (known: {', '.join(ALL_CHECKS)})")
    wanted = set(names) if names else set(THANOS_CHECKS) | (set(DEEP_CHECKS) if deep else set())
    if names and deep:
        wanted |= set(DEEP_CHECKS)
    return [c for c in ALL_CHECKS if c in wanted]


def make_context(bucket: Bucket, *, ids: Sequence[str] = (), include_deleted: bool = False,
                 cache: RangeCache | None = None, scan: BucketScan | None = None) -> VerifyContext:
    bad = [i for i in ids if not is_ulid(i)]
    if bad:
        raise ConfigError(f"--id {bad[0]!r} is not a ULID")
    scan = scan or scan_bucket(bucket)
    known = {b.ulid for b in scan.blocks} | set(scan.broken) | set(scan.partial)
    missing = [i for i in ids if i not in known]
    if missing:
        raise NotFoundError(f"block {missing[0]} not found in {bucket.url}")
    blocks = [b for b in scan.blocks if include_deleted or "deletion" not in b.marks]
    return VerifyContext(bucket, scan, blocks, ids=frozenset(ids), cache=cache)


def verify_bucket(bucket: Bucket, *, checks: Sequence[str] = (), deep: bool = False, ids: Sequence[str] = (),
                  include_deleted: bool = False, cache: RangeCache | None = None) -> VerifyReport:
    """Run checks; blocks marked for deletion are skipped (as Thanos does) unless ``include_deleted``.

    With ``ids`` only issues that involve one of those blocks are reported.
    """
    chosen = choose_checks(checks, deep=deep)
    ctx = make_context(bucket, ids=ids, include_deleted=include_deleted, cache=cache)
    report = VerifyReport(bucket.url, chosen, checked_blocks=len([b for b in ctx.blocks if ctx.wanted([b.ulid])]))
    for name in chosen:
        for issue in CHECKS[name](ctx):
            report.add(issue)
    if META_FILES not in chosen:
        for issue in broken_metas(ctx):
            report.add(issue)
    return report
