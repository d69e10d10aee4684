"""Global flags (--log.level, --log.format) are accepted wherever they are written, as operators type them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clihelp import run_cli
from thanostools.cli.main import hoist_global_flags


@pytest.mark.parametrize("args", [
    ["--log.level=debug", "bucket", "ls", "--bucket", "{root}"],
    ["bucket", "ls", "--bucket", "{root}", "--log.level", "debug"],
    ["bucket", "--log.level=debug", "ls", "--bucket", "{root}"],
])
def test_log_level_anywhere_takes_effect(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")  # skipped by the listing, logged at debug level only
    res = run_cli(*[a.replace("{root}", str(tmp_path)) for a in args])
    assert res.exit_code == 0, res.stderr
    assert "dangling symlink" in res.stderr
    quiet = run_cli("bucket", "ls", "--bucket", str(tmp_path))
    assert "dangling symlink" not in quiet.stderr


def test_log_format_after_the_command_gives_json_lines(tmp_path: Path) -> None:
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    res = run_cli("bucket", "ls", "--bucket", str(tmp_path), "--log.level", "debug", "--log.format=json")
    assert res.exit_code == 0, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines and all(isinstance(json.loads(line), dict) for line in lines)


def test_bad_global_flag_value_after_the_command_is_a_usage_error(tmp_path: Path) -> None:
    res = run_cli("bucket", "ls", "--bucket", str(tmp_path), "--log.level", "loud")
    assert res.exit_code == 2
    assert "--log.level" in res.stderr


def test_nothing_after_double_dash_moves() -> None:
    assert hoist_global_flags(["query", "--", "--log.level", "x"]) == ["query", "--", "--log.level", "x"]
    assert hoist_global_flags(["a", "--log.format=json", "b"]) == ["--log.format=json", "a", "b"]


def test_bucket_and_objstore_config_together_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "objstore.yml"
    (tmp_path / "other").mkdir()
    config.write_text(f"type: FILESYSTEM\nconfig:\n  directory: {tmp_path / 'other'}\n")
    res = run_cli("bucket", "ls", "--bucket", str(tmp_path), "--objstore.config-file", str(config))
    assert res.exit_code == 2
    assert "--bucket and --objstore.config-file both name a bucket" in res.stderr
    monkeypatch.setenv("THANOS_TOOLS_BUCKET", str(tmp_path))
    res = run_cli("bucket", "ls", "--objstore.config-file", str(config))
    assert res.exit_code == 0, res.stderr  # the environment's bucket is only a default


def test_bucket_pointing_at_a_block_or_a_file_says_which_directory_to_use(tmp_path: Path) -> None:
    res = run_cli("bucket", "generate", "--bucket", str(tmp_path), "--series", "20", "--duration", "30m",
                  "--start", "2023-11-14T22:00:00Z", "-o", "ids")
    assert res.exit_code == 0, res.stderr
    block = tmp_path / res.stdout.split()[0]
    for wrong in (block, block / "meta.json"):
        res = run_cli("bucket", "ls", "--bucket", str(wrong))
        assert res.exit_code == 1
        assert f"(--bucket {tmp_path}" in res.stderr and len(res.stderr.strip().splitlines()) == 1
