"""Option groups shared by the commands, defined once (same names, same help everywhere).

- ``provider_options``: ``--providers``, ``--level`` (verify, bench, optimize --verify/--bench)
- ``input_options``: ``--shape``, ``--dim``, ``--range``, ``--default-dim``, ``--inputs``
- ``report_options``: ``--report``, ``--markdown``

Each group is a decorator that declares its options where ``--help`` lists them. The values
reach the command as objects, not one parameter each: ``builds(keyword, build)`` hands the
command ``keyword=build(...)`` in place of the options ``build`` takes (``ReportPaths`` the
report files, ``judge_arguments`` the providers and levels as a judge's keywords; a judge's
own options arrive as one dict of its keyword arguments, which the library turns into its
settings object), validated once, before the command runs.

Defaults are the library's: an option shows the constant the library defines
(``LibraryOption``), read only when click needs it (running that command, or its ``--help``),
so starting the command line imports no judge (``bnfold optimize`` loads neither
``bnfold.verify`` nor ``bnfold.bench``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from ..engine.targets import DEFAULT_TARGET, TARGET_NAMES
from ..errors import UsageError
from ..runtime.settings import DEFAULT_RUNS, DEFAULT_SEED
from .common import ReportPaths
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


class LibraryOption(click.Option):
    """An option whose default (``default=`` a function) and help (``library_help=`` a
    function) come from the library's constants, read when click needs them.

    ``--help`` shows the default's value (click would show ``(dynamic)`` for a function).
    """

    def __init__(
        self, *args: Any, library_help: Callable[[], str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.library_help = library_help

    def get_default(self, ctx: click.Context, call: bool = True) -> Any:
        return super().get_default(ctx, call=True)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        if self.library_help is not None:
            self.help = self.library_help()
        return super().get_help_record(ctx)


class LibraryChoice(click.Choice):
    """A ``click.Choice`` of choices the library defines, read when click needs them."""

    def __init__(self, load: Callable[[], Sequence[str]]) -> None:
        self._load = load
        super().__init__((), case_sensitive=True)

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self._load())

    @choices.setter
    def choices(self, value: Any) -> None:
        """``click.Choice.__init__`` sets the choices; the library's stay in force."""


def builds(keyword: str, build: Callable[..., Any]) -> Callable[[F], F]:
    """Hand the command ``keyword=build(**options)`` in place of the options ``build`` names.

    ``build``'s parameters are option (or earlier-built) names; one the command lacks takes
    ``build``'s default. The outer of two ``builds`` runs first, so a ``builds`` below
    another may use what that one built.
    """
    names = list(inspect.signature(build).parameters)

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            taken = {name: kwargs.pop(name) for name in names if name in kwargs}
            kwargs[keyword] = build(**taken)
            return command(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate


def apply_options(command: F, options: list[Callable[[F], F]]) -> F:
    """Apply ``options`` (decorators) so that ``--help`` lists them in this order."""
    for option in reversed(options):
        command = option(command)
    return command


def verify_levels() -> str:
    from ..verify.settings import DEFAULT_LEVELS

    return DEFAULT_LEVELS


def bench_levels() -> str:
    from ..bench.design import DEFAULT_LEVELS

    return ",".join(DEFAULT_LEVELS)


_LEVEL_DEFAULTS: dict[str, Callable[[], str]] = {"verify": verify_levels, "bench": bench_levels}


def provider_options(judge: str | None) -> Callable[[F], F]:
    """``--providers LIST`` and ``--level LIST``, the level defaulting to ``judge``'s
    (``verify`` or ``bench``; None: each judge's own, as ``optimize`` passes them on)."""
    level_help = LEVEL_HELP + (
        " The reference always runs on CPU with optimizations disabled."
        if judge in (None, "verify")
        else " Each level is its own row."
    )

    def help_text() -> str:
        if judge is not None:
            return level_help
        return f"{level_help} Default: {verify_levels()} for verify, {bench_levels()} for bench."

    def decorate(command: F) -> F:
        return apply_options(
            command,
            [
                click.option("--providers", "providers", metavar="LIST", help=PROVIDERS_HELP),
                click.option(
                    "--level",
                    "levels",
                    cls=LibraryOption,
                    type=str,
                    metavar="LIST",
                    default=None if judge is None else _LEVEL_DEFAULTS[judge],
                    show_default=judge is not None,
                    library_help=help_text,
                ),
            ],
        )

    return decorate


def input_options(command: F) -> F:
    """How verify and bench size and fill the inputs they run the models on."""
    return apply_options(
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
                "(axis 0); other dims get the size the layers were built for (a Gemm/MatMul/"
                "Reshape/pool that fixes it), else 224 for an image input, else a size every "
                "Conv/pool accepts (1 when there is none); see docs/inputs.md. dim_value <= 0 "
                "counts as symbolic.",
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


def seed_option(help: str) -> Callable[[F], F]:
    """``--seed`` (the library's default seed)."""
    return click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help=help)


runs_option = click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=DEFAULT_RUNS,
    show_default=True,
    help="Number of random input sets.",
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


def judge_arguments(providers: str | None, levels: str) -> dict[str, Any]:
    """``--providers`` and ``--level`` as ``bnfold.verify``/``bnfold.bench`` keywords."""
    return {"providers": providers, "levels": levels}


def report_options(command: F) -> F:
    """``--report FILE.json`` and ``--markdown FILE.md``."""
    return apply_options(
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
            builds("reports", ReportPaths),
        ],
    )


# The loader gives a clearer one-line error than click for a missing path, a folder, an empty
# file or a FIFO, so the argument only converts to a Path (it need not exist).
model_path_argument = click.Path(exists=False, dir_okay=True, path_type=Path)


def target_option(command: F) -> F:
    """``--target NAME``: the deployment profile whose fold rules apply."""
    return click.option(
        "--target",
        type=click.Choice(TARGET_NAMES),
        default=DEFAULT_TARGET,
        show_default=True,
        help="Deployment profile: default (onnxruntime float), quantize (prepare for int8 "
        "quantization), npu (leave no standalone BatchNormalization).",
    )(command)
