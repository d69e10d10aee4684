"""meta.json parsing never fails with anything but a located error, listing survives odd bucket entries,
and block times render for every int64."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from thanostools.core.blockio import fetch_meta
from thanostools.core.errors import CorruptBlockError, FormatError, NotFoundError
from thanostools.core.inspect import BlockInfo, scan_bucket
from thanostools.core.objstore.bucket import open_bucket
from thanostools.core.timeutil import format_minute_ms, format_time_ms, utc_fields
from thanostools.core.tsdb.meta import MAX_META_DEPTH, BlockMeta

A = "01HGZ7R0000000000000000000"
B = "01HGZ7R0000000000000000001"
VALID = {
    "ulid": A, "minTime": 1_700_000_000_000, "maxTime": 1_700_007_200_000,
    "stats": {"numSamples": 10, "numSeries": 2, "numChunks": 2},
    "compaction": {"level": 1, "sources": [A]},
    "version": 1,
    "thanos": {"labels": {"cluster": "a"}, "downsample": {"resolution": 0}, "source": "sidecar",
               "upload_time": "2023-11-14T22:13:20.5Z"},
}
VALID_BYTES = json.dumps(VALID, indent="\t").encode()


def _parse(data: bytes, block: str | None = A) -> BlockMeta | None:
    """A meta, or None when the bytes were refused as they must be: with a located CorruptBlockError."""
    try:
        return BlockMeta.from_json(data, block=block)
    except CorruptBlockError as exc:
        assert exc.file == "meta.json" and exc.block == block
        assert "\n" not in str(exc)
        return None
    except FormatError:
        return None


# --- fuzzing ----------------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
@example(b"[" * 200_000 + b"]" * 200_000)
@example(b'{"a":' * 200_000 + b"1" + b"}" * 200_000)
@example(b"\xff\xfe{\x00}\x00")
@example(b'{"version": 1, "ulid": "' + A.encode() + b'", "minTime": 1' + b"0" * 5000 + b', "maxTime": 1}')
def test_random_bytes_give_a_meta_or_a_located_error(data: bytes) -> None:
    _parse(data)


def _mutations() -> st.SearchStrategy[bytes]:
    def flip(data: bytes, pos: int, bit: int) -> bytes:
        pos %= len(data)
        return data[:pos] + bytes([data[pos] ^ (1 << bit)]) + data[pos + 1:]

    flips = st.builds(flip, st.just(VALID_BYTES), st.integers(0, len(VALID_BYTES) - 1), st.integers(0, 7))
    cuts = st.integers(0, len(VALID_BYTES)).map(lambda n: VALID_BYTES[:n])
    inserts = st.builds(lambda pos, junk: VALID_BYTES[:pos] + junk + VALID_BYTES[pos:],
                        st.integers(0, len(VALID_BYTES)), st.binary(min_size=1, max_size=8))
    return st.one_of(flips, cuts, inserts)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(_mutations())
def test_mutated_metas_give_a_meta_or_a_located_error(data: bytes) -> None:
    meta = _parse(data)
    if meta is not None:
        assert meta.ulid == A and meta.max_time >= meta.min_time
        BlockMeta.from_json(meta.to_json(), block=A)  # what parsed also writes back and parses again


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["ulid", "minTime", "maxTime", "stats", "compaction", "version", "thanos"]), json_values)
def test_any_json_in_a_known_field_gives_a_meta_or_a_located_error(key: str, value: object) -> None:
    doc = json.loads(VALID_BYTES)
    doc[key] = value
    meta = _parse(json.dumps(doc).encode())
    if meta is not None:
        json.loads(meta.to_json())


# --- validation -------------------------------------------------------------------------------------------------


def _with(**changes: object) -> bytes:
    return json.dumps({**VALID, **changes}).encode()


@pytest.mark.parametrize(("data", "reason"), [
    (_with(ulid=B), f"ulid {B} does not match the block directory {A}"),
    (_with(maxTime=1_699_999_999_999), "maxTime 1699999999999 is before minTime 1700000000000"),
    (_with(version=2), "unsupported meta.json version 2"),
    (_with(maxTime=2**63), "maxTime is out of range"),
    (_with(minTime=-(2**63) - 1), "minTime is out of range"),
    (b"[" * 200_000 + b"]" * 200_000, f"nested deeper than {MAX_META_DEPTH} levels"),
    (_with(thanos={**VALID["thanos"], "extensions": json.loads("[" * 150 + "]" * 150)}),  # type: ignore[dict-item]
     f"nested deeper than {MAX_META_DEPTH} levels"),
])
def test_invalid_metas_are_located_corrupt_blocks(data: bytes, reason: str) -> None:
    with pytest.raises(CorruptBlockError) as info:
        BlockMeta.from_json(data, block=A)
    assert info.value.block == A and info.value.file == "meta.json"
    assert reason in str(info.value)


def test_valid_edges_are_accepted() -> None:
    assert BlockMeta.from_json(_with(maxTime=VALID["minTime"]), block=A).max_time == VALID["minTime"]
    edge = BlockMeta.from_json(_with(minTime=-(2**63), maxTime=2**63 - 1), block=A)
    assert (edge.min_time, edge.max_time) == (-(2**63), 2**63 - 1)
    nested = {**VALID["thanos"], "extensions": json.loads("[" * 50 + "]" * 50)}  # type: ignore[dict-item]
    assert BlockMeta.from_json(_with(thanos=nested), block=A).thanos is not None
    assert BlockMeta.from_json(_with(ulid=B)).ulid == B  # no directory, no identity to check


# --- listing ----------------------------------------------------------------------------------------------------


def _bucket_with(tmp_path: Path, *ulids: str) -> Path:
    root = tmp_path / "bucket"
    for u in ulids:
        (root / u / "chunks").mkdir(parents=True)
        (root / u / "meta.json").write_bytes(_with(ulid=u, compaction={"level": 1, "sources": [u]}))
        (root / u / "index").write_bytes(b"x")
    return root


def test_dangling_symlinks_do_not_hide_blocks(tmp_path: Path) -> None:
    root = _bucket_with(tmp_path, A, B)
    os.symlink(tmp_path / "nowhere", root / "dangling")
    os.symlink(tmp_path / "nowhere", root / A / "dangling")
    os.symlink(tmp_path / "nowhere", root / B / "chunks" / "000001")
    bucket = open_bucket(str(root))
    assert sorted(bucket.list_prefix("")) == [f"{A}/index", f"{A}/meta.json", f"{B}/index", f"{B}/meta.json"]
    scan = scan_bucket(bucket)
    assert [b.ulid for b in scan.blocks] == [A, B] and not scan.broken and not scan.partial


@pytest.mark.parametrize("what", ["directory", "dangling-symlink"])
def test_unreadable_meta_entry_is_broken_not_partial(tmp_path: Path, what: str) -> None:
    root = _bucket_with(tmp_path, A, B)
    meta = root / A / "meta.json"
    meta.unlink()
    if what == "directory":
        meta.mkdir()
    else:
        os.symlink(tmp_path / "nowhere", meta)
    bucket = open_bucket(str(root))
    scan = scan_bucket(bucket)
    assert [b.ulid for b in scan.blocks] == [B] and scan.partial == []
    err = scan.broken[A]
    assert isinstance(err, CorruptBlockError) and err.block == A and err.file == "meta.json"
    with pytest.raises(CorruptBlockError) as info:
        fetch_meta(bucket, A)
    assert info.value.block == A
    meta.unlink() if what != "directory" else meta.rmdir()
    assert scan_bucket(bucket).partial == [A]  # nothing at all there: an upload in progress
    with pytest.raises(NotFoundError):
        fetch_meta(bucket, A)


def test_meta_claiming_another_block_is_not_merged_with_it(tmp_path: Path) -> None:
    root = _bucket_with(tmp_path, A, B)
    (root / B / "meta.json").write_bytes(_with(ulid=A))
    scan = scan_bucket(open_bucket(str(root)))
    assert [b.ulid for b in scan.blocks] == [A]
    assert "does not match the block directory" in str(scan.broken[B])


# --- times ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ms", "text"), [
    (2**63 - 1, "292278994-08-17T07:12:55.807Z"),
    (-(2**63), "-292275055-05-16T16:47:04.192Z"),
    (0, "1970-01-01T00:00:00Z"),
    (-1, "1969-12-31T23:59:59.999Z"),
    (-62135596800000, "0001-01-01T00:00:00Z"),
    (253402300799999, "9999-12-31T23:59:59.999Z"),
    (253402300800000, "10000-01-01T00:00:00Z"),
])
def test_any_int64_time_renders(ms: int, text: str) -> None:
    assert format_time_ms(ms) == text
    assert format_minute_ms(ms) == text[:text.index("T")] + " " + text[text.index("T") + 1:text.index("T") + 6]


@settings(max_examples=500)
@given(st.integers(-62135596800000, 253402300799999))
def test_time_fields_agree_with_datetime(ms: int) -> None:
    dt = datetime.fromtimestamp(ms // 1000, UTC)
    assert utc_fields(ms) == (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, ms % 1000)


def test_tui_block_list_renders_int64_times() -> None:
    from thanostools.tui.screens.blocks import block_row
    from thanostools.tui.widgets.timeline import render_timeline

    meta = BlockMeta.from_json(_with(minTime=0, maxTime=2**63 - 1), block=A)
    info = BlockInfo(meta, {"index": 1}, [])
    assert block_row(info)[2] == "292278994-08-17T07:12:55.807Z"
    assert "292278994-08-17 07:12" in render_timeline([info], 80, None)[-1].plain
