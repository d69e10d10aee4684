"""The ``thanos-tools`` root command: global flags, command groups, and error → exit code mapping."""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

import click

from thanostools import __version__
from thanostools.cli.logsetup import setup_logging
from thanostools.core.errors import ThanosToolsError
from thanostools.core.redact import redact_text

EXIT_INTERRUPTED = 130


GLOBAL_FLAGS = ("--log.level", "--log.format")


def hoist_global_flags(args: list[str]) -> list[str]:
    """The arguments with the global flags (wherever they were written: ``bucket ls --log.level debug``)
    moved in front of the command, as click only reads them there. Nothing after ``--`` moves."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in GLOBAL_FLAGS and i + 1 < len(args):
            front.extend(args[i : i + 2])
            i += 2
            continue
        if arg.split("=", 1)[0] in GLOBAL_FLAGS and "=" in arg:
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


class RootGroup(click.Group):
    """Turns every known error into one line on stderr and an exit code; never a traceback."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_flags(args))

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("standalone_mode", True)
        try:
            result = super().main(*args, **{**kwargs, "standalone_mode": False})
            if isinstance(result, int) and not isinstance(result, bool) and result:
                sys.exit(result)  # out of standalone mode, click hands back ctx.exit(code) instead of exiting
            return result
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            message = exc.format_message()
            if redact_text(message) != message:  # a bad flag value is echoed back: without its secrets
                click.echo(f"Error: {redact_text(message)}", err=True)
            else:
                exc.show()
            sys.exit(exc.exit_code)
        except click.exceptions.Abort as exc:
            # click turns Ctrl-C into Abort before we see it; keep the conventional exit code for it.
            if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
                click.echo("interrupted", err=True)
                sys.exit(EXIT_INTERRUPTED)
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except ThanosToolsError as exc:
            click.echo(redact_text(f"error: {exc}"), err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            # The reader went away (e.g. `| head`); that is not an error of ours.
            sys.stderr.close()
            sys.exit(0)
        except OSError as exc:
            click.echo(redact_text(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")), err=True)
            sys.exit(1)
        except Exception as exc:  # a bug of ours: one line for the user, the traceback only with debug logging
            if logging.getLogger("thanostools").isEnabledFor(logging.DEBUG):
                sys.stderr.write(redact_text("".join(traceback.format_exception(exc))))
            click.echo(redact_text(f"internal error: {type(exc).__name__}: {_first_line(exc)} "
                                   "(run with --log.level=debug for details)"), err=True)
            sys.exit(1)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="thanos-tools")
@click.option("--log.level", "log_level", type=click.Choice(["debug", "info", "warn", "error"]), default="info",
              show_default=True, help="Only log messages with this level or above.")
@click.option("--log.format", "log_format", type=click.Choice(["logfmt", "json"]), default="logfmt",
              show_default=True, help="Log format on stderr.")
def cli(log_level: str, log_format: str) -> None:
    """One toolkit for Prometheus/Thanos TSDB blocks, local or in object storage."""
    setup_logging(log_level, log_format)


def _register() -> None:
    from thanostools.cli.bucket import bucket
    from thanostools.cli.completion import completion
    from thanostools.cli.promql import promql
    from thanostools.cli.query import query
    from thanostools.cli.serve import serve
    from thanostools.cli.tui import tui

    cli.add_command(bucket)
    cli.add_command(completion)
    cli.add_command(query)
    cli.add_command(promql)
    cli.add_command(tui)
    cli.add_command(serve)


_register()


def main() -> None:
    cli.main(prog_name="thanos-tools")
