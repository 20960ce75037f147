"""``bnfold optimize --verify --bench`` with every option of ``bnfold verify`` and ``bnfold bench``.

``judge_step_options`` applies the decorators the two commands use (``verify_options``,
``bench_options``) to collectors, takes their options over, and hands each judge the keyword
mapping its own command would build, so a future option of either command reaches optimize
without an edit here. Where the two meet, the rule is written here:

- ``--seed`` and ``--threads`` exist in both: one option, passed to both judges, with the
  default each has today (``DEFAULT_SEED``; onnxruntime's thread count).
- ``--providers``, ``--level`` and the input options are optimize's own groups already
  (``provider_options(judge=None)``: an absent ``--level`` leaves each judge its default).
- ``--report``, ``--markdown`` and ``-q`` are optimize's; bench's ``--plot`` draws the
  ``--bench`` result.

An option that only one judge reads, given without that judge's flag, is a usage error
(exit 2) naming the flag; one both read, or an input or provider option, needs either flag.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import click
from click.core import ParameterSource

from ..errors import UsageError
from .bench import bench_options
from .options import F
from .verify import verify_options

# Options optimize declares itself that only a judge reads (input and provider groups).
JUDGE_INPUTS = ("shapes", "dims", "ranges", "default_dim", "input_files", "providers", "levels")
SHARED_HELP = {
    "seed": "Seed of the random inputs of --verify (set i uses SEED+i) and --bench.",
    "threads": "onnxruntime intra-op threads for --verify and --bench (default: onnxruntime's).",
}
Decorated = Callable[..., Any]
PLOT_OPTION = click.Option(
    ["--plot", "plot_path"],
    metavar="FILE.png",
    help="With --bench: draw latency distributions (needs matplotlib: pip install 'bnfold[plot]').",
)


@dataclass(frozen=True)
class Judge:
    """One judge's options on optimize: its flag, the flag's parameter, the keyword its
    mapping is handed over as, and the options (built into that mapping by ``build``)."""

    flag: str
    switch: str
    keyword: str
    params: tuple[click.Parameter, ...]
    build: Callable[..., dict[str, Any]]

    @classmethod
    def of(
        cls, flag: str, switch: str, decorator: Callable[[Decorated], Decorated], keyword: str
    ) -> Judge:
        def collect(**built: Any) -> dict[str, Any]:
            return dict(built[keyword])

        decorated = decorator(collect)
        # click keeps the options of a decorated function in __click_params__, last first.
        params = tuple(reversed(decorated.__click_params__))  # type: ignore[attr-defined]
        return cls(flag, switch, keyword, params, decorated)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(str(p.name) for p in self.params)


def judges() -> tuple[Judge, Judge]:
    """``--verify``'s and ``--bench``'s own options, each from its command's decorator."""
    return (
        Judge.of("--verify", "run_verify", verify_options, "verify_arguments"),
        Judge.of("--bench", "run_bench", bench_options, "bench_arguments"),
    )


def judge_step_options(command: F) -> F:
    """Declare every option of ``--verify`` and ``--bench`` on ``command`` and hand it
    ``verify_arguments``/``bench_arguments`` in place of them and of the ``run_verify``/
    ``run_bench`` flags (declared by the command): the judge's keyword mapping, or None when
    its flag is not given."""
    verify, bench = judges()
    shared = verify.names & bench.names
    params = [*verify.params, *(p for p in bench.params if p.name not in shared), PLOT_OPTION]
    for param in params:
        if param.name in SHARED_HELP and isinstance(param, click.Option):
            param.help = SHARED_HELP[str(param.name)]
    names = verify.names | bench.names
    defaults = {
        str(p.name): _deferred(p)
        for p in params
        if isinstance(p, click.Option) and callable(p.default)
    }

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        given = _given_on_command_line([*names, "plot_path", *JUDGE_INPUTS])
        running = {judge.flag for judge in (verify, bench) if kwargs.pop(judge.switch)}
        _require(given & (verify.names - shared), {"--verify"} & running, "--verify")
        _require(given & (bench.names - shared | {"plot_path"}), {"--bench"} & running, "--bench")
        _require(given & (shared | set(JUDGE_INPUTS)), running, "--verify or --bench")
        values = {name: kwargs.pop(name) for name in names}
        for judge in (verify, bench):
            kwargs[judge.keyword] = None
            if judge.flag in running:
                taken = {name: values[name] for name in judge.names}
                for name in judge.names & defaults.keys() - given:
                    taken[name] = defaults[name](click.get_current_context())
                kwargs[judge.keyword] = judge.build(**taken)
        return command(*args, **kwargs)

    # What click.option does for each option: remember it on the function, innermost first.
    run.__dict__.setdefault("__click_params__", []).extend(reversed(params))
    return run  # type: ignore[return-value]


def _deferred(option: click.Option) -> Callable[[click.Context], Any]:
    """Let ``option`` parse to None when not given, and return what reads its default.

    Its default is a library constant read by a function, and reading it imports the judge:
    ``bnfold optimize`` without ``--verify``/``--bench`` must load neither. ``--help`` still
    shows the default (click asks for it with ``call=False`` there).
    """
    read = option.get_default

    def parse_time_default(context: click.Context, call: bool = True) -> Any:
        return None if call else read(context, call=False)

    option.get_default = parse_time_default  # type: ignore[method-assign,assignment]
    return lambda context: option.type_cast_value(context, read(context, call=True))


def _given_on_command_line(names: Iterable[str]) -> set[str]:
    context = click.get_current_context()
    typed = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT, ParameterSource.PROMPT)
    return {name for name in names if context.get_parameter_source(name) in typed}


def _require(given: set[str], running: set[str], flag: str) -> None:
    """A usage error naming the first of ``given`` when no judge that reads it runs."""
    if not given or running:
        return
    params = click.get_current_context().command.params
    option = next("/".join([*p.opts, *p.secondary_opts]) for p in params if p.name in given)
    raise UsageError(
        f"{option} is an option of {flag}, which is not given",
        hint=f"add {flag}, or leave {option} out",
    )
