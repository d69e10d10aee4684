"""The committed gRPC/protobuf modules are what ``python -m thanostools._proto.generate`` makes now,
and the messages carry Thanos' package names, field numbers and descriptor file names (FORMATS.md §9)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from thanostools._proto import generate

pytest.importorskip("grpc_tools")

# Lines that only record the protoc/grpcio-tools version used.
_VERSION_LINES = re.compile(r"^(# Protobuf Python Version: .*|GRPC_GENERATED_VERSION = .*|    \d+,)$", re.M)


def _generated(root: Path) -> dict[str, str]:
    tops = {f.split("/")[0] for f in generate.proto_files()}
    return {p.relative_to(root).as_posix(): _VERSION_LINES.sub("<version>", p.read_text())
            for top in tops for p in sorted((root / top).rglob("*")) if p.is_file() and p.suffix in (".py", ".pyi")}


def test_committed_code_is_fresh(tmp_path: Path) -> None:
    generate.generate(tmp_path)
    fresh = _generated(tmp_path)
    committed = _generated(generate.PACKAGE_DIR)
    assert fresh, "nothing was generated"
    stale = sorted(k for k in fresh.keys() | committed.keys() if fresh.get(k) != committed.get(k))
    assert not stale, f"regenerate with `python -m thanostools._proto.generate`: {stale}"


def test_descriptor_names_match_upstream() -> None:
    from thanostools._proto.info.infopb import rpc_pb2 as info_pb2
    from thanostools._proto.store.hintspb import hints_pb2
    from thanostools._proto.store.labelpb import types_pb2 as label_pb2
    from thanostools._proto.store.storepb import rpc_pb2, types_pb2

    assert rpc_pb2.DESCRIPTOR.name == "store/storepb/rpc.proto"
    assert info_pb2.DESCRIPTOR.name == "info/infopb/rpc.proto"
    assert hints_pb2.DESCRIPTOR.name == "store/hintspb/hints.proto"
    assert label_pb2.DESCRIPTOR.name == "store/labelpb/types.proto"
    assert types_pb2.DESCRIPTOR.name == "store/storepb/types.proto"
    store = rpc_pb2.DESCRIPTOR.services_by_name["Store"]
    assert store.full_name == "thanos.Store"
    assert {m.name: (m.input_type.full_name, m.output_type.full_name) for m in store.methods} == {
        "Info": ("thanos.InfoRequest", "thanos.InfoResponse"),
        "Series": ("thanos.SeriesRequest", "thanos.SeriesResponse"),
        "LabelNames": ("thanos.LabelNamesRequest", "thanos.LabelNamesResponse"),
        "LabelValues": ("thanos.LabelValuesRequest", "thanos.LabelValuesResponse"),
    }
    assert info_pb2.DESCRIPTOR.services_by_name["Info"].full_name == "thanos.info.Info"

    def numbers(message: object) -> dict[str, int]:
        return {f.name: f.number for f in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]

    assert numbers(rpc_pb2.SeriesRequest) == {
        "min_time": 1, "max_time": 2, "matchers": 3, "max_resolution_window": 4, "aggregates": 5,
        "partial_response_disabled": 6, "partial_response_strategy": 7, "skip_chunks": 8, "hints": 9, "step": 10,
        "range": 11, "query_hints": 12, "shard_info": 13, "without_replica_labels": 14, "limit": 15,
        "response_batch_size": 16}
    assert numbers(rpc_pb2.SeriesResponse) == {"series": 1, "warning": 2, "hints": 3, "batch": 4}
    assert numbers(types_pb2.AggrChunk) == {"min_time": 1, "max_time": 2, "raw": 3, "count": 4, "sum": 5, "min": 6,
                                            "max": 7, "counter": 8}
    assert numbers(types_pb2.Chunk) == {"type": 1, "data": 2, "hash": 3}
    assert numbers(info_pb2.StoreInfo) == {"min_time": 1, "max_time": 2, "supports_sharding": 3,
                                           "supports_without_replica_labels": 5, "tsdb_infos": 6,
                                           "supports_projections": 7}
    assert numbers(info_pb2.InfoResponse)["ComponentType"] == 2
    assert numbers(hints_pb2.QueryStats)["merge_duration"] == 22
    assert [v.number for v in types_pb2.Chunk.Encoding.DESCRIPTOR.values] == [0, 1, 2]
    assert dict(rpc_pb2.Aggr.items()) == {"RAW": 0, "COUNT": 1, "SUM": 2, "MIN": 3, "MAX": 4, "COUNTER": 5}
    # A request encoded by hand the way Go's gogoproto marshaller lays it out.
    req = rpc_pb2.SeriesRequest(min_time=1, max_time=2, aggregates=[rpc_pb2.COUNT, rpc_pb2.SUM])
    assert req.SerializeToString() == bytes.fromhex("0801" "1002" "2a020102")
