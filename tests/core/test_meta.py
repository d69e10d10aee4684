from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from thanostools.core.errors import CorruptBlockError, NotFoundError
from thanostools.core.tsdb.meta import (
    ZERO_TIME,
    BlockDesc,
    BlockFile,
    BlockMeta,
    BlockStats,
    FileHash,
    IndexStats,
    ThanosMeta,
    format_go_time_ns,
    parse_go_time,
    read_meta_file,
    write_meta_file,
)

# FORMATS.md §1.3, verified promtool output (no trailing newline).
PROMETHEUS_EXAMPLE = """{
\t"ulid": "01M8DM1M3RHBCQWWCP6Z2BDZXN",
\t"minTime": 1000000,
\t"maxTime": 1045001,
\t"stats": {
\t\t"numSamples": 5,
\t\t"numSeries": 2,
\t\t"numChunks": 2
\t},
\t"compaction": {
\t\t"level": 1,
\t\t"sources": [
\t\t\t"01M8DM1M3RHBCQWWCP6Z2BDZXN"
\t\t]
\t},
\t"version": 1
}"""

# FORMATS.md §1.4, as printed there (arrays on one line).
THANOS_EXAMPLE = """{
\t"ulid": "01HQ0000000000000000000003",
\t"minTime": 1700000000000,
\t"maxTime": 1700172800000,
\t"stats": {
\t\t"numSamples": 245,
\t\t"numSeries": 4,
\t\t"numChunks": 14
\t},
\t"compaction": {
\t\t"level": 3,
\t\t"sources": ["01HP0000000000000000000001", "01HP0000000000000000000002"],
\t\t"parents": [
\t\t\t{"ulid": "01HP0000000000000000000009", "minTime": 1700000000000, "maxTime": 1700172800000}
\t\t]
\t},
\t"version": 1,
\t"thanos": {
\t\t"version": 1,
\t\t"labels": {
\t\t\t"cluster": "eu1",
\t\t\t"replica": "0"
\t\t},
\t\t"downsample": {
\t\t\t"resolution": 0
\t\t},
\t\t"source": "compactor",
\t\t"segment_files": ["000001"],
\t\t"files": [
\t\t\t{"rel_path": "chunks/000001", "size_bytes": 3751},
\t\t\t{"rel_path": "index", "size_bytes": 401},
\t\t\t{"rel_path": "meta.json"}
\t\t],
\t\t"index_stats": {
\t\t\t"series_max_size": 2000,
\t\t\t"chunk_max_size": 1000
\t\t},
\t\t"upload_time": "2024-01-01T00:00:00.123456789Z"
\t}
}
"""


def go_indent(text: str) -> str:
    """The same document as Go's tab-indenting encoder writes it."""
    return json.dumps(json.loads(text), indent="\t")


def key_paths(value: Any, prefix: str = "") -> list[str]:
    """Every object key with its path, in document order (checks key order, not just content)."""
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append(f"{prefix}/{k}")
            out.extend(key_paths(v, f"{prefix}/{k}"))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(key_paths(v, f"{prefix}[{i}]"))
    return out


def test_prometheus_example_round_trips_byte_for_byte() -> None:
    meta = BlockMeta.from_json(PROMETHEUS_EXAMPLE.encode())
    assert meta.ulid == "01M8DM1M3RHBCQWWCP6Z2BDZXN"
    assert (meta.min_time, meta.max_time) == (1000000, 1045001)
    assert meta.stats == BlockStats(num_samples=5, num_series=2, num_chunks=2)
    assert meta.level == 1 and meta.sources == ["01M8DM1M3RHBCQWWCP6Z2BDZXN"] and meta.parents == []
    assert meta.thanos is None and meta.resolution == 0 and meta.external_labels == ()
    assert meta.to_json("prometheus") == PROMETHEUS_EXAMPLE.encode()
    assert meta.to_json("thanos") == PROMETHEUS_EXAMPLE.encode() + b"\n"


def test_thanos_example_fields() -> None:
    meta = BlockMeta.from_json(THANOS_EXAMPLE.encode())
    assert meta.level == 3
    assert meta.parents == [BlockDesc("01HP0000000000000000000009", 1700000000000, 1700172800000)]
    t = meta.thanos
    assert t is not None
    assert t.version == 1 and t.source == "compactor" and t.resolution == 0
    assert meta.external_labels == (("cluster", "eu1"), ("replica", "0"))
    assert t.segment_files == ["000001"]
    assert t.files == [BlockFile("chunks/000001", 3751), BlockFile("index", 401), BlockFile("meta.json")]
    assert t.index_stats == IndexStats(series_max_size=2000, chunk_max_size=1000)
    assert t.upload_time == "2024-01-01T00:00:00.123456789Z"
    assert t.upload_time_ms == 1704067200123
    assert t.rewrites == [] and t.extensions is None


def test_thanos_example_round_trips() -> None:
    meta = BlockMeta.from_json(THANOS_EXAMPLE.encode())
    out = meta.to_json()
    assert out.endswith(b"}\n") and not out.endswith(b"\n\n")
    assert json.loads(out) == json.loads(THANOS_EXAMPLE)
    assert key_paths(json.loads(out)) == key_paths(json.loads(THANOS_EXAMPLE))
    # Byte-exact against the Go encoder's layout of the same document.
    assert out.decode() == go_indent(THANOS_EXAMPLE) + "\n"


def test_fresh_meta_is_written_in_upstream_key_order() -> None:
    ulid = "01HQ0000000000000000000003"
    meta = BlockMeta(ulid=ulid, min_time=0, max_time=7200000, sources=[ulid])
    meta.thanos = ThanosMeta(source="test")
    doc = json.loads(meta.to_json())
    assert list(doc) == ["ulid", "minTime", "maxTime", "stats", "compaction", "version", "thanos"]
    assert doc["stats"] == {} and doc["compaction"] == {"level": 1, "sources": [ulid]}
    assert doc["thanos"] == {
        "version": 1,
        "labels": None,
        "downsample": {"resolution": 0},
        "source": "test",
        "index_stats": {},
        "upload_time": ZERO_TIME,
    }
    assert list(doc["thanos"]) == ["version", "labels", "downsample", "source", "index_stats", "upload_time"]


def test_every_thanos_field_in_order() -> None:
    ulid = "01HQ0000000000000000000003"
    meta = BlockMeta(
        ulid=ulid, min_time=1, max_time=2, level=2, sources=[ulid], deletable=True,
        parents=[BlockDesc(ulid, 1, 2)], failed=True, hints=["from-out-of-order"],
        stats=BlockStats(1, 2, 3, 4, 5, 6),
        thanos=ThanosMeta(
            labels={"b": "2", "a": "1"}, resolution=300000, source="compactor", segment_files=["000001"],
            files=[BlockFile("index", 10, FileHash("SHA256", "ab" * 32))],
            index_stats=IndexStats(series_max_size=5), upload_time="2024-01-01T00:00:00Z",
            rewrites=[{"sources": [ulid]}], extensions={"x": 1}, version=0,
        ),
    )
    doc = json.loads(meta.to_json())
    assert list(doc["stats"]) == [
        "numSamples", "numFloatSamples", "numHistogramSamples", "numSeries", "numChunks", "numTombstones",
    ]
    assert list(doc["compaction"]) == ["level", "sources", "deletable", "parents", "failed", "hints"]
    thanos = doc["thanos"]
    assert list(thanos) == [
        "labels", "downsample", "source", "segment_files", "files", "rewrites", "index_stats", "extensions",
        "upload_time",
    ]  # version 0 is omitted
    assert list(thanos["labels"]) == ["a", "b"]
    assert thanos["files"] == [{"rel_path": "index", "size_bytes": 10,
                                "hash": {"hashFunc": "SHA256", "value": "ab" * 32}}]
    assert thanos["index_stats"] == {"series_max_size": 5}
    again = BlockMeta.from_json(meta.to_json())
    assert again == meta


def test_unknown_keys_survive_a_modification_in_place() -> None:
    doc = json.loads(THANOS_EXAMPLE)
    doc = {"ulid": doc["ulid"], "zzz_first": [1, 2], **{k: v for k, v in doc.items() if k != "ulid"},
           "trailing": None}
    doc["stats"]["numFutureSamples"] = 9
    doc["compaction"]["mystery"] = {"a": True}
    doc["thanos"]["new_thing"] = "x"
    doc["thanos"]["downsample"]["extra"] = 1
    meta = BlockMeta.from_json(json.dumps(doc).encode())
    meta.stats.num_samples = 1000
    meta.stats.num_tombstones = 3
    assert meta.thanos is not None
    meta.thanos.labels["zone"] = "a"
    meta.thanos.segment_files = []
    out = json.loads(meta.to_json())
    assert out["zzz_first"] == [1, 2] and out["trailing"] is None
    assert list(out)[:2] == ["ulid", "zzz_first"] and list(out)[-1] == "trailing"
    assert out["stats"] == {"numSamples": 1000, "numSeries": 4, "numChunks": 14, "numFutureSamples": 9,
                            "numTombstones": 3}
    # A known key that was absent goes right after its upstream predecessor.
    assert list(out["stats"]) == ["numSamples", "numSeries", "numChunks", "numTombstones", "numFutureSamples"]
    assert out["compaction"]["mystery"] == {"a": True}
    assert out["thanos"]["new_thing"] == "x"
    assert out["thanos"]["downsample"] == {"resolution": 0, "extra": 1}
    assert "segment_files" not in out["thanos"]
    assert out["thanos"]["labels"] == {"cluster": "eu1", "replica": "0", "zone": "a"}


def test_removing_the_thanos_section_and_prometheus_style() -> None:
    meta = BlockMeta.from_json(THANOS_EXAMPLE.encode())
    meta.thanos = None
    out = meta.to_json("prometheus")
    assert not out.endswith(b"\n")
    assert "thanos" not in json.loads(out)


def test_labels_null_absent_and_empty_values() -> None:
    base = json.loads(THANOS_EXAMPLE)
    base["thanos"]["labels"] = None
    meta = BlockMeta.from_json(json.dumps(base))
    assert meta.thanos is not None and meta.thanos.labels == {} and meta.external_labels == ()
    assert json.loads(meta.to_json())["thanos"]["labels"] is None
    del base["thanos"]["labels"]
    assert BlockMeta.from_json(json.dumps(base)).external_labels == ()
    base["thanos"]["labels"] = {"b": "1", "a": "", "c": "2"}
    assert BlockMeta.from_json(json.dumps(base)).external_labels == (("b", "1"), ("c", "2"))


def test_resolution_property_and_version_zero() -> None:
    base = json.loads(THANOS_EXAMPLE)
    base["thanos"]["downsample"]["resolution"] = 3600000
    del base["thanos"]["version"]
    meta = BlockMeta.from_json(json.dumps(base))
    assert meta.resolution == 3600000
    assert meta.thanos is not None and meta.thanos.version == 0
    assert "version" not in json.loads(meta.to_json())["thanos"]


def test_go_escaping() -> None:
    meta = BlockMeta(ulid="01HQ0000000000000000000003", min_time=0, max_time=1,
                     thanos=ThanosMeta(labels={"q": "a<b>&c"}))
    text = meta.to_json().decode()
    assert '"a\\u003cb\\u003e\\u0026c"' in text
    assert BlockMeta.from_json(text).external_labels == (("q", "a<b>&c"),)


def test_accepts_go_zero_values_and_nulls() -> None:
    doc = {"ulid": "01HQ0000000000000000000003", "minTime": 0, "maxTime": 0, "version": 1,
           "stats": None, "compaction": None, "thanos": None}
    meta = BlockMeta.from_json(json.dumps(doc))
    assert meta.stats == BlockStats() and meta.level == 0 and meta.thanos is None


def test_go_time_helpers() -> None:
    assert parse_go_time(ZERO_TIME) is None
    assert parse_go_time("1970-01-01T00:00:01Z") == 1_000_000_000
    assert parse_go_time("1970-01-01T01:00:00.5+01:00") == 500_000_000
    assert format_go_time_ns(1_704_067_200_123_456_789) == "2024-01-01T00:00:00.123456789Z"
    assert format_go_time_ns(1_704_067_200_120_000_000) == "2024-01-01T00:00:00.12Z"
    assert format_go_time_ns(1_704_067_200_000_000_000) == "2024-01-01T00:00:00Z"
    t = ThanosMeta()
    assert t.upload_time_ms is None
    t.set_upload_time_now()
    assert t.upload_time_ms is not None and t.upload_time.endswith("Z")


def _with(path: str, value: Any) -> bytes:
    doc = json.loads(THANOS_EXAMPLE)
    node = doc
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[p]
    if value is _DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return json.dumps(doc).encode()


_DELETE = object()

GARBAGE = [
    pytest.param(b"", id="empty"),
    pytest.param(b"{not json", id="not-json"),
    pytest.param(b"\xff\xfe", id="not-utf8"),
    pytest.param(b"[1, 2]", id="array"),
    pytest.param(b"null", id="null"),
    pytest.param(_with("version", 2), id="version-2"),
    pytest.param(_with("version", _DELETE), id="version-missing"),
    pytest.param(_with("version", "1"), id="version-string"),
    pytest.param(_with("ulid", _DELETE), id="ulid-missing"),
    pytest.param(_with("ulid", "not-a-ulid"), id="ulid-bad"),
    pytest.param(_with("minTime", "0"), id="mintime-string"),
    pytest.param(_with("maxTime", 1.5), id="maxtime-float"),
    pytest.param(_with("minTime", _DELETE), id="mintime-missing"),
    pytest.param(_with("stats", []), id="stats-array"),
    pytest.param(_with("stats.numSamples", -1), id="stats-negative"),
    pytest.param(_with("stats.numSeries", True), id="stats-bool"),
    pytest.param(_with("compaction.level", "3"), id="level-string"),
    pytest.param(_with("compaction.sources", ["nope"]), id="sources-bad-ulid"),
    pytest.param(_with("compaction.parents", [1]), id="parents-not-objects"),
    pytest.param(_with("thanos", "x"), id="thanos-string"),
    pytest.param(_with("thanos.version", 2), id="thanos-version-2"),
    pytest.param(_with("thanos.downsample.resolution", 1234), id="resolution-unknown"),
    pytest.param(_with("thanos.downsample.resolution", "0"), id="resolution-string"),
    pytest.param(_with("thanos.downsample", 5), id="downsample-number"),
    pytest.param(_with("thanos.labels", ["a"]), id="labels-array"),
    pytest.param(_with("thanos.labels", {"a": 1}), id="label-value-int"),
    pytest.param(_with("thanos.source", 7), id="source-int"),
    pytest.param(_with("thanos.files", {"a": 1}), id="files-object"),
    pytest.param(_with("thanos.files", [{"rel_path": "index", "size_bytes": "9"}]), id="file-size-string"),
    pytest.param(_with("thanos.segment_files", [1]), id="segment-files-ints"),
    pytest.param(_with("thanos.upload_time", "yesterday"), id="upload-time-bad"),
    pytest.param(_with("thanos.index_stats.series_max_size", -5), id="index-stats-negative"),
]


@pytest.mark.parametrize("data", GARBAGE)
def test_garbage_is_rejected_with_location(data: bytes) -> None:
    with pytest.raises(CorruptBlockError) as info:
        BlockMeta.from_json(data, block="01HQ0000000000000000000003")
    err = info.value
    assert err.block == "01HQ0000000000000000000003" and err.file == "meta.json"
    assert "\n" not in str(err)


def test_read_and_write_meta_file(tmp_path: Path) -> None:
    block = tmp_path / "01M8DM1M3RHBCQWWCP6Z2BDZXN"
    block.mkdir()
    (block / "meta.json").write_text(PROMETHEUS_EXAMPLE)
    meta = read_meta_file(block)
    assert meta == read_meta_file(block / "meta.json")
    meta.thanos = ThanosMeta(labels={"a": "b"})
    write_meta_file(block, meta)
    assert (block / "meta.json").read_bytes() == meta.to_json()
    assert [p.name for p in block.iterdir()] == ["meta.json"]  # no temp files left
    write_meta_file(block / "meta.json", meta, style="prometheus")
    assert not (block / "meta.json").read_bytes().endswith(b"\n")
    (block / "meta.json").write_text("{}")
    with pytest.raises(CorruptBlockError) as info:
        read_meta_file(block)
    assert info.value.block == "01M8DM1M3RHBCQWWCP6Z2BDZXN"
    with pytest.raises(NotFoundError):
        read_meta_file(tmp_path / "missing")


def test_copy_is_deep() -> None:
    meta = BlockMeta.from_json(THANOS_EXAMPLE)
    other = meta.copy()
    assert other == meta
    assert other.thanos is not None and meta.thanos is not None
    other.thanos.labels["x"] = "y"
    assert "x" not in meta.thanos.labels
