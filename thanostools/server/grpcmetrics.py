"""A grpc.aio interceptor counting StoreAPI calls by method and status code (``thanos_tools_grpc_calls_total``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter


class CallCounter(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, counter: Counter) -> None:
        self.counter = counter

    def _count(self, method: str, context: Any, failed: bool) -> None:
        code = context.code()
        name = code.name if code is not None else ("UNKNOWN" if failed else "OK")
        self.counter.labels(method, name).inc()

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        handler = await continuation(details)
        method = str(details.method)
        if handler is None:
            return None
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._unary(handler.unary_unary, method),
                                                       handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(self._stream(handler.unary_stream, method),
                                                        handler.request_deserializer, handler.response_serializer)
        return handler

    def _unary(self, inner: Callable[[Any, Any], Awaitable[Any]], method: str) -> Callable[[Any, Any], Awaitable[Any]]:
        async def call(request: Any, context: Any) -> Any:
            failed = True
            try:
                result = await inner(request, context)
                failed = False
                return result
            finally:
                self._count(method, context, failed)

        return call

    def _stream(self, inner: Callable[[Any, Any], AsyncIterator[Any]], method: str,
                ) -> Callable[[Any, Any], AsyncIterator[Any]]:
        async def call(request: Any, context: Any) -> AsyncIterator[Any]:
            failed = True
            try:
                async for item in inner(request, context):
                    yield item
                failed = False
            finally:
                self._count(method, context, failed)

        return call
