"""Running core work for a request: a query slot, the thread pool, the timeout, errors → API errors."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Generic, TypeVar

from thanostools.core.errors import (
    ConfigError,
    EvalError,
    FormatError,
    ParseError,
    QueryError,
    QueryTimeoutError,
    SourceError,
    ThanosToolsError,
)
from thanostools.server.http.params import ApiError, bad_data, prometheus_parse_message
from thanostools.server.limits import Busy, ConcurrencyGate

T = TypeVar("T")
log = logging.getLogger("thanostools.server")
TIMEOUT_SLACK_S = 0.25  # the evaluator checks its own deadline; past this, the worker thread is interrupted


class QueryCancelled(QueryTimeoutError):
    """Raised inside a worker thread whose query ran past its deadline."""


class Cancellable(Generic[T]):
    """A call in a worker thread that the event loop can interrupt.

    The evaluator only checks its deadline between steps, so one long step could keep a thread (and
    its query slot) busy long after the client got its timeout. ``cancel`` raises QueryCancelled in
    that thread (CPython delivers it at the next bytecode boundary, after any running C call);
    the core takes its locks with ``with`` only, so none can be left held.
    """

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn = fn
        self._lock = threading.Lock()
        self._thread: int | None = None
        self._stopped = False

    def __call__(self) -> T:
        with self._lock:
            if self._stopped:
                raise QueryCancelled("query timed out in query execution")
            self._thread = threading.get_ident()
        try:
            return self.fn()
        finally:
            self._finish()  # a pending QueryCancelled surfaces here at the latest, still inside this call

    def _finish(self) -> None:
        with self._lock:
            self._thread = None

    def cancel(self) -> None:
        with self._lock:
            thread, self._thread, self._stopped = self._thread, None, True
            if thread is not None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), ctypes.py_object(QueryCancelled))


def api_error(exc: BaseException) -> ApiError:
    """The Prometheus error type and status for an exception raised by core work."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, QueryTimeoutError):
        return ApiError("timeout", str(exc))
    if isinstance(exc, ParseError):
        return bad_data(prometheus_parse_message(exc))
    if isinstance(exc, EvalError | QueryError):
        return ApiError("execution", str(exc))
    if isinstance(exc, ConfigError):
        return bad_data(str(exc))
    if isinstance(exc, SourceError | FormatError | ThanosToolsError):
        return ApiError("internal", str(exc))
    log.error("internal error: %s: %s", type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
    return ApiError("internal", f"internal error: {type(exc).__name__}: {exc}")


class Runner:
    """Runs blocking core calls in the pool, at most ``gate.limit`` heavy ones at once."""

    def __init__(self, pool: Executor, gate: ConcurrencyGate, on_busy: Callable[[], None] | None = None) -> None:
        self.pool = pool
        self.gate = gate
        self.on_busy = on_busy

    async def heavy(self, fn: Callable[[], T], timeout_s: float) -> T:
        """A query: waits for a slot (503 when none frees up in time), then runs with a timeout (503)."""
        call: Cancellable[T] = Cancellable(fn)
        try:
            await self.gate.acquire(timeout_s)
        except Busy as exc:
            if self.on_busy is not None:
                self.on_busy()
            raise ApiError("unavailable", f"server busy: {exc}") from None
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(self.pool, call)
        except BaseException:
            self.gate.release()
            raise
        # The slot is held until the thread is done, even when the client was answered earlier.
        fut.add_done_callback(lambda _: self.gate.release())
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout_s + TIMEOUT_SLACK_S)
        except TimeoutError:
            call.cancel()
            fut.add_done_callback(_consume)
            raise ApiError("timeout", "query timed out in expression evaluation") from None
        except asyncio.CancelledError:
            call.cancel()
            fut.add_done_callback(_consume)
            raise
        except Exception as exc:
            raise api_error(exc) from None


def _consume(fut: asyncio.Future[Any]) -> None:
    """Fetch a late result so asyncio does not log 'exception was never retrieved'."""
    if not fut.cancelled():
        fut.exception()
