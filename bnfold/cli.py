"""The ``bnfold`` command line: parse, call the library, render, map errors to exit codes.

Each command lives in ``bnfold/commands/<name>.py``: its option groups build the settings
objects, it calls the library and renders what comes back; what a command does lives in the
library (``bnfold.api``, ``bnfold.verify``, ``bnfold.bench``). Every failure reaches the user as one ``error:`` line and a documented exit code
(see ``bnfold.errors.EXIT_CODES``); ``--debug`` shows the traceback instead.

A closed stdout (``bnfold … | head``) is not an error: the rest of the printed report goes to
``/dev/null`` (the Python documentation's recipe for ``BrokenPipeError``), the command still
writes every file it was asked for, and it exits with its own result code.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import IO, Any

import click

from .errors import EXIT_CODES, BnfoldError, EnvironmentProblem, Interrupted, first_line
from .version import __version__

INTERNAL_ERROR_EXIT = 70


class BnfoldGroup(click.Group):
    """A click group that turns every exception into one line and an exit code."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # Run as the program (arguments from sys.argv), not called by a test or another tool.
        as_program = not args and kwargs.get("args") is None
        try:
            return super().main(*args, **kwargs)
        finally:
            # The command is over and its exit code decided: a Ctrl-C while Python shuts down
            # (joining the recipe writer's threads) has nothing left to stop, and would only
            # print "Exception ignored … KeyboardInterrupt" with a traceback.
            if as_program and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    def invoke(self, ctx: click.Context) -> Any:
        debug = "--debug" in sys.argv[1:] or bool(ctx.params.get("debug"))
        stdout = sys.stdout
        sys.stdout = ClosedPipeSafe(stdout)
        try:
            return self._invoke(ctx, debug)
        finally:
            sys.stdout = stdout

    def _invoke(self, ctx: click.Context, debug: bool) -> Any:
        try:
            try:
                return super().invoke(ctx)
            finally:
                sys.stdout.flush()  # a closed pipe is dropped here too, never at exit
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
                f" (a bug in bnfold: rerun as `{debug_command(ctx)}` and report it)"
            )
            ctx.exit(INTERNAL_ERROR_EXIT)


class ClosedPipeSafe:
    """stdout that survives its reader going away (``| head``): on ``BrokenPipeError`` it points
    the file descriptor at ``/dev/null`` and drops what is printed after, so the command goes on
    to write its files and exit with its own code."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.pipe_closed = False

    def write(self, text: str) -> int:
        if not self.pipe_closed:
            try:
                self._stream.write(text)
            except BrokenPipeError:
                self._closed()
        return len(text)

    def flush(self) -> None:
        if not self.pipe_closed:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._closed()

    def _closed(self) -> None:
        self.pipe_closed = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # not a real file (a test's buffer): nothing to redirect
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def debug_command(ctx: click.Context) -> str:
    """``bnfold --debug optimize …``: the failing command again, ``--debug`` where it works
    (before the command name)."""
    command = ctx.invoked_subcommand or "COMMAND"
    return f"bnfold --debug {command} …"


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


def start_up(load: Callable[[], None]) -> None:
    """Run the import phase (onnx, numpy, rich: a second or so) like a command: Ctrl-C is one
    line and exit 130, a missing or broken dependency one line with the repair and exit 8."""
    try:
        load()
    except KeyboardInterrupt:
        _print_error("interrupted while starting; nothing was done")
        sys.exit(Interrupted.exit_code)
    except ImportError as exc:
        _print_error(missing_dependency(exc))
        sys.exit(EnvironmentProblem.exit_code)


def missing_dependency(exc: ImportError) -> str:
    """One line naming the dependency ``sys.executable`` cannot import, and the fix."""
    name = exc.name or first_line(exc)
    return (
        f"bnfold's dependency `{name}` cannot be imported by {sys.executable}"
        " (install bnfold into this Python: `pip install -e .` in the checkout, or `make demo`"
        " and run .venv/bin/bnfold)"
    )


start_up(_commands)
