"""The settings the judges share, as frozen objects built once (by the CLI's option groups or by
a public function's first line) and passed whole: what inputs to run, and where to run them.

- ``InputPlan``: how the inputs both models run on are sized and filled (``--shape``,
  ``--dim``, ``--range``, ``--default-dim``, ``--seed``, ``--runs``, ``--inputs``).
- ``RuntimeChoice``: where and how onnxruntime runs them (``--providers``, ``--level``,
  threads and CPU placement, provider options, onnxruntime's own log lines).

Each ``of(...)`` takes the public keyword arguments as ``bnfold.verify``/``bnfold.bench``
document them, validates them (``UsageError``, exit 2) and normalises them, so everything
past it can trust the object. Defaults are defined once: the ones both judges share here
(``DEFAULT_SEED``, ``DEFAULT_RUNS``), the ones that differ with each judge (verify runs the
candidate at level ``all``, bench at ``disable,all``). The command line shows these
constants in ``--help``; it never types a default of its own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from ..errors import UsageError
from .placement import Threads, parse_cpus
from .session import canonical_provider, parse_levels, parse_providers

# Real input data: an ``.npz`` path or a ``{name: array}`` mapping, one input set each.
InputSource = str | os.PathLike[str] | Mapping[str, np.ndarray]
InputsArg = InputSource | Sequence[InputSource] | None
ProvidersArg = str | Sequence[str] | None
LevelsArg = str | Sequence[str]

DEFAULT_SEED = 0  # input set ``i`` is drawn with seed ``DEFAULT_SEED + i``
DEFAULT_RUNS = 1  # random input sets verify compares on


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class InputPlan:
    """How to size and fill the inputs (see ``bnfold.runtime.inputs``).

    ``shapes``: input name -> full shape; ``dims``: symbolic dim -> size; ``ranges``: input
    name -> ``[low, high)`` of its values; ``default_dim``: size of every other free dim
    (None: derived from the graph); input set ``i`` of ``runs`` is drawn with seed
    ``seed + i``; ``inputs``: real data instead (``runs`` and ``seed`` then unused).
    """

    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: _frozen(None))
    dims: Mapping[str, int] = field(default_factory=lambda: _frozen(None))
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=lambda: _frozen(None))
    default_dim: int | None = None
    seed: int = DEFAULT_SEED
    runs: int = DEFAULT_RUNS
    inputs: tuple[InputSource, ...] = ()

    @classmethod
    def of(
        cls,
        *,
        shapes: Mapping[str, Sequence[int]] | None = None,
        dims: Mapping[str, int] | None = None,
        ranges: Mapping[str, tuple[float, float]] | None = None,
        default_dim: int | None = None,
        seed: int = DEFAULT_SEED,
        runs: int = DEFAULT_RUNS,
        inputs: InputsArg = None,
    ) -> InputPlan:
        if runs < 1:
            raise UsageError(f"runs must be at least 1, got {runs}")
        if default_dim is not None and default_dim < 0:
            raise UsageError(f"default dim must be non-negative, got {default_dim}")
        if inputs is None:
            given: tuple[InputSource, ...] = ()
        elif isinstance(inputs, (list, tuple)):
            given = tuple(inputs)
            if not given:
                raise UsageError(
                    "inputs is an empty list", hint="pass at least one .npz file or mapping"
                )
        else:
            given = (inputs,)  # type: ignore[assignment]
        return cls(
            shapes=_frozen({k: tuple(int(d) for d in v) for k, v in (shapes or {}).items()}),
            dims=_frozen({k: int(v) for k, v in (dims or {}).items()}),
            ranges=_frozen({k: (float(lo), float(hi)) for k, (lo, hi) in (ranges or {}).items()}),
            default_dim=default_dim,
            seed=int(seed),
            runs=int(runs),
            inputs=given,
        )

    def spec_arguments(self) -> dict[str, Any]:
        """The keyword arguments ``runtime.inputs.input_specs`` takes."""
        return {
            "shapes": dict(self.shapes),
            "dims": dict(self.dims),
            "ranges": dict(self.ranges),
            "default_dim": self.default_dim,
        }


@dataclass(frozen=True)
class RuntimeChoice:
    """Where onnxruntime runs the models.

    ``providers``: short names (``cpu``, ``cuda``...), or None for the default set (CPU, plus
    CUDA when it really works here; an unavailable default is only noted); ``levels``:
    optimization levels, each its own run; ``threads``: intra-/inter-op threads, spinning
    and CPU pinning; ``provider_options``: per short provider name, merged over the
    defaults of ``runtime.session``; ``verbose``: let onnxruntime's log lines through.
    """

    providers: tuple[str, ...] | None
    levels: tuple[str, ...]
    threads: Threads = Threads()
    provider_options: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _frozen(None))
    verbose: bool = False

    @classmethod
    def of(
        cls,
        *,
        providers: ProvidersArg = None,
        levels: LevelsArg,
        threads: int | None = None,
        inter_threads: int | None = None,
        spinning: bool | None = None,
        cpus: str | Sequence[int] | None = None,
        provider_options: Mapping[str, Mapping[str, Any]] | None = None,
        verbose: bool = False,
    ) -> RuntimeChoice:
        text = providers if providers is None or isinstance(providers, str) else ",".join(providers)
        parsed = parse_providers(text)
        for name, value in (("threads", threads), ("inter_threads", inter_threads)):
            if value is not None and value < 0:
                raise UsageError(f"{name} must be 0 (onnxruntime's default) or more, got {value}")
        pinned = parse_cpus(cpus) if cpus is None or isinstance(cpus, str) else tuple(sorted(cpus))
        return cls(
            providers=None if parsed is None else tuple(parsed),
            levels=tuple(parse_levels(levels if isinstance(levels, str) else list(levels))),
            threads=Threads(
                intra_op=threads, inter_op=inter_threads, spinning=spinning, cpus=pinned
            ),
            # Keys may be short or full names ("cuda" or "CUDAExecutionProvider").
            provider_options=_frozen(
                {canonical_provider(k): dict(v) for k, v in (provider_options or {}).items()}
            ),
            verbose=verbose,
        )

    @property
    def explicit(self) -> bool:
        """The caller named the providers (an unavailable one is then an error, exit 4)."""
        return self.providers is not None

    def options_for(self, provider: str) -> dict[str, Any]:
        """The caller's options for ``provider`` (short or full name), or none."""
        return dict(self.provider_options.get(canonical_provider(provider), {}))

    def session_arguments(self, provider: str | None) -> dict[str, Any]:
        """The keyword arguments ``runtime.session.create_session`` takes for these threads and
        ``provider``'s options (None: no provider options, as for the CPU reference)."""
        return {
            "threads": self.threads.intra_op,
            "inter_threads": self.threads.inter_op,
            "spinning": self.threads.spinning,
            "provider_options": None if provider is None else self.options_for(provider) or None,
        }
