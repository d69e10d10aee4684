"""StoreAPI requests in, validated plain values out (FORMATS.md §9.3); chunk encodings translated (§5.5)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from google.protobuf import any_pb2

from thanostools._proto.store.hintspb import hints_pb2
from thanostools._proto.store.labelpb import types_pb2 as label_pb2
from thanostools._proto.store.storepb import rpc_pb2, types_pb2
from thanostools.core.chunkenc.aggr import Aggr
from thanostools.core.errors import ParseError, ThanosToolsError
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher, MatchType
from thanostools.core.sources.decode import TSDB_ENCODINGS

_MATCH_TYPES = {
    types_pb2.LabelMatcher.EQ: MatchType.EQ,
    types_pb2.LabelMatcher.NEQ: MatchType.NEQ,
    types_pb2.LabelMatcher.RE: MatchType.RE,
    types_pb2.LabelMatcher.NRE: MatchType.NRE,
}
# storepb Aggr value -> position inside an AggrChunk (RAW asks for nothing extra, as in Thanos).
_AGGRS: dict[int, Aggr] = {rpc_pb2.COUNT: Aggr.COUNT, rpc_pb2.SUM: Aggr.SUM, rpc_pb2.MIN: Aggr.MIN,
                           rpc_pb2.MAX: Aggr.MAX, rpc_pb2.COUNTER: Aggr.COUNTER}
# TSDB chunk encoding byte -> storepb Chunk.Encoding (the client's table, inverted).
CHUNK_TYPES = {enc: typ for typ, enc in TSDB_ENCODINGS.items()}
AGGR_FIELDS = {Aggr.COUNT: "count", Aggr.SUM: "sum", Aggr.MIN: "min", Aggr.MAX: "max", Aggr.COUNTER: "counter"}
_HINTS_PREFIX = "type.googleapis.com/"


class InvalidRequest(ThanosToolsError):
    """The request cannot be served as asked (gRPC INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class Shard:
    index: int
    total: int
    by: bool
    labels: frozenset[str]


@dataclass(frozen=True)
class SeriesQuery:
    mint: int
    maxt: int
    matchers: tuple[Matcher, ...]
    block_matchers: tuple[Matcher, ...]
    max_resolution: int
    aggregates: tuple[Aggr, ...]
    abort: bool
    skip_chunks: bool
    shard: Shard | None
    without: frozenset[str]
    limit: int
    batch_size: int


@dataclass(frozen=True)
class LabelQuery:
    mint: int
    maxt: int
    matchers: tuple[Matcher, ...]
    block_matchers: tuple[Matcher, ...]
    abort: bool
    without: frozenset[str]
    limit: int


def matchers_from_proto(items: Iterable[types_pb2.LabelMatcher], what: str = "matcher") -> tuple[Matcher, ...]:
    out = []
    for m in items:
        kind = _MATCH_TYPES.get(m.type)
        if kind is None:
            raise InvalidRequest(f"{what} on {m.name!r}: unknown type {m.type}")
        if not m.name:
            raise InvalidRequest(f"{what} with an empty label name")
        try:
            out.append(Matcher(kind, m.name, m.value))
        except ParseError as exc:
            raise InvalidRequest(f"{what} on {m.name!r}: {exc.reason}") from None
    return tuple(out)


def labels_to_proto(labels: Labels) -> list[label_pb2.Label]:
    return [label_pb2.Label(name=n, value=v) for n, v in labels]


def _abort(disabled: bool, strategy: int) -> bool:
    if strategy not in (types_pb2.WARN, types_pb2.ABORT):
        raise InvalidRequest(f"unknown partial_response_strategy {strategy}")
    return disabled or strategy == types_pb2.ABORT


def _time_range(mint: int, maxt: int) -> tuple[int, int]:
    if mint > maxt:
        raise InvalidRequest(f"min time {mint} is after max time {maxt}")
    return mint, maxt


def _limit(limit: int) -> int:
    if limit < 0:
        raise InvalidRequest(f"limit must not be negative, got {limit}")
    return limit


def _block_matchers(hints: any_pb2.Any, message: type[hints_pb2.SeriesRequestHints] |
                    type[hints_pb2.LabelNamesRequestHints] | type[hints_pb2.LabelValuesRequestHints],
                    ) -> tuple[Matcher, ...]:
    """Block matchers from request hints of the expected type; other hint types are ignored."""
    if hints.type_url != _HINTS_PREFIX + message.DESCRIPTOR.full_name:
        return ()
    msg = message()
    try:
        msg.ParseFromString(hints.value)
    except Exception:
        raise InvalidRequest(f"hints: cannot decode {message.DESCRIPTOR.full_name}") from None
    return matchers_from_proto(msg.block_matchers, "block matcher")


def _shard(info: rpc_pb2.ShardInfo) -> Shard | None:
    if info.total_shards < 1:
        return None
    if not 0 <= info.shard_index < info.total_shards:
        raise InvalidRequest(f"shard index {info.shard_index} outside 0..{info.total_shards - 1}")
    return Shard(info.shard_index, info.total_shards, info.by, frozenset(info.labels))


def _aggregates(values: Sequence[int]) -> tuple[Aggr, ...]:
    out: list[Aggr] = []
    for v in values:
        if v == rpc_pb2.RAW:
            continue
        a = _AGGRS.get(v)
        if a is None:
            raise InvalidRequest(f"unknown aggregate {v}")
        if a not in out:
            out.append(a)
    return tuple(out)


def series_query(req: rpc_pb2.SeriesRequest) -> SeriesQuery:
    mint, maxt = _time_range(req.min_time, req.max_time)
    if req.max_resolution_window < 0:
        raise InvalidRequest(f"max_resolution_window must not be negative, got {req.max_resolution_window}")
    return SeriesQuery(
        mint=mint, maxt=maxt,
        matchers=matchers_from_proto(req.matchers),
        block_matchers=_block_matchers(req.hints, hints_pb2.SeriesRequestHints) if req.HasField("hints") else (),
        max_resolution=req.max_resolution_window,
        aggregates=_aggregates(req.aggregates),
        abort=_abort(req.partial_response_disabled, req.partial_response_strategy),
        skip_chunks=req.skip_chunks,
        shard=_shard(req.shard_info) if req.HasField("shard_info") else None,
        without=frozenset(req.without_replica_labels),
        limit=_limit(req.limit),
        batch_size=max(1, req.response_batch_size),
    )


def label_names_query(req: rpc_pb2.LabelNamesRequest) -> LabelQuery:
    mint, maxt = _time_range(req.start, req.end)
    return LabelQuery(
        mint=mint, maxt=maxt, matchers=matchers_from_proto(req.matchers),
        block_matchers=_block_matchers(req.hints, hints_pb2.LabelNamesRequestHints) if req.HasField("hints") else (),
        abort=_abort(req.partial_response_disabled, req.partial_response_strategy),
        without=frozenset(req.without_replica_labels), limit=_limit(req.limit),
    )


def label_values_query(req: rpc_pb2.LabelValuesRequest) -> LabelQuery:
    if not req.label:
        raise InvalidRequest("label name parameter cannot be empty")
    mint, maxt = _time_range(req.start, req.end)
    return LabelQuery(
        mint=mint, maxt=maxt, matchers=matchers_from_proto(req.matchers),
        block_matchers=_block_matchers(req.hints, hints_pb2.LabelValuesRequestHints)
        if req.HasField("hints") else (),
        abort=_abort(req.partial_response_disabled, req.partial_response_strategy),
        without=frozenset(req.without_replica_labels), limit=_limit(req.limit),
    )


def pack_any(message: hints_pb2.SeriesResponseHints | hints_pb2.LabelNamesResponseHints |
             hints_pb2.LabelValuesResponseHints) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(message)
    return out
