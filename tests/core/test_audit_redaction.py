"""Secrets never reach a log line: the redaction function, and the real CLI's audit lines on stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_s3 import REGION, S3TestBucket
from tests.server.servehelp import subprocess_env
from thanostools.core.redact import REDACTED, is_secret_name, redact_argv, redact_config, redact_text
from thanostools.core.tsdb.writer import BlockWriter

SECRET = "tt-S3cr3t-Zq81xv"
TOKEN = "tt-T0ken-9Qw2pp"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize("text", [
    f"s3://AKIA1234:{SECRET}@bucket/prefix",
    f"https://alice:{SECRET}@example.com/path",
    f"https://{SECRET}@example.com/",
    f"GET /x?bucket=b&X-Amz-Signature={SECRET}&X-Amz-Credential={SECRET}",
    f"http://h/api?password={SECRET}&q=1",
    f"secret_key: {SECRET}",
    f"config: {{secret_key: '{SECRET}', bucket: b}}",
    f'{{"storage_account_key": "{SECRET}"}}',
    f"session_token={SECRET}",
    f"http_config: {{basic_auth: {{password: {SECRET}}}}}",
    f"Authorization: Bearer {SECRET}",
    f"Authorization: Basic {SECRET}",
    f"calling with bearer {SECRET}",
    f'service_account: \'{{"type": "service_account", "private_key": "{PEM!r}"}}\'',
    f"key material {PEM}",
])
def test_redact_text_masks_every_secret(text: str) -> None:
    out = redact_text(text)
    assert SECRET not in out and "MIIEvQIBADAN" not in out and REDACTED in out, out


@pytest.mark.parametrize("text", [
    "bucket: thanos, endpoint: s3.example.com:9000, insecure: true",
    "bearer_token_file: /etc/token",
    "level=warn msg=\"refused request\" client=127.0.0.1 path=/api/v1/query",
    'rate(http_requests_total{job="api"}[5m])',
    "https://example.com/path?query=up&step=15",
])
def test_redact_text_leaves_ordinary_text(text: str) -> None:
    assert redact_text(text) == text


def test_secret_names() -> None:
    for name in ("secret_key", "access_key", "session_token", "password", "bearer_token", "service_account",
                 "storage_account_key", "X-Amz-Signature", "sig", "--s3.secret", "client_secret"):
        assert is_secret_name(name), name
    for name in ("bearer_token_file", "--http.bearer-token-file", "ca_file", "bucket", "endpoint", "user",
                 "security", "signal", "passed", "compass"):
        assert not is_secret_name(name), name


def test_redact_config_is_structural() -> None:
    yaml_text = (f"type: GCS\nconfig:\n  bucket: b\n  service_account: |-\n    {{\"type\": \"service_account\",\n"
                 f"     \"private_key\": \"{SECRET}\"}}\n")
    out = redact_config(yaml_text)
    assert SECRET not in out and "bucket: b" in out and "service_account: <redacted>" in out
    assert redact_config("type: [unclosed") == REDACTED
    assert redact_config(f"{{type: AZURE, config: {{storage_account_key: {SECRET}}}}}") == \
        "{type: AZURE, config: {storage_account_key: <redacted>}}"


def test_redact_argv() -> None:
    argv = ["thanos-tools", "bucket", "upload", "--objstore.config", f"type: S3\nconfig: {{secret_key: {SECRET}}}",
            f"--objstore.config={{type: S3, config: {{session_token: {SECRET}}}}}", "--s3.password", SECRET,
            f"--bucket=s3://k:{SECRET}@b", "--http.bearer-token-file", "/etc/tokens", "--id", "01ABC"]
    out = redact_argv(argv)
    assert SECRET not in " ".join(out)
    assert out[-4:] == ["--http.bearer-token-file", "/etc/tokens", "--id", "01ABC"]
    assert out[:3] == argv[:3]


# --- the real CLI ----------------------------------------------------------------------------------


def _local_block(root: Path) -> str:
    w = BlockWriter(str(root), min_time=1_700_000_000_000, max_time=1_700_000_000_000 + 3_600_000,
                    external_labels={"cluster": "eu1"}, source="test")
    t = np.arange(1_700_000_000_000, 1_700_000_000_000 + 3_600_000, 60_000, dtype=np.int64)
    w.add_samples((("__name__", "up"),), t, np.ones(t.size))
    return w.finish().ulid


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_audit_line_of_a_real_upload_never_shows_the_secret(s3_bucket: S3TestBucket, tmp_path: Path,
                                                             log_format: str) -> None:
    ulid = _local_block(tmp_path / "local")
    inline = (f"type: S3\nconfig:\n  bucket: {s3_bucket.name}\n  endpoint: {s3_bucket.host_port}\n"
              f"  region: {REGION}\n  access_key: testing\n  secret_key: {SECRET}\n  session_token: {TOKEN}\n"
              f"  insecure: true\n  http_config:\n    tls_config: {{insecure_skip_verify: true}}\n")
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "thanostools", "--log.format", log_format, "bucket", *args,
               "--objstore.config", inline]
        res = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path, timeout=300)
        assert res.returncode == 0, res.stderr
        assert SECRET not in res.stderr + res.stdout and TOKEN not in res.stderr + res.stdout
        return res

    run("upload", str(tmp_path / "local" / ulid))
    assert f"{ulid}/meta.json" in s3_bucket.object_keys()  # the secret was used, and worked
    res = run("mark", "--kind", "no-compact", "--id", ulid, "--no-dry-run")
    assert f"{ulid}/no-compact-mark.json" in s3_bucket.object_keys()
    audits = [line for line in res.stderr.splitlines() if "mark-no-compact" in line]
    assert audits, res.stderr
    if log_format == "json":
        record = json.loads(audits[0])
        assert record["audit"] == "mark-no-compact" and "session_token: <redacted>" in record["command"]
        assert f"bucket: {s3_bucket.name}" in record["command"]
    else:
        assert "audit=mark-no-compact" in audits[0] and "secret_key: <redacted>" in audits[0]
