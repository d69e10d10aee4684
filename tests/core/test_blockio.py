from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from tests.fixtures_s3 import S3TestBucket
from thanostools.core.blockio import (
    block_files,
    block_markers,
    delete_block,
    download_block,
    fetch_markers,
    remove_marker,
    upload_block,
    write_marker,
)
from thanostools.core.errors import ConfigError, CorruptBlockError, NotFoundError, SourceError
from thanostools.core.inspect import scan_bucket
from thanostools.core.objstore.bucket import Bucket, open_bucket
from thanostools.core.objstore.config import BucketSpec
from thanostools.core.tsdb.markers import (
    DELETION_MARK,
    NO_COMPACT_MARK,
    DeletionMark,
    MarkerError,
    MarkerKind,
    NoCompactMark,
    NoDownsampleMark,
)
from thanostools.core.tsdb.meta import BlockMeta, ThanosMeta, read_meta_file, write_meta_file
from thanostools.core.ulid import new_ulid


class RecordingBucket(Bucket):
    """A real bucket that logs writes and can fail on chosen keys."""

    def __init__(self, spec: BucketSpec, fail_on: str | None = None) -> None:
        super().__init__(spec)
        self.log: list[tuple[str, str]] = []
        self.fail_on = fail_on

    def _maybe_fail(self, key: str) -> None:
        if self.fail_on is not None and key.endswith(self.fail_on):
            raise SourceError(f"injected failure writing {key}")

    def put(self, key: str, data: bytes) -> None:
        self.log.append(("put", key))
        self._maybe_fail(key)
        super().put(key, data)

    def put_file(self, local_path: str, key: str, *, private: bool = False) -> None:
        self.log.append(("put", key))
        self._maybe_fail(key)
        super().put_file(local_path, key, private=private)

    def delete(self, key: str) -> None:
        self.log.append(("delete", key))
        super().delete(key)


def make_block(parent: Path, *, ulid: str | None = None, segments: int = 2,
               labels: dict[str, str] | None = None) -> Path:
    ulid = ulid or new_ulid()
    block = parent / ulid
    (block / "chunks").mkdir(parents=True)
    for i in range(segments):
        (block / "chunks" / f"{i + 1:06d}").write_bytes(os.urandom(1000 + i))
    (block / "index").write_bytes(os.urandom(777))
    (block / "tombstones").write_bytes(b"\x01\x30\xba\x30\x01\x00\x00\x00\x00")
    meta = BlockMeta(ulid=ulid, min_time=0, max_time=7_200_000, sources=[ulid])
    if labels is not None:
        meta.thanos = ThanosMeta(labels=labels, source="test")
    write_meta_file(block, meta, style="prometheus")
    return block


@pytest.fixture(params=["local", "memory", "s3"])
def bucket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bucket]:
    if request.param == "local":
        (tmp_path / "bkt").mkdir()
        yield open_bucket(str(tmp_path / "bkt"))
    elif request.param == "memory":
        name = f"test-{uuid.uuid4().hex}"
        yield open_bucket(f"memory://{name}")
        mem = fsspec.filesystem("memory")
        if mem.exists(f"/{name}"):
            mem.rm(f"/{name}", recursive=True)
    else:
        s3: S3TestBucket = request.getfixturevalue("s3_bucket")
        yield open_bucket(s3.url)


# --- upload ------------------------------------------------------------------------------------------


def test_upload_order_and_meta(bucket: Bucket, tmp_path: Path) -> None:
    block = make_block(tmp_path / "local")
    ulid = block.name
    local_meta_before = (block / "meta.json").read_bytes()
    rec = RecordingBucket(bucket.spec)
    meta = upload_block(block, rec)
    assert rec.log == [
        ("put", f"{ulid}/chunks/000001"),
        ("put", f"{ulid}/chunks/000002"),
        ("put", f"{ulid}/index"),
        ("put", f"{ulid}/meta.json"),
    ]
    assert (block / "meta.json").read_bytes() == local_meta_before  # local block untouched
    assert block_files(bucket, ulid) == {
        "chunks/000001": 1000, "chunks/000002": 1001, "index": 777,
        "meta.json": bucket.size(f"{ulid}/meta.json"),
    }
    remote = BlockMeta.from_json(bucket.get(f"{ulid}/meta.json"))
    assert remote == meta
    assert remote.thanos is not None
    assert remote.thanos.source == "bucket.upload"
    assert remote.thanos.upload_time_ms is not None
    assert [(f.rel_path, f.size_bytes, f.hash) for f in remote.thanos.files] == [
        ("chunks/000001", 1000, None), ("chunks/000002", 1001, None), ("index", 777, None),
        ("meta.json", 0, None),
    ]
    assert bucket.get(f"{ulid}/meta.json").endswith(b"}\n")


def test_upload_hashes_and_keeps_existing_source(bucket: Bucket, tmp_path: Path) -> None:
    block = make_block(tmp_path / "local", labels={"cluster": "eu1"})
    meta = upload_block(block, bucket, hash_files=True, require_labels=True)
    assert meta.thanos is not None and meta.thanos.source == "test"
    for f in meta.thanos.files:
        if f.rel_path == "meta.json":
            assert f.hash is None
            continue
        assert f.hash is not None and f.hash.func == "SHA256"
        assert f.hash.value == hashlib.sha256((block / f.rel_path).read_bytes()).hexdigest()


def test_upload_refuses_unlabelled_blocks_when_asked(bucket: Bucket, tmp_path: Path) -> None:
    block = make_block(tmp_path / "local")
    with pytest.raises(ConfigError, match="no external labels"):
        upload_block(block, bucket, require_labels=True)
    assert bucket.list_prefix("") == {}


def test_upload_refuses_existing_block(bucket: Bucket, tmp_path: Path) -> None:
    block = make_block(tmp_path / "local")
    upload_block(block, bucket)
    before = bucket.list_prefix("")
    with pytest.raises(SourceError, match="already exists"):
        upload_block(block, bucket)
    assert bucket.list_prefix("") == before


@pytest.mark.parametrize("fail_on", ["/chunks/000002", "/index", "/meta.json"])
def test_failed_upload_leaves_nothing(bucket: Bucket, tmp_path: Path, fail_on: str) -> None:
    block = make_block(tmp_path / "local")
    rec = RecordingBucket(bucket.spec, fail_on=fail_on)
    with pytest.raises(SourceError) as info:
        upload_block(block, rec)
    assert "injected failure" in str(info.value) and "removed the partial upload" in str(info.value)
    assert not bucket.exists(f"{block.name}/meta.json")
    assert bucket.list_prefix("") == {}
    deletes = [key for op, key in rec.log if op == "delete"]
    if fail_on == "/meta.json":
        assert deletes[0] == f"{block.name}/meta.json"  # meta first, in case the write half-succeeded


def test_upload_checks_the_local_block(tmp_path: Path) -> None:
    bucket = open_bucket(str(tmp_path / "bkt"))
    block = make_block(tmp_path / "local")
    (block / "index").unlink()
    with pytest.raises(CorruptBlockError, match="index"):
        upload_block(block, bucket)
    renamed = make_block(tmp_path / "local2")
    wrong = renamed.parent / new_ulid()
    renamed.rename(wrong)
    with pytest.raises(CorruptBlockError, match="does not match"):
        upload_block(wrong, bucket)
    bad_segments = make_block(tmp_path / "local3", labels={"a": "b"})
    meta = read_meta_file(bad_segments)
    assert meta.thanos is not None
    meta.thanos.segment_files = ["000001"]
    write_meta_file(bad_segments, meta)
    with pytest.raises(CorruptBlockError, match="segment_files"):
        upload_block(bad_segments, bucket)
    assert not (tmp_path / "bkt").exists()


# --- download ----------------------------------------------------------------------------------------


def test_round_trip(bucket: Bucket, tmp_path: Path) -> None:
    block = make_block(tmp_path / "local")
    meta = upload_block(block, bucket)
    out = tmp_path / "dl"
    path = download_block(bucket, block.name, out)
    assert path == str(out / block.name)
    got = Path(path)
    assert sorted(str(p.relative_to(got)) for p in got.rglob("*")) == [
        "chunks", "chunks/000001", "chunks/000002", "index", "meta.json",
    ]
    for rel in ("chunks/000001", "chunks/000002", "index"):
        assert (got / rel).read_bytes() == (block / rel).read_bytes()
    assert read_meta_file(got) == meta
    assert (got / "meta.json").read_bytes() == bucket.get(f"{block.name}/meta.json")
    assert os.listdir(out) == [block.name]  # no temp directories left

    with pytest.raises(ConfigError, match="already exists"):
        download_block(bucket, block.name, out)
    (got / "stale").write_bytes(b"x")
    download_block(bucket, block.name, out, overwrite=True)
    assert not (got / "stale").exists()
    assert os.listdir(out) == [block.name]


def test_download_recreates_empty_chunks_dir_and_skips_markers(bucket: Bucket, tmp_path: Path) -> None:
    block = make_block(tmp_path / "local", segments=0)
    upload_block(block, bucket)
    write_marker(bucket, NoCompactMark(block.name, 1))
    got = Path(download_block(bucket, block.name, tmp_path / "dl"))
    assert (got / "chunks").is_dir() and list((got / "chunks").iterdir()) == []
    assert not (got / NO_COMPACT_MARK).exists()


def test_download_missing_or_incomplete(bucket: Bucket, tmp_path: Path) -> None:
    out = tmp_path / "dl"
    with pytest.raises(NotFoundError, match=r"no meta\.json"):
        download_block(bucket, new_ulid(), out)
    block = make_block(tmp_path / "local")
    upload_block(block, bucket)
    bucket.delete(f"{block.name}/chunks/000002")
    with pytest.raises(CorruptBlockError, match="chunks/000002"):
        download_block(bucket, block.name, out)
    assert os.listdir(out) == []


# --- metas -------------------------------------------------------------------------------------------


def test_scan_sorts_blocks_into_good_broken_and_partial(bucket: Bucket, tmp_path: Path) -> None:
    good = [make_block(tmp_path / "local") for _ in range(3)]
    for b in good:
        upload_block(b, bucket)
    broken = new_ulid()
    bucket.put(f"{broken}/meta.json", b"{nope")
    wrong_version = new_ulid()
    bucket.put(f"{wrong_version}/meta.json", json.dumps({"ulid": wrong_version, "minTime": 0, "maxTime": 1,
                                                         "version": 2}).encode())
    partial = new_ulid()
    bucket.put(f"{partial}/chunks/000001", b"x")
    bucket.put("debug/metas/x.json", b"{}")
    scan = scan_bucket(bucket, concurrency=4)
    assert sorted(b.ulid for b in scan.blocks) == sorted(b.name for b in good)
    assert all(b.meta.ulid == b.ulid for b in scan.blocks)
    assert sorted(scan.broken) == sorted([broken, wrong_version])
    assert all(isinstance(e, CorruptBlockError) for e in scan.broken.values())
    assert scan.partial == [partial]


# --- markers -----------------------------------------------------------------------------------------


def test_markers(bucket: Bucket) -> None:
    ulid = new_ulid()
    bucket.put(f"{ulid}/meta.json", b"{}")
    assert block_markers(bucket, ulid).deletion is None
    mark = DeletionMark(ulid, 100, details="retention")
    assert write_marker(bucket, mark)
    assert not write_marker(bucket, DeletionMark(ulid, 200))  # existing mark kept
    assert write_marker(bucket, NoDownsampleMark(ulid, 5))
    bucket.put(f"{ulid}/{NO_COMPACT_MARK}", b'{"version": 9}')
    markers = block_markers(bucket, ulid)
    assert markers.deletion == mark and markers.get(MarkerKind.DELETION) == mark
    assert markers.no_downsample == NoDownsampleMark(ulid, 5)
    assert markers.no_compact is None
    assert isinstance(markers.broken[NO_COMPACT_MARK], MarkerError)
    assert write_marker(bucket, DeletionMark(ulid, 300), overwrite=True)
    assert block_markers(bucket, ulid).deletion == DeletionMark(ulid, 300)
    remove_marker(bucket, ulid, MarkerKind.DELETION)
    remove_marker(bucket, ulid, MarkerKind.DELETION)
    assert block_markers(bucket, ulid).deletion is None


@pytest.mark.parametrize("count", [3, 20])
def test_fetch_markers(bucket: Bucket, count: int) -> None:
    ulids = [new_ulid() for _ in range(count)]
    for i, u in enumerate(ulids):
        bucket.put(f"{u}/meta.json", b"{}")
        bucket.put(f"{u}/index", b"i")
        if i % 2 == 0:
            write_marker(bucket, DeletionMark(u, i))
        if i % 3 == 0:
            write_marker(bucket, NoCompactMark(u, i, details="x"))
    found = fetch_markers(bucket, ulids[: count - 1])
    assert sorted(found) == sorted(ulids[: count - 1])
    for i, u in enumerate(ulids[: count - 1]):
        assert (found[u].deletion is not None) == (i % 2 == 0)
        assert (found[u].no_compact is not None) == (i % 3 == 0)
        assert found[u].broken == {}
    assert sorted(fetch_markers(bucket)) == sorted(ulids)


# --- delete ------------------------------------------------------------------------------------------


def test_delete_block_order(bucket: Bucket, tmp_path: Path) -> None:
    block = make_block(tmp_path / "local")
    upload_block(block, bucket)
    other = make_block(tmp_path / "local")
    upload_block(other, bucket)
    write_marker(bucket, DeletionMark(block.name, 1))
    write_marker(bucket, NoCompactMark(block.name, 1))
    rec = RecordingBucket(bucket.spec)
    assert delete_block(rec, block.name) == 6
    deleted = [key.split("/", 1)[1] for op, key in rec.log if op == "delete"]
    assert deleted[0] == "meta.json"
    assert deleted.index(DELETION_MARK) == 5
    assert set(deleted[1:5]) == {"chunks/000001", "chunks/000002", "index", NO_COMPACT_MARK}
    assert deleted[6:] == ["chunks/", ""]
    assert bucket.list_blocks() == [other.name]
    assert block_files(bucket, block.name) == {}
    with pytest.raises(NotFoundError):
        delete_block(bucket, block.name)


def test_delete_local_block_with_empty_chunks_dir(tmp_path: Path) -> None:
    bucket = open_bucket(str(tmp_path / "bkt"))
    download_dir = tmp_path / "bkt"
    block = make_block(tmp_path / "local", segments=0)
    upload_block(block, bucket)
    (download_dir / block.name / "chunks").mkdir()
    delete_block(bucket, block.name)
    assert list(download_dir.iterdir()) == []
