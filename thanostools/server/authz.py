"""Authorization for ``serve`` (``--http.authz-config-file``): who may see which series, who is admin.

::

    users:
      alice: {matchers: ['{tenant="alice"}']}
      bob:   {matchers: ['{tenant="bob"}', '{env!="dev"}']}
      root:  {admin: true}

Identities are the names authentication already gives: the basic-auth user, ``token-N`` for the N-th
bearer token of ``--http.bearer-token-file``, and the common name (CN) of a verified client certificate
(HTTP with ``client_auth_type`` and gRPC with ``--grpc-server-tls-client-ca``). gRPC has no tokens, so
there the CN is the only identity.

Semantics (the Thanos tenancy / prom-label-proxy kind): a user's matchers are added to every selector
of every query (the PromQL AST is rewritten), to every ``match[]`` of series/labels/label values, and to
every StoreAPI Series/LabelNames/LabelValues request. Matchers are only ever *added*, so a tenant cannot
widen them with its own matchers, regexes or headers. All matchers of all selector strings are ANDed
(write alternatives as one regex, ``{tenant=~"alice|shared"}``). A user without ``matchers`` sees every
series. A user without an entry (or a request without an identity) is refused: HTTP 403 with
``errorType: forbidden``, gRPC PERMISSION_DENIED. ``admin: true`` is needed for ``/-/reload``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from thanostools.core.config.yamlfile import load_yaml_file
from thanostools.core.errors import ConfigError, ParseError
from thanostools.core.matchers import Matcher
from thanostools.core.promql.parser.ast import (
    AggregateExpr,
    BinaryExpr,
    Call,
    Expr,
    MatrixSelector,
    ParenExpr,
    SubqueryExpr,
    UnaryExpr,
    VectorSelector,
)

_USER_KEYS = frozenset({"matchers", "admin"})


class Forbidden(Exception):
    """The identity may not do this (no policy, or not an admin)."""


@dataclass(frozen=True)
class Policy:
    matchers: tuple[Matcher, ...] = ()  # ANDed onto every selector; empty: every series
    admin: bool = False


@dataclass(frozen=True)
class AuthzConfig:
    users: Mapping[str, Policy] = field(default_factory=dict)


def _policy(name: str, raw: Any, where: str) -> Policy:
    from thanostools.core.promql.parser.parse import parse_selector

    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: users.{name} must be a mapping")
    unknown = sorted(set(raw) - _USER_KEYS)
    if unknown:
        raise ConfigError(f"{where}: users.{name}: unknown field {unknown[0]!r} (use matchers, admin)")
    selectors = raw.get("matchers") or []
    if not isinstance(selectors, list) or not all(isinstance(s, str) for s in selectors):
        raise ConfigError(f"{where}: users.{name}.matchers must be a list of selector strings")
    matchers: list[Matcher] = []
    for text in selectors:
        try:
            matchers += parse_selector(text)
        except ParseError as exc:
            raise ConfigError(f"{where}: users.{name}.matchers {text!r}: {exc.reason}") from None
    admin = raw.get("admin", False)
    if not isinstance(admin, bool):
        raise ConfigError(f"{where}: users.{name}.admin must be true or false")
    return Policy(tuple(matchers), admin)


def load_authz_config(path: str | None) -> AuthzConfig | None:
    """The parsed file, or None without ``--http.authz-config-file``; one-line ConfigError on anything wrong."""
    if not path:
        return None
    where = f"--http.authz-config-file {path}"
    raw = load_yaml_file(path, "--http.authz-config-file")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with 'users'")
    unknown = sorted(set(raw) - {"users"})
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r} (use users)")
    users = raw.get("users") or {}
    if not isinstance(users, dict):
        raise ConfigError(f"{where}: users must be a mapping of user name to policy")
    return AuthzConfig({str(name): _policy(str(name), value, where) for name, value in users.items()})


class Authorizer:
    """The current policies (swapped whole on reload); without a config everyone sees everything."""

    def __init__(self, config: AuthzConfig | None) -> None:
        self.config = config

    @property
    def enabled(self) -> bool:
        return self.config is not None

    def matchers_for(self, identity: str) -> tuple[Matcher, ...]:
        """The matchers to add to every selector of ``identity``; raises :class:`Forbidden` without a policy."""
        config = self.config
        if config is None:
            return ()
        policy = config.users.get(identity) if identity else None
        if policy is None:
            raise Forbidden(f"user {identity!r} has no authorization policy" if identity else
                            "authorization is configured and the request has no identity")
        return policy.matchers

    def check_admin(self, identity: str) -> None:
        config = self.config
        if config is None:
            return
        policy = config.users.get(identity) if identity else None
        if policy is None or not policy.admin:
            raise Forbidden(f"user {identity!r} is not an admin" if identity else "admin rights needed")


def restrict_expr(node: Expr, extra: tuple[Matcher, ...]) -> Expr:
    """``node`` with ``extra`` added to every vector selector (also inside matrices and subqueries)."""
    if not extra:
        return node
    if isinstance(node, VectorSelector):
        return dataclasses.replace(node, matchers=(*node.matchers, *extra))
    if isinstance(node, MatrixSelector):
        inner = restrict_expr(node.vector_selector, extra)
        assert isinstance(inner, VectorSelector)
        return dataclasses.replace(node, vector_selector=inner)
    if isinstance(node, SubqueryExpr | ParenExpr | UnaryExpr):
        return dataclasses.replace(node, expr=restrict_expr(node.expr, extra))
    if isinstance(node, BinaryExpr):
        return dataclasses.replace(node, lhs=restrict_expr(node.lhs, extra), rhs=restrict_expr(node.rhs, extra))
    if isinstance(node, AggregateExpr):
        param = None if node.param is None else restrict_expr(node.param, extra)
        return dataclasses.replace(node, expr=restrict_expr(node.expr, extra), param=param)
    if isinstance(node, Call):
        return dataclasses.replace(node, args=tuple(restrict_expr(a, extra) for a in node.args))
    return node


def restrict_sets(sets: list[list[Matcher]], extra: tuple[Matcher, ...]) -> list[list[Matcher]]:
    """``match[]`` sets with ``extra`` added to each; no sets (labels without match[]) becomes ``[extra]``."""
    if not extra:
        return sets
    return [[*s, *extra] for s in sets] if sets else [list(extra)]


def common_name(cert: Mapping[str, Any] | None) -> str:
    """The subject CN of a certificate as ``ssl.SSLSocket.getpeercert()`` returns it ("" without one)."""
    if not cert:
        return ""
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""
