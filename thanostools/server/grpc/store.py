"""The ``thanos.Store`` and ``thanos.info.Info`` services on grpc.aio, over the served blocks.

Request handling is async glue only: parsing is cheap and done inline, everything that touches
blocks runs in the thread pool, and Series frames are built there a batch at a time. Errors map to
gRPC statuses once, here: bad requests → INVALID_ARGUMENT, block failures under ABORT → ABORTED,
not ready → UNAVAILABLE, anything unexpected → INTERNAL (logged); the server itself never fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Executor
from typing import Any, TypeVar

import grpc

from thanostools._proto.info.infopb import rpc_pb2 as info_pb2
from thanostools._proto.store.hintspb import hints_pb2
from thanostools._proto.store.storepb import rpc_pb2
from thanostools.core.matchers import Matcher
from thanostools.server.authz import Authorizer, Forbidden
from thanostools.server.grpc import info as infos
from thanostools.server.grpc import labels as label_api
from thanostools.server.grpc.blocks import BlockSet, PartialResponseAbort
from thanostools.server.grpc.convert import (
    InvalidRequest,
    label_names_query,
    label_values_query,
    pack_any,
    series_query,
)
from thanostools.server.grpc.series import frames, plan_series
from thanostools.server.querylog import QueryLog, QueryLogEntry

log = logging.getLogger("thanostools.server.grpc")
security_log = logging.getLogger("thanostools.security")

STORE_SERVICE = "thanos.Store"
INFO_SERVICE = "thanos.info.Info"
FRAMES_PER_HOP = 256  # Series frames built per trip to the thread pool

T = TypeVar("T")


class _Status(Exception):
    def __init__(self, code: Any, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "error"


class StoreService:
    """Handlers for thanos.Store (Series, LabelNames, LabelValues, legacy Info) and thanos.info.Info."""

    def __init__(self, blockset: BlockSet, pool: Executor, ready: Callable[[], bool] | None = None, *,
                 authz: Authorizer | None = None, query_log: QueryLog | None = None) -> None:
        self.blockset = blockset
        self.pool = pool
        self.ready = ready
        self.authz = authz or Authorizer(None)
        self.query_log = query_log

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, functools.partial(fn, *args))

    async def _guarded(self, method: str, work: Callable[[], Awaitable[T]], context: Any) -> T:
        """Run ``work`` and turn every failure into one status (never an exception escaping the handler)."""
        try:
            return await work()
        except _Status as exc:
            status = exc
        except InvalidRequest as exc:
            status = _Status(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except PartialResponseAbort as exc:
            status = _Status(grpc.StatusCode.ABORTED, str(exc))
        except Exception as exc:
            log.error("%s failed: %s", method, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            status = _Status(grpc.StatusCode.INTERNAL, f"{method}: {type(exc).__name__}: {exc}")
        await context.abort(status.code, _one_line(status.message))
        raise AssertionError("unreachable: context.abort raises")

    def _check_ready(self) -> None:
        if self.ready is not None and not self.ready():
            raise _Status(grpc.StatusCode.UNAVAILABLE, "Not ready")

    def _tenant(self, method: str, matchers: Sequence[Matcher], context: Any) -> tuple[Matcher, ...]:
        """The caller's policy matchers (its identity is the client certificate's CN); logs the call."""
        identity = peer_common_name(context)
        if self.query_log is not None:
            self.query_log.write(QueryLogEntry(endpoint=f"grpc/{method}", client=str(context.peer()), user=identity,
                                               query="{" + ",".join(str(m) for m in matchers) + "}"))
        try:
            return self.authz.matchers_for(identity)
        except Forbidden as exc:
            security_log.warning("refused request", extra={"kv": {
                "security": "forbidden", "client": str(context.peer()), "method": method, "reason": str(exc)}})
            raise _Status(grpc.StatusCode.PERMISSION_DENIED, str(exc)) from None

    # --- info ------------------------------------------------------------------------------------

    async def info(self, request: info_pb2.InfoRequest, context: Any) -> info_pb2.InfoResponse:
        async def work() -> info_pb2.InfoResponse:
            self._check_ready()
            return await self._run(lambda: infos.info_response(self.blockset.current()))

        return await self._guarded("Info", work, context)

    async def legacy_info(self, request: rpc_pb2.InfoRequest, context: Any) -> rpc_pb2.InfoResponse:
        async def work() -> rpc_pb2.InfoResponse:
            self._check_ready()
            return await self._run(lambda: infos.legacy_info_response(self.blockset.current()))

        return await self._guarded("Store/Info", work, context)

    # --- series ----------------------------------------------------------------------------------

    async def series(self, request: rpc_pb2.SeriesRequest, context: Any) -> AsyncIterator[bytes]:
        async def start() -> Iterator[bytes]:
            q = series_query(request)
            q = dataclasses.replace(q, matchers=q.matchers + self._tenant("Series", q.matchers, context))
            plan = await self._run(plan_series, self.blockset, q)
            return frames(plan, q)

        it = await self._guarded("Series", start, context)

        async def hop() -> list[bytes]:
            return await self._run(lambda: list(itertools.islice(it, FRAMES_PER_HOP)))

        while True:
            batch = await self._guarded("Series", hop, context)
            if not batch:
                return
            for frame in batch:
                yield frame

    # --- labels ----------------------------------------------------------------------------------

    async def label_names(self, request: rpc_pb2.LabelNamesRequest, context: Any) -> rpc_pb2.LabelNamesResponse:
        async def work() -> rpc_pb2.LabelNamesResponse:
            q = label_names_query(request)
            q = dataclasses.replace(q, matchers=q.matchers + self._tenant("LabelNames", q.matchers, context))
            res = await self._run(label_api.label_names, self.blockset, q)
            hints = hints_pb2.LabelNamesResponseHints(queried_blocks=[hints_pb2.Block(id=u) for u in res.queried])
            return rpc_pb2.LabelNamesResponse(names=res.values, warnings=res.warnings, hints=pack_any(hints))

        return await self._guarded("LabelNames", work, context)

    async def label_values(self, request: rpc_pb2.LabelValuesRequest, context: Any,
                           ) -> rpc_pb2.LabelValuesResponse:
        async def work() -> rpc_pb2.LabelValuesResponse:
            q = label_values_query(request)
            q = dataclasses.replace(q, matchers=q.matchers + self._tenant("LabelValues", q.matchers, context))
            res = await self._run(label_api.label_values, self.blockset, q, request.label)
            hints = hints_pb2.LabelValuesResponseHints(queried_blocks=[hints_pb2.Block(id=u) for u in res.queried])
            return rpc_pb2.LabelValuesResponse(values=res.values, warnings=res.warnings, hints=pack_any(hints))

        return await self._guarded("LabelValues", work, context)

    # --- registration ----------------------------------------------------------------------------

    def handlers(self) -> list[Any]:
        """Generic handlers for both services (method paths as in FORMATS.md §9.1)."""

        def unary(fn: Any, req: Any, resp: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=req.FromString,
                                                       response_serializer=resp.SerializeToString)

        store = grpc.method_handlers_generic_handler(STORE_SERVICE, {
            "Info": unary(self.legacy_info, rpc_pb2.InfoRequest, rpc_pb2.InfoResponse),
            "Series": grpc.unary_stream_rpc_method_handler(
                self.series, request_deserializer=rpc_pb2.SeriesRequest.FromString,
                response_serializer=_encoded),  # frames come encoded (server/grpc/wire.py)
            "LabelNames": unary(self.label_names, rpc_pb2.LabelNamesRequest, rpc_pb2.LabelNamesResponse),
            "LabelValues": unary(self.label_values, rpc_pb2.LabelValuesRequest, rpc_pb2.LabelValuesResponse),
        })
        info = grpc.method_handlers_generic_handler(INFO_SERVICE, {
            "Info": unary(self.info, info_pb2.InfoRequest, info_pb2.InfoResponse),
        })
        return [store, info]


def _encoded(frame: bytes) -> bytes:
    return frame


def peer_common_name(context: Any) -> str:
    """The CN of the client certificate gRPC verified ("" without mTLS)."""
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode("utf-8", "replace") if names else ""
