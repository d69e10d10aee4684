"""The ``serve`` process: one asyncio loop running the HTTP API (aiohttp) and the StoreAPI (grpc.aio).

Blocking core work (bucket syncs, queries, bcrypt) runs in a thread pool. SIGTERM/SIGINT stop
accepting connections, let in-flight requests finish for up to ``--grace-period`` and return 0;
SIGHUP and ``POST /-/reload`` re-read the config files and re-sync the blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from thanostools.core.errors import BucketMissingError, ConfigError, ThanosToolsError
from thanostools.server.authz import Authorizer, load_authz_config
from thanostools.server.http.api_v1 import ApiV1
from thanostools.server.http.app import AppRunner, HttpDeps, build_app
from thanostools.server.http.auth import (
    Authenticator,
    WebConfig,
    load_bearer_tokens,
    load_tls,
    load_web_config,
    server_ssl_context,
)
from thanostools.server.http.execute import Runner
from thanostools.server.http.metrics import ServerMetrics
from thanostools.server.limits import ConcurrencyGate, RateLimiter
from thanostools.server.querylog import QueryLog
from thanostools.server.state import MemoryRangeCache, ServerConfig, ServerState

log = logging.getLogger("thanostools.server")
FIRST_SYNC_RETRY_MAX_S = 30.0


def split_address(address: str, flag: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (all interfaces)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{flag} {address!r}: use host:port, e.g. 127.0.0.1:10902")
    return host.strip("[]"), int(port)


class _NoTraceback(logging.Filter):
    """Library loggers (aiohttp, asyncio, grpc) get one line; the traceback only at debug level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not logging.getLogger("thanostools").isEnabledFor(logging.DEBUG):
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}" if exc else record.getMessage()
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


def _route_library_logs() -> None:
    ours = logging.getLogger("thanostools")
    for name in ("aiohttp", "asyncio", "grpc"):
        lib = logging.getLogger(name)
        lib.handlers = list(ours.handlers)
        lib.filters = [_NoTraceback()]
        lib.setLevel(logging.DEBUG if ours.isEnabledFor(logging.DEBUG) else logging.WARNING)
        lib.propagate = False
    logging.getLogger("aiohttp.access").disabled = True


class Daemon:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = ServerMetrics()
        self.state = ServerState(config, on_fetch=self.metrics.bucket_bytes.inc)
        self.web: WebConfig = load_web_config(config.http_config_file)
        self.auth = Authenticator(self.web.basic_auth_users, load_bearer_tokens(config.bearer_token_file))
        self.authz = Authorizer(load_authz_config(config.authz_config_file))
        self.ssl: ssl.SSLContext | None = server_ssl_context(self.web.tls)
        self.pool = ThreadPoolExecutor(max_workers=config.max_concurrent + 4, thread_name_prefix="thanos-tools")
        self.query_log = QueryLog(config.query_log_file)
        self.stop_event: asyncio.Event | None = None
        self.fatal: ThanosToolsError | None = None  # why the server stopped on its own, if it did
        self.http_addresses: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._reload_lock: asyncio.Lock | None = None
        self._next_reload: asyncio.Future[None] | None = None
        self.deps: HttpDeps | None = None
        self.corruption_count = 0
        self._count_lock = threading.Lock()

    # --- wiring ----------------------------------------------------------------------------------

    def _build_http(self) -> web.Application:
        gate = ConcurrencyGate(self.config.max_concurrent)
        runner = Runner(self.pool, gate, on_busy=lambda: self.metrics.queries_rejected.labels("concurrency").inc())
        self._watch(gate)
        api = ApiV1(self.state, runner, observe_query=lambda ep, s: self.metrics.query_seconds.labels(ep).observe(s),
                    on_security_event=self._security_event,
                    security_events=lambda: self.corruption_count, authz=self.authz)
        self.deps = HttpDeps(self.state, runner, self.metrics, self.auth,
                             RateLimiter(self.config.rate_limit, self.config.rate_burst), self.query_log,
                             self.reload, dict(self.web.headers),
                             RateLimiter(self.config.auth_failure_rate, self.config.auth_failure_burst), self.authz)
        return build_app(self.deps, api)

    def _watch(self, gate: ConcurrencyGate) -> None:
        cache = self.state.catalog.cache

        def cache_counts() -> tuple[int, int, int]:
            if isinstance(cache, MemoryRangeCache):
                return cache.memory_hits, cache.hits, cache.misses
            return 0, 0, 0

        self.metrics.watch_cache(cache_counts)
        self.metrics.watch_state(lambda: {"queries_running": gate.running, "queries_queued": gate.waiting})

    def _security_event(self, message: str) -> None:
        """Called from worker threads (HTTP queries and gRPC) when a checksum does not match."""
        with self._count_lock:
            self.corruption_count += 1
        self.metrics.security_events.labels("checksum").inc()

    async def _start_http(self, app: web.Application) -> web.AppRunner:
        host, port = split_address(self.config.http_address, "--http-address")
        runner = AppRunner(app, handle_signals=False, access_log=None,
                               shutdown_timeout=self.config.grace_period_s)
        await runner.setup()
        site = web.TCPSite(runner, host or None, port, ssl_context=self.ssl, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ThanosToolsError(f"cannot listen for HTTP on {self.config.http_address}: "
                                   f"{exc.strerror or exc}") from None
        self.http_addresses = [_format_address(a) for a in runner.addresses]
        return runner

    async def _start_grpc(self) -> Any:
        if not self.config.grpc_address:
            return None
        from thanostools.server.grpc import GrpcTLS, build_grpc_server

        c = self.config
        tls = GrpcTLS(c.grpc_tls_cert, c.grpc_tls_key, c.grpc_tls_client_ca) \
            if c.grpc_tls_cert and c.grpc_tls_key else None

        def on_event(message: str) -> None:
            self._security_event(message)

        from thanostools.server.grpcmetrics import CallCounter

        server = await build_grpc_server(blocks=self.state.served_blocks, catalog=self.state.served,
                                         address=c.grpc_address, tls=tls, max_workers=c.max_concurrent + 4,
                                         on_security_event=on_event, ready=self.state.ready.is_set,
                                         interceptors=[CallCounter(self.metrics.grpc_calls)], authz=self.authz,
                                         query_log=self.query_log)
        await server.start()
        return server

    # --- syncing ---------------------------------------------------------------------------------

    async def _sync_once(self, first: bool = False) -> bool:
        loop = asyncio.get_running_loop()
        try:
            res = await loop.run_in_executor(self.pool, self.state.sync)
        except BucketMissingError as exc:
            self.metrics.syncs.labels("error").inc()
            if not first:  # it went away while serving: keep what is loaded and try again later
                log.error("block sync failed", extra={"kv": {"err": str(exc)}})
                return False
            # Not a passing failure: retrying would only hide the mistake behind a server that never gets ready.
            log.error("cannot start: the bucket does not exist", extra={"kv": {"err": str(exc)}})
            self.fatal = exc
            assert self.stop_event is not None
            self.stop_event.set()
            raise asyncio.CancelledError from None
        except ThanosToolsError as exc:
            self.metrics.syncs.labels("error").inc()
            log.error("block sync failed", extra={"kv": {"err": str(exc)}})
            return False
        except Exception as exc:
            self.metrics.syncs.labels("error").inc()
            log.error("block sync failed", extra={"kv": {"err": f"{type(exc).__name__}: {exc}"}},
                      exc_info=log.isEnabledFor(logging.DEBUG))
            return False
        m = self.metrics
        m.syncs.labels("success").inc()
        m.sync_seconds.observe(res.seconds)
        m.blocks_loaded.set(res.blocks)
        m.blocks_broken.set(res.broken)
        m.last_sync.set_to_current_time()
        log.debug("blocks synced", extra={"kv": {"blocks": res.blocks, "broken": res.broken,
                                                 "duration": f"{res.seconds:.3f}s"}})
        return True

    async def _first_sync(self) -> None:
        loop = asyncio.get_running_loop()
        # Load the query engine's modules (numpy, numba kernels) now rather than in the first query.
        await loop.run_in_executor(self.pool, _warm_up)
        delay = 1.0
        while not await self._sync_once(first=True):
            await asyncio.sleep(delay)
            delay = min(delay * 2, FIRST_SYNC_RETRY_MAX_S, self.config.sync_interval_s)
        log.info("ready", extra={"kv": {"blocks": len(self.state.blocks()), "http": ",".join(self.http_addresses),
                                        "grpc": self.config.grpc_address}})

    async def _sync_loop(self) -> None:
        await self._first_sync()
        while True:
            await asyncio.sleep(self.config.sync_interval_s)
            await self._sync_once()

    # --- reload ----------------------------------------------------------------------------------

    async def reload(self) -> None:
        """Re-read the config files; reopen the query log; re-sync.

        Coalesced: callers that ask while a reload runs share the one that follows it, so a burst of
        requests (or SIGHUPs) costs at most two reloads and every caller sees a reload that started after it asked.
        """
        if self._next_reload is not None:
            await asyncio.shield(self._next_reload)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._next_reload = fut
        assert self._reload_lock is not None
        async with self._reload_lock:
            self._next_reload = None  # from here on, new callers need another reload
            try:
                await self._reload_now()
            except asyncio.CancelledError:
                fut.cancel()
                raise
            except Exception as exc:
                fut.set_exception(exc)
            else:
                fut.set_result(None)
        await fut

    async def _reload_now(self) -> None:
        """Re-read ``--http.config``, the bearer tokens, the authz and relabel configs; reopen the query log."""
        try:
            await asyncio.get_running_loop().run_in_executor(self.pool, self._reload_files)
        except ThanosToolsError as exc:
            self.state.last_reload_ok = False
            self.metrics.reloads.labels("error").inc()
            log.error("reload failed, keeping the old configuration", extra={"kv": {"err": str(exc)}})
            raise
        self.state.last_reload_ok, self.state.last_reload = True, time.time()
        self.metrics.reloads.labels("success").inc()
        await self._sync_once()
        log.info("configuration reloaded", extra={"kv": {"blocks": len(self.state.blocks())}})

    def _reload_files(self) -> None:
        web_config = load_web_config(self.config.http_config_file)
        tokens = load_bearer_tokens(self.config.bearer_token_file)
        authz = load_authz_config(self.config.authz_config_file)
        if (web_config.tls is None) != (self.ssl is None):
            raise ConfigError("turning TLS on or off needs a restart")
        self.state.reload_relabel()
        if self.ssl is not None and web_config.tls is not None:
            load_tls(self.ssl, web_config.tls)
        self.auth.reload(web_config.basic_auth_users, tokens)
        self.authz.config = authz
        if self.deps is not None:
            self.deps.headers.clear()
            self.deps.headers.update(web_config.headers)
        self.web = web_config
        self.query_log.reopen()

    def _on_sighup(self) -> None:
        async def run() -> None:
            with contextlib.suppress(ThanosToolsError):
                await self.reload()

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> int:
        _route_library_logs()
        self.stop_event = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        http = await self._start_http(self._build_http())
        try:
            grpc_server = await self._start_grpc()
        except BaseException:
            await http.cleanup()
            raise
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        log.info("serving", extra={"kv": {"http": ",".join(self.http_addresses), "grpc": self.config.grpc_address,
                                          "bucket": self.state.bucket.url}})
        sync = asyncio.create_task(self._sync_loop())
        await self.stop_event.wait()
        await self._shutdown(http, grpc_server, sync)
        return 0 if self.fatal is None else self.fatal.exit_code

    async def _shutdown(self, http: web.AppRunner, grpc_server: Any, sync: asyncio.Task[None]) -> None:
        log.info("shutting down", extra={"kv": {"grace_period": f"{self.config.grace_period_s:g}s"}})
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        for task in [sync, *self._tasks]:
            task.cancel()
        stops: list[Any] = [http.cleanup()]
        if grpc_server is not None:
            stops.append(grpc_server.stop(self.config.grace_period_s))
        await asyncio.gather(*stops, return_exceptions=True)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.state.close()
        self.query_log.close()
        log.info("stopped")


def _format_address(addr: Any) -> str:
    if isinstance(addr, tuple):
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)


def _warm_up() -> None:
    import thanostools.core.promql.engine
    import thanostools.core.querier  # noqa: F401


def serve(config: ServerConfig) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    return asyncio.run(Daemon(config).run())
