"""Times and durations: parsing user input, and Go-style rendering."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from thanostools.core.errors import ConfigError
from thanostools.core.goformat import go_quote

_DAY = 24 * 3600 * 1000
_DURATION_UNITS_OUT = (
    ("y", 365 * _DAY, True), ("w", 7 * _DAY, True), ("d", _DAY, False),
    ("h", 3600 * 1000, False), ("m", 60 * 1000, False), ("s", 1000, False), ("ms", 1, False),
)
MS_NS = 1_000_000
_DURATION_UNITS_IN = {  # unit -> (order, nanoseconds)
    "y": (1, 365 * _DAY * MS_NS), "w": (2, 7 * _DAY * MS_NS), "d": (3, _DAY * MS_NS),
    "h": (4, 3600 * 1000 * MS_NS), "m": (5, 60 * 1000 * MS_NS), "s": (6, 1000 * MS_NS),
    "ms": (7, MS_NS),
}
INT64_MAX = (1 << 63) - 1
_DURATION_PART = re.compile(r"([0-9]*)([^0-9]*)")


def prom_duration_ns(text: str) -> int:
    """Go ``model.ParseDuration``: units from largest to smallest, no sign, no fractions."""
    if text == "0":
        return 0
    if text == "":
        raise ValueError("empty duration string")
    invalid = f"not a valid duration string: {go_quote(text)}"
    total, last_order, i = 0, 0, 0
    while i < len(text):
        m = _DURATION_PART.match(text, i)
        assert m is not None
        digits, unit = m.group(1), m.group(2)
        if not digits or not unit:
            raise ValueError(invalid)
        i = m.end()
        order_size = _DURATION_UNITS_IN.get(unit)
        if order_size is None:
            raise ValueError(f"unknown unit {go_quote(unit)} in duration {go_quote(text)}")
        order, size = order_size
        if order <= last_order:
            raise ValueError(invalid)
        last_order = order
        value = int(digits)
        if value > (1 << 63) // size:
            raise ValueError("duration out of range")
        total += value * size
        if total > INT64_MAX:
            raise ValueError("duration out of range")
    return total


def parse_duration_ms(text: str) -> int:
    """A duration flag in milliseconds: Prometheus's syntax (``1h30m``, ``2w``, ``500ms``; units from largest to
    smallest, as Prometheus and Thanos flags read them) or a bare number of seconds."""
    s = text.strip()
    if s.isdigit():
        return int(s) * 1000
    try:
        return prom_duration_ns(s) // MS_NS
    except ValueError as exc:
        raise ConfigError(f"invalid duration {text!r}: {exc} (use e.g. 90s, 1h30m, 2w)") from None


def now_ms() -> int:
    return int(time.time() * 1000)


def parse_time_ms(text: str, *, now: int | None = None) -> int:
    """Accepts RFC3339, unix milliseconds, unix seconds with a fraction, ``now``, ``now-1h`` and ``-2w``."""
    s = text.strip()
    ref = now_ms() if now is None else now
    if s == "now":
        return ref
    m = re.match(r"^(now)?([+-])(.+)$", s)
    if m and (m.group(1) or not re.match(r"^-?\d+(\.\d+)?$", s)):
        delta = parse_duration_ms(m.group(3))
        return ref - delta if m.group(2) == "-" else ref + delta
    if re.match(r"^-?\d+$", s):
        return int(s)
    if re.match(r"^-?\d+\.\d+$", s):
        return round(float(s) * 1000)
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"invalid time {text!r} (use RFC3339 like 2024-01-02T15:04:05Z, unix ms, or relative like -2w, now-1h)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def utc_fields(ms: int) -> tuple[int, int, int, int, int, int, int]:
    """(year, month, day, hour, minute, second, millisecond) of a Unix ms time in the proleptic Gregorian
    calendar, for any integer: Python's datetime stops at year 9999, block times may reach int64's ends."""
    seconds, millis = divmod(ms, 1000)
    days, day_seconds = divmod(seconds, 86_400)
    # Days to civil date (H. Hinnant's algorithm): eras of 400 years starting on 0000-03-01.
    z = days + 719_468
    era = z // 146_097
    day_of_era = z - era * 146_097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    mp = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = year_of_era + era * 400 + (month <= 2)
    hour, rest = divmod(day_seconds, 3600)
    minute, second = divmod(rest, 60)
    return year, month, day, hour, minute, second, millis


def _date_text(year: int, month: int, day: int) -> str:
    """``2023-11-14``; years beyond four digits in full and negative years signed, as Go prints them."""
    sign = "-" if year < 0 else ""
    return f"{sign}{abs(year):04d}-{month:02d}-{day:02d}"


def format_time_ms(ms: int) -> str:
    """RFC3339 in UTC with milliseconds only when needed; any int64 renders (``292278994-08-17T07:12:55.807Z``)."""
    year, month, day, hour, minute, second, millis = utc_fields(ms)
    text = f"{_date_text(year, month, day)}T{hour:02d}:{minute:02d}:{second:02d}"
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def format_minute_ms(ms: int) -> str:
    """``2023-11-14 02:00``: a time to the minute, for axes."""
    year, month, day, hour, minute, _, _ = utc_fields(ms)
    return f"{_date_text(year, month, day)} {hour:02d}:{minute:02d}"


def format_duration(ms: int) -> str:
    """Prometheus' rendering of a duration: ``1h30m``, ``500ms``, ``0s``; years and weeks only
    when they divide the duration exactly."""
    if ms < 0:
        return "-" + format_duration(-ms)
    if ms == 0:
        return "0s"
    out = []
    for unit, size, exact in _DURATION_UNITS_OUT:
        if exact and ms % size:
            continue
        count, ms = divmod(ms, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def go_duration(ms: int) -> str:
    """Go ``time.Duration.String()`` of a millisecond duration: ``45.001s``, ``2h0m0s``, ``1ms``."""
    if ms == 0:
        return "0s"
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    if ms < 1000:
        return f"{sign}{ms}ms"
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, frac = divmod(rem, 1000)
    sec = f"{s}.{frac:03d}".rstrip("0") if frac else str(s)
    if h:
        return f"{sign}{h}h{m}m{sec}s"
    if m:
        return f"{sign}{m}m{sec}s"
    return f"{sign}{sec}s"


def human_duration(ms: int) -> str:
    """Compact duration for tables: ``2h``, ``1d12h``, ``45.001s``."""
    if ms <= 0:
        return "0s" if ms == 0 else "-" + human_duration(-ms)
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        q, ms = divmod(ms, size)
        if q:
            parts.append(f"{q}{unit}")
    if ms:
        parts.append(f"{ms / 1000:g}s")
    return "".join(parts)
