"""Damaged blocks and bad buckets: one line on stderr naming block, file and offset; non-zero exit; no writes."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.clihelp import START_MS, run_cli, tree_digest
from thanostools.core.kernels.binary import crc32c
from thanostools.core.tsdb.writer import BlockWriter


@pytest.fixture
def bucket(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "bucket"
    root.mkdir()
    w = BlockWriter(str(root), external_labels={"a": "b"})
    t = START_MS + np.arange(0, 3_600_000, 15_000, dtype=np.int64)
    for i in range(20):
        w.add_samples((("__name__", "m"), ("i", f"{i:02d}")), t, np.full(t.size, float(i)))
    return root, w.finish().ulid




def _check(res_stderr: str, *parts: str) -> None:
    assert res_stderr.count("\n") == 1, res_stderr
    assert "Traceback" not in res_stderr
    for p in parts:
        assert p in res_stderr, res_stderr


def _dump(root: Path) -> tuple[int, str]:
    before = tree_digest(root)
    res = run_cli("bucket", "dump", "--bucket", str(root))
    assert tree_digest(root) == before, "a read command modified the bucket"
    return res.exit_code, res.stderr


def test_truncated_index(bucket: tuple[Path, str]) -> None:
    root, ulid = bucket
    idx = root / ulid / "index"
    idx.write_bytes(idx.read_bytes()[: idx.stat().st_size // 2])
    code, err = _dump(root)
    assert code == 1
    _check(err, ulid, "file index", "offset")


def test_bad_toc_crc(bucket: tuple[Path, str]) -> None:
    root, ulid = bucket
    idx = root / ulid / "index"
    data = bytearray(idx.read_bytes())
    data[-1] ^= 0xFF
    idx.write_bytes(bytes(data))
    code, err = _dump(root)
    assert code == 1
    _check(err, ulid, "file index", "TOC checksum mismatch")


def test_chunk_crc_mismatch(bucket: tuple[Path, str]) -> None:
    root, ulid = bucket
    seg = root / ulid / "chunks" / "000001"
    data = bytearray(seg.read_bytes())
    data[20] ^= 0x01
    seg.write_bytes(bytes(data))
    code, err = _dump(root)
    assert code == 1
    _check(err, ulid, "file chunks/000001", "offset 8", "checksum mismatch")


def test_truncated_chunk_file(bucket: tuple[Path, str]) -> None:
    root, ulid = bucket
    seg = root / ulid / "chunks" / "000001"
    seg.write_bytes(seg.read_bytes()[:100])
    code, err = _dump(root)
    assert code == 1
    _check(err, ulid, "chunks/000001")


def test_unknown_chunk_encoding(bucket: tuple[Path, str]) -> None:
    root, ulid = bucket
    seg = root / ulid / "chunks" / "000001"
    data = bytearray(seg.read_bytes())
    # First record at offset 8: uvarint length, encoding byte, data, crc over encoding+data.
    length, pos = data[8], 9
    assert length < 0x80
    data[pos] = 7
    arr = np.frombuffer(bytes(data), np.uint8)
    data[pos + 1 + length : pos + 5 + length] = struct.pack(">I", crc32c(arr, pos, pos + 1 + length))
    seg.write_bytes(bytes(data))
    code, err = _dump(root)
    assert code == 1
    _check(err, ulid, "encoding 7")


def test_garbage_meta(bucket: tuple[Path, str]) -> None:
    root, ulid = bucket
    (root / ulid / "meta.json").write_text("{not json")
    res = run_cli("bucket", "ls", "--bucket", str(root))
    assert res.exit_code == 1
    _check(res.stderr, ulid, "meta.json")
    res = run_cli("bucket", "inspect", "--bucket", str(root), "--id", ulid)
    assert res.exit_code == 1
    _check(res.stderr, ulid, "meta.json")


def test_missing_meta_is_partial_upload(bucket: tuple[Path, str]) -> None:
    root, ulid = bucket
    (root / ulid / "meta.json").unlink()
    res = run_cli("bucket", "ls", "--bucket", str(root), "-o", "ids")
    assert res.exit_code == 0 and res.stdout == ""
    res = run_cli("bucket", "dump", "--bucket", str(root), "--id", ulid)
    assert res.exit_code == 1
    _check(res.stderr, ulid, "partial upload")


def test_missing_chunks_dir(bucket: tuple[Path, str]) -> None:
    root, ulid = bucket
    shutil.rmtree(root / ulid / "chunks")
    code, err = _dump(root)
    assert code == 1
    _check(err, ulid, "chunks")


def test_unknown_block_id(bucket: tuple[Path, str]) -> None:
    root, _ = bucket
    res = run_cli("bucket", "analyze", "--bucket", str(root), "--id", "01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert res.exit_code == 1
    _check(res.stderr, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "not found")


def test_bad_flags_exit_2(tmp_path: Path) -> None:
    res = run_cli("bucket", "ls", "--bucket", str(tmp_path), "--min-time", "yesterday-ish")
    assert res.exit_code == 2
    res = run_cli("bucket", "ls", "--bucket", str(tmp_path), "--resolution", "7m")
    assert res.exit_code == 2
    assert "invalid resolution" in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: NOPE\nconfig: {}\n")
    res = run_cli("bucket", "ls", "--objstore.config-file", str(bad))
    assert res.exit_code == 2
    _check(res.stderr, "NOPE")
