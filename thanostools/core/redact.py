"""Secrets never reach a log: one redaction used by every log path (stderr logs, audit lines, query log, errors).

* ``redact_text`` masks secrets inside free text: credentials in URLs (``s3://KEY:SECRET@bucket`` →
  ``s3://<redacted>@bucket``), ``key: value`` / ``key=value`` / ``"key": "value"`` pairs whose key names a
  secret (``secret_key``, ``password``, ``session_token``, ``storage_account_key``, ``X-Amz-Signature`` …, also
  in query strings), ``Authorization`` headers and bearer tokens, and PEM private keys.
* ``redact_config`` masks an inline YAML config (``--objstore.config``) structurally: every value under a
  secret-named key, at any depth; YAML that cannot be read is masked whole.
* ``redact_argv`` masks a command line: inline configs, values of secret-named flags, then ``redact_text``.

Key names ending in ``_file``/``-file``/``_path`` are paths to secrets, not secrets, and stay visible.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

REDACTED = "<redacted>"

_WORDS = (r"password|passwd|passphrase|secret|token|credential|private[_-]?key|access[_-]?key|account[_-]?key|"
          r"api[_-]?key|service[_-]?account|signature|authorization")
_SECRET_WORDS = re.compile(rf"{_WORDS}|^pass$|^sig$", re.IGNORECASE)
_PATH_SUFFIX = re.compile(r"[_.-](?:file|path|dir)$", re.IGNORECASE)
# Flags whose value is a whole YAML config given inline.
INLINE_CONFIG_FLAGS = frozenset({"--objstore.config", "--http.config.inline"})

_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL)
_URL_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"<>]+@")
_AUTH_HEADER = re.compile(r"(?i)\b(authorization\s*[:=]\s*)(?:(?:basic|bearer|digest|token)\s+)?[^\s,;&'\"]+")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
# A secret-named key, then ``: `` or ``=``, then a value: double-quoted, single-quoted, or up to a separator.
_PAIR = re.compile(
    rf"""(?P<q>["']?)(?<![A-Za-z0-9_.-])(?P<key>[A-Za-z0-9_.-]*(?:{_WORDS})[A-Za-z0-9_.-]*|pass|sig)(?P=q)"""
    r"""(?P<sep>\s*[:=]\s*)"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&}\]'"]+)""", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Whether a config key, flag, log field or URL parameter of this name holds a secret."""
    name = name.lstrip("-")
    return bool(_SECRET_WORDS.search(name)) and not _PATH_SUFFIX.search(name)


def _pair(m: re.Match[str]) -> str:
    if not is_secret_name(m.group("key")) or m.group("value") == REDACTED:
        return m.group(0)
    q = m.group("q")
    return f"{q}{m.group('key')}{q}{m.group('sep')}{REDACTED}"


def redact_text(text: str) -> str:
    """``text`` with every secret it contains replaced by ``<redacted>``."""
    if not text:
        return text
    text = _PEM.sub(REDACTED, text)
    text = _URL_USERINFO.sub(rf"\1{REDACTED}@", text)
    text = _AUTH_HEADER.sub(rf"\1{REDACTED}", text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    return _PAIR.sub(_pair, text)


def redact_value(value: Any) -> Any:
    """A parsed config value with every secret-named entry masked (at any depth)."""
    if isinstance(value, dict):
        return {k: REDACTED if is_secret_name(str(k)) and v not in (None, "") else redact_value(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_config(text: str) -> str:
    """An inline YAML config as one line with its secrets masked; the whole text when it is not YAML."""
    import yaml

    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        return REDACTED
    if not isinstance(parsed, dict | list):
        return REDACTED if text.strip() else text
    dumped: str = yaml.safe_dump(redact_value(parsed), default_flow_style=True, width=2**31, sort_keys=False)
    return dumped.strip()


def _flag_value(flag: str, value: str) -> str:
    if flag in INLINE_CONFIG_FLAGS:
        return redact_config(value)
    if is_secret_name(flag):
        return REDACTED
    return redact_text(value)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with inline configs, secret flags and credentials in URLs masked."""
    out: list[str] = []
    pending: str | None = None  # a flag whose value is the next argument
    for arg in argv:
        if pending is not None:
            out.append(_flag_value(pending, arg))
            pending = None
        elif arg.startswith("--") and "=" in arg:
            flag, _, value = arg.partition("=")
            out.append(f"{flag}={_flag_value(flag, value)}")
        elif arg.startswith("--") and (arg in INLINE_CONFIG_FLAGS or is_secret_name(arg)):
            out.append(arg)
            pending = arg
        else:
            out.append(redact_text(arg))
    return out
