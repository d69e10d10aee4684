"""A local disk cache of byte ranges of immutable block files (``index``, ``chunks/*``).

Entries live at ``<cache dir>/ranges/<bucket id>/<ULID>/<file>/<start>-<end>``. A block's index and
chunks never change once uploaded (every rewrite gets a new ULID), so entries never go stale; ``meta.json``
and markers do change and are never cached. The bucket id keeps two buckets that hold different
blocks under one ULID (test fixtures do this) apart.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import quote

from thanostools.core.localfs import default_cache_dir
from thanostools.core.objstore.bucket import Bucket
from thanostools.core.ulid import is_ulid

_TMP_PREFIX = ".tmp-"


def is_cacheable(file: str) -> bool:
    """Only files that never change after upload: the index, chunk segments (and local tombstones)."""
    if file in ("index", "tombstones"):
        return True
    parts = file.split("/")
    return len(parts) == 2 and parts[0] == "chunks" and parts[1] not in ("", ".", "..")


class RangeCache:
    def __init__(self, cache_dir: str | None = None, *, max_bytes: int | None = None) -> None:
        self.cache_dir = cache_dir or default_cache_dir()
        self.root = os.path.join(self.cache_dir, "ranges")
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._index: dict[str, list[tuple[int, int]]] = {}
        self._written_since_prune = 0

    def _dir(self, block: str, file: str, namespace: str) -> str:
        if not is_ulid(block) or not is_cacheable(file):
            raise ValueError(f"not cacheable: {block}/{file}")
        return os.path.join(self.root, quote(namespace or "_", safe=""), block, quote(file, safe=""))

    def _ranges(self, directory: str) -> list[tuple[int, int]]:
        with self._lock:
            cached = self._index.get(directory)
            if cached is not None:
                return cached
        found: list[tuple[int, int]] = []
        with contextlib.suppress(OSError):
            for name in os.listdir(directory):
                parsed = _parse_entry_name(name)
                if parsed is not None:
                    found.append(parsed)
        with self._lock:
            return self._index.setdefault(directory, found)

    def get(self, block: str, file: str, start: int, end: int, *, namespace: str = "") -> bytes | None:
        """Bytes ``[start, end)`` of ``block/file`` if some cached range covers them, else None."""
        directory = self._dir(block, file, namespace)
        covering = [(s, e) for s, e in self._ranges(directory) if s <= start and end <= e]
        for s, e in sorted(covering, key=lambda r: r[1] - r[0]):
            data = self._read(directory, s, e, start, end)
            if data is not None:
                with self._lock:
                    self.hits += 1
                return data
        with self._lock:
            self.misses += 1
        return None

    def _read(self, directory: str, s: int, e: int, start: int, end: int) -> bytes | None:
        path = os.path.join(directory, f"{s}-{e}")
        try:
            with open(path, "rb") as f:
                if os.fstat(f.fileno()).st_size != e - s:
                    raise OSError("cache entry has the wrong size")
                f.seek(start - s)
                data = f.read(end - start)
            os.utime(path)  # recency for prune()
        except OSError:
            self._forget(directory, (s, e), path)
            return None
        return data

    def _forget(self, directory: str, entry: tuple[int, int], path: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)
        with self._lock:
            ranges = self._index.get(directory)
            if ranges is not None and entry in ranges:
                ranges.remove(entry)

    def put(self, block: str, file: str, start: int, end: int, data: bytes, *, namespace: str = "") -> None:
        """Store bytes ``[start, end)``; failures to write (disk full, read-only) are ignored."""
        if len(data) != end - start:
            raise ValueError(f"range [{start}, {end}) needs {end - start} bytes, got {len(data)}")
        directory = self._dir(block, file, namespace)
        try:
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=directory)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, os.path.join(directory, f"{start}-{end}"))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            return
        ranges = self._ranges(directory)
        with self._lock:
            if (start, end) not in ranges:
                ranges.append((start, end))
            self._written_since_prune += len(data)
            due = self.max_bytes is not None and self._written_since_prune > self.max_bytes // 10
        if due and self.max_bytes is not None:
            self.prune(self.max_bytes)

    def _entries(self) -> list[tuple[float, int, str]]:
        """(mtime, size, path) of every entry file, temp files included."""
        out: list[tuple[float, int, str]] = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                path = os.path.join(dirpath, name)
                with contextlib.suppress(OSError):
                    st = os.stat(path)
                    out.append((st.st_mtime, st.st_size, path))
        return out

    def size_bytes(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def prune(self, max_bytes: int) -> int:
        """Delete least recently used entries until at most ``max_bytes`` remain; returns bytes freed."""
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        freed = 0
        for _mtime, size, path in entries:
            if total - freed <= max_bytes:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
                freed += size
        with self._lock:
            self._index.clear()
            self._written_since_prune = 0
        self._remove_empty_dirs()
        return freed

    def clear(self) -> int:
        return self.prune(0)

    def _remove_empty_dirs(self) -> None:
        for dirpath, _dirs, _files in os.walk(self.root, topdown=False):
            if dirpath != self.root:
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)


def _parse_entry_name(name: str) -> tuple[int, int] | None:
    if name.startswith(_TMP_PREFIX):
        return None
    start, sep, end = name.partition("-")
    if not sep or not start.isdigit() or not end.isdigit():
        return None
    return int(start), int(end)


@lru_cache(maxsize=8)
def _cache_for_dir(cache_dir: str) -> RangeCache:
    return RangeCache(cache_dir)


def default_range_cache() -> RangeCache:
    """One shared cache per cache directory (the directory follows $THANOS_TOOLS_CACHE_DIR)."""
    return _cache_for_dir(default_cache_dir())


def cached_get_ranges(
    bucket: Bucket,
    block: str,
    requests: Sequence[tuple[str, int, int]],
    *,
    cache: RangeCache | None = None,
) -> list[bytes]:
    """Read ``(file, start, end)`` ranges of one block: hits from disk, all misses in one batched fetch.

    Local buckets are read directly (they are on disk already). Short reads (past the end of a file)
    are returned as they are and not cached.
    """
    if bucket.is_local:
        return bucket.get_ranges([(f"{block}/{file}", s, e) for file, s, e in requests])
    cache = cache or default_range_cache()
    namespace = bucket.identity

    def cacheable(file: str) -> bool:
        return is_ulid(block) and is_cacheable(file)

    out: list[bytes | None] = []
    for file, start, end in requests:
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range [{start}, {end}) for {block}/{file}")
        if end == start:
            out.append(b"")
        else:
            out.append(cache.get(block, file, start, end, namespace=namespace) if cacheable(file) else None)
    missing = sorted({requests[i] for i, data in enumerate(out) if data is None})
    if missing:
        fetched = bucket.get_ranges([(f"{block}/{file}", s, e) for file, s, e in missing])
        by_request = dict(zip(missing, fetched, strict=True))
        for (file, s, e), data in by_request.items():
            if cacheable(file) and len(data) == e - s:
                cache.put(block, file, s, e, data, namespace=namespace)
        out = [data if data is not None else by_request[requests[i]] for i, data in enumerate(out)]
    return [data if data is not None else b"" for data in out]
