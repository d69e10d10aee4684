"""``completions/`` and ``man/`` must match what the current command tree generates."""

from __future__ import annotations

import filecmp
from pathlib import Path

from tests.clihelp import run_cli
from thanostools.cli.gendocs import main as gendocs

ROOT = Path(__file__).resolve().parents[2]


def test_completions_and_man_are_current(tmp_path: Path) -> None:
    gendocs([str(tmp_path)])
    for sub in ("completions", "man"):
        fresh = sorted(p.name for p in (tmp_path / sub).iterdir())
        committed = sorted(p.name for p in (ROOT / sub).iterdir())
        assert fresh == committed, f"{sub}/ is stale: run `make completions`"
        for name in fresh:
            assert filecmp.cmp(tmp_path / sub / name, ROOT / sub / name, shallow=False), (
                f"{sub}/{name} is stale: run `make completions`")


def test_completion_command_prints_script() -> None:
    res = run_cli("completion", "bash")
    assert res.exit_code == 0
    assert "_THANOS_TOOLS_COMPLETE=bash_complete" in res.stdout
    assert (ROOT / "completions" / "thanos-tools.bash").read_text() == res.stdout
