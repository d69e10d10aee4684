"""A ``Querier`` over remote Thanos StoreAPI endpoints (sidecars, store gateways, another ``serve``).

Like a Thanos querier (FORMATS.md §9.7): Info tells each endpoint's label sets and time range, so
endpoints that cannot match are skipped; Series calls go to the rest concurrently, each with its own
timeout; returned chunks are decoded here (raw XOR, or the aggregates of §7.8 for downsampled data, and raw
native-histogram chunks for readers that take histograms). A failing endpoint becomes a warning under partial
response and an error otherwise.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from thanostools._proto.info.infopb import rpc_pb2 as info_pb2
from thanostools._proto.store.storepb import rpc_pb2, types_pb2
from thanostools.core.chunkenc.aggr import Aggr
from thanostools.core.errors import ConfigError, SourceError
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher, MatchType
from thanostools.core.partial import PartialResponse
from thanostools.core.querier import aggregate_for, effective_resolution
from thanostools.core.series import DEFAULT_BATCH_SAMPLES, LabelResult, Querier, SelectHints, SeriesStream
from thanostools.core.sources.decode import decode_series

T = TypeVar("T")

INFO_PATH = "/thanos.info.Info/Info"
LEGACY_INFO_PATH = "/thanos.Store/Info"
SERIES_PATH = "/thanos.Store/Series"
LABEL_NAMES_PATH = "/thanos.Store/LabelNames"
LABEL_VALUES_PATH = "/thanos.Store/LabelValues"
INFO_TIMEOUT_S = 5.0
INFO_TTL_S = 5.0

_MATCH_TYPES = {MatchType.EQ: types_pb2.LabelMatcher.EQ, MatchType.NEQ: types_pb2.LabelMatcher.NEQ,
                MatchType.RE: types_pb2.LabelMatcher.RE, MatchType.NRE: types_pb2.LabelMatcher.NRE}
_STOREPB_AGGR = {Aggr.COUNT: rpc_pb2.COUNT, Aggr.SUM: rpc_pb2.SUM, Aggr.MIN: rpc_pb2.MIN, Aggr.MAX: rpc_pb2.MAX,
                 Aggr.COUNTER: rpc_pb2.COUNTER}


@dataclass(frozen=True)
class RemoteTLS:
    """Client TLS: ``ca_file`` verifies the server; ``cert_file``/``key_file`` are the client cert for mTLS."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None


@dataclass(frozen=True)
class EndpointInfo:
    address: str
    label_sets: tuple[Labels, ...]
    min_time: int
    max_time: int
    has_store: bool

    def may_match(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> bool:
        """Whether a selection can touch this endpoint (time range and external-label pre-filter)."""
        if not self.has_store or self.min_time > maxt or self.max_time < mint:
            return False
        if not self.label_sets:
            return True
        return any(_set_matches(dict(ls), matchers) for ls in self.label_sets)


def _set_matches(ext: dict[str, str], matchers: Sequence[Matcher]) -> bool:
    """Only matchers on names the label set has can rule it out (Thanos ``LabelSetsMatch``)."""
    return all(m.matches(ext[m.name]) for m in matchers if m.name in ext)


def _labels(items: Any) -> Labels:
    return tuple(sorted((lab.name, lab.value) for lab in items if lab.value))


def matchers_to_proto(matchers: Sequence[Matcher]) -> list[types_pb2.LabelMatcher]:
    return [types_pb2.LabelMatcher(type=_MATCH_TYPES[m.type], name=m.name, value=m.value) for m in matchers]


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"gRPC client TLS file {path}: {exc.strerror or exc}") from None


def _rpc_error(address: str, exc: grpc.RpcError) -> str:
    if not isinstance(exc, grpc.Call):  # raised by our own code rather than by a call
        return f"endpoint {address}: UNKNOWN: {' '.join(str(exc).split())}"
    code = exc.code()
    details = exc.details()
    name = code.name if code is not None else "UNKNOWN"
    return f"endpoint {address}: {name}: {' '.join(str(details).split())}"


class _Endpoint:
    """One channel and its cached Info."""

    def __init__(self, address: str, tls: RemoteTLS | None) -> None:
        self.address = address
        options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", -1)]
        if tls is None:
            self.channel = grpc.insecure_channel(address, options=options)
        else:
            creds = grpc.ssl_channel_credentials(_read(tls.ca_file), _read(tls.key_file), _read(tls.cert_file))
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            self.channel = grpc.secure_channel(address, creds, options=options)
        self.info: EndpointInfo | None = None
        self.info_at = 0.0
        self.lock = threading.Lock()

    def unary(self, path: str, request: Any, response: Any, timeout: float) -> Any:
        call = self.channel.unary_unary(path, request_serializer=type(request).SerializeToString,
                                        response_deserializer=response.FromString)
        return call(request, timeout=timeout)

    def series(self, request: rpc_pb2.SeriesRequest, timeout: float) -> list[rpc_pb2.SeriesResponse]:
        call = self.channel.unary_stream(SERIES_PATH, request_serializer=rpc_pb2.SeriesRequest.SerializeToString,
                                         response_deserializer=rpc_pb2.SeriesResponse.FromString)
        return list(call(request, timeout=timeout))

    def fetch_info(self, timeout: float) -> EndpointInfo:
        try:
            resp = self.unary(INFO_PATH, info_pb2.InfoRequest(), info_pb2.InfoResponse, timeout)
            sets = tuple(_labels(ls.labels) for ls in resp.label_sets)
            has_store = resp.HasField("store")
            return EndpointInfo(self.address, sets, resp.store.min_time, resp.store.max_time, has_store)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
        legacy = self.unary(LEGACY_INFO_PATH, rpc_pb2.InfoRequest(), rpc_pb2.InfoResponse, timeout)
        sets = tuple(_labels(ls.labels) for ls in legacy.label_sets)
        return EndpointInfo(self.address, sets, legacy.min_time, legacy.max_time, True)


class RemoteStoreQuerier(Querier):
    """``Querier`` over StoreAPI endpoints. Thread-safe; keeps one channel per endpoint until ``close()``.

    Native-histogram chunks come back in the batches' histogram part (as ``Block.select(histograms=True)``
    gives them); with ``histograms=False`` they are skipped with a warning, for readers that handle floats only.
    """

    def __init__(self, endpoints: list[str], *, timeout_s: float = 30.0, partial_response: bool = True,
                 tls: RemoteTLS | None = None, max_source_resolution_ms: int = 0, histograms: bool = True) -> None:
        if not endpoints:
            raise ConfigError("no StoreAPI endpoints given")
        if timeout_s <= 0:
            raise ConfigError(f"endpoint timeout must be positive, got {timeout_s}")
        self.timeout_s = timeout_s
        self.partial_response = partial_response
        self.max_source_resolution_ms = max_source_resolution_ms
        self.histograms = histograms
        self._endpoints = [_Endpoint(a, tls) for a in endpoints]
        self._pool = ThreadPoolExecutor(max_workers=min(32, len(endpoints)), thread_name_prefix="storeapi-client")

    def close(self) -> None:
        for ep in self._endpoints:
            ep.channel.close()
        self._pool.shutdown(wait=False)

    def __enter__(self) -> RemoteStoreQuerier:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- fan-out ---------------------------------------------------------------------------------

    def _fan(self, endpoints: Sequence[_Endpoint], call: Callable[[_Endpoint], T],
             ) -> tuple[list[tuple[_Endpoint, T]], list[str]]:
        """Call every endpoint concurrently -> (answers, warnings); a failing endpoint is left out or fails the
        call, as the partial-response policy says."""
        futures = [(ep, self._pool.submit(call, ep)) for ep in endpoints]
        answers: list[tuple[_Endpoint, T]] = []
        problems: list[str] = []
        for ep, fut in futures:
            try:
                answers.append((ep, fut.result()))
            except grpc.RpcError as exc:
                problems.append(_rpc_error(ep.address, exc))
            except SourceError as exc:
                problems.append(f"endpoint {ep.address}: {exc}")
        policy = PartialResponse(self.partial_response)
        return answers, [policy.source_failed(p, SourceError(p)) for p in problems]

    def _info(self, ep: _Endpoint) -> EndpointInfo:
        with ep.lock:
            if ep.info is not None and time.monotonic() - ep.info_at < INFO_TTL_S:
                return ep.info
        info = ep.fetch_info(min(self.timeout_s, INFO_TIMEOUT_S))
        with ep.lock:
            ep.info, ep.info_at = info, time.monotonic()
        return info

    def endpoint_infos(self) -> tuple[list[EndpointInfo], list[str]]:
        """Info of every endpoint that answered, and warnings for those that did not."""
        answers, warnings = self._fan(self._endpoints, self._info)
        return [info for _, info in answers], warnings

    def _candidates(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> tuple[list[_Endpoint], list[str]]:
        answers, warnings = self._fan(self._endpoints, self._info)
        return [ep for ep, info in answers if info.may_match(matchers, mint, maxt)], warnings

    def _strategy(self) -> types_pb2.PartialResponseStrategy:
        return types_pb2.WARN if self.partial_response else types_pb2.ABORT

    # --- select ----------------------------------------------------------------------------------

    def series_request(self, matchers: Sequence[Matcher], mint: int, maxt: int,
                       hints: SelectHints | None) -> rpc_pb2.SeriesRequest:
        func = hints.func if hints is not None else ""
        aggregate = aggregate_for(func)
        aggrs = [_STOREPB_AGGR[aggregate]] if isinstance(aggregate, Aggr) else [rpc_pb2.COUNT, rpc_pb2.SUM]
        req = rpc_pb2.SeriesRequest(
            min_time=mint, max_time=maxt, matchers=matchers_to_proto(matchers),
            max_resolution_window=effective_resolution(self.max_source_resolution_ms, hints),
            aggregates=aggrs, partial_response_strategy=self._strategy(),
            partial_response_disabled=not self.partial_response,
        )
        if hints is not None:
            req.step, req.range = hints.step, hints.range
            qh = req.query_hints
            qh.step_millis = hints.step
            qh.func.name = hints.func
            qh.range.millis = hints.range
            if hints.grouping or hints.by:
                qh.grouping.by = hints.by
                qh.grouping.labels.extend(hints.grouping)
        return req

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int, hints: SelectHints | None = None, *,
               batch_samples: int = DEFAULT_BATCH_SAMPLES) -> SeriesStream:
        """The endpoints' answers, decoded whole (the StoreAPI interleaves them by endpoint) and then split."""
        if mint > maxt:
            return SeriesStream()
        endpoints, warnings = self._candidates(matchers, mint, maxt)
        req = self.series_request(matchers, mint, maxt, hints)
        answers, problems = self._fan(endpoints, lambda ep: ep.series(req, self.timeout_s))
        warnings += problems
        chunks: dict[Labels, list[types_pb2.AggrChunk]] = defaultdict(list)
        for _, frames in answers:
            for frame in frames:
                kind = frame.WhichOneof("result")
                if kind == "series":
                    chunks[_labels(frame.series.labels)].extend(frame.series.chunks)
                elif kind == "batch":
                    for s in frame.batch.series:
                        chunks[_labels(s.labels)].extend(s.chunks)
                elif kind == "warning":
                    warnings.append(frame.warning)
        aggregate = aggregate_for(hints.func if hints is not None else "")
        batch, decode_warnings = decode_series(sorted(chunks.items()), aggregate, mint, maxt,
                                                 histograms=self.histograms)
        return SeriesStream.whole(batch, warnings + decode_warnings, batch_samples=batch_samples)

    # --- labels ----------------------------------------------------------------------------------

    def label_names(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        endpoints, warnings = self._candidates(matchers, mint, maxt)
        req = rpc_pb2.LabelNamesRequest(start=mint, end=maxt, matchers=matchers_to_proto(matchers),
                                        partial_response_strategy=self._strategy(),
                                        partial_response_disabled=not self.partial_response)
        answers, problems = self._fan(
            endpoints, lambda ep: ep.unary(LABEL_NAMES_PATH, req, rpc_pb2.LabelNamesResponse, self.timeout_s))
        names = {n for _, resp in answers for n in resp.names}
        return LabelResult(sorted(names), warnings + problems + [w for _, resp in answers for w in resp.warnings])

    def label_values(self, name: str, matchers: Sequence[Matcher], mint: int, maxt: int) -> LabelResult:
        endpoints, warnings = self._candidates(matchers, mint, maxt)
        req = rpc_pb2.LabelValuesRequest(label=name, start=mint, end=maxt, matchers=matchers_to_proto(matchers),
                                         partial_response_strategy=self._strategy(),
                                         partial_response_disabled=not self.partial_response)
        answers, problems = self._fan(
            endpoints, lambda ep: ep.unary(LABEL_VALUES_PATH, req, rpc_pb2.LabelValuesResponse, self.timeout_s))
        values = {v for _, resp in answers for v in resp.values}
        return LabelResult(sorted(values), warnings + problems + [w for _, resp in answers for w in resp.warnings])
