"""``thanos-tools serve``: the Prometheus HTTP API and the Thanos StoreAPI over a bucket's blocks."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from typing import Any

import click

from thanostools.cli.options import bucket_options, bucket_url_of, enable_feature_option, parse_size
from thanostools.cli.query import parse_step_ms
from thanostools.core.errors import ConfigError
from thanostools.core.promql.features import Features
from thanostools.core.redact import redact_argv
from thanostools.core.timeutil import parse_time_ms

_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def parse_rate(text: str, flag: str = "--query.rate-limit") -> tuple[float, int]:
    """``RATE`` or ``RATE:BURST`` per second per client (0 turns rate limiting off)."""
    rate, _, burst = text.strip().partition(":")
    try:
        r, b = float(rate), int(burst) if burst else 0
    except ValueError:
        raise ConfigError(f"invalid {flag} {text!r} (use a rate per second, e.g. 10 or 10:20)") from None
    if r < 0 or b < 0:
        raise ConfigError(f"invalid {flag} {text!r}: must not be negative")
    return r, b


def _seconds(text: str, flag: str) -> float:
    ms = parse_step_ms(text, flag)
    if ms <= 0:
        raise ConfigError(f"{flag} must be positive, got {text!r}")
    return ms / 1000


def _check_endpoints(endpoints: tuple[str, ...]) -> None:
    for e in endpoints:
        host, sep, port = e.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"invalid --endpoint {e!r} (use host:port)")


def _check_tls(cert: str | None, key: str | None, ca: str | None) -> None:
    if bool(cert) != bool(key):
        raise ConfigError("--grpc-server-tls-cert and --grpc-server-tls-key go together")
    if ca and not cert:
        raise ConfigError("--grpc-server-tls-client-ca needs --grpc-server-tls-cert and --grpc-server-tls-key")


def _flags(ctx: click.Context) -> dict[str, str]:
    """What ``/api/v1/status/flags`` shows: every flag by its long name, as text."""
    out: dict[str, str] = {}
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or not param.name:
            continue
        long = max(param.opts, key=len).lstrip("-")
        value = ctx.params.get(param.name)
        if isinstance(value, Features):
            value = value.names
        if isinstance(value, tuple):
            value = ",".join(value)
        text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        out[long] = redact_argv([f"--{long}", text])[1] if text else text  # inline configs, URLs with credentials
    return out


def _exit_now_if_busy(code: int) -> None:
    """Worker threads still running a query past the grace period must not hold the process up."""
    busy = [t for t in threading.enumerate() if t.name.startswith("thanos-tools") and t.is_alive()]
    if busy:
        logging.shutdown()
        sys.stderr.flush()
        os._exit(code)


@click.command("serve")
@bucket_options
@click.option("--http-address", default="127.0.0.1:10902", show_default=True, metavar="HOST:PORT",
              help="Listen address of the Prometheus HTTP API, health and metrics endpoints.")
@click.option("--grpc-address", default="127.0.0.1:10901", show_default=True, metavar="HOST:PORT",
              help="Listen address of the Thanos StoreAPI (gRPC); empty turns gRPC off.")
@click.option("--http.config", "http_config", metavar="FILE", type=click.Path(dir_okay=False),
              help="Prometheus web config YAML: tls_server_config, basic_auth_users (bcrypt), headers.")
@click.option("--http.bearer-token-file", "bearer_token_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Accept `Authorization: Bearer <token>` for any token in this file (one per line).")
@click.option("--http.auth-failure-limit", "auth_failure_limit", default="1:10", show_default=True,
              metavar="RATE[:BURST]",
              help="Failed logins per second per client address; beyond it 429 without checking the password. "
                   "0: off.")
@click.option("--http.authz-config-file", "authz_config_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Authorization policies: label matchers per user and admin users (YAML, see the README).")
@click.option("--grpc-server-tls-cert", metavar="FILE", help="TLS certificate for gRPC (PEM).")
@click.option("--grpc-server-tls-key", metavar="FILE", help="TLS key for gRPC (PEM).")
@click.option("--grpc-server-tls-client-ca", metavar="FILE",
              help="CA for gRPC client certificates (mTLS: clients must present one it signed).")
@click.option("--endpoint", "endpoints", multiple=True, metavar="HOST:PORT",
              help="Remote StoreAPI to query as well (Thanos sidecar, store, receiver, another serve); repeatable.")
@click.option("--endpoint.timeout", "endpoint_timeout", default="30s", show_default=True, metavar="DURATION",
              help="Timeout of one call to a remote endpoint.")
@click.option("--query.replica-label", "replica_labels", multiple=True, metavar="NAME",
              help="Label telling replicas apart; series equal but for it are merged (repeatable).")
@click.option("--sync-interval", default="3m", show_default=True, metavar="DURATION",
              help="How often the bucket is listed again for new and deleted blocks.")
@click.option("--min-time", metavar="TIME", help="Serve only data from this time (RFC3339, unix ms, or -2w).")
@click.option("--max-time", metavar="TIME", help="Serve only data up to this time (RFC3339, unix ms, or -1d).")
@click.option("--selector.relabel-config-file", "relabel_config_file", metavar="FILE",
              type=click.Path(dir_okay=False),
              help="Relabel config over block external labels (and __block_id): keep/drop/hashmod to shard.")
@click.option("--cache.max-bytes", "cache_max_bytes", default="256MiB", show_default=True, metavar="SIZE",
              help="In-memory cache of hot index and chunk ranges of remote blocks.")
@click.option("--query.timeout", "query_timeout", default="2m", show_default=True, metavar="DURATION",
              help="Longest a query may run.")
@click.option("--query.max-samples", "max_samples", default=50_000_000, show_default=True,
              help="Most samples a query may hold in memory at once.")
@click.option("--query.max-series", "max_series", default=0, show_default=True,
              help="Most series one selector may select (0: no limit).")
@click.option("--query.max-concurrent", "max_concurrent", default=20, show_default=True,
              type=click.IntRange(min=1), help="Queries evaluated at once; more wait, then get 503.")
@click.option("--query.rate-limit", "rate_limit", default="0", show_default=True, metavar="RATE[:BURST]",
              help="Queries per second per client (user or address); beyond it 429 with Retry-After. 0: off.")
@click.option("--query-log-file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Append one JSON line per query to this file.")
@click.option("--grace-period", default="2m", show_default=True, metavar="DURATION",
              help="On SIGTERM, how long in-flight requests may take to finish.")
@click.option("--lookback-delta", default="5m", show_default=True, metavar="DURATION",
              help="How far back an instant selector looks for a sample.")
@enable_feature_option
@click.pass_context
def serve(ctx: click.Context, /, **kw: Any) -> None:
    """Serve the bucket's blocks: Prometheus HTTP API (Grafana can use it) and Thanos StoreAPI (gRPC).

    Read-only: nothing is ever written to the bucket. Listens on loopback unless told otherwise.
    """
    config = _config(ctx, kw)
    from thanostools.server.daemon import serve as run_daemon

    code = run_daemon(config)
    _exit_now_if_busy(code)
    ctx.exit(code)


def _config(ctx: click.Context, kw: dict[str, Any]) -> Any:
    from thanostools.server.state import ServerConfig

    for flag in ("min_time", "max_time"):
        if kw[flag]:
            parse_time_ms(kw[flag])  # fail now, not at the first sync
    for name in kw["replica_labels"]:
        if not _LABEL.match(name):
            raise ConfigError(f"invalid --query.replica-label {name!r}")
    _check_endpoints(kw["endpoints"])
    _check_tls(kw["grpc_server_tls_cert"], kw["grpc_server_tls_key"], kw["grpc_server_tls_client_ca"])
    rate, burst = parse_rate(kw["rate_limit"])
    auth_rate, auth_burst = parse_rate(kw["auth_failure_limit"], "--http.auth-failure-limit")
    if kw["max_samples"] <= 0 or kw["max_series"] < 0:
        raise ConfigError("--query.max-samples must be positive and --query.max-series not negative")
    return ServerConfig(
        bucket_url=bucket_url_of(kw), objstore_config_file=kw["objstore_config_file"],
        objstore_config=kw["objstore_config"], cache_dir=kw["cache_dir"],
        cache_max_bytes=parse_size(kw["cache_max_bytes"], "--cache.max-bytes"), http_address=kw["http_address"],
        grpc_address=kw["grpc_address"], http_config_file=kw["http_config"],
        bearer_token_file=kw["bearer_token_file"], grpc_tls_cert=kw["grpc_server_tls_cert"],
        grpc_tls_key=kw["grpc_server_tls_key"], grpc_tls_client_ca=kw["grpc_server_tls_client_ca"],
        endpoints=tuple(kw["endpoints"]), endpoint_timeout_s=_seconds(kw["endpoint_timeout"], "--endpoint.timeout"),
        replica_labels=tuple(kw["replica_labels"]), sync_interval_s=_seconds(kw["sync_interval"], "--sync-interval"),
        min_time=kw["min_time"], max_time=kw["max_time"], relabel_config_file=kw["relabel_config_file"],
        query_timeout_s=_seconds(kw["query_timeout"], "--query.timeout"), max_samples=kw["max_samples"],
        max_series=kw["max_series"], max_concurrent=kw["max_concurrent"], rate_limit=rate, rate_burst=burst,
        auth_failure_rate=auth_rate, auth_failure_burst=auth_burst, authz_config_file=kw["authz_config_file"],
        query_log_file=kw["query_log_file"], grace_period_s=parse_step_ms(kw["grace_period"], "--grace-period") / 1000,
        lookback_delta_ms=round(_seconds(kw["lookback_delta"], "--lookback-delta") * 1000), flags=_flags(ctx),
        promql_features=kw["features"].promql,
    )
