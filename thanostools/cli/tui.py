"""``thanos-tools tui``: the interactive PromQL console and block browser (Textual, imported lazily)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import click

from thanostools.cli.options import bucket_options, enable_feature_option, from_env, open_workspace

if TYPE_CHECKING:
    from thanostools.core.promql.features import Features
    from thanostools.core.series import Querier
    from thanostools.tui.sources import Source


def _remote_store_source(endpoints: tuple[str, ...]) -> Source:
    """StoreAPI endpoints behind one querier (channels shared); each query gets a view with its options,
    and dedup happens over all endpoints together, as in a Thanos querier."""
    import copy

    from thanostools.core.dedup import deduplicated
    from thanostools.core.sources.remote import RemoteStoreQuerier
    from thanostools.tui.sources import QuerySettings, StoreSource

    shared = RemoteStoreQuerier(list(endpoints))

    def make(settings: QuerySettings, resolution_ms: int) -> Querier:
        view = copy.copy(shared)
        view.partial_response = settings.partial_response
        view.max_source_resolution_ms = resolution_ms
        return deduplicated(view, settings.replica_labels, settings.dedup)

    return StoreSource(",".join(endpoints), make)


def _source(endpoints: tuple[str, ...], url: str | None, bearer_token_file: str | None, basic_user: str | None,
            basic_password_file: str | None, kw: dict[str, Any]) -> Source:
    from thanostools.tui.httpsource import HttpAuth, PromHTTPClient
    from thanostools.tui.sources import BucketSource, HttpSource

    bucket_flags = ("bucket_url", "objstore_config_file", "objstore_config")
    # A bucket from $THANOS_TOOLS_BUCKET does not conflict with --url or --endpoint given on the command line.
    bucket_given = any(kw.get(k) and not from_env(k) for k in bucket_flags)
    if sum(bool(x) for x in (endpoints, url, bucket_given)) > 1:
        raise click.UsageError("choose one source: bucket flags, --endpoint or --url")
    if (bearer_token_file or basic_user or basic_password_file) and not url:
        raise click.UsageError("--bearer-token-file and --basic-auth-* go with --url")
    if url:
        auth = HttpAuth.from_files(bearer_token_file, basic_user, basic_password_file)
        return HttpSource(PromHTTPClient(url, auth=auth))
    if endpoints:
        return _remote_store_source(endpoints)
    return BucketSource(open_workspace(kw))


def _log_to_file() -> str:
    """The terminal belongs to the UI while it runs: logs (and audit lines) go to a file instead."""
    from thanostools.tui.history import data_dir

    path = data_dir() / "tui.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger("thanostools")
    formatter = root.handlers[0].formatter if root.handlers else None
    handler = logging.FileHandler(path, encoding="utf-8")
    if formatter is not None:
        handler.setFormatter(formatter)
    root.handlers = [handler]
    return str(path)


@click.command("tui")
@bucket_options
@enable_feature_option
@click.option("--endpoint", "endpoints", multiple=True, metavar="HOST:PORT",
              help="Query remote Thanos StoreAPI endpoints (sidecar, store, serve); repeatable.")
@click.option("--url", metavar="URL",
              help="Query a Prometheus-compatible HTTP API (Prometheus, Thanos query, thanos-tools serve).")
@click.option("--bearer-token-file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Send the token in this file as 'Authorization: Bearer' (with --url).")
@click.option("--basic-auth-user", metavar="USER", help="HTTP basic auth user (with --url).")
@click.option("--basic-auth-password-file", metavar="FILE", type=click.Path(dir_okay=False),
              help="HTTP basic auth password, read from this file (with --url).")
@click.option("--allow-admin", is_flag=True,
              help="Allow marking blocks (deletion, no-compact, no-downsample) in the block browser.")
@click.option("--query", "initial_query", default="", metavar="EXPR", help="Start with this expression in the editor.")
def tui(endpoints: tuple[str, ...], url: str | None, bearer_token_file: str | None, basic_auth_user: str | None,
        basic_auth_password_file: str | None, allow_admin: bool, initial_query: str, features: Features,
        **kw: Any) -> None:
    """Interactive PromQL console and block browser in the terminal.

    The source is a bucket (the usual bucket flags; default ./data), a remote StoreAPI (--endpoint)
    or any Prometheus-compatible HTTP API (--url). F1 shows the keys of the focused widget, ctrl+p
    every action. Query history lives in the user data dir (env THANOS_TOOLS_DATA_DIR overrides).
    """
    source = _source(endpoints, url, bearer_token_file, basic_auth_user, basic_auth_password_file, kw)
    from thanostools.tui.app import AppConfig, ThanosToolsApp

    _log_to_file()
    ThanosToolsApp(AppConfig(source, allow_admin=allow_admin, initial_query=initial_query,
                             promql_features=features.promql)).run()
