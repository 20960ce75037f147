"""``export_torch``: export a torch module to ONNX, fold its BatchNormalization, and prove the
written file computes what the *module* computes.

Pipeline (the module is in eval mode throughout; every submodule's previous ``training`` flag
is restored afterwards, also on error)::

    torch.onnx.export(..., optimize=False)     dynamo (default): the exporter's optimizer is held
        |                                       back, because it folds Conv/Gemm+BN itself and
        |                                       bnfold's report would then list nothing
        |                                       (TorchScript: do_constant_folding=False, same reason)
    bnfold.optimize                             the folds, with reasons for every BN kept
    exporter's optimizer (dynamo, optimize=True, torch's default): constant folding and
        |                                       clean-up on the folded graph; BN it still removes
        |                                       is counted in ``exporter_folded``
    bnfold.optimize again                       folds what the optimizer exposed (normally nothing)
    staged file -> onnxruntime vs the module -> rename into place (or raise, writing nothing)

Verification. For the example ``args`` and ``runs - 1`` input sets of the same shapes and dtypes
that ``bnfold.runtime.generate`` draws (seeds ``seed + i``; floats standard normal, integers
within the example's range, other dtypes the example's values), every output ``y`` of the
written file (onnxruntime CPU through ``bnfold.runtime.session``, at each level in ``levels``)
is compared with the module's output ``r`` in its own dtype by ``bnfold.verify.compare``, the
comparison ``verify`` makes, like ``numpy.allclose``::

    |y - r| <= atol + rtol * |r|          (defaults per dtype: bnfold.verify.compare)

A float32 module is itself only an approximation of the function it computes, so a float64
copy of the module (where it runs: ``module.double()``) is a second opinion ``r64``: an output
passes when it is within tolerance of ``r`` *or* of ``r64``. A wrong fold (a channel off, a
missed shift) moves outputs far beyond either. ``float64_max_abs_error`` and
``module_float32_error = max |r - r64|`` (the module's own float32 error) are reported. Each
output's ``OutputCheck`` holds both ``OutputComparison``s; ``to_json`` writes results with the
convention of every bnfold report (``bnfold.storage.results``).

torch is imported only here, and only when ``export_torch`` runs (``pip install 'bnfold[torch]'``).
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import io
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..api import OptimizeResult, optimize
from ..engine.driver import count_batchnorms
from ..engine.report import FoldReport
from ..errors import UsageError, VerificationFailed
from ..runtime.generate import generate_inputs
from ..runtime.session import create_session, parse_levels, run_session
from ..runtime.specs import InputSpec
from ..storage.results import to_json
from ..verify.compare import OutputComparison, compare_output, compare_outputs, tolerance_for

DEFAULT_LEVELS = ("disable", "all")
INSTALL_HINT = "install it with: pip install 'bnfold[torch]'"
# Node metadata the dynamo exporter writes: the qualified names of the enclosing modules.
NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"


@dataclass
class OutputCheck:
    """One output of the written file against the module, worst over input sets and levels.

    ``module``: verify's comparison against the module's output in its own dtype (float32,
    usually); ``module_float64``: against the float64 module, at the tolerance of the output's
    dtype (None: no second opinion for this output); ``module_float32_error``: how far the
    module's own output is from its float64 copy (float32's rounding, the noise floor);
    ``judge``: which reference accepted it (``module``, ``module-float64``) or None.
    ``name``, ``max_abs_error``, ... read ``module``.
    """

    module: OutputComparison
    module_float64: OutputComparison | None = None
    module_float32_error: float | None = None
    judge: str | None = None

    @property
    def passed(self) -> bool:
        return self.judge is not None

    @property
    def reason(self) -> str | None:
        return None if self.passed else self.module.reason

    @property
    def name(self) -> str:
        return self.module.name

    @property
    def shape(self) -> list[int]:
        return self.module.shape

    @property
    def dtype(self) -> str:
        return self.module.dtype

    @property
    def atol(self) -> float:
        return self.module.atol

    @property
    def rtol(self) -> float:
        return self.module.rtol

    @property
    def max_abs_error(self) -> float | None:
        return self.module.max_abs_error

    @property
    def max_rel_error(self) -> float | None:
        return self.module.max_rel_error

    @property
    def float64_max_abs_error(self) -> float | None:
        return self.module_float64.max_abs_error if self.module_float64 else None

    def to_dict(self) -> dict[str, Any]:
        """The ``module`` comparison's fields, the verdict, and the float64 opinion."""
        return {
            **self.module.to_dict(),
            "passed": self.passed,
            "reason": self.reason,
            "judge": self.judge,
            "float64_max_abs_error": self.float64_max_abs_error,
            "module_float32_error": self.module_float32_error,
            "module_float64": self.module_float64.to_dict() if self.module_float64 else None,
        }


@dataclass
class TorchVerification:
    """The written file under onnxruntime against the module: ``passed`` and each output."""

    outputs: dict[str, OutputCheck] = field(default_factory=dict)
    runs: int = 0
    levels: list[str] = field(default_factory=list)
    provider: str = "CPUExecutionProvider"
    float64_opinion: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.outputs) and all(check.passed for check in self.outputs.values())

    def failures(self) -> list[OutputCheck]:
        return [check for check in self.outputs.values() if not check.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "runs": self.runs,
            "levels": list(self.levels),
            "provider": self.provider,
            "float64_opinion": self.float64_opinion,
            "outputs": {name: check.to_dict() for name, check in self.outputs.items()},
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        """Strict JSON (``bnfold.storage.results``), like every bnfold report."""
        return to_json(self.to_dict()) + "\n"


@dataclass
class TorchExportResult:
    """What ``export_torch`` wrote (``path``), folded (``report``) and proved (``verification``).

    ``report.folds`` name torch modules (``blocks.0.body.1``) where the export says which module
    a node came from; ``node_modules`` maps ONNX node names to those module paths.
    ``batchnorm_exported``: BatchNormalization nodes in the export bnfold received;
    ``exporter_folded``: BN nodes the exporter's optimizer removed after bnfold had folded.
    """

    path: Path
    report: FoldReport
    verification: TorchVerification
    model: onnx.ModelProto
    exporter: str
    batchnorm_exported: int
    exporter_folded: int = 0
    node_modules: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "exporter": self.exporter,
            "batchnorm_exported": self.batchnorm_exported,
            "exporter_folded": self.exporter_folded,
            "report": self.report.to_dict(),
            "verification": self.verification.to_dict(),
            "node_modules": dict(self.node_modules),
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        """Strict JSON (``bnfold.storage.results``), like every bnfold report."""
        return to_json(self.to_dict()) + "\n"


class TorchVerificationFailed(VerificationFailed):
    """The exported, folded file does not compute what the module computes; nothing written."""

    def __init__(self, message: str, verification: TorchVerification, *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.verification = verification


def export_torch(
    module: Any,
    args: Any,
    path: str | os.PathLike[str],
    *,
    dynamo: bool = True,
    disable: Iterable[str] = (),
    runs: int = 3,
    seed: int = 0,
    levels: str | Sequence[str] = DEFAULT_LEVELS,
    atol: float | None = None,
    rtol: float | None = None,
    **export_options: Any,
) -> TorchExportResult:
    """Export ``module(*args)`` to ``path`` with BatchNormalization folded, verified against it.

    ``export_options`` go to ``torch.onnx.export`` (``input_names``, ``dynamic_shapes``,
    ``opset_version``, ``kwargs``, ...; ``optimize`` and ``do_constant_folding`` are applied
    after bnfold has folded, see the module docstring; ``external_data`` goes to the writer).
    ``disable``: bnfold patterns to leave out. ``runs``: input sets (the example plus
    ``runs - 1`` generated ones, seeds ``seed + i``). ``levels``: onnxruntime levels the file
    is checked at. Raises ``TorchVerificationFailed`` (a ``VerificationFailed``, exit code 1)
    when an output differs, leaving no file (a previous file at ``path`` stays as it was).
    """
    torch = _import_torch(dynamo)
    if runs < 1:
        raise UsageError(f"runs must be at least 1, got {runs}")
    level_list = parse_levels(levels if isinstance(levels, str) else list(levels))
    disabled = tuple(disable)
    args_tuple = args if isinstance(args, tuple) else (args,)
    kwargs = dict(export_options.get("kwargs") or {})
    external_data = export_options.pop("external_data", None)
    started = time.perf_counter()
    modes = {name: sub.training for name, sub in module.named_modules()}
    try:
        module.eval()
        exported = _export(torch, module, args_tuple, dynamo, export_options)
        raw, program, optimize_after, notes = exported
        first = optimize(raw, disable=disabled)
        final, exporter_folded = first, 0
        if optimize_after:
            optimized = _exporter_optimize(program, first.model)
            exporter_folded = count_batchnorms(first.model) - count_batchnorms(optimized)
            if exporter_folded:
                notes.append(
                    f"the exporter's optimizer removed {exporter_folded} BatchNormalization "
                    "that bnfold had kept; they are not in report.folds"
                )
            final = optimize(optimized, disable=disabled)
        feeds, references, references64, more = _references(
            torch, module, args_tuple, kwargs, raw, runs, seed
        )
        notes += more
    finally:
        # The flags themselves, not ``train()``: a module may override train() (e.g. to keep
        # its BN frozen), and restoring must not run that logic a second time.
        for name, sub in module.named_modules():
            if name in modes:
                sub.training = modes[name]
    module_paths = {name for name, _ in module.named_modules() if name}
    node_modules = {**_node_modules(raw, module_paths), **_node_modules(final.model, module_paths)}
    report = _combined_report(type(module).__name__, first, final, node_modules, started)
    verification = TorchVerification(
        runs=len(feeds), levels=level_list, float64_opinion=references64 is not None, notes=notes
    )

    def check_staged(staged: Path) -> None:
        _verify_file(staged, feeds, references, references64, verification, atol, rtol)
        if not verification.passed:
            worst = verification.failures()[0]
            raise TorchVerificationFailed(
                f"the exported model differs from the module: output {worst.name!r}: "
                f"{worst.reason}; nothing was written to {path}",
                verification,
                hint="check the module for data-dependent Python control flow, or rerun "
                "with disable=[...] to find the fold at fault",
            )

    final.save(path, external_data=external_data, before_commit=check_staged)
    report.output = str(path)
    report.seconds = time.perf_counter() - started
    return TorchExportResult(
        path=Path(path),
        report=report,
        verification=verification,
        model=final.model,
        exporter="dynamo" if dynamo else "torchscript",
        batchnorm_exported=count_batchnorms(raw),
        exporter_folded=exporter_folded,
        node_modules=node_modules,
        notes=notes,
    )


# ---- export ---------------------------------------------------------------------------------


def _import_torch(dynamo: bool) -> Any:
    try:
        import torch
    except ImportError:
        raise UsageError(
            "export_torch needs torch, which is not installed", hint=INSTALL_HINT
        ) from None
    if dynamo and importlib.util.find_spec("onnxscript") is None:
        raise UsageError(
            "torch's dynamo exporter needs onnxscript, which is not installed",
            hint=f"{INSTALL_HINT}, or pass dynamo=False for the TorchScript exporter",
        )
    return torch


def _export(
    torch: Any, module: Any, args: tuple[Any, ...], dynamo: bool, options: dict[str, Any]
) -> tuple[onnx.ModelProto, Any, bool, list[str]]:
    """(exported model with its BN nodes, the ONNXProgram or None, run its optimizer?, notes)."""
    options = dict(options)
    for reserved in ("f", "dynamo"):
        if reserved in options:
            raise UsageError(f"export_torch sets {reserved!r} itself; do not pass it")
    notes: list[str] = []
    if dynamo:
        optimize_after = bool(options.pop("optimize", True))
        options.setdefault("verbose", False)
        program = torch.onnx.export(module, args, dynamo=True, optimize=False, **options)
        return program.model_proto, program, optimize_after, notes
    if options.get("do_constant_folding", False):
        notes.append(
            "do_constant_folding=True: the TorchScript exporter folded Conv/Gemm+BN itself "
            "before bnfold saw the graph; those folds are not in the report"
        )
    options.setdefault("do_constant_folding", False)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript exporter notices
        torch.onnx.export(module, args, buffer, dynamo=False, **options)
    return onnx.load_from_string(buffer.getvalue()), None, False, notes


def _exporter_optimize(program: Any, model: onnx.ModelProto) -> onnx.ModelProto:
    """Run the dynamo exporter's own optimizer (what ``optimize=True`` does) on ``model``."""
    import onnx_ir

    program.model = onnx_ir.from_proto(model)
    program.optimize()
    optimized: onnx.ModelProto = program.model_proto
    return optimized


# ---- module paths ---------------------------------------------------------------------------


def module_path(node: onnx.NodeProto, module_paths: set[str]) -> str | None:
    """The qualified name of the innermost torch module ``node`` was exported from, or None.

    dynamo writes the enclosing modules' qualified names in the node's metadata
    (``pkg.torch.onnx.name_scopes``: ``['', 'blocks', 'blocks.0', ..., 'conv2d']``).
    TorchScript names nodes by scope, each part relative to the last attribute:
    ``/blocks/blocks.0/body/body.0/body.0.0/Conv`` is ``blocks.0.body.0.0``. Only a name
    that is one of ``module_paths`` (the module's ``named_modules()``) is returned.
    """
    for prop in node.metadata_props:
        if prop.key == NAME_SCOPES_KEY:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                break
            found = [s for s in scopes if isinstance(s, str) and s in module_paths]
            return found[-1] if found else None
    parts = [p for p in node.name.split("/") if p][:-1]  # the last part is the op
    best, base, full, previous = None, "", "", None
    for part in parts:
        if previous is not None and part.startswith(previous + "."):
            full = base + part  # "blocks" then "blocks.0": the same attribute, one level down
        else:
            base = full + "." if full else ""
            full = base + part
        previous = part
        if full in module_paths:
            best = full
    return best


def _node_modules(model: onnx.ModelProto, module_paths: set[str]) -> dict[str, str]:
    result = {}
    for node in model.graph.node:
        found = module_path(node, module_paths) if node.name else None
        if found is not None:
            result[node.name] = found
    return result


def _combined_report(
    label: str,
    first: OptimizeResult,
    final: OptimizeResult,
    node_modules: dict[str, str],
    started: float,
) -> FoldReport:
    """One report over both bnfold passes, folds and refusals named by torch module path."""

    def named(name: str) -> str:
        return node_modules.get(name, name)

    folds = [*first.report.folds, *(final.report.folds if final is not first else [])]
    before, after = first.report.counts, final.report.counts
    return FoldReport(
        model=f"<torch module {label}>",
        folds=[replace(f, bn=named(f.bn), into=named(f.into)) for f in folds],
        skipped=[replace(s, bn=named(s.bn)) for s in final.report.skipped],
        counts={
            "batchnorm_before": before.get("batchnorm_before", 0),
            "nodes_before": before.get("nodes_before", 0),
            "batchnorm_after": after.get("batchnorm_after", 0),
            "nodes_after": after.get("nodes_after", 0),
        },
        seconds=time.perf_counter() - started,
    )


# ---- references -----------------------------------------------------------------------------


Feeds = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]


def _graph_inputs(model: onnx.ModelProto) -> list[str]:
    initializers = {t.name for t in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


def _references(
    torch: Any,
    module: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    model: onnx.ModelProto,
    runs: int,
    seed: int,
) -> tuple[list[Feeds], list[Outputs], list[Outputs] | None, list[str]]:
    """Input sets and the module's outputs on them: in its own dtype, and in float64 if it runs."""
    from torch.utils._pytree import tree_flatten, tree_unflatten

    leaves, spec = tree_flatten((args, kwargs))
    positions = [i for i, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor)]
    input_names = _graph_inputs(model)
    output_names = [o.name for o in model.graph.output]
    if len(positions) != len(input_names):
        raise UsageError(
            f"the export has {len(input_names)} inputs but args hold {len(positions)} tensors",
            hint="pass every tensor input in args (non-tensor arguments are baked into the graph)",
        )
    example = [leaves[i].detach().cpu().numpy() for i in positions]
    arrays = [example] + [_like(input_names, example, seed + i) for i in range(1, runs)]
    devices = [leaves[i].device for i in positions]

    def call(target: Any, values: list[np.ndarray], dtype: Any = None) -> list[np.ndarray]:
        new = list(leaves)
        for pos, value, device in zip(positions, values, devices, strict=True):
            tensor = torch.from_numpy(np.ascontiguousarray(value)).to(device)
            new[pos] = (
                tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
            )
        call_args, call_kwargs = tree_unflatten(new, spec)
        with torch.no_grad():
            result = target(*call_args, **call_kwargs)
        outs = [o for o in tree_flatten(result)[0] if isinstance(o, torch.Tensor)]
        if len(outs) != len(output_names):
            raise UsageError(
                f"the module returns {len(outs)} tensors but the export has {len(output_names)} outputs"
            )
        return [o.detach().cpu().numpy() for o in outs]

    feeds = [dict(zip(input_names, values, strict=True)) for values in arrays]
    references = [dict(zip(output_names, call(module, v), strict=True)) for v in arrays]
    notes: list[str] = []
    try:
        double = copy.deepcopy(module).double()
        references64: list[Outputs] | None = [
            dict(zip(output_names, call(double, v, torch.float64), strict=True)) for v in arrays
        ]
    except Exception as exc:  # noqa: BLE001 - any failure only means no second opinion
        references64 = None
        notes.append(f"float64 second opinion not run: {type(exc).__name__}: {exc}"[:300])
    return feeds, references, references64, notes


def _like(names: list[str], example: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """An input set of ``example``'s shapes and dtypes from ``runtime.generate`` (floats
    standard normal, integers within the example's range); other dtypes keep the example."""
    specs = []
    for name, array in zip(names, example, strict=True):
        if array.dtype.kind == "f":
            specs.append(InputSpec(name, array.dtype, array.shape, None, None))
        elif array.dtype.kind in "iu" and array.size:
            low, high = int(array.min()), int(array.max()) + 1
            specs.append(InputSpec(name, array.dtype, array.shape, low, high))
    generated = generate_inputs(specs, seed)
    return [generated.get(name, array.copy()) for name, array in zip(names, example, strict=True)]


# ---- verification ---------------------------------------------------------------------------


def _verify_file(
    path: Path,
    feeds: list[Feeds],
    references: list[Outputs],
    references64: list[Outputs] | None,
    verification: TorchVerification,
    atol: float | None,
    rtol: float | None,
) -> None:
    """Run ``path`` at each level on every input set; fill ``verification.outputs``."""
    worst: dict[str, OutputComparison] = {}
    worst64: dict[str, OutputComparison] = {}
    floor: dict[str, float] = {}
    for level in verification.levels:
        attempt = create_session(path, "cpu", level, role="exported model")
        if attempt.session is None:  # the CPU provider is always there; a load error raised
            raise UsageError(f"onnxruntime cannot run the exported model: {attempt.reason}")
        for index, inputs in enumerate(feeds):
            produced = run_session(attempt.session, inputs)
            compared = compare_outputs(references[index], produced, atol=atol, rtol=rtol)
            for name, check in compared.items():
                worst[name] = worst[name].merge(check) if name in worst else check
            for name, ref in references[index].items():
                if references64 is None or name not in produced:
                    continue
                got = np.asarray(produced[name])
                ref64 = references64[index][name]
                if ref64.dtype.kind != "f" or got.dtype.kind != "f":
                    continue
                # The written file's float32 output against the exact function, at the
                # tolerance of its own dtype.
                tol_a, tol_r = tolerance_for(got.dtype, atol, rtol)
                check64 = compare_output(
                    name, ref64, got.astype(np.float64), atol=tol_a, rtol=tol_r
                )
                worst64[name] = worst64[name].merge(check64) if name in worst64 else check64
                own = float(np.max(np.abs(ref.astype(np.float64) - ref64), initial=0.0))
                floor[name] = max(floor.get(name, 0.0), own)
    verification.outputs = {
        name: _output_check(check, worst64.get(name), floor.get(name))
        for name, check in worst.items()
    }


def _output_check(
    check: OutputComparison, check64: OutputComparison | None, floor: float | None
) -> OutputCheck:
    """Pass when the float32 reference or the float64 one accepts the output."""
    judge = "module" if check.passed else ("module-float64" if check64 and check64.passed else None)
    return OutputCheck(
        module=check, module_float64=check64, module_float32_error=floor, judge=judge
    )
