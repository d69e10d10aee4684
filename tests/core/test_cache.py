from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import fsspec
import pytest

from tests.fixtures_s3 import S3TestBucket
from thanostools.core.localfs import CACHE_DIR_ENV, default_cache_dir
from thanostools.core.objstore.bucket import Bucket, open_bucket
from thanostools.core.objstore.cache import (
    RangeCache,
    cached_get_ranges,
    default_range_cache,
    is_cacheable,
)
from thanostools.core.objstore.config import BucketSpec

ULID = "01HQ0000000000000000000001"


class CountingBucket(Bucket):
    def __init__(self, spec: BucketSpec) -> None:
        super().__init__(spec)
        self.batches: list[list[tuple[str, int, int]]] = []

    def get_ranges(self, requests: Sequence[tuple[str, int, int]]) -> list[bytes]:
        self.batches.append(list(requests))
        return super().get_ranges(requests)


@pytest.fixture
def memory_bucket() -> Iterator[CountingBucket]:
    name = f"cache-{uuid.uuid4().hex}"
    bucket = CountingBucket(open_bucket(f"memory://{name}").spec)
    yield bucket
    mem = fsspec.filesystem("memory")
    if mem.exists(f"/{name}"):
        mem.rm(f"/{name}", recursive=True)


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def test_put_get_and_containment(tmp_path: Path) -> None:
    cache = RangeCache(str(tmp_path))
    assert cache.get(ULID, "index", 0, 10) is None
    data = bytes(range(100))
    cache.put(ULID, "index", 100, 200, data)
    assert cache.get(ULID, "index", 100, 200) == data
    assert cache.get(ULID, "index", 120, 130) == data[20:30]
    assert cache.get(ULID, "index", 150, 201) is None
    assert cache.get(ULID, "chunks/000001", 100, 200) is None
    assert (cache.hits, cache.misses) == (2, 3)
    # A new instance finds the entries on disk.
    assert RangeCache(str(tmp_path)).get(ULID, "index", 110, 111) == data[10:11]
    assert not [p for p in files_under(tmp_path) if p.name.startswith(".tmp")]


def test_damaged_entry_is_a_miss(tmp_path: Path) -> None:
    cache = RangeCache(str(tmp_path))
    cache.put(ULID, "chunks/000001", 0, 4, b"abcd")
    (entry,) = files_under(tmp_path)
    entry.write_bytes(b"ab")
    assert cache.get(ULID, "chunks/000001", 0, 4) is None
    assert not entry.exists()


def test_only_immutable_files_are_cacheable(tmp_path: Path) -> None:
    assert is_cacheable("index") and is_cacheable("chunks/000001")
    for name in ("meta.json", "deletion-mark.json", "no-compact-mark.json", "chunks/../meta.json", "chunks/"):
        assert not is_cacheable(name)
    cache = RangeCache(str(tmp_path))
    with pytest.raises(ValueError):
        cache.put(ULID, "meta.json", 0, 2, b"{}")
    with pytest.raises(ValueError):
        cache.put("not-a-ulid", "index", 0, 2, b"{}")
    with pytest.raises(ValueError):
        cache.put(ULID, "index", 0, 3, b"{}")  # wrong length


def test_cached_get_ranges_fetches_misses_in_one_batch(memory_bucket: CountingBucket, tmp_path: Path) -> None:
    index = os.urandom(5000)
    memory_bucket.put(f"{ULID}/index", index)
    memory_bucket.put(f"{ULID}/chunks/000001", b"c" * 100)
    cache = RangeCache(str(tmp_path))
    requests = [("index", 0, 100), ("chunks/000001", 10, 20)]
    first = cached_get_ranges(memory_bucket, ULID, requests, cache=cache)
    assert first == [index[:100], b"c" * 10]
    assert memory_bucket.batches == [[(f"{ULID}/chunks/000001", 10, 20), (f"{ULID}/index", 0, 100)]]
    again = cached_get_ranges(
        memory_bucket, ULID, [("index", 10, 50), ("index", 4000, 4100), ("index", 0, 100), ("index", 7, 7)],
        cache=cache,
    )
    assert again == [index[10:50], index[4000:4100], index[:100], b""]
    assert memory_bucket.batches[1:] == [[(f"{ULID}/index", 4000, 4100)]]
    cached_get_ranges(memory_bucket, ULID, [("index", 4000, 4100), ("index", 4010, 4020)], cache=cache)
    assert len(memory_bucket.batches) == 2  # everything served from disk


def test_mutable_files_and_short_reads_are_not_cached(memory_bucket: CountingBucket, tmp_path: Path) -> None:
    memory_bucket.put(f"{ULID}/meta.json", b'{"a": 1}')
    memory_bucket.put(f"{ULID}/index", b"0123456789")
    cache = RangeCache(str(tmp_path))
    assert cached_get_ranges(memory_bucket, ULID, [("meta.json", 0, 8), ("index", 5, 50)], cache=cache) == [
        b'{"a": 1}', b"56789",
    ]
    memory_bucket.put(f"{ULID}/meta.json", b'{"a": 2}')
    assert cached_get_ranges(memory_bucket, ULID, [("meta.json", 0, 8)], cache=cache) == [b'{"a": 2}']
    assert files_under(tmp_path) == []


def test_buckets_do_not_share_entries(tmp_path: Path) -> None:
    cache = RangeCache(str(tmp_path / "cache"))
    names = [f"cache-{uuid.uuid4().hex}" for _ in range(2)]
    try:
        a, b = (open_bucket(f"memory://{n}") for n in names)
        a.put(f"{ULID}/index", b"AAAA")
        b.put(f"{ULID}/index", b"BBBB")
        assert cached_get_ranges(a, ULID, [("index", 0, 4)], cache=cache) == [b"AAAA"]
        assert cached_get_ranges(b, ULID, [("index", 0, 4)], cache=cache) == [b"BBBB"]
    finally:
        mem = fsspec.filesystem("memory")
        for n in names:
            if mem.exists(f"/{n}"):
                mem.rm(f"/{n}", recursive=True)


def test_local_buckets_bypass_the_cache(tmp_path: Path) -> None:
    bucket = open_bucket(str(tmp_path / "bkt"))
    bucket.put(f"{ULID}/index", b"hello")
    cache = RangeCache(str(tmp_path / "cache"))
    assert cached_get_ranges(bucket, ULID, [("index", 1, 3)], cache=cache) == [b"el"]
    assert not (tmp_path / "cache").exists()


def test_s3_through_the_cache(s3_bucket: S3TestBucket, tmp_path: Path) -> None:
    bucket = CountingBucket(open_bucket(s3_bucket.url).spec)
    data = os.urandom(10_000)
    bucket.put(f"{ULID}/chunks/000001", data)
    cache = RangeCache(str(tmp_path))
    requests = [("chunks/000001", i * 1000, i * 1000 + 500) for i in range(10)]
    expected = [data[s:e] for _, s, e in requests]
    assert cached_get_ranges(bucket, ULID, requests, cache=cache) == expected
    assert cached_get_ranges(bucket, ULID, requests, cache=cache) == expected
    assert len(bucket.batches) == 1 and len(bucket.batches[0]) == 10


def test_default_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "c"))
    assert default_cache_dir() == str(tmp_path / "c")
    assert default_range_cache().cache_dir == str(tmp_path / "c")
    assert default_range_cache() is default_range_cache()
    monkeypatch.delenv(CACHE_DIR_ENV)
    assert default_cache_dir().rstrip("/").endswith("thanos-tools")


def test_size_and_prune(tmp_path: Path) -> None:
    cache = RangeCache(str(tmp_path))
    for i in range(5):
        cache.put(ULID, "index", i * 100, i * 100 + 100, bytes(100))
    assert cache.size_bytes() == 500
    entries = files_under(tmp_path)
    for age, entry in enumerate(entries):
        os.utime(entry, (1_000_000 + age, 1_000_000 + age))  # entry 0 is the least recently used
    assert cache.get(ULID, "index", 0, 10) is not None  # a hit refreshes entry 0
    assert cache.prune(300) == 200
    assert cache.size_bytes() == 300
    assert cache.get(ULID, "index", 0, 10) is not None
    assert cache.get(ULID, "index", 100, 110) is None and cache.get(ULID, "index", 200, 210) is None
    assert cache.clear() == 300
    assert cache.size_bytes() == 0 and files_under(tmp_path) == []


def test_max_bytes_prunes_automatically(tmp_path: Path) -> None:
    cache = RangeCache(str(tmp_path), max_bytes=1000)
    for i in range(30):
        cache.put(ULID, "index", i * 100, i * 100 + 100, bytes(100))
    assert cache.size_bytes() <= 1100


def test_unwritable_cache_is_ignored(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    cache = RangeCache(str(blocker))  # cannot create directories below a file
    cache.put(ULID, "index", 0, 1, b"x")
    assert cache.get(ULID, "index", 0, 1) is None
