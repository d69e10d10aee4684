from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from tests.fixtures_s3 import S3TestBucket
from thanostools.core.errors import NotFoundError, SourceError
from thanostools.core.objstore.bucket import Bucket, open_bucket

B1 = "01HQ0000000000000000000001"
B2 = "01HQ0000000000000000000002"


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


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_put_get_exists_size(bucket: Bucket) -> None:
    bucket.put(f"{B1}/meta.json", b'{"a": 1}')
    assert bucket.get(f"{B1}/meta.json") == b'{"a": 1}'
    assert bucket.exists(f"{B1}/meta.json")
    assert not bucket.exists(f"{B1}/index")
    assert bucket.size(f"{B1}/meta.json") == 8
    bucket.put(f"{B1}/meta.json", b"")
    assert bucket.get(f"{B1}/meta.json") == b""
    assert bucket.size(f"{B1}/meta.json") == 0


def test_listing(bucket: Bucket) -> None:
    for key in (f"{B2}/meta.json", f"{B2}/chunks/000001", f"{B2}/chunks/000002", f"{B1}/index",
                "debug/metas/x.json", "notablock", "01hq0000000000000000000003/meta.json"):
        bucket.put(key, key.encode())
    assert bucket.list_dir("") == sorted([B1, B2, "debug", "notablock", "01hq0000000000000000000003"])
    assert bucket.list_blocks() == [B1, B2]
    assert bucket.list_dir(B2) == ["chunks", "meta.json"]
    assert bucket.list_dir(f"{B2}/") == ["chunks", "meta.json"]
    assert bucket.list_dir(f"{B2}/chunks") == ["000001", "000002"]
    assert bucket.list_dir("nothing-here") == []
    assert bucket.list_prefix(B2) == {
        f"{B2}/chunks/000001": len(f"{B2}/chunks/000001"),
        f"{B2}/chunks/000002": len(f"{B2}/chunks/000002"),
        f"{B2}/meta.json": len(f"{B2}/meta.json"),
    }
    everything = bucket.list_prefix("")
    assert len(everything) == 7 and everything["notablock"] == len("notablock")
    assert bucket.list_prefix("nothing-here") == {}


def test_empty_bucket_lists_nothing(bucket: Bucket) -> None:
    bucket.put("x/y", b"1")
    bucket.delete("x/y")
    assert bucket.list_blocks() == []
    assert bucket.list_prefix("") == {}


def test_ranges(bucket: Bucket) -> None:
    data = bytes(range(256)) * 4
    bucket.put(f"{B1}/index", data)
    bucket.put(f"{B1}/chunks/000001", b"abcdef")
    assert bucket.get_range(f"{B1}/index", 10, 5) == data[10:15]
    assert bucket.get_range(f"{B1}/index", 1020, 100) == data[1020:]  # short read at the end
    assert bucket.get_range(f"{B1}/index", 5000, 10) == b""  # past the end
    assert bucket.get_ranges([]) == []
    got = bucket.get_ranges([
        (f"{B1}/index", 0, 4),
        (f"{B1}/chunks/000001", 2, 4),
        (f"{B1}/index", 7, 7),
        (f"{B1}/index", 1000, 1024),
    ])
    assert got == [data[:4], b"cd", b"", data[1000:1024]]
    with pytest.raises(ValueError):
        bucket.get_ranges([(f"{B1}/index", 5, 4)])


def test_missing_keys_are_not_found(bucket: Bucket, tmp_path: Path) -> None:
    bucket.put("present", b"x")
    for call in (
        lambda: bucket.get(f"{B1}/meta.json"),
        lambda: bucket.size(f"{B1}/meta.json"),
        lambda: bucket.get_range(f"{B1}/index", 0, 10),
        lambda: bucket.get_ranges([("present", 0, 1), (f"{B1}/index", 0, 10)]),
        lambda: bucket.get_file(f"{B1}/index", str(tmp_path / "dl" / "index")),
    ):
        with pytest.raises(NotFoundError) as info:
            call()
        message = one_line(info.value)
        assert bucket.url in message and f"{B1}/" in message
    assert not (tmp_path / "dl" / "index").exists()
    assert list((tmp_path / "dl").iterdir()) == []  # no temp file left behind


def test_files(bucket: Bucket, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(300_000))
    bucket.put_file(str(src), f"{B1}/chunks/000001")
    assert bucket.size(f"{B1}/chunks/000001") == 300_000
    dst = tmp_path / "out" / "deep" / "000001"
    bucket.get_file(f"{B1}/chunks/000001", str(dst))
    assert dst.read_bytes() == src.read_bytes()
    with pytest.raises(NotFoundError):
        bucket.put_file(str(tmp_path / "nope"), "k")


def test_delete(bucket: Bucket) -> None:
    bucket.put(f"{B1}/chunks/000001", b"1")
    bucket.put(f"{B1}/index", b"2")
    bucket.delete(f"{B1}/chunks/000001")
    assert not bucket.exists(f"{B1}/chunks/000001")
    assert bucket.list_dir(B1) == ["index"]
    bucket.delete(f"{B1}/chunks/000001")  # already gone: fine
    bucket.delete(f"{B1}/index")
    bucket.delete(f"{B1}/chunks/")
    bucket.delete(f"{B1}/")
    assert bucket.list_blocks() == []


def test_keys_are_checked(bucket: Bucket) -> None:
    for key in ("../escape", "a//b", "a/./b"):
        with pytest.raises(ValueError):
            bucket.get(key)


def test_local_path(bucket: Bucket) -> None:
    bucket.put(f"{B1}/index", b"idx")
    path = bucket.local_path(f"{B1}/index")
    if bucket.is_local:
        assert path is not None and Path(path).read_bytes() == b"idx"
    else:
        assert path is None


def test_identity_differs_per_location(tmp_path: Path) -> None:
    a, b = open_bucket(str(tmp_path / "a")), open_bucket(str(tmp_path / "b"))
    assert a.identity != b.identity
    assert a.identity == open_bucket(str(tmp_path / "a")).identity


# --- local specifics ---------------------------------------------------------------------------------


def test_local_missing_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("THANOS_TOOLS_BUCKET", raising=False)
    bucket = open_bucket()
    assert bucket.url == "./data"
    for call in (bucket.list_blocks, lambda: bucket.list_prefix(""), lambda: bucket.get("a"),
                 lambda: bucket.get_range("a", 0, 1), lambda: bucket.size("a")):
        with pytest.raises(SourceError) as info:
            call()
        assert not isinstance(info.value, NotFoundError)
        assert one_line(info.value) == ("bucket directory ./data does not exist (no bucket given: point at one "
                                        "with --bucket DIR or $THANOS_TOOLS_BUCKET)")
    assert not bucket.exists("a")
    assert not (tmp_path / "data").exists()  # reading never creates anything
    bucket.put(f"{B1}/meta.json", b"{}")
    assert (tmp_path / "data" / B1 / "meta.json").read_bytes() == b"{}"


def test_local_writes_are_atomic_and_clean(tmp_path: Path) -> None:
    bucket = open_bucket(str(tmp_path))
    bucket.put(f"{B1}/chunks/000001", b"x")
    src = tmp_path / "f"
    src.write_bytes(b"y")
    bucket.put_file(str(src), f"{B1}/index")
    assert sorted(p.name for p in (tmp_path / B1).iterdir()) == ["chunks", "index"]
    bucket.delete(f"{B1}/chunks/000001")
    bucket.delete(f"{B1}/index")
    assert not (tmp_path / B1).exists()  # empty directories go with their last object
    assert tmp_path.exists()


def test_open_bucket_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THANOS_TOOLS_BUCKET", str(tmp_path / "env"))
    assert open_bucket().spec.root == str(tmp_path / "env")
    assert open_bucket(str(tmp_path / "url")).spec.root == str(tmp_path / "url")
    cfg = tmp_path / "objstore.yml"
    cfg.write_text(f"type: FILESYSTEM\nconfig:\n  directory: {tmp_path / 'file'}\n")
    from_file = open_bucket(str(tmp_path / "url"), objstore_config_file=str(cfg))
    assert from_file.spec.root == str(tmp_path / "file")
    content = f"type: FILESYSTEM\nconfig:\n  directory: {tmp_path / 'content'}\n"
    chosen = open_bucket(str(tmp_path / "url"), objstore_config_file=str(cfg), objstore_config=content)
    assert chosen.spec.root == str(tmp_path / "content")


# --- S3 specifics ------------------------------------------------------------------------------------


def test_s3_via_objstore_config(
    s3_bucket: S3TestBucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Settings come from the config alone, not from the environment.
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    bucket = open_bucket(objstore_config_file=s3_bucket.write_config(tmp_path))
    bucket.put(f"{B1}/meta.json", b"{}")
    assert s3_bucket.object_keys() == [f"{B1}/meta.json"]
    assert open_bucket(objstore_config=s3_bucket.objstore_yaml).list_blocks() == [B1]


def test_s3_prefix(s3_bucket: S3TestBucket) -> None:
    bucket = open_bucket(f"{s3_bucket.url}/tenant/a")
    bucket.put(f"{B1}/meta.json", b"{}")
    assert s3_bucket.object_keys() == [f"tenant/a/{B1}/meta.json"]
    assert bucket.list_blocks() == [B1]
    assert bucket.list_prefix("") == {f"{B1}/meta.json": 2}
    assert open_bucket(f"{s3_bucket.url}/tenant").list_dir("") == ["a"]


def test_s3_missing_bucket(s3_bucket: S3TestBucket) -> None:
    bucket = open_bucket("s3://no-such-bucket-here")
    for call in (bucket.list_blocks, lambda: bucket.list_prefix(""), lambda: bucket.get("a/b"),
                 lambda: bucket.size("a/b"), lambda: bucket.put("a/b", b"x")):
        with pytest.raises(SourceError) as info:
            call()
        assert not isinstance(info.value, NotFoundError)
        message = one_line(info.value)
        assert "does not exist" in message and "s3://no-such-bucket-here" in message


def test_s3_refused_endpoint_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    bucket = open_bucket("s3://somewhere")
    with pytest.raises(SourceError) as info:
        bucket.list_blocks()
    assert "unreachable" in one_line(info.value) and f"127.0.0.1:{port}" in str(info.value)


def test_s3_silent_endpoint_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # A listener whose accept queue is full drops new SYNs, like a firewalled host.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(("127.0.0.1", port))
            fillers.append(c)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        bucket = open_bucket("s3://somewhere")
        with pytest.raises(SourceError) as info:  # bounded connect/read timeouts: it fails, it does not hang
            bucket.get("a/b")
        one_line(info.value)
    finally:
        for c in fillers:
            c.close()
        server.close()
