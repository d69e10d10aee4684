"""Prometheus HTTP API v1 (FORMATS.md §10) with the Thanos querier extras (§10.6).

Handlers parse and validate on the event loop (cheap, and errors come back before any work is
queued), then run evaluation *and* JSON rendering in the thread pool.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from thanostools import __version__
from thanostools.core.goformat import go_quote
from thanostools.core.labels import Labels
from thanostools.core.matchers import Matcher
from thanostools.core.partial import SecurityHook
from thanostools.core.promql.parser.ast import Expr, ValueType, type_of
from thanostools.core.render.apijson import go_json_string, labels_json, render_success
from thanostools.core.series import add_new
from thanostools.core.timeutil import now_ms
from thanostools.server.authz import Authorizer, Forbidden, restrict_expr, restrict_sets
from thanostools.server.http.execute import Runner
from thanostools.server.http.params import (
    MAX_TIME_MS,
    MIN_TIME_MS,
    ApiError,
    bad_data,
    check_utf8,
    invalid_param,
    parse_bool,
    parse_duration,
    parse_matcher_sets,
    parse_time,
    prometheus_parse_message,
)
from thanostools.server.http.render import TRUNCATED
from thanostools.server.querylog import QueryLogEntry
from thanostools.server.state import QuerierOptions, ServerState

security_log = logging.getLogger("thanostools.security")
MAX_POINTS = 11_000
_LABEL_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789")
QUERY_LOG = "query_log_entry"
_INT = re.compile(r"^[+-]?[0-9]+$")

if TYPE_CHECKING:
    from thanostools.core.promql.engine import PromQLEngine, QueryResult


@dataclass
class Params:
    """Form values as Go's ``FormValue`` sees them: the body wins over the URL for the same key."""

    values: MultiDictProxy[str]

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key, default)

    def all(self, key: str) -> list[str]:
        return self.values.getall(key, [])

    def summary(self, *keys: str) -> dict[str, str]:
        return {k: ",".join(self.all(k)) for k in keys if k in self.values}


async def read_params(request: web.Request) -> Params:
    merged: MultiDict[str] = MultiDict()
    check_utf8(request.raw_path.partition("?")[2])
    if request.method == "POST":
        if request.content_type == "application/x-www-form-urlencoded":
            check_utf8(await request.read())
        try:
            body = await request.post()
        except web.HTTPException:
            raise
        except Exception as exc:
            raise bad_data(f"error parsing form values: {exc}") from None
        merged.extend((k, v) for k, v in body.items() if isinstance(v, str))
    merged.extend(request.query.items())
    return Params(MultiDictProxy(merged))


def _time(p: Params, name: str, default: int | None) -> int:
    text = p.get(name)
    if not text and default is not None:
        return default
    try:
        return parse_time(text)
    except ValueError as exc:
        raise invalid_param(name, str(exc)) from None


def _duration(p: Params, name: str) -> int | None:
    text = p.get(name)
    if not text:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise invalid_param(name, str(exc)) from None


def _thanos_bool(p: Params, name: str, default: bool) -> bool:
    text = p.get(name)
    if not text:
        return default
    try:
        return parse_bool(text)
    except ValueError as exc:
        raise bad_data(f"'{name}' parameter: {exc}") from None


def _max_source_resolution(p: Params, step_ms: int | None) -> int:
    """A duration, or ``auto``: step/5 for range queries, raw data for instant ones (Thanos' defaults)."""
    text = p.get("max_source_resolution")
    if not text or text == "auto":
        return (step_ms or 0) // 5 if text == "auto" else 0
    try:
        mrw = parse_duration(text)
    except ValueError as exc:
        raise bad_data(f"'max_source_resolution' parameter: {exc}") from None
    if mrw < 0:
        raise bad_data("negative 'max_source_resolution' is not accepted. Try a positive integer")
    return mrw


def _limit(p: Params) -> int:
    text = p.get("limit")
    if not text:
        return 0
    if not _INT.match(text):
        raise invalid_param("limit", f"strconv.Atoi: parsing {go_quote(text)}: invalid syntax")
    limit = int(text)
    if limit < 0:
        raise invalid_param("limit", "limit must be non-negative")
    return limit


@dataclass(frozen=True)
class _Output:
    limit: int
    stats: str  # the ``stats`` parameter: empty, or any value for the stats object (``all``: with steps)
    deadline: float  # time.monotonic() by which the answer must be ready
    received: float = field(default_factory=time.monotonic)  # when the query was asked for


def _range_params(p: Params) -> tuple[int, int, int]:
    """``start``, ``end``, ``step`` of a range query, checked as Prometheus 2.42 checks them."""
    start = _time(p, "start", None)
    end = _time(p, "end", None)
    if end < start:
        raise invalid_param("end", "end timestamp must not be before start time")
    step = _duration(p, "step")
    if step is None:
        raise invalid_param("step", 'cannot parse "" to a valid duration')
    if step <= 0:
        raise invalid_param("step", "zero or negative query resolution step widths are not accepted. "
                                    "Try a positive integer")
    if (end - start) // step > MAX_POINTS:
        raise bad_data("exceeded maximum resolution of 11,000 points per timeseries. "
                       "Try decreasing the query resolution (?step=XX)")
    return start, end, step


def _parse_query(p: Params, features: frozenset[str]) -> Expr:
    from thanostools.core.errors import ParseError
    from thanostools.core.promql.parser.parse import parse_expr

    try:
        return parse_expr(p.get("query"), features=features)
    except ParseError as exc:
        raise invalid_param("query", prometheus_parse_message(exc)) from None


def _label_list(items: list[str], warnings: list[str]) -> str:
    return render_success("[" + ",".join(go_json_string(s) for s in items) + "]", warnings=warnings)


def _truncate(items: list[str], limit: int, warnings: list[str]) -> list[str]:
    if limit and len(items) > limit:
        warnings.append(TRUNCATED)
        return items[:limit]
    return items


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class ApiV1:
    def __init__(self, state: ServerState, runner: Runner, *, observe_query: Callable[[str, float], None],
                 on_security_event: SecurityHook | None = None, security_events: Callable[[], int] = lambda: 0,
                 authz: Authorizer | None = None) -> None:
        self.state = state
        self.config = state.config
        self.runner = runner
        self.observe_query = observe_query
        self.on_security_event = on_security_event
        self.security_events = security_events
        self.authz = authz or Authorizer(None)

    # --- shared pieces ---------------------------------------------------------------------------

    def _timeout_s(self, p: Params) -> float:
        """``--query.timeout``, or less when the request asks (``timeout=0s`` times out at once, as in Prometheus)."""
        asked = _duration(p, "timeout")
        limit = self.config.query_timeout_s
        return limit if asked is None else min(limit, max(asked, 0) / 1000)

    def _querier_options(self, p: Params, step_ms: int | None) -> QuerierOptions:
        """The Thanos extras, with Thanos' messages (``'dedup' parameter: …``)."""
        return QuerierOptions(dedup=_thanos_bool(p, "dedup", True), replica_labels=tuple(p.all("replicaLabels[]")),
                              partial_response=_thanos_bool(p, "partial_response", self.config.partial_response),
                              max_source_resolution_ms=_max_source_resolution(p, step_ms))

    def _restriction(self, request: web.Request) -> tuple[Matcher, ...]:
        """The matchers the caller's policy adds to every selector; 403 when it has none."""
        try:
            return self.authz.matchers_for(request.get("user", ""))
        except Forbidden as exc:
            security_log.warning("refused request", extra={"kv": {
                "security": "forbidden", "client": request.remote or "", "path": request.path, "reason": str(exc)}})
            raise ApiError("forbidden", str(exc), status=403) from None

    def _log_entry(self, request: web.Request, endpoint: str, query: str, params: dict[str, str]) -> QueryLogEntry:
        entry = QueryLogEntry(endpoint=endpoint, client=request.remote or "", user=request.get("user", ""),
                              query=query, params=params or None)
        request[QUERY_LOG] = entry
        return entry

    def _prepare(self, p: Params, opts: QuerierOptions) -> Callable[[float], PromQLEngine]:
        """Validated engine settings; the engine itself is made in the worker with the time that is left."""
        from thanostools.core.promql.engine import PromQLEngine, QueryOptions

        lookback = _duration(p, "lookback_delta") or self.config.lookback_delta_ms

        def make(timeout_s: float) -> PromQLEngine:
            options = QueryOptions(lookback_delta_ms=lookback, timeout_s=timeout_s,
                                   max_samples=self.config.max_samples, max_series=self.config.max_series,
                                   features=self.config.promql_features)
            return PromQLEngine(self.state.querier(opts, self.on_security_event), options)

        return make

    # --- query and query_range -------------------------------------------------------------------

    async def query(self, request: web.Request) -> web.Response:
        p = await read_params(request)
        entry = self._log_entry(request, "query", p.get("query"), p.summary("time"))
        tenant = self._restriction(request)
        at = _time(p, "time", now_ms())
        timeout_s = self._timeout_s(p)
        expr = restrict_expr(_parse_query(p, self.config.promql_features), tenant)
        make = self._prepare(p, self._querier_options(p, None))
        out = _Output(_limit(p), p.get("stats"), time.monotonic() + timeout_s)
        body = await self.runner.heavy(
            lambda: self._evaluate(entry, "query", lambda e: e.instant(expr, at), make, out), timeout_s)
        return _json(body)

    async def query_range(self, request: web.Request) -> web.Response:
        p = await read_params(request)
        entry = self._log_entry(request, "query_range", p.get("query"), p.summary("start", "end", "step"))
        tenant = self._restriction(request)
        start, end, step = _range_params(p)
        timeout_s = self._timeout_s(p)
        expr = restrict_expr(_parse_query(p, self.config.promql_features), tenant)
        kind = type_of(expr)
        if kind not in (ValueType.SCALAR, ValueType.VECTOR):
            raise invalid_param("query", f'invalid expression type "{kind.documented}" for range query, '
                                         "must be Scalar or instant Vector")
        make = self._prepare(p, self._querier_options(p, step))
        out = _Output(_limit(p), p.get("stats"), time.monotonic() + timeout_s)
        body = await self.runner.heavy(
            lambda: self._evaluate(entry, "query_range", lambda e: e.range(expr, start, end, step), make, out),
            timeout_s)
        return _json(body)

    def _evaluate(self, entry: QueryLogEntry, endpoint: str, run: Callable[[PromQLEngine], QueryResult],
                  make: Callable[[float], PromQLEngine], out: _Output) -> str:
        """Evaluate and render, in a worker thread, within what is left of the timeout (queueing counts)."""
        from thanostools.core.errors import QueryTimeoutError
        from thanostools.server.http.render import query_body

        t0 = time.monotonic()
        if t0 >= out.deadline:
            raise QueryTimeoutError("query timed out in query execution")
        result = run(make(out.deadline - t0))
        eval_s = time.monotonic() - t0
        result.stats.timings.exec_queue = t0 - out.received
        result.stats.timings.exec_total += t0 - out.received
        self.observe_query(endpoint, eval_s)
        entry.series = result.stats.series_loaded
        entry.samples = result.stats.samples_loaded
        if time.monotonic() > out.deadline:  # the evaluator checks between steps; a long last step ends here
            raise QueryTimeoutError("query timed out in expression evaluation")
        return query_body(result, limit=out.limit, stats=out.stats)

    # --- series and labels -----------------------------------------------------------------------

    def _range(self, p: Params) -> tuple[int, int]:
        start = _time(p, "start", MIN_TIME_MS)
        end = _time(p, "end", MAX_TIME_MS)
        return start, end

    async def series(self, request: web.Request) -> web.Response:
        p = await read_params(request)
        self._log_entry(request, "series", "", p.summary("match[]", "start", "end"))
        tenant = self._restriction(request)
        if not p.all("match[]"):
            raise bad_data("no match[] parameter provided")
        start, end = self._range(p)
        sets = restrict_sets(parse_matcher_sets(p.all("match[]")), tenant)
        opts, limit = self._querier_options(p, None), _limit(p)

        def work() -> str:
            found: set[Labels] = set()
            warnings: list[str] = []
            for matchers in sets:
                labels, more = self._series(matchers, start, end, opts)
                found.update(labels)
                warnings += [w for w in more if w not in warnings]
            rows = sorted(found)
            if limit and len(rows) > limit:
                rows, warnings = rows[:limit], [*warnings, TRUNCATED]
            return render_success("[" + ",".join(labels_json(r) for r in rows) + "]", warnings=warnings)

        return _json(await self.runner.heavy(work, self.config.query_timeout_s))

    def _series(self, matchers: list[Matcher], start: int, end: int, opts: QuerierOptions,
                ) -> tuple[list[Labels], list[str]]:
        if not self.config.endpoints:
            return self.state.series_labels(matchers, start, end, opts), []
        from thanostools.core.series import SelectHints

        stream = self.state.querier(opts, self.on_security_event).select(
            matchers, start, end, SelectHints(start, end, func="series"))
        return stream.collect().labels, stream.warnings

    async def labels(self, request: web.Request) -> web.Response:
        p = await read_params(request)
        self._log_entry(request, "labels", "", p.summary("match[]", "start", "end"))
        tenant = self._restriction(request)
        start, end = self._range(p)
        sets = restrict_sets(parse_matcher_sets(p.all("match[]")), tenant)
        opts, limit = self._querier_options(p, None), _limit(p)

        def work() -> str:
            querier = self.state.querier(opts, self.on_security_event)
            names: set[str] = set()
            warnings: list[str] = []
            for matchers in sets or [[]]:
                res = querier.label_names(matchers, start, end)
                names.update(res.values)
                add_new(warnings, res.warnings)
            return _label_list(_truncate(sorted(names), limit, warnings), warnings)

        return _json(await self.runner.heavy(work, self.config.query_timeout_s))

    async def label_values(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        p = await read_params(request)
        self._log_entry(request, f"label/{name}/values", "", p.summary("match[]", "start", "end"))
        tenant = self._restriction(request)
        if not name or name[0].isdigit() or not set(name) <= _LABEL_NAME_OK:
            raise bad_data(f"invalid label name: {go_quote(name)}")
        start, end = self._range(p)
        sets = restrict_sets(parse_matcher_sets(p.all("match[]")), tenant)
        opts, limit = self._querier_options(p, None), _limit(p)

        def work() -> str:
            querier = self.state.querier(opts, self.on_security_event)
            values: set[str] = set()
            warnings: list[str] = []
            for matchers in sets or [[]]:
                res = querier.label_values(name, matchers, start, end)
                values.update(res.values)
                add_new(warnings, res.warnings)
            return _label_list(_truncate(sorted(values), limit, warnings), warnings)

        return _json(await self.runner.heavy(work, self.config.query_timeout_s))

    # --- cheap endpoints -------------------------------------------------------------------------

    async def format_query(self, request: web.Request) -> web.Response:
        from thanostools.core.promql.parser.printer import pretty

        expr = _parse_query(await read_params(request), self.config.promql_features)
        return _json(render_success(go_json_string(pretty(expr))))

    async def parse_query(self, request: web.Request) -> web.Response:
        from thanostools.server.http.astjson import ast_json

        expr = _parse_query(await read_params(request), self.config.promql_features)
        return _json(render_success(ast_json(expr)))

    async def query_exemplars(self, request: web.Request) -> web.Response:
        p = await read_params(request)
        self._log_entry(request, "query_exemplars", p.get("query"), p.summary("start", "end"))
        self._restriction(request)  # no exemplars are stored; still refused without a policy
        start, end = self._range(p)
        if end < start:
            raise invalid_param("end", "end timestamp must not be before start timestamp")
        _parse_query(p, self.config.promql_features)
        return _json(render_success("[]"))

    async def metadata(self, request: web.Request) -> web.Response:
        return _json(render_success("{}"))

    async def buildinfo(self, request: web.Request) -> web.Response:
        info = {"version": __version__, "revision": "unknown", "branch": "unknown", "buildUser": "unknown",
                "buildDate": "unknown", "goVersion": f"python{platform.python_version()}"}
        return _json(render_success(_object(info)))

    async def runtimeinfo(self, request: web.Request) -> web.Response:
        st = self.state
        fields = [
            ("startTime", go_json_string(_rfc3339(st.started))), ("CWD", go_json_string(os.getcwd())),
            ("reloadConfigSuccess", "true" if st.last_reload_ok else "false"),
            ("lastConfigTime", go_json_string(_rfc3339(st.last_reload))),
            ("corruptionCount", str(self.security_events())), ("goroutineCount", str(threading.active_count())),
            ("GOMAXPROCS", str(os.cpu_count() or 1)), ("GOGC", '""'), ("GODEBUG", '""'),
            ("storageRetention", '""'),
        ]
        return _json(render_success("{" + ",".join(f"{go_json_string(k)}:{v}" for k, v in fields) + "}"))

    async def flags(self, request: web.Request) -> web.Response:
        return _json(render_success(_object(dict(sorted(self.config.flags.items())))))

    async def options(self, request: web.Request) -> web.Response:
        return _json('{"status":"success"}')

    # --- routes ----------------------------------------------------------------------------------

    def routes(self) -> list[web.AbstractRouteDef]:
        both = [("query", self.query), ("query_range", self.query_range), ("series", self.series),
                ("labels", self.labels), ("format_query", self.format_query), ("parse_query", self.parse_query),
                ("query_exemplars", self.query_exemplars)]
        get_only = [("label/{name}/values", self.label_values), ("metadata", self.metadata),
                    ("status/buildinfo", self.buildinfo), ("status/runtimeinfo", self.runtimeinfo),
                    ("status/flags", self.flags)]
        out: list[web.AbstractRouteDef] = []
        for path, handler in both:
            out += [web.get(f"/api/v1/{path}", handler), web.post(f"/api/v1/{path}", handler)]
        out += [web.get(f"/api/v1/{path}", handler) for path, handler in get_only]
        out += [web.options(f"/api/v1/{path}", self.options) for path, _ in both + get_only]
        return out


def _object(fields: dict[str, str]) -> str:
    return "{" + ",".join(f"{go_json_string(k)}:{go_json_string(v)}" for k, v in fields.items()) + "}"


def _json(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="application/json")


__all__ = ["QUERY_LOG", "ApiV1", "Params", "read_params"]
