"""A client for any Prometheus-compatible HTTP query API (Prometheus, Thanos, ``thanos-tools serve``).

Plain ``urllib``: the TUI calls it from worker threads, so blocking calls are fine. Responses are
kept as the exact body text (the Raw tab shows what the server said) and also decoded into the
core's ``QueryResult`` so tables and graphs work the same for every source.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from thanostools.core.errors import ConfigError, QueryError, SourceError
from thanostools.core.labels import Labels
from thanostools.core.promql.engine import QueryResult, SeriesResult

Params = list[tuple[str, str]]


@dataclass(frozen=True)
class HttpAuth:
    bearer_token: str | None = None
    basic_user: str | None = None
    basic_password: str | None = None

    def header(self) -> str | None:
        if self.bearer_token:
            return f"Bearer {self.bearer_token}"
        if self.basic_user is not None:
            raw = f"{self.basic_user}:{self.basic_password or ''}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        return None

    @classmethod
    def from_files(cls, bearer_token_file: str | None = None, basic_user: str | None = None,
                   basic_password_file: str | None = None) -> HttpAuth:
        """Secrets are read from files (never from flags, which show up in ``ps``)."""
        token = _read_secret(bearer_token_file) if bearer_token_file else None
        password = _read_secret(basic_password_file) if basic_password_file else None
        if password is not None and basic_user is None:
            raise ConfigError("--basic-auth-password-file needs --basic-auth-user")
        return cls(token, basic_user, password)


def _read_secret(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


def seconds(ms: int) -> str:
    """Milliseconds as the API's decimal seconds."""
    sec, frac = divmod(ms, 1000)
    return f"{sec}.{frac:03d}" if frac else str(sec)


@dataclass
class ApiResponse:
    body: str
    data: Any
    warnings: list[str]
    infos: list[str]


class PromHTTPClient:
    """``/api/v1/query``, ``query_range``, ``labels``, ``label/<name>/values`` of one server."""

    def __init__(self, url: str, *, auth: HttpAuth = HttpAuth(), timeout_s: float = 120.0) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"invalid --url {url!r} (use http://host:port or https://host:port/prefix)")
        self.url = url.rstrip("/")
        self.auth = auth
        self.timeout_s = timeout_s

    # --- requests ---------------------------------------------------------------------------------

    def request(self, path: str, params: Params) -> ApiResponse:
        """POST a form (Prometheus accepts POST on its query and labels endpoints)."""
        req = urllib.request.Request(f"{self.url}{path}", data=urllib.parse.urlencode(params).encode(),
                                     method="POST")
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
        return self._send(req)

    def get(self, path: str, params: Params) -> ApiResponse:
        return self._send(urllib.request.Request(f"{self.url}{path}?{urllib.parse.urlencode(params)}"))

    def _send(self, req: urllib.request.Request) -> ApiResponse:
        """One request; HTTP, network and API errors become the core's error tree."""
        req.add_header("Accept", "application/json")
        header = self.auth.header()
        if header:
            req.add_header("Authorization", header)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                text = resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            raise _api_error(exc.code, exc.read().decode("utf-8", "replace"), self.url) from None
        except (urllib.error.URLError, OSError) as exc:
            raise SourceError(f"cannot reach {self.url}: {getattr(exc, 'reason', exc)}") from None
        return _decode(text, self.url)

    def query(self, query: str, time_ms: int, extra: Params | None = None) -> tuple[QueryResult, ApiResponse]:
        resp = self.request("/api/v1/query", [("query", query), ("time", seconds(time_ms)), *(extra or [])])
        return parse_query_data(resp.data, resp.warnings, resp.infos), resp

    def query_range(self, query: str, start_ms: int, end_ms: int, step_ms: int,
                    extra: Params | None = None) -> tuple[QueryResult, ApiResponse]:
        params = [("query", query), ("start", seconds(start_ms)), ("end", seconds(end_ms)),
                  ("step", seconds(step_ms)), *(extra or [])]
        resp = self.request("/api/v1/query_range", params)
        return parse_query_data(resp.data, resp.warnings, resp.infos), resp

    def labels(self, match: Sequence[str], start_ms: int, end_ms: int) -> list[str]:
        params = [("start", seconds(start_ms)), ("end", seconds(end_ms)), *(("match[]", m) for m in match)]
        return _strings(self.request("/api/v1/labels", params).data)

    def label_values(self, name: str, match: Sequence[str], start_ms: int, end_ms: int) -> list[str]:
        params = [("start", seconds(start_ms)), ("end", seconds(end_ms)), *(("match[]", m) for m in match)]
        # The label values endpoint is GET-only in Prometheus.
        return _strings(self.get(f"/api/v1/label/{urllib.parse.quote(name, safe='')}/values", params).data)


def _api_error(status: int, text: str, url: str) -> Exception:
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("status") == "error":
        kind = str(doc.get("errorType", ""))
        message = str(doc.get("error", ""))
        return QueryError(message) if kind in ("bad_data", "execution", "timeout", "canceled") else \
            SourceError(f"{url}: {kind}: {message}")
    if status in (401, 403):
        return SourceError(f"{url}: HTTP {status} (check --bearer-token-file / --basic-auth-*)")
    return SourceError(f"{url}: HTTP {status}: {text.strip()[:200]}")


def _decode(text: str, url: str) -> ApiResponse:
    try:
        doc = json.loads(text)
    except ValueError:
        raise SourceError(f"{url} did not answer JSON: {text.strip()[:200]!r}") from None
    if not isinstance(doc, dict) or doc.get("status") != "success":
        raise _api_error(200, text, url)
    return ApiResponse(text, doc.get("data"), [str(w) for w in doc.get("warnings") or []],
                       [str(i) for i in doc.get("infos") or []])


def _strings(data: Any) -> list[str]:
    return sorted(str(s) for s in data or [])


# --- decoding query results ---------------------------------------------------------------------


def _labels(metric: dict[str, str]) -> Labels:
    return tuple(sorted((str(k), str(v)) for k, v in metric.items()))


def _ms(ts: float | str) -> int:
    return round(float(ts) * 1000)


def _series(metric: dict[str, str], points: Sequence[Sequence[Any]]) -> SeriesResult:
    t = np.array([_ms(p[0]) for p in points], np.int64)
    v = np.array([float(p[1]) for p in points], np.float64)
    return SeriesResult(_labels(metric), t, v)


HISTOGRAMS_RAW_ONLY = "native histogram samples of an HTTP source are shown in the Raw tab only"


def parse_query_data(data: Any, warnings: list[str], infos: list[str]) -> QueryResult:
    """The ``data`` object of a query response as a core ``QueryResult``."""
    if not isinstance(data, dict):
        raise SourceError("query response has no data object")
    kind = str(data.get("resultType", ""))
    result = data.get("result")
    out = QueryResult(kind, [], warnings=warnings, infos=infos)
    if kind in ("vector", "matrix") and any("histogram" in s or "histograms" in s for s in result or []):
        out.warnings.append(HISTOGRAMS_RAW_ONLY)
    if kind == "vector":
        out.series = [_series(s.get("metric", {}), [s["value"]]) for s in result or [] if "value" in s]
    elif kind == "matrix":
        out.series = [_series(s.get("metric", {}), s.get("values", [])) for s in result or []]
    elif kind in ("scalar", "string"):
        ts, value = result if isinstance(result, list) and len(result) == 2 else (0, "NaN")
        if kind == "scalar":
            out.scalar = (_ms(ts), float(value))
        else:
            out.string = (_ms(ts), str(value))
    else:
        raise SourceError(f"unknown resultType {kind!r}")
    return out
