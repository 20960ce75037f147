"""Options and rendering helpers shared by the commands."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
from rich.console import Console

from ..modelio import write_text_atomic


def stdout_console(quiet: bool = False) -> Console:
    """A console for the human-readable report (plain text when not a terminal)."""
    return Console(quiet=quiet, soft_wrap=False, width=None if sys.stdout.isatty() else 160)


def append_github_summary(markdown: str) -> None:
    """Append ``markdown`` to the GitHub Actions job summary when running there.

    Best effort: a summary that cannot be written is a warning, never a failed fold.
    """
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if not summary:
        return
    try:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(markdown + "\n")
    except OSError as exc:
        click.echo(f"warning: cannot append to GITHUB_STEP_SUMMARY: {exc.strerror}", err=True)


def write_text(path: Path, text: str) -> None:
    """Write a report file atomically (``OutputWriteError``, exit 6, when it cannot be)."""
    write_text_atomic(path, text)


# The loader gives a clearer one-line error than click (missing, folder, empty, FIFO...).
existing_model = click.Path(exists=False, dir_okay=True, path_type=Path)


@contextlib.contextmanager
def progress_status(enabled: bool) -> Iterator[Callable[[str], None]]:
    """A spinner line on stderr for steps that take more than a moment (large models).

    Yields a function that sets its text. Off (a no-op) when stderr is not a terminal, so
    logs and pipelines stay clean.
    """
    if not enabled:
        yield lambda text: None
        return
    with Console(stderr=True).status("") as status:
        yield status.update


def input_options(command: Callable[..., object]) -> Callable[..., object]:
    """``--shape``, ``--dim``, ``--range``, ``--default-dim``: how verify and bench size and
    fill the inputs they generate (``bnfold.verify.inputs``)."""
    options = [
        click.option(
            "--shape",
            "shapes",
            multiple=True,
            metavar="NAME=AxBxC",
            help="Shape of one input (repeatable).",
        ),
        click.option(
            "--dim",
            "dims",
            multiple=True,
            metavar="SYMBOL=N",
            help="Size of a symbolic dim, by name (repeatable).",
        ),
        click.option(
            "--range",
            "ranges",
            multiple=True,
            metavar="NAME=LO:HI",
            help="Values of one input drawn from [LO, HI) (repeatable). Default: floats N(0,1), "
            "integers [0,10), gather indices [0, table size).",
        ),
        click.option(
            "--default-dim",
            type=click.IntRange(min=0),
            default=None,
            help="Size of every symbolic dim not set otherwise. Default: 1 for the batch "
            "(axis 0); other dims get a size every Conv/pool in the graph accepts (1 when "
            "there is none). dim_value <= 0 counts as symbolic.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command
