"""Option groups shared by the commands, defined once (same names, same help everywhere).

- ``provider_options``: ``--providers``, ``--level`` (verify, bench, optimize --verify/--bench)
- ``input_options``: ``--shape``, ``--dim``, ``--range``, ``--default-dim``, ``--inputs``
- ``report_options``: ``--report``, ``--markdown``

Each group is a decorator; ``input_arguments`` turns the parsed strings into the keyword
arguments ``bnfold.verify`` and ``bnfold.bench`` take.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import UsageError
from .parsing import parse_dim_options, parse_range_options, parse_shape_options

F = TypeVar("F", bound=Callable[..., Any])

PROVIDERS_HELP = (
    "Comma list of execution providers: cpu, cuda, tensorrt, rocm (or full onnxruntime names). "
    "Default: cpu, plus cuda when CUDA really works here. A provider named here that cannot "
    "run exits 4."
)
LEVEL_HELP = (
    "Comma list of onnxruntime optimization levels for the candidate: disable, basic, "
    "extended, all."
)


def _apply(command: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        command = option(command)
    return command


def provider_options(level_default: str | None) -> Callable[[F], F]:
    """``--providers LIST`` and ``--level LIST`` (``level_default`` None: the library's)."""
    level_help = LEVEL_HELP + (
        " The reference always runs on CPU with optimizations disabled."
        if level_default in (None, "all")
        else " Each level is its own row."
    )
    if level_default is None:
        level_help += " Default: all for verify, disable,all for bench."

    def decorate(command: F) -> F:
        return _apply(
            command,
            [
                click.option("--providers", "providers", metavar="LIST", help=PROVIDERS_HELP),
                click.option(
                    "--level",
                    "levels",
                    metavar="LIST",
                    default=level_default,
                    show_default=level_default is not None,
                    help=level_help,
                ),
            ],
        )

    return decorate


def input_options(command: F) -> F:
    """How verify and bench size and fill the inputs they run the models on."""
    return _apply(
        command,
        [
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
                help="Values of one input drawn from [LO, HI) (repeatable). Default: floats "
                "N(0,1), integers [0,10), gather indices [0, table size).",
            ),
            click.option(
                "--default-dim",
                type=click.IntRange(min=0),
                default=None,
                help="Size of every symbolic dim not set otherwise. Default: 1 for the batch "
                "(axis 0); other dims get a size every Conv/pool in the graph accepts (1 when "
                "there is none). dim_value <= 0 counts as symbolic.",
            ),
            click.option(
                "--inputs",
                "input_files",
                multiple=True,
                metavar="FILE.npz",
                help="Real input data instead of random: one array per input name "
                "(repeatable, one input set each).",
            ),
        ],
    )


def input_arguments(
    shapes: tuple[str, ...],
    dims: tuple[str, ...],
    ranges: tuple[str, ...],
    default_dim: int | None,
) -> dict[str, Any]:
    """The parsed ``--shape``/``--dim``/``--range``/``--default-dim`` as library arguments."""
    return {
        "shapes": parse_shape_options(shapes),
        "dims": parse_dim_options(dims),
        "ranges": parse_range_options(ranges),
        "default_dim": default_dim,
    }


def one_inputs_file(files: tuple[str, ...], command: str) -> str | None:
    """The single ``--inputs`` file ``bench`` takes (it times one input set)."""
    if len(files) > 1:
        raise UsageError(f"{command} takes one --inputs file", hint="give --inputs once")
    return files[0] if files else None


def report_options(command: F) -> F:
    """``--report FILE.json`` and ``--markdown FILE.md``."""
    return _apply(
        command,
        [
            click.option(
                "--report",
                "report_path",
                type=click.Path(path_type=Path),
                metavar="FILE.json",
                help="Write the report as JSON.",
            ),
            click.option(
                "--markdown",
                "markdown_path",
                type=click.Path(path_type=Path),
                metavar="FILE.md",
                help="Write the report as Markdown (also appended to $GITHUB_STEP_SUMMARY "
                "when that is set).",
            ),
        ],
    )


# The loader gives a clearer one-line error than click for a missing path, a folder, an empty
# file or a FIFO, so the argument only converts to a Path (it need not exist).
model_path_argument = click.Path(exists=False, dir_okay=True, path_type=Path)
