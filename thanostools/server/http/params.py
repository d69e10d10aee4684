"""Request parameters as Prometheus reads them (FORMATS.md §10.1): times, durations, booleans, matchers.

Messages follow Prometheus 2.42 word for word, e.g. ``invalid parameter "time": cannot parse "abc"
to a valid timestamp``.
"""

from __future__ import annotations

import calendar
import math
import re
import urllib.parse
from collections.abc import Mapping
from datetime import datetime

from thanostools.core.errors import ParseError
from thanostools.core.goformat import go_quote
from thanostools.core.matchers import Matcher
from thanostools.core.render.apijson import ERROR_STATUS

# The special strings Prometheus accepts for its own minimum and maximum times, and what they mean in ms.
MIN_TIME_FORMATTED = "-292273086-05-16T16:47:06Z"
MAX_TIME_FORMATTED = "292277025-08-18T07:12:54.999999999Z"
MIN_TIME_MS = -9223309901257974000
MAX_TIME_MS = 9223309901257974999

_FLOAT = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")
_GO_BOOL = {"1": True, "t": True, "T": True, "true": True, "TRUE": True, "True": True,
            "0": False, "f": False, "F": False, "false": False, "FALSE": False, "False": False}
_MAX_SECONDS = 9.2e15  # beyond this the time in ms does not fit an int64

STATUS = {**ERROR_STATUS, "unavailable": 503, "too_many_requests": 429}


class ApiError(Exception):
    """An error answered in the Prometheus envelope."""

    def __init__(self, error_type: str, message: str, *, status: int | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status if status is not None else STATUS.get(error_type, 500)
        self.headers = dict(headers or {})


def bad_data(message: str) -> ApiError:
    return ApiError("bad_data", message)


def invalid_param(name: str, message: str) -> ApiError:
    return bad_data(f"invalid parameter {go_quote(name)}: {message}")


def check_utf8(form: str | bytes) -> None:
    """Every key and value of a query string or form body must be UTF-8 once %-decoded (GET and POST alike)."""
    text = form.decode("utf-8", "surrogateescape") if isinstance(form, bytes) else form
    for pair in re.split("[&;]", text):
        key, _, value = pair.partition("=")
        for part in (key, value):
            try:
                urllib.parse.unquote_to_bytes(part.replace("+", " ")).decode("utf-8")
            except UnicodeError:
                name = urllib.parse.unquote(key, errors="replace")
                raise invalid_param(name, "invalid UTF-8") from None


# --- values ----------------------------------------------------------------------------------------


def _float(text: str) -> float | None:
    if _FLOAT.match(text):
        return float(text)
    if text.lower().lstrip("+-") in ("inf", "infinity", "nan"):
        return float(text)
    return None


def _go_round(x: float) -> float:
    """Go ``math.Round``: half away from zero."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def _seconds_to_ms(x: float) -> int:
    """What Prometheus does to a float time: ``time.Unix(int(s), int(round(frac*1000)/1000*1e9))`` in ms."""
    whole = math.trunc(x)
    frac = _go_round((x - whole) * 1000) / 1000
    sec, nsec = whole, int(frac * 1e9)
    if nsec < 0:
        sec -= 1
        nsec += 1_000_000_000
    return sec * 1000 + nsec // 1_000_000


def _rfc3339_ms(text: str) -> int | None:
    m = _RFC3339.match(text)
    if not m:
        return None
    year, month, day, hour, minute, sec = (int(g) for g in m.groups()[:6])
    try:
        datetime(year, month, day, hour, minute, sec)
    except ValueError:
        return None
    ms = calendar.timegm((year, month, day, hour, minute, sec, 0, 0, 0)) * 1000
    ms += int((m.group(7) or "0").ljust(9, "0")[:3])
    zone = m.group(8)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        ms -= sign * (int(zone[1:3]) * 60 + int(zone[4:6])) * 60_000
    return ms


def parse_time(text: str) -> int:
    """A timestamp parameter in ms: decimal seconds (fraction rounded to ms) or RFC 3339."""
    x = _float(text)
    if x is not None and math.isfinite(x) and abs(x) < _MAX_SECONDS:
        return _seconds_to_ms(x)
    ms = _rfc3339_ms(text)
    if ms is not None:
        return ms
    if text == MIN_TIME_FORMATTED:
        return MIN_TIME_MS
    if text == MAX_TIME_FORMATTED:
        return MAX_TIME_MS
    raise ValueError(f"cannot parse {go_quote(text)} to a valid timestamp")


def parse_duration(text: str) -> int:
    """A duration parameter in ms: float seconds or a Prometheus duration string (``1h30m``)."""
    from thanostools.core.promql.parser.parse import parse_duration as promql_duration

    x = _float(text)
    if x is not None and not math.isnan(x):
        if abs(x) * 1e9 > 2**63 - 1:
            raise ValueError(f"cannot parse {go_quote(text)} to a valid duration. It overflows int64")
        ns = int(x * 1e9)
        return ns // 1_000_000 if ns >= 0 else -(-ns // 1_000_000)
    try:
        return promql_duration(text)
    except ParseError:
        raise ValueError(f"cannot parse {go_quote(text)} to a valid duration") from None


def parse_bool(text: str) -> bool:
    """Go ``strconv.ParseBool``."""
    try:
        return _GO_BOOL[text]
    except KeyError:
        raise ValueError(f'strconv.ParseBool: parsing {go_quote(text)}: invalid syntax') from None


def parse_matcher_sets(selectors: list[str]) -> list[list[Matcher]]:
    """``match[]`` values; each must have at least one matcher that does not match the empty string."""
    from thanostools.core.promql.parser.parse import parse_selector

    sets: list[list[Matcher]] = []
    for text in selectors:
        try:
            matchers = parse_selector(text)
        except ParseError as exc:
            raise bad_data(prometheus_parse_message(exc)) from None
        if all(m.matches_empty for m in matchers):
            raise bad_data("match[] must contain at least one non-empty matcher")
        sets.append(matchers)
    return sets


def prometheus_parse_message(exc: ParseError) -> str:
    """``1:5: parse error: unclosed left parenthesis`` (Prometheus puts the position first)."""
    if exc.line is not None and exc.column is not None:
        return f"{exc.line}:{exc.column}: parse error: {exc.reason}"
    return f"parse error: {exc.reason}"
