"""``thanos-tools completion bash|zsh|fish``: print a shell completion script."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

PROG = "thanos-tools"
COMPLETE_VAR = "_THANOS_TOOLS_COMPLETE"


def completion_script(root: click.Command, shell: str) -> str:
    cls = get_completion_class(shell)
    if cls is None:
        raise click.BadParameter(f"unsupported shell {shell}")
    return cls(root, {}, PROG, COMPLETE_VAR).source()


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (e.g. `eval "$(thanos-tools completion bash)"`)."""
    root = click.get_current_context().find_root().command
    click.echo(completion_script(root, shell), nl=False)
