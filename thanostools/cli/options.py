"""Options shared by commands: bucket selection, time ranges, selectors."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import click

from thanostools.core.errors import ConfigError
from thanostools.core.promql.features import (
    BINOP_FILL_MODIFIERS,
    EXPERIMENTAL_FUNCTIONS,
    EXTENDED_RANGE_SELECTORS,
    Features,
    parse_features,
)
from thanostools.core.timeutil import parse_time_ms
from thanostools.core.workspace import BucketWorkspace

F = Callable[..., Any]

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20,
               "gib": 2**30, "tib": 2**40}


def parse_size(text: str, flag: str) -> int:
    """``268435456``, ``256MiB``, ``1GB`` → bytes."""
    m = _SIZE.match(text.strip())
    if not m:
        raise ConfigError(f"invalid {flag} {text!r} (use bytes, or units like 256MiB, 1GB)")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])


def report_broken_blocks(workspace: BucketWorkspace, *, fail: bool = True) -> None:
    """One stderr line per block whose meta.json cannot be read (block, file, why), after the answer for the
    readable blocks. ``fail``: the answer is incomplete, so the command exits 1; otherwise the lines are
    warnings of a command documented to go on without those blocks."""
    broken = workspace.scan().broken
    for _, err in sorted(broken.items()):
        click.echo(f"{'error' if fail else 'warning'}: {err}", err=True)
    if broken and fail:
        sys.exit(1)


def bucket_options(func: F) -> F:
    """``--bucket``, ``--objstore.config-file``, ``--objstore.config``, ``--cache-dir``."""
    opts = [
        click.option("--bucket", "bucket_url", envvar="THANOS_TOOLS_BUCKET", metavar="URL",
                     help="Bucket: a path, file://, s3://bucket/prefix, memory://name (env THANOS_TOOLS_BUCKET; "
                          "default ./data)."),
        click.option("--objstore.config-file", "objstore_config_file", metavar="FILE",
                     type=click.Path(dir_okay=False), help="Thanos objstore YAML file (FILESYSTEM, S3, GCS, AZURE)."),
        click.option("--objstore.config", "objstore_config", metavar="YAML",
                     help="Thanos objstore YAML given inline (alternative to --objstore.config-file)."),
        click.option("--cache-dir", "cache_dir", metavar="DIR", envvar="THANOS_TOOLS_CACHE_DIR",
                     help="Where fetched byte ranges of remote blocks are cached (env THANOS_TOOLS_CACHE_DIR)."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def from_env(param: str) -> bool:
    """Whether a parameter of the running command got its value from its environment variable."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source(param) is click.core.ParameterSource.ENVIRONMENT


def bucket_url_of(kwargs: dict[str, Any]) -> str | None:
    """``--bucket``, unless an objstore configuration names the bucket instead: both on the command line is a usage
    error (which one was meant?), while THANOS_TOOLS_BUCKET only fills in when no configuration is given."""
    url = kwargs.get("bucket_url")
    config = kwargs.get("objstore_config_file") or kwargs.get("objstore_config")
    if url and config:
        if from_env("bucket_url"):
            return None
        flag = "--objstore.config-file" if kwargs.get("objstore_config_file") else "--objstore.config"
        raise click.UsageError(f"--bucket and {flag} both name a bucket: give one of them")
    return url


def open_workspace(kwargs: dict[str, Any]) -> BucketWorkspace:
    """Pop the bucket options out of a command's kwargs and open the workspace."""
    url = bucket_url_of(kwargs)
    kwargs.pop("bucket_url", None)
    return BucketWorkspace.open(
        url,
        objstore_config_file=kwargs.pop("objstore_config_file", None),
        objstore_config=kwargs.pop("objstore_config", None),
        cache_dir=kwargs.pop("cache_dir", None),
    )


class TimeParam(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """RFC3339, unix ms, or relative (``-2w``, ``now-1h``) → unix ms."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        return parse_time_ms(str(value))


TIME = TimeParam()


def time_range_options(func: F) -> F:
    func = click.option("--max-time", type=TIME, default=None, metavar="TIME",
                        help="End of the time range (RFC3339, unix ms, or relative like -2w).")(func)
    return click.option("--min-time", type=TIME, default=None, metavar="TIME",
                        help="Start of the time range (RFC3339, unix ms, or relative like -2w).")(func)


def _features(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> Features:
    features = parse_features(values)
    for name in features.unknown:
        click.echo(f"warning: Unknown option for --enable-feature: {name}", err=True)
    return features


def enable_feature_option(func: F) -> F:
    """``--enable-feature NAME[,NAME]`` (repeatable) as the ``features`` argument; unknown names are warned about."""
    return click.option("--enable-feature", "features", multiple=True, metavar="NAME", callback=_features,
                        help=f"Enable a feature Prometheus keeps behind a flag (repeatable, comma-separated): "
                             f"{EXPERIMENTAL_FUNCTIONS} allows experimental PromQL functions, "
                             f"{EXTENDED_RANGE_SELECTORS} the anchored and smoothed range modifiers, "
                             f"{BINOP_FILL_MODIFIERS} fill() modifiers on binary operators.")(func)


def parse_label_args(values: tuple[str, ...], what: str = "--label") -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not name=value", param_hint=what)
        out[name.strip()] = value.strip()
    return out
