"""The ``bnfold`` command line: parse, call the library, render, map errors to exit codes.

Each command lives in ``bnfold/commands/<name>.py``: its option groups build the settings
objects, it calls the library and renders what comes back; what a command does lives in the
library (``bnfold.api``, ``bnfold.verify``, ``bnfold.bench``). Every failure reaches the user as one ``error:`` line and a documented exit code
(see ``bnfold.errors.EXIT_CODES``); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from .errors import EXIT_CODES, BnfoldError, Interrupted, first_line
from .version import __version__

INTERNAL_ERROR_EXIT = 70


class BnfoldGroup(click.Group):
    """A click group that turns every exception into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        debug = "--debug" in sys.argv[1:] or bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except BnfoldError as err:
            if debug:
                traceback.print_exc()
            _print_error(str(err))
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            # Every file is written to a staging folder and renamed into place
            # (storage/outputs), so whatever was interrupted left no partial file.
            if debug:
                traceback.print_exc()
            _print_error("interrupted; no partial output was left behind (run it again)")
            ctx.exit(Interrupted.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence for users
            if debug:
                traceback.print_exc()
            _print_error(
                f"internal error: {type(exc).__name__}: {first_line(exc)}"
                " (a bug in bnfold: rerun with --debug and report it)"
            )
            ctx.exit(INTERNAL_ERROR_EXIT)


def _print_error(message: str) -> None:
    click.echo(f"error: {message}", err=True)


def _exit_code_epilog() -> str:
    return "Exit codes: " + "; ".join(f"{code} {text}" for code, text in EXIT_CODES.items())


@click.group(
    cls=BnfoldGroup,
    epilog=_exit_code_epilog(),
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="bnfold")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def main(debug: bool) -> None:
    """Fold BatchNormalization into neighbouring layers of ONNX models, prove the result
    equivalent under onnxruntime, and measure the latency gained."""


def _commands() -> None:
    from .commands import bench, check, optimize, verify

    for module in (optimize, verify, check, bench):
        main.add_command(module.command)


_commands()
