"""Real damaged blocks: overlapping / out-of-order chunks, refs into huge segments, no all-postings list, bit
flips in every index section, ``index`` replaced by a directory. Nothing may crash; deep verify finds every CRC
problem and names file and offset."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.clihelp import run_cli, tree_digest
from tests.core.verify.test_verify_checks import LABELS, H, _chunks
from tests.fixtures_prom import needs_promtool, promtool_analyze, promtool_create_blocks, promtool_dump
from thanostools.core.errors import CorruptBlockError
from thanostools.core.kernels import binary as kb
from thanostools.core.objstore.bucket import open_bucket
from thanostools.core.tsdb.block import Block
from thanostools.core.tsdb.bytesource import MemorySource
from thanostools.core.tsdb.chunks import ENC_XOR, frame_records, record_bounds, ref_segment, split_refs
from thanostools.core.tsdb.index import IndexReader
from thanostools.core.tsdb.meta import BlockMeta
from thanostools.core.tsdb.writer import BlockWriter
from thanostools.core.varint import encode_uvarint
from thanostools.core.verify.report import CHUNK_INTEGRITY, INDEX_INTEGRITY, INDEX_KNOWN_ISSUES
from thanostools.core.verify.runner import verify_bucket

# Prometheus' test shapes (tsdb querier/compaction tests): chunk metas of one series in index order.
OVERLAPPING = [(0, H), (H // 2, H + H // 2)]  # "overlapping chunks in one series"
OUT_OF_ORDER = [(H, 2 * H), (0, H)]  # "chunks out of order": the later chunk listed first
HUGE_SEGMENT_REF = (0x8000_0001 << 32) | 8  # a ref whose segment index has the top bit set


def write_chunk_metas(root: Path, series: dict[str, list[tuple[int, int]]],
                      refs: dict[str, list[int]] | None = None) -> BlockMeta:
    """A block whose series have exactly these chunk metas (around the writer's order checks)."""
    w = BlockWriter(str(root), min_time=0, max_time=2 * H, external_labels=LABELS, source="test")
    for name, spans in sorted(series.items()):
        buf, offsets, mint, maxt, n = _chunks(spans)
        framed = frame_records(np.full(len(spans), ENC_XOR, np.int64), buf, offsets)
        written = w._segments.write_records(framed.buf, record_bounds(framed))
        chosen = np.array(refs[name], np.int64) if refs and name in refs else written
        w._index.add((("__name__", name),), mint, maxt, chosen)
        w.num_samples += n
        w.num_chunks += len(spans)
    return w.finish()


def _toc(index: bytes) -> tuple[int, ...]:
    return struct.unpack(">6Q", index[-52:-4])


def _flip(path: Path, *offsets: int) -> None:
    data = bytearray(path.read_bytes())
    for off in offsets:
        data[off] ^= 0x10
    path.write_bytes(bytes(data))


def _issues(root: Path, check: str) -> list[dict[str, object]]:
    report = verify_bucket(open_bucket(str(root)), deep=True)
    return [i.to_dict() for i in report.issues if i.id == check]


# --- 1 and 4: overlapping and out-of-order chunks ----------------------------------------------------


def test_overlapping_and_out_of_order_chunks_are_reported_not_crashed_on(tmp_path: Path) -> None:
    meta = write_chunk_metas(tmp_path, {"a_overlapping": OVERLAPPING, "b_out_of_order": OUT_OF_ORDER})
    block = Block.open_dir(str(tmp_path / meta.ulid))
    raw = block.index.series_raw(block.index.all_postings())
    assert raw.chunk_mint.tolist() == [0, H // 2, H, 0]  # negative deltas decode back exactly
    report = verify_bucket(open_bucket(str(tmp_path)), deep=True)
    assert {(i.id, i.kind) for i in report.issues} == {(INDEX_KNOWN_ISSUES, "out_of_order_chunks")}
    before = tree_digest(tmp_path)
    for args in (("verify",), ("verify", "--deep")):
        res = run_cli("bucket", *args, "--bucket", str(tmp_path))
        assert res.exit_code == 3 and "internal error" not in res.stderr and "out_of_order_chunks" in res.stdout
    res = run_cli("bucket", "dump", "--bucket", str(tmp_path))
    assert res.exit_code == 0, res.stderr
    assert res.stdout.count('{__name__="a_overlapping"}') == len(range(0, H, 15_000)) * 2
    assert tree_digest(tmp_path) == before


@needs_promtool
def test_out_of_order_chunks_read_like_promtool(tmp_path: Path) -> None:
    write_chunk_metas(tmp_path, {"b_out_of_order": OUT_OF_ORDER})
    res = run_cli("bucket", "dump", "--bucket", str(tmp_path))
    assert res.exit_code == 0
    assert res.stdout == promtool_dump(tmp_path)


def test_huge_segment_index_is_unsigned_everywhere(tmp_path: Path) -> None:
    meta = write_chunk_metas(tmp_path, {"a": [(0, H)]}, refs={"a": [HUGE_SEGMENT_REF - (1 << 64)]})
    block = Block.open_dir(str(tmp_path / meta.ulid))
    raw = block.index.series_raw(block.index.all_postings())
    segs, offs = split_refs(raw.chunk_ref)
    assert segs.tolist() == [0x8000_0001] and offs.tolist() == [8]
    assert ref_segment(int(raw.chunk_ref[0])) == 0x8000_0001
    with pytest.raises(CorruptBlockError, match="segment 2147483650, which does not exist"):
        block.chunks.read(raw.chunk_ref)
    [issue] = _issues(tmp_path, CHUNK_INTEGRITY)
    details = issue["details"]
    assert isinstance(details, dict)
    [bad] = details["bad_chunks"]
    assert bad["ref"] == HUGE_SEGMENT_REF and bad["offset"] == 8 and bad["file"] == "chunks/2147483650"
    for args, code in ((("dump",), 1), (("verify", "--deep", "-o", "json"), 3), (("analyze", "--extended"), 1),
                       (("analyze",), 0)):  # plain analyze reads no chunk
        res = run_cli("bucket", *args, "--bucket", str(tmp_path))
        text = res.stdout + res.stderr
        assert "internal error" not in text and "-21474" not in text, text
        assert res.exit_code == code, text
    res = run_cli("bucket", "dump", "--bucket", str(tmp_path))
    assert res.stderr.count("\n") == 1 and meta.ulid in res.stderr and "chunks/2147483650" in res.stderr


# --- 2: no all-postings list -------------------------------------------------------------------------


def drop_all_postings(index: Path) -> None:
    """Rewrite the postings offset table without its ``""=""`` entry (it comes first); offsets stay put."""
    data = index.read_bytes()
    table = _toc(data)[5]
    (length,) = struct.unpack(">I", data[table:table + 4])
    body = data[table + 4:table + 4 + length]
    (count,) = struct.unpack(">I", body[:4])
    assert body[4:7] == b"\x02\x00\x00"
    _, end = kb.uvarint(np.frombuffer(body, np.uint8), 7, len(body))
    new_body = struct.pack(">I", count - 1) + body[end:]
    crc = kb.crc32c(np.frombuffer(new_body, np.uint8), 0, len(new_body))
    new_table = struct.pack(">I", len(new_body)) + new_body + struct.pack(">I", crc)
    toc = data[-52:]
    index.write_bytes(data[:table] + new_table + toc)
    assert encode_uvarint(0) == b"\x00"


def test_index_without_all_postings_reads_as_empty(tmp_path: Path) -> None:
    meta = write_chunk_metas(tmp_path, {"a": [(0, H)], "b": [(0, H)]})
    drop_all_postings(tmp_path / meta.ulid / "index")
    reader = IndexReader(MemorySource((tmp_path / meta.ulid / "index").read_bytes(), "index"), block=meta.ulid)
    assert reader.all_postings().tolist() == []
    assert reader.postings("__name__", "a").size == 1  # the other lists are still there
    res = run_cli("bucket", "dump", "--bucket", str(tmp_path))
    assert (res.exit_code, res.stdout) == (0, "")
    assert _issues(tmp_path, INDEX_INTEGRITY) == []


@needs_promtool
def test_promtool_agrees_an_index_without_all_postings_has_no_series(tmp_path: Path) -> None:
    meta = write_chunk_metas(tmp_path, {"a": [(0, H)]})
    drop_all_postings(tmp_path / meta.ulid / "index")
    assert promtool_dump(tmp_path) == ""
    assert "Postings (unique label pairs): 0" in promtool_analyze(tmp_path, meta.ulid)


# --- 3: every CRC of the index -----------------------------------------------------------------------


def _postings_offsets(index: bytes) -> list[int]:
    reader = IndexReader(MemorySource(index, "index"))
    return sorted(reader._postings_table[n][v] for n, v in reader.postings_keys())


def test_postings_bit_flips_are_found_by_deep_with_their_offsets(tmp_path: Path) -> None:
    meta = write_chunk_metas(tmp_path, {"a": [(0, H)], "b": [(0, H)], "c": [(0, H)]})
    index = tmp_path / meta.ulid / "index"
    lists = _postings_offsets(index.read_bytes())[1:]  # not the all-postings list: plain verify reads that one
    _flip(index, lists[0] + 9, lists[2] + 8)
    assert verify_bucket(open_bucket(str(tmp_path))).clean
    [issue] = _issues(tmp_path, INDEX_INTEGRITY)
    details = issue["details"]
    assert isinstance(details, dict)
    assert [(b["file"], b["offset"]) for b in details["bad_sections"]] == [("index", lists[0]), ("index", lists[2])]
    assert f"index offset {lists[0]}: postings list checksum mismatch" in str(issue["message"])
    res = run_cli("bucket", "verify", "--deep", "--bucket", str(tmp_path))
    assert res.exit_code == 3 and f"index offset {lists[0]}" in res.stdout
    res = run_cli("query", "--bucket", str(tmp_path), '{__name__="a"}', "--time", str(H // 1000))
    warned = [line for line in res.stderr.splitlines() if line.startswith(f"warning: block {meta.ulid} left out: ")]
    assert res.exit_code == 0 and len(warned) == 1 and f"offset {lists[0]}" in warned[0]
    res = run_cli("query", "--no-partial-response", "--bucket", str(tmp_path), '{__name__="a"}', "--time",
                  str(H // 1000))
    assert res.exit_code == 1 and f"offset {lists[0]}" in res.stderr and meta.ulid in res.stderr


def test_series_entry_bit_flip_names_the_entry(tmp_path: Path) -> None:
    meta = write_chunk_metas(tmp_path, {"a": [(0, H)], "b": [(0, H)]})
    index = tmp_path / meta.ulid / "index"
    reader = IndexReader(MemorySource(index.read_bytes(), "index"))
    second = int(reader.all_postings()[1]) * 16
    _flip(index, second + 3)
    [issue] = _issues(tmp_path, INDEX_INTEGRITY)
    details = issue["details"]
    assert isinstance(details, dict)
    assert [(b["file"], b["offset"], b["reason"]) for b in details["bad_sections"]] == [
        ("index", second, "series entry checksum mismatch")]


@pytest.mark.parametrize("section", ["toc", "symbols", "postings_table"])
def test_tables_read_at_open_are_located(tmp_path: Path, section: str) -> None:
    meta = write_chunk_metas(tmp_path, {"a": [(0, H)]})
    index = tmp_path / meta.ulid / "index"
    data = index.read_bytes()
    toc = _toc(data)
    at = {"toc": len(data) - 10, "symbols": toc[0] + 6, "postings_table": toc[5] + 6}[section]
    where = {"toc": len(data) - 52, "symbols": toc[0], "postings_table": toc[5]}[section]
    _flip(index, at)
    [issue] = _issues(tmp_path, INDEX_INTEGRITY)
    assert issue["kind"] == "unreadable_index"
    details = issue["details"]
    assert isinstance(details, dict) and (details["file"], details["offset"]) == ("index", where)
    assert f"offset {where}" in str(issue["message"]) and meta.ulid in str(issue["message"])


@needs_promtool
def test_legacy_label_indices_are_checked(tmp_path: Path) -> None:
    promtool_create_blocks('a{x="1"} 1 1\na{x="2"} 2 1\n# EOF\n', tmp_path / "b")
    [ulid] = [p.name for p in (tmp_path / "b").iterdir() if p.is_dir()]
    index = tmp_path / "b" / ulid / "index"
    data = index.read_bytes()
    toc = _toc(data)
    assert toc[2] < toc[4] and toc[3] != toc[5], "promtool 2.42 writes label indices"
    first = (toc[2] + 3) // 4 * 4  # label indices are 4-byte aligned
    _flip(index, first + 10)
    [issue] = _issues(tmp_path / "b", INDEX_INTEGRITY)
    details = issue["details"]
    assert isinstance(details, dict)
    [bad] = details["bad_sections"]
    assert (bad["offset"], bad["reason"]) == (first, "label index checksum mismatch")


def test_every_chunk_crc_finding_names_file_and_offset(tmp_path: Path) -> None:
    meta = write_chunk_metas(tmp_path, {"a": [(0, H)], "b": [(0, H)]})
    seg = tmp_path / meta.ulid / "chunks" / "000001"
    _flip(seg, 30)
    [issue] = _issues(tmp_path, CHUNK_INTEGRITY)
    details = issue["details"]
    assert isinstance(details, dict)
    [bad] = details["bad_chunks"]
    assert (bad["file"], bad["offset"]) == ("chunks/000001", 8)
    assert "chunks/000001 offset 8: chunk checksum mismatch" in str(issue["message"])


# --- 3: index replaced by a directory ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["index", "tombstones", "chunks/000001"])
def test_file_replaced_by_a_directory(tmp_path: Path, name: str) -> None:
    meta = write_chunk_metas(tmp_path, {"a": [(0, H)]})
    path = tmp_path / meta.ulid / name
    path.unlink()
    path.mkdir()
    before = tree_digest(tmp_path)
    res = run_cli("bucket", "dump", "--bucket", str(tmp_path))
    assert res.exit_code == 1 and res.stderr.count("\n") == 1, res.stderr
    assert meta.ulid in res.stderr and f"file {name}" in res.stderr and "is a directory" in res.stderr
    res = run_cli("bucket", "verify", "--deep", "--bucket", str(tmp_path), "-o", "json")
    assert res.exit_code == 3, res.stderr
    messages = [i["message"] for i in json.loads(res.stdout)["issues"]]
    if name != "tombstones":
        assert any(f"file {name}" in m and "directory" in m for m in messages), messages
    assert tree_digest(tmp_path) == before
    shutil.rmtree(path)
