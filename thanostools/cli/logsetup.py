"""Logging on stderr in the Thanos shapes: logfmt or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from thanostools.core.redact import REDACTED, is_secret_name, redact_text

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error",
          logging.CRITICAL: "error"}


def _redacted(key: str, value: object) -> object:
    """Every log line passes here: secret-named fields are masked whole, text fields searched for secrets."""
    if is_secret_name(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    return redact_text(str(value))


def _fields(record: logging.LogRecord) -> dict[str, object]:
    out: dict[str, object] = {
        "ts": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "level": _NAMES.get(record.levelno, "info"),
        "caller": f"{record.module}:{record.lineno}",
        "msg": redact_text(record.getMessage()),
    }
    extra = getattr(record, "kv", None)
    if isinstance(extra, dict):
        out.update({str(k): _redacted(str(k), v) for k, v in extra.items()})
    return out


def _logfmt_value(v: object) -> str:
    s = str(v)
    if s == "" or any(c in s for c in ' ="\\\n'):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str)


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    root = logging.getLogger("thanostools")  # thanostools.audit lines go through here too
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root.addHandler(handler)
    root.setLevel(_LEVELS.get(level, logging.INFO))
    root.propagate = False
