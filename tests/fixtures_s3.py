"""S3 test fixtures: one real moto server per session on 127.0.0.1, a fresh bucket per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


@dataclass
class S3TestBucket:
    name: str
    endpoint: str  # "http://127.0.0.1:<port>"
    client: Any  # a boto3 S3 client bound to the moto server, for direct checks

    @property
    def url(self) -> str:
        return f"s3://{self.name}"

    @property
    def host_port(self) -> str:
        return self.endpoint.split("://", 1)[1]

    @property
    def objstore_yaml(self) -> str:
        return (
            "type: S3\n"
            "config:\n"
            f"  bucket: {self.name}\n"
            f"  endpoint: {self.host_port}\n"
            f"  region: {REGION}\n"
            f"  access_key: {ACCESS_KEY}\n"
            f"  secret_key: {SECRET_KEY}\n"
            "  insecure: true\n"
        )

    def write_config(self, tmp_path: Path | str) -> str:
        path = Path(tmp_path) / f"objstore-{self.name}.yaml"
        path.write_text(self.objstore_yaml)
        return str(path)

    def object_keys(self) -> list[str]:
        """Every object key in the bucket, straight from S3."""
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(keys)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """Endpoint URL of a moto S3 server running in this process, stopped at the end of the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                 "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3_bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3TestBucket]:
    """A fresh, empty bucket on the moto server; AWS env vars point at it for the test's duration."""
    import boto3

    _aws_env(monkeypatch, moto_endpoint)
    client = boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
    )
    bucket = S3TestBucket(name=f"tt-{uuid.uuid4().hex[:16]}", endpoint=moto_endpoint, client=client)
    client.create_bucket(Bucket=bucket.name)
    try:
        yield bucket
    finally:
        for key in bucket.object_keys():
            client.delete_object(Bucket=bucket.name, Key=key)
        client.delete_bucket(Bucket=bucket.name)
        client.close()
