"""The aiohttp application: routes, and the middlewares every request passes through.

Order (outermost first): observe (metrics, query log, errors → Prometheus envelope, never a
traceback), authenticate (basic auth / bearer tokens), admit (readiness and rate limit for the API).
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from thanostools import __version__
from thanostools.core.redact import redact_text
from thanostools.core.render.apijson import render_error
from thanostools.server.authz import Authorizer, Forbidden, common_name
from thanostools.server.http.api_v1 import QUERY_LOG, ApiV1
from thanostools.server.http.auth import Authenticator, Unauthorized
from thanostools.server.http.execute import Runner, api_error
from thanostools.server.http.metrics import ServerMetrics
from thanostools.server.http.params import ApiError
from thanostools.server.limits import RateLimited, RateLimiter, retry_after_header
from thanostools.server.querylog import QueryLog, QueryLogEntry
from thanostools.server.state import ServerState

log = logging.getLogger("thanostools.server")
security_log = logging.getLogger("thanostools.security")
SERVER_HEADER = "thanos-tools"  # no library or Python version on the wire
RELOAD_RATE, RELOAD_BURST = 0.2, 3  # /-/reload re-reads the config and re-lists the bucket
BCRYPT_AT_ONCE = 2  # password checks running at once: a flood of logins must not take the query threads

# Endpoints that cost storage work: they are rate limited per client.
LIMITED = frozenset({"/api/v1/query", "/api/v1/query_range", "/api/v1/series", "/api/v1/labels",
                     "/api/v1/label/{name}/values"})
LINKS = [("/api/v1/status/buildinfo", "build information"), ("/api/v1/labels", "label names"),
         ("/api/v1/label/__name__/values", "metric names"), ("/api/v1/status/flags", "flags"),
         ("/api/v1/status/runtimeinfo", "runtime information"), ("/metrics", "self-metrics"),
         ("/-/healthy", "health"), ("/-/ready", "readiness")]


@dataclass
class HttpDeps:
    state: ServerState
    runner: Runner
    metrics: ServerMetrics
    auth: Authenticator
    limiter: RateLimiter
    query_log: QueryLog
    reload: Callable[[], Awaitable[None]]
    headers: dict[str, str] = field(default_factory=dict)
    auth_failures: RateLimiter = field(default_factory=lambda: RateLimiter(0))  # per client address
    authz: Authorizer = field(default_factory=lambda: Authorizer(None))
    reloads: RateLimiter = field(default_factory=lambda: RateLimiter(RELOAD_RATE, RELOAD_BURST))


def error_response(err: ApiError) -> web.Response:
    headers = {"Cache-Control": "no-store", **err.headers}
    return web.Response(text=render_error(err.error_type, err.message), status=err.status,
                        content_type="application/json", headers=headers)


def handler_name(request: web.Request) -> str:
    route = request.match_info.route
    if isinstance(request.match_info, web.UrlMappingMatchInfo) and route.resource is not None:
        return route.resource.canonical
    return "other"


class Middlewares:
    def __init__(self, deps: HttpDeps) -> None:
        self.deps = deps
        self._bcrypt = asyncio.Semaphore(BCRYPT_AT_ONCE)
        self._throttled: set[str] = set()  # addresses refused with 429 since their last admitted attempt

    @web.middleware
    async def observe(self, request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        t0 = time.perf_counter()
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except ApiError as exc:
            status = exc.status
            self._note_error(request, exc)
            return error_response(exc)
        except web.HTTPException as exc:
            status = exc.status
            if status in (400, 413):  # a body too large or unreadable: Prometheus-style JSON, not aiohttp's text
                err = ApiError("bad_data", _one_line(exc.text or exc.reason), status=status)
                self._note_error(request, err)
                return error_response(err)
            raise
        except asyncio.CancelledError:
            status = 499  # the client went away
            raise
        except Exception as exc:
            err = api_error(exc)
            status = err.status
            self._note_error(request, err)
            return error_response(err)
        finally:
            self._record(request, status, time.perf_counter() - t0)

    def _note_error(self, request: web.Request, err: ApiError) -> None:
        entry: QueryLogEntry | None = request.get(QUERY_LOG)
        if entry is not None:
            entry.error_type, entry.error = err.error_type, err.message

    def _record(self, request: web.Request, status: int, seconds: float) -> None:
        name = handler_name(request)
        m = self.deps.metrics
        m.requests.labels(name, request.method, str(status)).inc()
        m.request_seconds.labels(name, str(status)).observe(seconds)
        entry: QueryLogEntry | None = request.get(QUERY_LOG)
        if entry is not None:
            entry.status, entry.duration_s, entry.user = status, seconds, request.get("user", "")
            self.deps.query_log.write(entry)

    @web.middleware
    async def authenticate(self, request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        auth = self.deps.auth
        if not auth.enabled:
            request["user"] = client_cert_name(request)
            return await handler(request)
        header = request.headers.get("Authorization")
        user = auth.cached(header)
        if user is None:
            client = request.remote or ""
            try:
                self.deps.auth_failures.take(client)  # every uncached attempt spends a token; success returns it
            except RateLimited as exc:
                return self._throttle(request, client, exc.retry_after_s)
            self._throttled.discard(client)
            try:
                async with self._bcrypt:
                    user = await asyncio.get_running_loop().run_in_executor(self.deps.runner.pool, auth.verify,
                                                                            header)
            except Unauthorized as exc:
                self._security_event(request, "auth_failure", str(exc), exc.user)
                return web.Response(status=401, text="Unauthorized\n",
                                    headers={"WWW-Authenticate": 'Basic realm="thanos-tools"'})
            self.deps.auth_failures.give_back(client)
        request["user"] = user or client_cert_name(request)
        return await handler(request)

    def _throttle(self, request: web.Request, client: str, retry_after_s: float) -> web.Response:
        """429 without checking the password; logged once per client until it is admitted again."""
        if client not in self._throttled:
            if len(self._throttled) >= self.deps.auth_failures.max_clients:
                self._throttled.clear()
            self._throttled.add(client)
            self._security_event(request, "auth_rate_limited", "too many failed logins from this address", "")
        else:
            self.deps.metrics.security_events.labels("auth_rate_limited").inc()
        return _json_error(429, "unavailable", "too many failed logins from this address",
                           {"Retry-After": retry_after_header(retry_after_s)})

    def _security_event(self, request: web.Request, kind: str, reason: str, user: str) -> None:
        self.deps.metrics.security_events.labels(kind).inc()
        kv = {"security": kind, "client": request.remote or "", "path": request.path, "reason": reason}
        if user:
            kv["user"] = user
        security_log.warning("refused request", extra={"kv": kv})

    @web.middleware
    async def admit(self, request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        if not self.deps.state.ready.is_set():
            raise ApiError("unavailable", "not ready: the first block sync has not finished yet")
        if handler_name(request) in LIMITED:
            try:
                self.deps.limiter.take(request.get("user") or request.remote or "")
            except RateLimited as exc:
                self.deps.metrics.queries_rejected.labels("rate_limit").inc()
                raise ApiError("unavailable", "rate limit exceeded: too many queries from this client",
                               status=429, headers={"Retry-After": retry_after_header(exc.retry_after_s)}) from None
        return await handler(request)


def client_cert_name(request: web.Request) -> str:
    """The CN of the verified client certificate of an HTTPS request ("" without one)."""
    transport = request.transport
    return common_name(transport.get_extra_info("peercert")) if transport is not None else ""


def _json_error(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=render_error(error_type, message), content_type="application/json",
                        headers=headers)


# --- non-API endpoints -----------------------------------------------------------------------------


class Pages:
    def __init__(self, deps: HttpDeps) -> None:
        self.deps = deps

    async def healthy(self, request: web.Request) -> web.Response:
        return web.Response(text="thanos-tools is Healthy.\n")

    async def ready(self, request: web.Request) -> web.Response:
        if self.deps.state.ready.is_set():
            return web.Response(text="thanos-tools is Ready.\n")
        return web.Response(status=503, text="Service Unavailable\n")

    async def reload(self, request: web.Request) -> web.Response:
        """Admin only when authorization is configured; rate limited (and coalesced by the daemon) always."""
        try:
            self.deps.authz.check_admin(request.get("user", ""))
        except Forbidden as exc:
            return _json_error(403, "forbidden", str(exc))
        try:
            self.deps.reloads.take("reload")
        except RateLimited as exc:
            return _json_error(429, "unavailable", "too many reloads", {
                "Retry-After": retry_after_header(exc.retry_after_s)})
        try:
            await self.deps.reload()
        except Exception as exc:
            return web.Response(status=500, text=f"failed to reload config: {exc}\n")
        return web.Response(text="")

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.deps.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def index(self, request: web.Request) -> web.Response:
        items = "\n".join(f'<li><a href="{html.escape(href)}">{html.escape(href)}</a> — {html.escape(text)}</li>'
                          for href, text in LINKS)
        state = "ready" if self.deps.state.ready.is_set() else "starting (first block sync running)"
        body = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>thanos-tools serve</title></head>"
                f"<body><h1>thanos-tools serve {html.escape(__version__)}</h1>\n"
                f"<p>A Prometheus-compatible query API (<code>/api/v1/…</code>) and a Thanos StoreAPI (gRPC) "
                f"over the blocks of <code>{html.escape(redact_text(self.deps.state.bucket.url))}</code>. State: "
                f"{html.escape(state)}.</p>\n<ul>\n{items}\n</ul></body></html>\n")
        return web.Response(text=body, content_type="text/html")


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "bad request"


class JsonErrorHandler(web.RequestHandler):
    """Requests aiohttp cannot parse (bad request line, headers too large …) get the Prometheus error envelope."""

    __slots__ = ()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        plain = super().handle_error(request, status, exc, message)  # logs, and refuses if a reply was sent
        error_type = "bad_data" if 400 <= status < 500 else "internal"
        text = message if message and 400 <= status < 500 else (plain.reason or "error")
        out = web.Response(status=status, text=render_error(error_type, _one_line(text)),
                           content_type="application/json", headers={"Server": SERVER_HEADER})
        out.force_close()
        return out


class JsonErrorServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        handler = super().__call__()
        handler.__class__ = JsonErrorHandler  # same slots; aiohttp has no hook to choose the handler class
        return handler


class AppRunner(web.AppRunner):
    """``web.AppRunner`` whose connections answer unparsable requests with :class:`JsonErrorHandler`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = JsonErrorServer
        return server


async def _prepare(request: web.Request, response: web.StreamResponse, headers: dict[str, str]) -> None:
    response.headers["Server"] = SERVER_HEADER
    for name, value in headers.items():
        response.headers.setdefault(name, value)
    if (isinstance(response, web.Response) and response.body is not None and "gzip" in
            request.headers.get("Accept-Encoding", "") and len(response.body) > 1024):  # type: ignore[arg-type]
        response.enable_compression()


def build_app(deps: HttpDeps, api: ApiV1) -> web.Application:
    mw = Middlewares(deps)
    app = web.Application(middlewares=[mw.observe, mw.authenticate, mw.admit], client_max_size=2 * 2**20)
    pages = Pages(deps)
    app.add_routes([web.get("/", pages.index), web.get("/-/healthy", pages.healthy),
                    web.get("/-/ready", pages.ready), web.post("/-/reload", pages.reload),
                    web.put("/-/reload", pages.reload), web.get("/metrics", pages.metrics), *api.routes()])

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        await _prepare(request, response, deps.headers)

    app.on_response_prepare.append(on_prepare)
    return app
