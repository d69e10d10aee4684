"""Checks beyond Thanos (``--deep``): chunk CRCs, objects vs ``thanos.files``, partial uploads, markers."""

from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Any

import numpy as np

from thanostools.core.chunkenc import histogram, xor
from thanostools.core.errors import CorruptBlockError, UnsupportedError
from thanostools.core.inspect import BlockInfo
from thanostools.core.objstore.bucket import Bucket
from thanostools.core.timeutil import human_duration, now_ms
from thanostools.core.tsdb.block import HISTOGRAM_ENCODINGS
from thanostools.core.tsdb.chunks import ENC_XOR2, ChunkReader, segment_name, split_refs, unsigned_ref
from thanostools.core.tsdb.markers import MARKER_FILENAMES
from thanostools.core.tsdb.meta import HASH_SHA256, META_FILENAME
from thanostools.core.ulid import ulid_time_ms
from thanostools.core.verify.context import VerifyContext, log
from thanostools.core.verify.report import (
    CHUNK_INTEGRITY,
    INDEX_INTEGRITY,
    MARKERS,
    META_FILES,
    PARTIAL_UPLOADS,
    Issue,
)

MAX_BAD_CHUNKS = 20
MAX_BAD_INDEX_SECTIONS = 20
PARTIAL_UPLOAD_AGE_MS = 48 * 3_600_000
RESTORE = "restore the block from a backup, or mark it for deletion if its data is not needed"

# --- chunk CRCs --------------------------------------------------------------------------------------


def _finding(exc: CorruptBlockError, **extra: Any) -> dict[str, Any]:
    """One damaged place: file, offset and what is wrong (``error`` repeats them in one line)."""
    where = f"{exc.file} offset {exc.offset}" if exc.offset is not None else f"{exc.file}"
    return {"file": exc.file, "offset": exc.offset, **extra, "reason": exc.reason, "error": f"{where}: {exc.reason}"}


def _unreadable(check: str, info: BlockInfo, exc: CorruptBlockError | UnsupportedError) -> Issue:
    details = _finding(exc) if isinstance(exc, CorruptBlockError) else {"error": str(exc)}
    kind = "unreadable_index" if check == INDEX_INTEGRITY else "unreadable_chunks"
    return Issue(check, kind, [info.ulid], str(exc), details, action=RESTORE)


# --- index CRCs --------------------------------------------------------------------------------------


def check_index_crcs(ctx: VerifyContext) -> list[Issue]:
    """Every CRC of every index: TOC, symbols, series entries, postings lists and tables, label indices."""
    issues = []
    for info in ctx.blocks:
        if not ctx.wanted([info.ulid]):
            continue
        log.debug("checking index checksums", extra={"kv": {"block": info.ulid}})
        try:
            checked, bad = ctx.open_index(info).checksum_problems(MAX_BAD_INDEX_SECTIONS)
        except (CorruptBlockError, UnsupportedError) as exc:
            issues.append(_unreadable(INDEX_INTEGRITY, info, exc))
            continue
        if bad:
            more = " (stopped counting)" if len(bad) >= MAX_BAD_INDEX_SECTIONS else ""
            findings = [_finding(e.located(block=info.ulid, file="index")) for e in bad]
            msg = f"block {info.ulid}: {len(bad)} damaged index sections{more}, first: {findings[0]['error']}"
            issues.append(Issue(INDEX_INTEGRITY, "index_crc_mismatch", [info.ulid], msg,
                                {"checked_sections": checked, "bad_sections": findings}, action=RESTORE))
    return issues


# --- chunk CRCs --------------------------------------------------------------------------------------


UNDECODABLE = " chunk does not decode: "


def _bad_chunks(reader: ChunkReader, refs: np.ndarray, limit: int) -> list[tuple[int, CorruptBlockError]]:
    """Refs whose record is damaged or whose native-histogram or XOR2 chunk does not decode, found by bisecting
    batches that fail."""
    if limit <= 0 or refs.shape[0] == 0:
        return []
    try:
        _read_and_decode(reader, refs)
        return []
    except CorruptBlockError as exc:
        if refs.shape[0] == 1:
            return [(int(refs[0]), exc)]
    mid = refs.shape[0] // 2
    left = _bad_chunks(reader, refs[:mid], limit)
    return left + _bad_chunks(reader, refs[mid:], limit - len(left))


def _read_and_decode(reader: ChunkReader, refs: np.ndarray) -> None:
    """Read the records (CRCs checked) and decode the chunks whose CRC says little about their bits: native
    histograms (one call per kind) and XOR2 (one call). XOR chunks are left to the CRCs, as Thanos does."""
    batch = reader.read(refs, check_crc=True)
    hist = np.isin(batch.encodings, HISTOGRAM_ENCODINGS)
    xor2 = batch.encodings == ENC_XOR2
    try:
        if bool(hist.any()):
            histogram.decode_by_kind(batch.buf, batch.starts[hist], batch.ends[hist], batch.encodings[hist])
    except CorruptBlockError as exc:
        raise _undecodable("histogram", exc, refs[hist]) from None
    try:
        if bool(xor2.any()):
            xor.decode_batch(batch.buf, batch.starts[xor2], batch.ends[xor2], batch.encodings[xor2])
    except CorruptBlockError as exc:
        raise _undecodable("XOR2", exc, refs[xor2]) from None


def _undecodable(kind: str, exc: CorruptBlockError, refs: np.ndarray) -> CorruptBlockError:
    """The decoder's error at the first of ``refs`` (batches are bisected down to one chunk)."""
    seg, offsets = split_refs(refs[:1])
    return CorruptBlockError(kind + UNDECODABLE + exc.reason.split(": ", 1)[-1],
                             file=f"chunks/{segment_name(int(seg[0]))}", offset=int(offsets[0]))


def _chunk_findings(ctx: VerifyContext, info: BlockInfo) -> tuple[int, list[dict[str, Any]]]:
    block = ctx.open(info)
    block.chunks.check_headers()
    n_segments = len(block.chunks.segments)
    checked, bad = 0, list[dict[str, Any]]()
    for raw in block.index.iter_series_raw(batch_size=20000):
        refs = np.unique(raw.chunk_ref)
        checked += int(refs.shape[0])
        seg, offsets = split_refs(refs)
        missing = seg >= n_segments
        if bool(missing.any()):
            first = int(np.flatnonzero(missing)[0])
            name = f"chunks/{segment_name(int(seg[first]))}"
            bad.append({"file": name, "offset": int(offsets[first]), "ref": unsigned_ref(int(refs[first])),
                        "missing": True, "reason": "segment file does not exist",
                        "error": f"{name} offset {int(offsets[first])}: {int(missing.sum())} chunks are in {name}, "
                                 "which does not exist"})
        for ref, exc in _bad_chunks(block.chunks, refs[~missing], MAX_BAD_CHUNKS - len(bad)):
            undecodable = {"undecodable": True} if UNDECODABLE in exc.reason else {}
            bad.append(_finding(exc, ref=unsigned_ref(ref), **undecodable))
        if len(bad) >= MAX_BAD_CHUNKS:
            break
    return checked, bad


def check_chunks(ctx: VerifyContext) -> list[Issue]:
    issues = []
    for info in ctx.blocks:
        if not ctx.wanted([info.ulid]):
            continue
        log.debug("checking chunks", extra={"kv": {"block": info.ulid}})
        try:
            checked, bad = _chunk_findings(ctx, info)
        except (CorruptBlockError, UnsupportedError) as exc:
            issues.append(_unreadable(CHUNK_INTEGRITY, info, exc))
            continue
        if bad:
            more = " (stopped counting)" if len(bad) >= MAX_BAD_CHUNKS else ""
            msg = f"block {info.ulid}: {len(bad)} unreadable chunk records{more}, first: {bad[0]['error']}"
            kind = ("missing_segment" if bad[0].get("missing") else
                    "undecodable_chunk" if bad[0].get("undecodable") else "chunk_crc_mismatch")
            issues.append(Issue(CHUNK_INTEGRITY, kind, [info.ulid], msg,
                                {"checked_chunks": checked, "bad_chunks": bad}, action=RESTORE))
    return issues


# --- objects vs thanos.files -------------------------------------------------------------------------


def _sha256(bucket: Bucket, key: str) -> str:
    h = hashlib.sha256()
    local = bucket.local_path(key)
    with tempfile.TemporaryDirectory(prefix="thanos-tools-hash-") as tmp:
        path = local if local is not None else os.path.join(tmp, "object")
        if local is None:
            bucket.get_file(key, path)
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def _segment_gaps(files: dict[str, int]) -> list[str]:
    numbers = sorted(int(k[7:]) for k in files if k.startswith("chunks/") and k[7:].isdigit())
    present = set(numbers)
    return [f"chunks/{n:06d}" for n in range(1, numbers[-1] + 1) if n not in present] if numbers else []


def _file_problems(bucket: Bucket, info: BlockInfo) -> list[dict[str, Any]]:
    files, thanos = info.files, info.meta.thanos
    problems: list[dict[str, Any]] = []
    expected = {"index"} | {f"chunks/{s}" for s in (thanos.segment_files if thanos else [])}
    expected |= set(_segment_gaps(files))
    listed = {f.rel_path: f for f in thanos.files} if thanos else {}
    expected |= {r for r in listed if r != META_FILENAME}
    for rel in sorted(expected - set(files)):
        problems.append({"kind": "missing_file", "file": rel})
    for rel, f in sorted(listed.items()):
        if rel == META_FILENAME or rel not in files:
            continue
        if f.size_bytes and files[rel] != f.size_bytes:
            problems.append({"kind": "size_mismatch", "file": rel, "expected": f.size_bytes, "actual": files[rel]})
        elif f.hash is not None and f.hash.func == HASH_SHA256 and f.hash.value:
            actual = _sha256(bucket, f"{info.ulid}/{rel}")
            if actual != f.hash.value:
                problems.append({"kind": "hash_mismatch", "file": rel, "expected": f.hash.value, "actual": actual})
    if listed:
        for rel in sorted(files):
            if (rel == "index" or rel.startswith("chunks/")) and rel not in listed:
                problems.append({"kind": "unlisted_file", "file": rel})
    return problems


def broken_metas(ctx: VerifyContext) -> list[Issue]:
    """Blocks whose meta.json cannot be read or is invalid: reported by every verify run, deep or not."""
    return [Issue(META_FILES, "broken_meta", [ulid], str(err), {"error": str(err)}, action=RESTORE)
            for ulid, err in sorted(ctx.scan.broken.items()) if ctx.wanted([ulid])]


def check_files(ctx: VerifyContext) -> list[Issue]:
    issues = broken_metas(ctx)
    for info in ctx.blocks:
        if not ctx.wanted([info.ulid]):
            continue
        problems = _file_problems(ctx.bucket, info)
        if problems:
            text = ", ".join(f"{p['kind'].replace('_', ' ')} {p['file']}" for p in problems[:5])
            issues.append(Issue(META_FILES, problems[0]["kind"], [info.ulid], f"block {info.ulid}: {text}",
                                {"problems": problems}, action=RESTORE))
    return issues


# --- partial uploads and markers ---------------------------------------------------------------------


def _prefix_files(ctx: VerifyContext, ulid: str) -> dict[str, int]:
    prefix = f"{ulid}/"
    return {k[len(prefix):]: s for k, s in ctx.bucket.list_prefix(ulid).items() if k.startswith(prefix)}


def check_partial(ctx: VerifyContext) -> list[Issue]:
    issues = []
    now = now_ms()
    for ulid in ctx.scan.partial:
        files = _prefix_files(ctx, ulid)
        data = sorted(f for f in files if f not in MARKER_FILENAMES)
        if not data or not ctx.wanted([ulid]):
            continue  # markers only: reported by the markers check
        age = now - ulid_time_ms(ulid)
        interrupted = " (it has a deletion mark: an interrupted deletion)" if "deletion-mark.json" in files else ""
        action = ("delete it: thanos-tools bucket cleanup --no-dry-run" if age > PARTIAL_UPLOAD_AGE_MS else
                  "an upload may still be in progress; bucket cleanup deletes it once it is older than 48h")
        issues.append(Issue(PARTIAL_UPLOADS, "partial_upload", [ulid],
                            f"block {ulid} has no meta.json ({len(data)} objects, ULID age "
                            f"{human_duration(age - age % 60_000)}){interrupted}",
                            {"objects": data, "age_ms": age}, action=action))
    return issues


def check_markers(ctx: VerifyContext) -> list[Issue]:
    issues = []
    partial = set(ctx.scan.partial)
    for ulid, marks in sorted(ctx.markers().items()):
        if not ctx.wanted([ulid]):
            continue
        for name, err in sorted(marks.broken.items()):
            issues.append(Issue(MARKERS, "broken_marker", [ulid], str(err), {"file": name, "error": str(err)},
                                action=f"rewrite or remove {ulid}/{name} (thanos-tools bucket unmark / mark "
                                       "--overwrite)"))
        present = [m for m in (marks.deletion, marks.no_compact, marks.no_downsample) if m is not None]
        for m in present:
            if m.id != ulid:
                issues.append(Issue(MARKERS, "marker_id_mismatch", [ulid],
                                    f"{ulid}/{m.kind.filename} names block {m.id}",
                                    {"file": m.kind.filename, "id": m.id},
                                    action="rewrite the marker with thanos-tools bucket mark --overwrite"))
        if ulid in partial and not (set(_prefix_files(ctx, ulid)) - set(MARKER_FILENAMES)):
            names = sorted(m.kind.filename for m in present) + sorted(marks.broken)
            issues.append(Issue(MARKERS, "orphan_marker", [ulid],
                                f"{', '.join(names)} of block {ulid}, which does not exist", {"files": names},
                                action="delete it: thanos-tools bucket cleanup --no-dry-run (once 48h old)"))
    return issues
