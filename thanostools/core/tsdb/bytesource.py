"""Byte sources: the one way block readers get at file bytes, local (mmap), in memory, or remote."""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from thanostools.core.errors import CorruptBlockError, NotFoundError
from thanostools.core.objstore.bucket import Bucket
from thanostools.core.objstore.cache import RangeCache, cached_get_ranges


class ByteSource(Protocol):
    """Random access to one immutable file."""

    name: str

    def size(self) -> int: ...

    def read(self, offset: int, length: int) -> bytes: ...

    def read_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]: ...

    def array(self) -> np.ndarray | None:
        """The whole file as a uint8 array when that is free (mmap / memory), else None."""
        ...

    def release(self, end: int) -> None:
        """A hint: bytes before ``end`` will not be read again soon (a mapped file drops them from our
        resident memory; the page cache keeps them). Reading them later still works."""
        ...


def check_range(src: ByteSource, offset: int, length: int) -> None:
    if offset < 0 or length < 0 or offset + length > src.size():
        raise CorruptBlockError(
            f"read of {length} bytes past the end of the file (size {src.size()})", file=src.name, offset=offset
        )


class MemorySource:
    """A file held in memory."""

    def __init__(self, data: bytes, name: str = "<memory>") -> None:
        self._data = data
        self._arr = np.frombuffer(data, dtype=np.uint8)
        self.name = name

    def size(self) -> int:
        return len(self._data)

    def read(self, offset: int, length: int) -> bytes:
        check_range(self, offset, length)
        return self._data[offset : offset + length]

    def read_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        return [self.read(off, n) for off, n in ranges]

    def array(self) -> np.ndarray:
        return self._arr

    def release(self, end: int) -> None:
        return None


class MmapSource(MemorySource):
    """A local file, memory-mapped read-only."""

    def __init__(self, path: str, name: str | None = None) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise NotFoundError(f"{path}: no such file") from None
        except OSError as exc:
            raise NotFoundError(f"{path}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise CorruptBlockError("is a directory, not a file", file=name or os.path.basename(path))
            size = st.st_size
            data: bytes | mmap.mmap = mmap.mmap(fd, 0, access=mmap.ACCESS_READ) if size else b""
        finally:
            os.close(fd)
        self._mm = data
        self._data = data  # type: ignore[assignment]
        self._arr = np.frombuffer(data, dtype=np.uint8) if size else np.zeros(0, np.uint8)
        self.name = name or os.path.basename(path)

    def read(self, offset: int, length: int) -> bytes:
        check_range(self, offset, length)
        return bytes(self._mm[offset : offset + length])

    def release(self, end: int) -> None:
        end -= end % mmap.PAGESIZE
        if end > 0 and isinstance(self._mm, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
            self._mm.madvise(mmap.MADV_DONTNEED, 0, min(end, len(self._mm) - len(self._mm) % mmap.PAGESIZE))


class BucketSource:
    """A file of a block in a remote bucket, read by ranges through the local range cache."""

    def __init__(self, bucket: Bucket, block: str, file: str, size: int, cache: RangeCache | None = None) -> None:
        self._bucket = bucket
        self._block = block
        self._file = file
        self._size = size
        self._cache = cache
        self.name = file

    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        return self.read_ranges([(offset, length)])[0]

    def read_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        for off, n in ranges:
            check_range(self, off, n)
        reqs = [(self._file, off, off + n) for off, n in ranges]
        out = cached_get_ranges(self._bucket, self._block, reqs, cache=self._cache)
        for (off, n), data in zip(ranges, out, strict=True):
            if len(data) != n:
                raise CorruptBlockError(f"short read: wanted {n} bytes, got {len(data)}", block=self._block,
                                        file=self._file, offset=off)
        return out

    def array(self) -> None:
        return None

    def release(self, end: int) -> None:
        return None


class LocatedSource:
    """A ByteSource whose errors also name the block (a source alone knows only its file)."""

    def __init__(self, inner: ByteSource, block: str | None) -> None:
        self.inner = inner
        self.block = block
        self.name = inner.name

    def size(self) -> int:
        return self.inner.size()

    def read(self, offset: int, length: int) -> bytes:
        try:
            return self.inner.read(offset, length)
        except CorruptBlockError as exc:
            raise exc.located(block=self.block, file=self.name) from None

    def read_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        try:
            return self.inner.read_ranges(ranges)
        except CorruptBlockError as exc:
            raise exc.located(block=self.block, file=self.name) from None

    def array(self) -> np.ndarray | None:
        return self.inner.array()

    def release(self, end: int) -> None:
        self.inner.release(end)


def located_source(source: ByteSource, block: str | None) -> ByteSource:
    return source if isinstance(source, LocatedSource) or block is None else LocatedSource(source, block)
