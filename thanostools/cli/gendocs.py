"""Regenerate ``completions/`` (bash, zsh, fish) and ``man/`` (man pages) from the click command tree.

Run ``python -m thanostools.cli.gendocs [ROOT]``; a test regenerates into a temp dir and diffs.
"""

from __future__ import annotations

import os
import sys

from thanostools import __version__
from thanostools.cli.completion import PROG, completion_script
from thanostools.cli.main import cli

SHELL_FILES = {"bash": "thanos-tools.bash", "zsh": "_thanos-tools", "fish": "thanos-tools.fish"}
MAN_DATE = "2026-01-01"  # fixed so regenerated pages do not differ by build date


def write_completions(root: str) -> None:
    out = os.path.join(root, "completions")
    os.makedirs(out, exist_ok=True)
    for shell, name in SHELL_FILES.items():
        with open(os.path.join(out, name), "w") as fh:
            fh.write(completion_script(cli, shell))


def write_man(root: str) -> None:
    from click_man.core import write_man_pages

    out = os.path.join(root, "man")
    os.makedirs(out, exist_ok=True)
    write_man_pages(PROG, cli, version=__version__, target_dir=out, date=MAN_DATE)


def main(argv: list[str]) -> None:
    root = argv[0] if argv else "."
    write_completions(root)
    write_man(root)


if __name__ == "__main__":
    main(sys.argv[1:])
