from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from thanostools.core.errors import ConfigError
from thanostools.core.objstore.config import (
    BucketSpec,
    load_objstore_file,
    parse_bucket_url,
    parse_objstore_yaml,
)

HAVE_GCSFS = importlib.util.find_spec("gcsfs") is not None
HAVE_ADLFS = importlib.util.find_spec("adlfs") is not None


def test_filesystem_config(tmp_path: Path) -> None:
    spec = parse_objstore_yaml(f"type: FILESYSTEM\nconfig:\n  directory: {tmp_path}/data\n")
    assert spec.protocol == "file" and spec.root == str(tmp_path / "data")
    spec = parse_objstore_yaml(f"type: filesystem\nconfig:\n  directory: {tmp_path}\nprefix: /tenant-a/\n")
    assert spec.root == str(tmp_path / "tenant-a")


def test_s3_config_full() -> None:
    spec = parse_objstore_yaml(
        """
type: S3
config:
  bucket: metrics
  endpoint: minio.local:9000
  region: eu-west-1
  access_key: AK
  secret_key: SK
  session_token: TOK
  insecure: true
  prefix: inner
  http_config:
    insecure_skip_verify: true
prefix: outer
"""
    )
    assert spec.protocol == "s3"
    assert spec.root == "metrics/inner/outer"
    assert spec.url == "s3://metrics/inner/outer"
    assert spec.endpoint == "http://minio.local:9000"
    opts = spec.storage_options
    assert opts["endpoint_url"] == "http://minio.local:9000"
    assert (opts["key"], opts["secret"], opts["token"]) == ("AK", "SK", "TOK")
    assert opts["client_kwargs"] == {"region_name": "eu-west-1", "verify": False}
    assert opts["config_kwargs"]["s3"] == {"addressing_style": "path"}
    assert opts["config_kwargs"]["connect_timeout"] <= 5
    assert opts["use_listings_cache"] is False


def test_s3_config_secure_default_endpoint_and_credentials_chain() -> None:
    spec = parse_objstore_yaml("type: S3\nconfig:\n  bucket: b1x\n  endpoint: s3.example.com\n")
    assert spec.endpoint == "https://s3.example.com"
    assert "key" not in spec.storage_options
    spec = parse_objstore_yaml("type: S3\nconfig:\n  bucket: b1x\n")
    assert "endpoint_url" not in spec.storage_options and spec.endpoint is None
    assert spec.storage_options["config_kwargs"]["s3"] == {"addressing_style": "auto"}
    spec = parse_objstore_yaml(
        "type: S3\nconfig:\n  bucket: b1x\n  bucket_lookup_type: virtual-hosted\n  endpoint: h:1\n"
    )
    assert spec.storage_options["config_kwargs"]["s3"] == {"addressing_style": "virtual"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("type: S3\nconfig:\n  endpoint: x\n", "'config.bucket' is missing"),
        ("type: S3\nconfig:\n  bucket: b\n  access_key: a\n", "must be set together"),
        ("type: S3\nconfig:\n  bucket: b\n  insecure: maybe\n", "'config.insecure' must be true or false"),
        ("type: S3\nconfig:\n  bucket: b\n  bucket_lookup_type: weird\n", "bucket_lookup_type"),
        ("type: S3\nconfig:\n  bucket: [a]\n", "'config.bucket' must be a string"),
        ("type: S3\nconfig: [1]\n", "'config' must be a mapping"),
        ("type: FILESYSTEM\nconfig: {}\n", "'config.directory' is missing"),
        ("type: SWIFT\nconfig: {}\n", "objstore type SWIFT is not supported"),
        ("config:\n  bucket: b\n", "'type' is missing"),
        ("- a\n- b\n", "expected a mapping"),
        ("type: S3\nconfig:\n  bucket: 'unterminated\n", "invalid YAML"),
        ("type: S3\n  config: : :\n", "invalid YAML"),
    ],
)
def test_bad_configs(text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_objstore_yaml(text, source="objstore config file x.yaml")
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert message.startswith("objstore config file x.yaml: ")


@pytest.mark.skipif(HAVE_GCSFS, reason="gcsfs is installed")
def test_gcs_without_gcsfs() -> None:
    with pytest.raises(ConfigError, match="objstore type GCS needs the gcsfs package: pip install gcsfs"):
        parse_objstore_yaml("type: GCS\nconfig:\n  bucket: b\n")
    with pytest.raises(ConfigError, match="gcsfs"):
        parse_bucket_url("gs://bucket/prefix")


@pytest.mark.skipif(HAVE_ADLFS, reason="adlfs is installed")
def test_azure_without_adlfs() -> None:
    with pytest.raises(ConfigError, match="objstore type AZURE needs the adlfs package: pip install adlfs"):
        parse_objstore_yaml("type: AZURE\nconfig:\n  container: c\n")
    with pytest.raises(ConfigError, match="adlfs"):
        parse_bucket_url("az://container/prefix")


def test_config_file(tmp_path: Path) -> None:
    path = tmp_path / "objstore.yml"
    path.write_text("type: S3\nconfig:\n  bucket: from-file\n")
    assert load_objstore_file(str(path)).root == "from-file"
    with pytest.raises(ConfigError, match=r"objstore config file .*missing\.yml"):
        load_objstore_file(str(tmp_path / "missing.yml"))
    path.write_text("type: S3\nconfig: {}\n")
    with pytest.raises(ConfigError, match=r"objstore config file .*objstore\.yml: field 'config\.bucket'"):
        load_objstore_file(str(path))


def test_plain_path_and_file_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = parse_bucket_url("./data")
    assert spec == BucketSpec("file", str(tmp_path / "data"), {"auto_mkdir": True}, display="./data")
    assert spec.url == "./data"
    spec = parse_bucket_url(f"file://{tmp_path}/x")
    assert spec.protocol == "file" and spec.root == f"{tmp_path}/x"


def test_s3_url_uses_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    spec = parse_bucket_url("s3://bucket/some/prefix/")
    assert (spec.protocol, spec.root, spec.url) == ("s3", "bucket/some/prefix", "s3://bucket/some/prefix")
    assert spec.storage_options["endpoint_url"] == "http://127.0.0.1:9999"
    assert spec.storage_options["client_kwargs"]["region_name"] == "eu-central-1"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    spec = parse_bucket_url("s3://bucket")
    assert "endpoint_url" not in spec.storage_options


def test_memory_url() -> None:
    spec = parse_bucket_url("memory://scratch")
    assert (spec.protocol, spec.root, spec.url) == ("memory", "/scratch", "memory://scratch")


@pytest.mark.parametrize("url", ["", "ftp://x/y", "s3://", "memory://"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_bucket_url(url)


def test_home_expansion(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_bucket_url("~/blocks").root == os.path.join(str(tmp_path), "blocks")
