"""Where a bucket lives: Thanos objstore YAML and bucket URLs, turned into fsspec arguments.

Supported YAML types: FILESYSTEM, S3, GCS (needs gcsfs), AZURE (needs adlfs). URLs: a plain path or
``file://...``, ``s3://bucket/prefix``, ``memory://name``, ``gs://bucket/prefix``, ``az://container/prefix``.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from thanostools.core.config.yamlfile import load_yaml, read_config_text
from thanostools.core.errors import ConfigError

# Short timeouts and few retries: an unreachable endpoint must fail in seconds, not minutes.
S3_CONNECT_TIMEOUT_S = 2
S3_READ_TIMEOUT_S = 10
S3_MAX_ATTEMPTS = 3  # in total, including the first try


@dataclass
class BucketSpec:
    """fsspec protocol, root path inside that filesystem, and filesystem constructor options."""

    protocol: str
    root: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    display: str = ""  # how to name the bucket in messages (URL or path as the user wrote it)
    endpoint: str | None = None

    @property
    def url(self) -> str:
        if self.display:
            return self.display
        if self.protocol == "file":
            return self.root
        return f"{self.protocol}://{self.root.lstrip('/')}"


# --- URLs -----------------------------------------------------------------------------------------


def parse_bucket_url(url: str) -> BucketSpec:
    if not url:
        raise ConfigError("empty bucket URL")
    if "://" not in url:
        return _local_spec(url, display=url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    path = (parts.netloc + parts.path).strip("/")
    if scheme == "file":
        return _local_spec(parts.path or "/", display=url)
    if scheme == "memory":
        if not path:
            raise ConfigError(f"bucket URL {url}: memory:// needs a name, e.g. memory://test")
        return BucketSpec("memory", "/" + path, display=f"memory://{path}")
    if not parts.netloc:
        raise ConfigError(f"bucket URL {url}: missing bucket name")
    if scheme in ("s3", "s3a"):
        return _s3_url_spec(path)
    if scheme in ("gs", "gcs"):
        _require_package("gcsfs", f"{scheme}:// URLs")
        return BucketSpec("gcs", path, display=f"gs://{path}")
    if scheme in ("az", "abfs", "abfss"):
        _require_package("adlfs", f"{scheme}:// URLs")
        return BucketSpec("abfs", path, _azure_env_options(), display=f"{scheme}://{path}")
    raise ConfigError(f"bucket URL {url}: unsupported scheme {scheme}:// (use a path, s3://, gs://, az://, memory://)")


def _local_spec(path: str, *, display: str) -> BucketSpec:
    root = os.path.abspath(os.path.expanduser(path))
    return BucketSpec("file", root, {"auto_mkdir": True}, display=display)


def _s3_url_spec(path: str) -> BucketSpec:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    options = _s3_base_options()
    client_kwargs: dict[str, Any] = options["client_kwargs"]
    if endpoint:
        options["endpoint_url"] = endpoint
        options["config_kwargs"]["s3"] = {"addressing_style": "path"}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        client_kwargs["region_name"] = region
    return BucketSpec("s3", path, options, display=f"s3://{path}", endpoint=endpoint)


def _s3_base_options() -> dict[str, Any]:
    return {
        "use_listings_cache": False,
        "skip_instance_cache": True,
        "client_kwargs": {},
        "config_kwargs": {
            "connect_timeout": S3_CONNECT_TIMEOUT_S,
            "read_timeout": S3_READ_TIMEOUT_S,
            "retries": {"total_max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"},
        },
    }


def _azure_env_options() -> dict[str, Any]:
    options: dict[str, Any] = {}
    for env, key in (
        ("AZURE_STORAGE_ACCOUNT_NAME", "account_name"),
        ("AZURE_STORAGE_ACCOUNT_KEY", "account_key"),
        ("AZURE_STORAGE_CONNECTION_STRING", "connection_string"),
    ):
        if os.environ.get(env):
            options[key] = os.environ[env]
    return options


def _require_package(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{what} need the {module} package: pip install {module}")


# --- Thanos objstore YAML -------------------------------------------------------------------------


def load_objstore_file(path: str) -> BucketSpec:
    text = read_config_text(path, "objstore config file")
    return parse_objstore_yaml(text, source=f"objstore config file {path}")


def parse_objstore_yaml(text: str, *, source: str = "objstore config") -> BucketSpec:
    """Parse a Thanos objstore YAML document (``type``, ``config``, optional ``prefix``)."""
    doc = load_yaml(text, source)
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{source}: expected a mapping with 'type' and 'config'")
    kind = _scalar(doc, "type", source, "")
    if not kind:
        raise ConfigError(f"{source}: field 'type' is missing")
    config = doc.get("config") or {}
    if not isinstance(config, Mapping):
        raise ConfigError(f"{source}: field 'config' must be a mapping")
    prefix = _scalar(doc, "prefix", source, "").strip("/")
    builder = _BUILDERS.get(kind.upper())
    if builder is None:
        supported = ", ".join(sorted(_BUILDERS))
        raise ConfigError(f"{source}: objstore type {kind} is not supported (supported: {supported})")
    return builder(config, prefix, source)


def _scalar(d: Mapping[str, Any], key: str, source: str, default: str, *, section: str = "") -> str:
    value = d.get(key)
    if value is None:
        return default
    if isinstance(value, Mapping | list):
        raise ConfigError(f"{source}: field '{section}{key}' must be a string")
    return str(value)


def _flag(d: Mapping[str, Any], key: str, source: str, *, section: str) -> bool:
    value = d.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ConfigError(f"{source}: field '{section}{key}' must be true or false")
    return value


def _join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def _filesystem(config: Mapping[str, Any], prefix: str, source: str) -> BucketSpec:
    directory = _scalar(config, "directory", source, "", section="config.")
    if not directory:
        raise ConfigError(f"{source}: field 'config.directory' is missing")
    spec = _local_spec(directory, display=directory)
    if prefix:
        spec.root = os.path.join(spec.root, prefix)
        spec.display = os.path.join(directory, prefix)
    return spec


def _s3(config: Mapping[str, Any], prefix: str, source: str) -> BucketSpec:
    def text(key: str) -> str:
        return _scalar(config, key, source, "", section="config.")

    bucket = text("bucket")
    if not bucket:
        raise ConfigError(f"{source}: field 'config.bucket' is missing")
    access_key, secret_key = text("access_key"), text("secret_key")
    if bool(access_key) != bool(secret_key):
        raise ConfigError(f"{source}: 'config.access_key' and 'config.secret_key' must be set together")
    insecure = _flag(config, "insecure", source, section="config.")
    options = _s3_base_options()
    client_kwargs: dict[str, Any] = options["client_kwargs"]
    endpoint = _s3_endpoint(text("endpoint"), insecure)
    if endpoint:
        options["endpoint_url"] = endpoint
    if access_key:
        options["key"], options["secret"] = access_key, secret_key
    if text("session_token"):
        options["token"] = text("session_token")
    if text("region"):
        client_kwargs["region_name"] = text("region")
    verify = _s3_verify(config, source)
    if verify is not None:
        client_kwargs["verify"] = verify
    lookup = text("bucket_lookup_type") or "auto"
    style = {"path": "path", "virtual-hosted": "virtual", "auto": "path" if endpoint else "auto"}.get(lookup)
    if style is None:
        raise ConfigError(f"{source}: field 'config.bucket_lookup_type' must be auto, path or virtual-hosted")
    options["config_kwargs"]["s3"] = {"addressing_style": style}
    root = _join(bucket, text("prefix"), prefix)
    return BucketSpec("s3", root, options, display=f"s3://{root}", endpoint=endpoint)


def _s3_endpoint(endpoint: str, insecure: bool) -> str | None:
    if not endpoint:
        return None
    if "://" in endpoint:
        return endpoint
    return f"{'http' if insecure else 'https'}://{endpoint}"


def _s3_verify(config: Mapping[str, Any], source: str) -> bool | str | None:
    http = config.get("http_config") or {}
    if not isinstance(http, Mapping):
        raise ConfigError(f"{source}: field 'config.http_config' must be a mapping")
    tls = http.get("tls_config") or {}
    if not isinstance(tls, Mapping):
        raise ConfigError(f"{source}: field 'config.http_config.tls_config' must be a mapping")
    if _flag(http, "insecure_skip_verify", source, section="config.http_config.") or _flag(
        tls, "insecure_skip_verify", source, section="config.http_config.tls_config."
    ):
        return False
    ca_file = _scalar(tls, "ca_file", source, "", section="config.http_config.tls_config.")
    return ca_file or None


def _gcs(config: Mapping[str, Any], prefix: str, source: str) -> BucketSpec:
    _require_package_for_type("GCS", "gcsfs")
    bucket = _scalar(config, "bucket", source, "", section="config.")
    if not bucket:
        raise ConfigError(f"{source}: field 'config.bucket' is missing")
    options: dict[str, Any] = {}
    service_account = _scalar(config, "service_account", source, "", section="config.")
    if service_account:
        try:
            options["token"] = json.loads(service_account)
        except ValueError:
            raise ConfigError(f"{source}: field 'config.service_account' is not valid JSON") from None
    root = _join(bucket, prefix)
    return BucketSpec("gcs", root, options, display=f"gs://{root}")


def _azure(config: Mapping[str, Any], prefix: str, source: str) -> BucketSpec:
    _require_package_for_type("AZURE", "adlfs")

    def text(key: str) -> str:
        return _scalar(config, key, source, "", section="config.")

    container = text("container")
    if not container:
        raise ConfigError(f"{source}: field 'config.container' is missing")
    options: dict[str, Any] = {}
    for key, option in (
        ("storage_account", "account_name"),
        ("storage_account_key", "account_key"),
        ("storage_connection_string", "connection_string"),
    ):
        if text(key):
            options[option] = text(key)
    account = text("storage_account")
    if account and text("endpoint"):
        options["account_host"] = f"{account}.{text('endpoint')}"
    root = _join(container, prefix)
    return BucketSpec("abfs", root, options, display=f"az://{root}")


def _require_package_for_type(kind: str, module: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"objstore type {kind} needs the {module} package: pip install {module}")


_BUILDERS = {
    "FILESYSTEM": _filesystem,
    "S3": _s3,
    "GCS": _gcs,
    "AZURE": _azure,
}
