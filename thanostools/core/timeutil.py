"""Times and durations: parsing user input, and Go-style rendering."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from thanostools.core.errors import ConfigError

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000,
             "y": 31_536_000_000}
_DURATION = re.compile(r"^(?:(\d+)(ms|s|m|h|d|w|y))+$")
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def parse_duration_ms(text: str) -> int:
    """``1h30m``, ``2w``, ``500ms`` → milliseconds (Prometheus duration syntax, no sign)."""
    s = text.strip()
    if s.isdigit():
        return int(s) * 1000
    if not s or not _DURATION.match(s):
        raise ConfigError(f"invalid duration {text!r} (use e.g. 90s, 1h30m, 2w)")
    return sum(int(n) * _UNITS_MS[u] for n, u in _PART.findall(s))


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


def format_time_ms(ms: int) -> str:
    """RFC3339 in UTC with milliseconds only when needed."""
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    if ms % 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


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
