"""HTTP security: the Prometheus exporter-toolkit web config (TLS, basic auth with bcrypt) and bearer tokens.

Web config (``--http.config``)::

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # or VerifyClientCertIfGiven, NoClientCert
      client_ca_file: ca.crt
      min_version: TLS12
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}
    basic_auth_users:
      alice: $2y$10$...        # bcrypt hash

Bearer tokens (``--http.bearer-token-file``): one token per line; ``#`` starts a comment.

Comparisons are constant-time: bcrypt for passwords (an unknown user still costs one bcrypt check),
``hmac.compare_digest`` against every token. Successful checks are remembered for ``CACHE_TTL_S``
(keyed by a SHA-256 of the whole ``Authorization`` header, i.e. of user and password; at most
``CACHE_MAX`` entries, least recently used dropped first), as exporter-toolkit does, so a dashboard's
requests do not each cost a bcrypt round. Failures are never remembered. How often a client address
may fail is limited by the HTTP middleware (``--http.auth-failure-limit``), before bcrypt runs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from thanostools.core.config.yamlfile import load_yaml_file, read_config_text
from thanostools.core.errors import ConfigError

_TOP_KEYS = {"tls_server_config", "http_server_config", "basic_auth_users"}
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"}
_TLS_UNSUPPORTED = {"cipher_suites", "curve_preferences", "prefer_server_cipher_suites", "client_allowed_sans",
                    "cert", "key", "client_ca"}
_HTTP_KEYS = {"http2", "headers"}
_ALLOWED_HEADERS = {"Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "X-XSS-Protection",
                    "Strict-Transport-Security"}
_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
             "TLS13": ssl.TLSVersion.TLSv1_3}
CACHE_TTL_S = 60.0
CACHE_MAX = 1024
_CLIENT_AUTH = {"": ssl.CERT_NONE, "NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
                "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}


@dataclass(frozen=True)
class TLSServerConfig:
    cert_file: str
    key_file: str
    client_auth_type: str = ""
    client_ca_file: str = ""
    min_version: str = "TLS12"
    max_version: str = ""


@dataclass(frozen=True)
class WebConfig:
    tls: TLSServerConfig | None = None
    basic_auth_users: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping")
    return value


def _check_keys(section: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in section:
        if key in _TLS_UNSUPPORTED:
            raise ConfigError(f"{where}: {key} is not supported by thanos-tools")
        if key not in allowed:
            raise ConfigError(f"{where}: unknown field {key!r}")


def _resolve(path: str, base: str) -> str:
    return path if not path or os.path.isabs(path) else os.path.join(base, path)


def _parse_tls(raw: dict[str, Any], base: str) -> TLSServerConfig | None:
    if not raw:
        return None
    _check_keys(raw, _TLS_KEYS, "tls_server_config")
    cfg = TLSServerConfig(**{k: str(v) for k, v in raw.items() if v is not None})
    if not cfg.cert_file:
        raise ConfigError("tls_server_config: missing cert_file")
    if not cfg.key_file:
        raise ConfigError("tls_server_config: missing key_file")
    if cfg.client_auth_type not in _CLIENT_AUTH:
        raise ConfigError(f"tls_server_config: client_auth_type {cfg.client_auth_type!r} is not supported "
                          f"(use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)")
    if cfg.client_ca_file and _CLIENT_AUTH[cfg.client_auth_type] == ssl.CERT_NONE:
        raise ConfigError("tls_server_config: client CA's have been configured without a client auth policy")
    if _CLIENT_AUTH[cfg.client_auth_type] != ssl.CERT_NONE and not cfg.client_ca_file:
        raise ConfigError(f"tls_server_config: client_auth_type {cfg.client_auth_type} needs client_ca_file")
    for name in (cfg.min_version, cfg.max_version):
        if name and name not in _VERSIONS:
            raise ConfigError(f"tls_server_config: unknown TLS version {name!r} (use TLS10..TLS13)")
    return TLSServerConfig(_resolve(cfg.cert_file, base), _resolve(cfg.key_file, base), cfg.client_auth_type,
                           _resolve(cfg.client_ca_file, base), cfg.min_version, cfg.max_version)


def _parse_users(raw: dict[str, Any]) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for name, hashed in raw.items():
        text = str(hashed or "")
        if not text.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError(f"basic_auth_users: the password of {name!r} must be a bcrypt hash")
        users[str(name)] = text.encode()
    return users


def _parse_headers(raw: dict[str, Any]) -> dict[str, str]:
    _check_keys(raw, _HTTP_KEYS, "http_server_config")
    headers = {str(k): str(v) for k, v in _mapping(raw.get("headers"), "http_server_config.headers").items()}
    for name in headers:
        if name not in _ALLOWED_HEADERS:
            raise ConfigError(f"http_server_config.headers: setting {name!r} is not allowed")
    return headers


def load_web_config(path: str | None) -> WebConfig:
    if not path:
        return WebConfig()
    raw = load_yaml_file(path, "--http.config")
    top = _mapping(raw, f"--http.config {path}")
    _check_keys(top, _TOP_KEYS, f"--http.config {path}")
    base = os.path.dirname(os.path.abspath(path))
    return WebConfig(_parse_tls(_mapping(top.get("tls_server_config"), "tls_server_config"), base),
                     _parse_users(_mapping(top.get("basic_auth_users"), "basic_auth_users")),
                     _parse_headers(_mapping(top.get("http_server_config"), "http_server_config")))


def load_bearer_tokens(path: str | None) -> list[bytes]:
    if not path:
        return []
    lines = read_config_text(path, "--http.bearer-token-file").splitlines()
    tokens = [line.strip().encode() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not tokens:
        raise ConfigError(f"--http.bearer-token-file {path}: no tokens in the file")
    return tokens


# --- TLS -------------------------------------------------------------------------------------------


def load_tls(ctx: ssl.SSLContext, tls: TLSServerConfig) -> None:
    """(Re)load certificates into a context; new connections use them, open ones keep theirs."""
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            ctx.load_verify_locations(cafile=tls.client_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls_server_config: cannot load certificates: {exc}") from None
    ctx.verify_mode = _CLIENT_AUTH[tls.client_auth_type]
    ctx.minimum_version = _VERSIONS[tls.min_version or "TLS12"]
    if tls.max_version:
        ctx.maximum_version = _VERSIONS[tls.max_version]


def server_ssl_context(tls: TLSServerConfig | None) -> ssl.SSLContext | None:
    if tls is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_tls(ctx, tls)
    return ctx


# --- authentication --------------------------------------------------------------------------------


class Unauthorized(Exception):
    """Refused credentials; ``user`` is the name the client claimed (never its password), if any."""

    def __init__(self, message: str, user: str = "") -> None:
        super().__init__(message)
        self.user = user


class Authenticator:
    """Checks ``Authorization`` headers against basic-auth users and bearer tokens."""

    def __init__(self, users: dict[str, bytes], tokens: list[bytes]) -> None:
        self.users = users
        self.tokens = tokens
        self._ok: OrderedDict[bytes, tuple[str, float]] = OrderedDict()  # sha256(header) -> (user, verified at)
        self._lock = threading.Lock()
        self.clock = time.monotonic
        self._dummy: bytes | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.users or self.tokens)

    def cached(self, header: str | None) -> str | None:
        """The user for a header that was verified before (cheap; safe to call on the event loop)."""
        if not header:
            return None
        key = hashlib.sha256(header.encode()).digest()
        with self._lock:
            found = self._ok.get(key)
            if found is None:
                return None
            if self.clock() - found[1] > CACHE_TTL_S:
                del self._ok[key]
                return None
            self._ok.move_to_end(key)
            return found[0]

    def _remember(self, header: str, user: str) -> None:
        with self._lock:
            self._ok[hashlib.sha256(header.encode()).digest()] = (user, self.clock())
            while len(self._ok) > CACHE_MAX:
                self._ok.popitem(last=False)

    def _dummy_hash(self) -> bytes:
        """A hash of a random password: unknown users are checked against it so they take as long."""
        import bcrypt

        if self._dummy is None:
            self._dummy = bcrypt.hashpw(os.urandom(16).hex().encode(), bcrypt.gensalt(10))
        return self._dummy

    def verify(self, header: str | None) -> str:
        """The authenticated user name (``token-N`` for the N-th bearer token); raises :class:`Unauthorized`."""
        scheme, _, cred = (header or "").partition(" ")
        if scheme.lower() == "bearer" and self.tokens:
            user = self._bearer(cred.strip())
        elif scheme.lower() == "basic" and self.users:
            user = self._basic(cred.strip())
        else:
            raise Unauthorized("missing or unsupported credentials")
        self._remember(header or "", user)
        return user

    def _bearer(self, token: str) -> str:
        found = 0
        for i, known in enumerate(self.tokens, 1):
            if hmac.compare_digest(known, token.encode()):  # every token is compared: constant time
                found = i
        if not found:
            raise Unauthorized("invalid bearer token")
        return f"token-{found}"

    def _basic(self, cred: str) -> str:
        import bcrypt

        try:
            user, sep, password = base64.b64decode(cred, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("malformed basic credentials") from None
        stored = self.users.get(user)
        try:
            ok = bcrypt.checkpw(password.encode(), stored if stored is not None else self._dummy_hash())
        except ValueError:  # a malformed stored hash
            ok = False
        if not (ok and sep and stored is not None):
            raise Unauthorized("invalid user or password", user)
        return user

    def reload(self, users: dict[str, bytes], tokens: list[bytes]) -> None:
        with self._lock:
            self.users, self.tokens = users, tokens
            self._ok.clear()
