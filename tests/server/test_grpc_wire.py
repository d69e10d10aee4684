"""Series frames written by our kernel are byte for byte what protobuf serialisation of the same messages gives."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from thanostools._proto.store.labelpb import types_pb2 as label_pb2
from thanostools._proto.store.storepb import rpc_pb2, types_pb2
from thanostools.core.labels import Labels
from thanostools.server.grpc.wire import CHUNK_FIELDS, LabelEncoder, encode_frames

Fields = dict[int, tuple[int, int, types_pb2.Chunk.Encoding]]  # field -> (start, end, storepb chunk type)
Chunk = tuple[int, int, Fields]
ENCODINGS = (types_pb2.Chunk.XOR, types_pb2.Chunk.HISTOGRAM, types_pb2.Chunk.FLOAT_HISTOGRAM)  # index = value


def _random_series(seed: int) -> tuple[NDArray[np.uint8], list[tuple[Labels, list[Chunk]]]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, 20000, dtype=np.uint8)
    series: list[tuple[Labels, list[Chunk]]] = []
    for i in range(int(rng.integers(1, 12))):
        labels = (("__name__", "m"), ("e", "") if i % 3 == 0 else ("i", "\u00e9" * i), ("z", str(i)))
        chunks: list[Chunk] = []
        for _ in range(int(rng.integers(0, 5))):
            fields: Fields = {}
            for f in range(len(CHUNK_FIELDS)):
                if rng.random() < 0.5:
                    a = int(rng.integers(0, 19000))
                    fields[f] = (a, a + int(rng.choice([0, 1, 127, 128, 300])), ENCODINGS[int(rng.choice([0, 1, 2]))])
            chunks.append((int(rng.choice([0, -5, -(2**62), 1_795_731_000_007])), int(rng.choice([0, 7, 2**40])),
                           fields))
        series.append((labels, chunks))
    return data, series


def _proto_series(data: NDArray[np.uint8], labels: Labels, chunks: list[Chunk]) -> types_pb2.Series:
    out = []
    for lo, hi, fields in chunks:
        ac = types_pb2.AggrChunk(min_time=lo, max_time=hi)
        for f, (a, b, t) in fields.items():
            getattr(ac, CHUNK_FIELDS[f]).CopyFrom(types_pb2.Chunk(type=t, data=data[a:b].tobytes()))
        out.append(ac)
    return types_pb2.Series(labels=[label_pb2.Label(name=n, value=v) for n, v in labels], chunks=out)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("batch_size", [1, 2, 5, 64])
def test_frames_equal_protobuf_serialisation(seed: int, batch_size: int) -> None:
    data, series = _random_series(seed)
    encoder = LabelEncoder()
    chunks = [c for _, cs in series for c in cs]
    starts = np.zeros((len(chunks), len(CHUNK_FIELDS)), np.int64)
    ends = np.zeros_like(starts)
    types = np.full_like(starts, -1)
    for k, (_, _, fields) in enumerate(chunks):
        for f, (a, b, t) in fields.items():
            starts[k, f], ends[k, f], types[k, f] = a, b, t
    got = encode_frames([encoder.encode(lab) for lab, _ in series],
                        np.cumsum([0] + [len(cs) for _, cs in series]), np.array([c[0] for c in chunks], np.int64),
                        np.array([c[1] for c in chunks], np.int64), starts, ends, types, data, batch_size)
    protos = [_proto_series(data, *s) for s in series]
    if batch_size == 1:
        want = [rpc_pb2.SeriesResponse(series=p).SerializeToString() for p in protos]
    else:
        want = [rpc_pb2.SeriesResponse(batch=rpc_pb2.SeriesBatch(series=protos[i : i + batch_size])).SerializeToString()
                for i in range(0, len(protos), batch_size)]
    assert got == want
    assert [rpc_pb2.SeriesResponse.FromString(f) for f in got]  # and they parse
