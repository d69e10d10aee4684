"""Blocks in a bucket: reading metas and markers, and the upload / download / delete protocols (§1.5)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from thanostools.core import localfs
from thanostools.core.errors import ConfigError, CorruptBlockError, NotFoundError, SourceError
from thanostools.core.localfs import WorkDir, atomic_write, default_work_root, remove_stale_work_dirs, temp_dir
from thanostools.core.objstore.bucket import Bucket
from thanostools.core.tsdb.markers import (
    DELETION_MARK,
    MARKER_FILENAMES,
    DeletionMark,
    Marker,
    MarkerError,
    MarkerKind,
    NoCompactMark,
    NoDownsampleMark,
    decode_marker,
    encode_marker,
    marker_key,
)
from thanostools.core.tsdb.meta import (
    HASH_SHA256,
    META_FILENAME,
    SOURCE_BUCKET_UPLOAD,
    BlockFile,
    BlockMeta,
    FileHash,
    ThanosMeta,
    read_meta_file,
)
from thanostools.core.ulid import is_ulid

log = logging.getLogger("thanostools.blockio")

INDEX_FILENAME = "index"
CHUNKS_DIRNAME = "chunks"
# Listing many block directories one by one costs more than one recursive listing of the bucket.
_PER_BLOCK_LISTING_LIMIT = 16

T = TypeVar("T")
R = TypeVar("R")


def _parallel(func: Callable[[T], R], items: Sequence[T], concurrency: int) -> list[R | Exception]:
    """``func`` over ``items`` on a thread pool; each result or the exception it raised, in order."""

    def call(item: T) -> R | Exception:
        try:
            return func(item)
        except Exception as exc:
            return exc

    if len(items) <= 1 or concurrency <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(concurrency, len(items))) as pool:
        return list(pool.map(call, items))


# --- metas -----------------------------------------------------------------------------------------


def fetch_meta(bucket: Bucket, ulid: str) -> BlockMeta:
    """One block's meta.json; NotFoundError when it has none, CorruptBlockError when it is bad (also when
    something that is no readable object, a directory or a dangling link, sits where it belongs)."""
    key = f"{ulid}/{META_FILENAME}"
    try:
        data = bucket.get(key)
    except NotFoundError as exc:
        if bucket.has_entry(key):
            raise CorruptBlockError(f"meta.json is not a readable file: {exc}", block=ulid,
                                    file=META_FILENAME) from None
        raise
    return BlockMeta.from_json(data, block=ulid)


# --- files and markers -------------------------------------------------------------------------------


def block_files(bucket: Bucket, ulid: str) -> dict[str, int]:
    """Every object of a block, relative to the block (``chunks/000001``, ``index``, ...) -> size."""
    if not is_ulid(ulid):
        raise ValueError(f"not a block ULID: {ulid!r}")
    prefix = f"{ulid}/"
    listing = bucket.list_prefix(ulid)
    return {key[len(prefix):]: size for key, size in listing.items() if key.startswith(prefix)}


@dataclass
class BlockMarkers:
    deletion: DeletionMark | None = None
    no_compact: NoCompactMark | None = None
    no_downsample: NoDownsampleMark | None = None
    broken: dict[str, Exception] = field(default_factory=dict)  # marker file name -> why it is unusable

    def get(self, kind: MarkerKind) -> Marker | None:
        if kind is MarkerKind.DELETION:
            return self.deletion
        if kind is MarkerKind.NO_COMPACT:
            return self.no_compact
        return self.no_downsample

    def _set(self, marker: Marker) -> None:
        if isinstance(marker, DeletionMark):
            self.deletion = marker
        elif isinstance(marker, NoCompactMark):
            self.no_compact = marker
        else:
            self.no_downsample = marker


def _read_marker(bucket: Bucket, ulid: str, name: str) -> Marker:
    return decode_marker(name, bucket.get(f"{ulid}/{name}"), block=ulid)


def _collect_markers(
    bucket: Bucket, present: dict[str, list[str]], concurrency: int
) -> dict[str, BlockMarkers]:
    out = {ulid: BlockMarkers() for ulid in present}
    jobs = [(ulid, name) for ulid, names in present.items() for name in names if name in MARKER_FILENAMES]
    results = _parallel(lambda job: _read_marker(bucket, *job), jobs, concurrency)
    for (ulid, name), result in zip(jobs, results, strict=True):
        if isinstance(result, NotFoundError):
            continue  # removed between listing and reading
        if isinstance(result, Exception):
            out[ulid].broken[name] = result
        else:
            out[ulid]._set(result)
    return out


def block_markers(bucket: Bucket, ulid: str) -> BlockMarkers:
    """The markers of one block. A marker that cannot be read or parsed is listed in ``broken``."""
    return _collect_markers(bucket, {ulid: bucket.list_dir(ulid)}, concurrency=3)[ulid]


def fetch_markers(
    bucket: Bucket, ulids: Iterable[str] | None = None, *, concurrency: int = 32
) -> dict[str, BlockMarkers]:
    """Markers of many blocks (default: every block), found with one listing of the bucket where possible."""
    wanted = sorted(set(ulids)) if ulids is not None else bucket.list_blocks()
    present: dict[str, list[str]]
    if len(wanted) <= _PER_BLOCK_LISTING_LIMIT:
        listings = _parallel(bucket.list_dir, wanted, concurrency)
        present = {}
        for ulid, listing in zip(wanted, listings, strict=True):
            if isinstance(listing, Exception):
                raise listing
            present[ulid] = listing
    else:
        present = {ulid: [] for ulid in wanted}
        for key in bucket.list_prefix(""):
            ulid, _, name = key.partition("/")
            if ulid in present and name in MARKER_FILENAMES:
                present[ulid].append(name)
    return _collect_markers(bucket, present, concurrency)


def write_marker(bucket: Bucket, marker: Marker, *, overwrite: bool = False) -> bool:
    """Upload a marker; an existing one is kept (as Thanos does) unless ``overwrite``. True if written."""
    key = marker_key(marker)
    if not overwrite and bucket.exists(key):
        return False
    bucket.put(key, encode_marker(marker))
    return True


def remove_marker(bucket: Bucket, ulid: str, kind: MarkerKind) -> None:
    bucket.delete(f"{ulid}/{kind.filename}")


# --- upload ------------------------------------------------------------------------------------------


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _local_upload_files(local_dir: str, ulid: str) -> list[str]:
    """Relative paths to upload, in upload order: chunk segments (sorted), then the index."""
    chunks_dir = os.path.join(local_dir, CHUNKS_DIRNAME)
    if not os.path.isdir(chunks_dir):
        raise CorruptBlockError("chunks/ directory is missing", block=ulid, file=CHUNKS_DIRNAME)
    if not os.path.isfile(os.path.join(local_dir, INDEX_FILENAME)):
        raise CorruptBlockError("index file is missing", block=ulid, file=INDEX_FILENAME)
    segments = sorted(n for n in os.listdir(chunks_dir) if os.path.isfile(os.path.join(chunks_dir, n)))
    return [f"{CHUNKS_DIRNAME}/{n}" for n in segments] + [INDEX_FILENAME]


def gather_file_stats(local_dir: str, rel_paths: Sequence[str], *, hash_files: bool) -> list[BlockFile]:
    """``thanos.files``: the uploaded files with sizes (and SHA256 when asked), plus meta.json, sorted."""
    files: list[BlockFile] = []
    for rel in rel_paths:
        path = os.path.join(local_dir, *rel.split("/"))
        digest = FileHash(HASH_SHA256, _sha256_file(path)) if hash_files else None
        files.append(BlockFile(rel_path=rel, size_bytes=os.path.getsize(path), hash=digest))
    files.append(BlockFile(rel_path=META_FILENAME))
    return sorted(files, key=lambda f: f.rel_path)


def _prepare_upload_meta(local_dir: str, source: str, require_labels: bool) -> BlockMeta:
    meta = read_meta_file(local_dir)
    dir_name = os.path.basename(os.path.normpath(local_dir))
    if dir_name != meta.ulid:
        raise CorruptBlockError(
            f"directory name {dir_name} does not match meta.json ulid {meta.ulid}",
            block=meta.ulid, file=META_FILENAME,
        )
    if meta.thanos is None:
        meta.thanos = ThanosMeta(source=source)
    elif not meta.thanos.source:
        meta.thanos.source = source
    if require_labels and not meta.thanos.external_labels:
        raise ConfigError(
            f"block {meta.ulid} has no external labels (thanos.labels); Thanos refuses such blocks"
        )
    return meta


def _check_segment_files(meta: BlockMeta, rel_paths: Sequence[str]) -> None:
    assert meta.thanos is not None
    segments = [rel.split("/", 1)[1] for rel in rel_paths if rel.startswith(f"{CHUNKS_DIRNAME}/")]
    if meta.thanos.segment_files and sorted(meta.thanos.segment_files) != segments:
        raise CorruptBlockError(
            f"thanos.segment_files {meta.thanos.segment_files} do not match the files in chunks/ {segments}",
            block=meta.ulid, file=META_FILENAME,
        )


def upload_block(
    local_dir: str | os.PathLike[str],
    bucket: Bucket,
    *,
    source: str = SOURCE_BUCKET_UPLOAD,
    require_labels: bool = False,
    hash_files: bool = False,
    private: bool = False,
    work: WorkDir | None = None,
) -> BlockMeta:
    """Upload a local block: chunks, then index, then meta.json last with ``upload_time`` set.

    ``private``: the block directory is the caller's own output, never changed again (a local bucket may
    then hard-link its files instead of copying them). ``work``: the caller's work directory, where the
    upload is noted before it starts, so that the next run removes what a crash left of it (``work_dir``).

    ``source`` fills ``thanos.source`` when the block has none. The local directory is not modified;
    ``tombstones`` is never uploaded. On failure the objects uploaded so far are removed (meta.json
    first) and SourceError is raised. A block whose meta.json already exists in the bucket is refused.
    """
    local_dir = os.fspath(local_dir)
    meta = _prepare_upload_meta(local_dir, source, require_labels)
    assert meta.thanos is not None
    ulid = meta.ulid
    rel_paths = _local_upload_files(local_dir, ulid)
    _check_segment_files(meta, rel_paths)
    meta.thanos.files = gather_file_stats(local_dir, rel_paths, hash_files=hash_files)
    meta_key = f"{ulid}/{META_FILENAME}"
    if bucket.exists(meta_key):
        raise SourceError(f"block {ulid} already exists in {bucket.url}; delete it first to replace it")
    if work is not None:
        work.note_upload(bucket.identity, ulid)
    _remove_leftovers(bucket, ulid, rel_paths)
    attempted: list[str] = []
    try:
        for rel in rel_paths:
            attempted.append(f"{ulid}/{rel}")
            bucket.put_file(os.path.join(local_dir, *rel.split("/")), attempted[-1], private=private)
        meta.thanos.set_upload_time_now()
        attempted.append(meta_key)
        bucket.put(meta_key, meta.to_json("thanos"))
    except BaseException as exc:
        cleaned = _remove_partial_upload(bucket, attempted, meta_key)
        if not isinstance(exc, Exception):
            raise
        what = "removed the partial upload" if cleaned else "could not remove all of the partial upload"
        raise SourceError(f"upload of block {ulid} to {bucket.url} failed ({what}): {exc}") from exc
    return meta


def _remove_leftovers(bucket: Bucket, ulid: str, rel_paths: Sequence[str]) -> None:
    """Objects an interrupted earlier upload of this block left that this one will not overwrite."""
    keep = {*rel_paths, *MARKER_FILENAMES}
    for rel in _existing_files(bucket, ulid):
        if rel not in keep:
            bucket.delete(f"{ulid}/{rel}")


def _existing_files(bucket: Bucket, ulid: str) -> dict[str, int]:
    """``block_files``, but nothing (rather than an error) when a local bucket's directory is not there yet."""
    local = bucket.local_path(ulid)
    if local is not None and not os.path.isdir(local):
        return {}
    return block_files(bucket, ulid)


def upload_state(local_dir: str | os.PathLike[str], bucket: Bucket) -> str:
    """``"absent"`` (no meta.json in the bucket), ``"complete"`` (meta.json there and every local file present
    with the same size) or ``"different"`` (meta.json there, files differ)."""
    local_dir = os.fspath(local_dir)
    ulid = read_meta_file(local_dir).ulid
    remote = _existing_files(bucket, ulid)
    if META_FILENAME not in remote:
        return "absent"
    rel_paths = _local_upload_files(local_dir, ulid)
    same = all(remote.get(rel) == os.path.getsize(os.path.join(local_dir, *rel.split("/"))) for rel in rel_paths)
    return "complete" if same else "different"


@contextlib.contextmanager
def work_dir(bucket: Bucket, kind: str, parent: str | None = None) -> Iterator[WorkDir]:
    """A locked work directory (``localfs.work_dir``) for a command that writes to ``bucket``. The work
    directories of processes that are gone are removed first, and so are the remains (no meta.json) of the
    uploads to ``bucket`` they had started."""
    root = parent or default_work_root()
    for upload in remove_stale_work_dirs(root):
        if upload.bucket == bucket.identity:
            remove_abandoned_upload(bucket, upload.ulid)
    with localfs.work_dir(kind, root) as work:
        yield work


def remove_abandoned_upload(bucket: Bucket, ulid: str) -> bool:
    """Delete what an interrupted upload of ``ulid`` left, unless it completed (has meta.json)."""
    files = block_files(bucket, ulid)
    if not files or META_FILENAME in files:
        return False
    log.warning("removing an interrupted upload", extra={"kv": {"block": ulid, "objects": len(files)}})
    delete_block(bucket, ulid)
    return True


def _remove_partial_upload(bucket: Bucket, attempted: list[str], meta_key: str) -> bool:
    ordered = sorted(attempted, key=lambda key: key != meta_key)  # meta.json first
    ok = True
    for key in ordered:
        try:
            bucket.delete(key)
        except Exception:
            ok = False
    return ok


# --- download ----------------------------------------------------------------------------------------


def _safe_rel(ulid: str, rel: str) -> list[str]:
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise CorruptBlockError(f"object name {rel!r} cannot be stored locally", block=ulid)
    return parts


def _check_downloaded(meta: BlockMeta, target: str, files: dict[str, int]) -> None:
    if INDEX_FILENAME not in files:
        raise CorruptBlockError("index is missing in the bucket", block=meta.ulid, file=INDEX_FILENAME)
    if meta.thanos is None:
        return
    for f in meta.thanos.files:
        if f.rel_path == META_FILENAME:
            continue
        if f.rel_path not in files:
            raise CorruptBlockError("listed in thanos.files but missing in the bucket", block=meta.ulid,
                                    file=f.rel_path)
        size = os.path.getsize(os.path.join(target, *_safe_rel(meta.ulid, f.rel_path)))
        if f.size_bytes and size != f.size_bytes:
            raise CorruptBlockError(f"size {size} differs from thanos.files size {f.size_bytes}",
                                    block=meta.ulid, file=f.rel_path)


def download_block(bucket: Bucket, ulid: str, local_dir: str | os.PathLike[str], *,
                   overwrite: bool = False) -> str:
    """Download a block into ``local_dir/<ULID>`` and return that path.

    meta.json is fetched first, then the other files (markers are skipped), into a temporary directory
    that is renamed into place at the end, so the block directory appears complete or not at all.
    """
    if not is_ulid(ulid):
        raise ConfigError(f"not a block ULID: {ulid!r}")
    local_dir = os.fspath(local_dir)
    target = os.path.join(local_dir, ulid)
    if os.path.exists(target) and not overwrite:
        raise ConfigError(f"{target} already exists")
    os.makedirs(local_dir, exist_ok=True)
    tmp = temp_dir(f"{ulid}.tmp-for-download-", local_dir)
    try:
        try:
            raw = bucket.get(f"{ulid}/{META_FILENAME}")
        except NotFoundError:
            raise NotFoundError(f"block {ulid} not found in {bucket.url} (no meta.json)") from None
        meta = BlockMeta.from_json(raw, block=ulid)
        atomic_write(os.path.join(tmp, META_FILENAME), raw)
        files = block_files(bucket, ulid)
        for rel in sorted(files):
            if rel == META_FILENAME or rel in MARKER_FILENAMES:
                continue
            bucket.get_file(f"{ulid}/{rel}", os.path.join(tmp, *_safe_rel(ulid, rel)))
        _check_downloaded(meta, tmp, files)
        os.makedirs(os.path.join(tmp, CHUNKS_DIRNAME), exist_ok=True)
        _move_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _move_into_place(tmp: str, target: str) -> None:
    if not os.path.exists(target):
        os.rename(tmp, target)
        return
    name = os.path.basename(target)
    old = tempfile.mkdtemp(prefix=f"{name}.tmp-for-deletion-", dir=os.path.dirname(target))
    os.rmdir(old)
    os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


# --- delete ------------------------------------------------------------------------------------------


def delete_block(bucket: Bucket, ulid: str) -> int:
    """Delete a block: meta.json first (it becomes partial at once), the rest, deletion-mark.json last.

    Returns the number of objects deleted; NotFoundError if the block has no objects at all.
    """
    files = block_files(bucket, ulid)
    if not files:
        raise NotFoundError(f"block {ulid} not found in {bucket.url}")
    if META_FILENAME in files:
        bucket.delete(f"{ulid}/{META_FILENAME}")
    for rel in sorted(files):
        if rel not in (META_FILENAME, DELETION_MARK):
            bucket.delete(f"{ulid}/{rel}")
    if DELETION_MARK in files:
        bucket.delete(f"{ulid}/{DELETION_MARK}")
    for marker_dir in (f"{ulid}/{CHUNKS_DIRNAME}/", f"{ulid}/"):
        with contextlib.suppress(SourceError):
            bucket.delete(marker_dir)
    return len(files)


__all__ = [
    "BlockMarkers",
    "MarkerError",
    "block_files",
    "block_markers",
    "delete_block",
    "download_block",
    "fetch_markers",
    "fetch_meta",
    "gather_file_stats",
    "remove_abandoned_upload",
    "remove_marker",
    "upload_block",
    "upload_state",
    "work_dir",
    "write_marker",
]
