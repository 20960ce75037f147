"""``export_keras``: export a Keras 3 model to ONNX with Keras's own exporter, fold its
BatchNormalization, and prove the written file computes what ``model.predict`` computes.

Pipeline::

    model.export(raw, format="onnx")     Keras 3's exporter on the model's backend (torch:
        |                                 torch.onnx; TensorFlow/JAX: tf2onnx); on torch each BN
        |                                 is written as Sub -> Mul -> Add between float->float Casts
    bnfold.optimize                       the folds (BN nodes and BN-equivalent chains), with
        |                                 reasons for what stays; no-op Casts removed
    staged file -> onnxruntime vs model.predict -> rename into place (or raise, writing nothing)

Verification is ``export_torch``'s (``bnfold.integrations.torch_export``): for ``sample`` and
``runs - 1`` generated input sets of its shapes and dtypes (seeds ``seed + i``, floats standard
normal), every output of the written file under onnxruntime CPU (each level in ``levels``) is
compared with ``model.predict``'s output by ``bnfold.verify.compare`` (``|y - r| <= atol +
rtol * |r|``). There is no float64 second opinion (a Keras model has no ``.double()``).

Folds are named by Keras layer (``dense_1``, ``batch_normalization_1``): Keras's export keeps
no layer names on nodes, so a node is matched to the layer whose weight it reads (the same
values, in any layout), and a BN chain's nodes to the BatchNormalization layer one of them
reads (its moving mean or beta).

keras is imported only here, and only when ``export_keras`` runs (``pip install 'bnfold[keras]'``).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from ..api import optimize
from ..engine.report import FoldReport
from ..errors import UsageError
from ..runtime.session import parse_levels
from ..storage.results import to_json
from .torch_export import (
    DEFAULT_LEVELS,
    Feeds,
    Outputs,
    TorchVerification,
    TorchVerificationFailed,
    _graph_inputs,
    _like,
    _verify_file,
)

INSTALL_HINT = "install it with: pip install 'bnfold[keras]'"
FREE_DIM = 2  # the batch size of a generated sample


class KerasVerification(TorchVerification):
    """The written file under onnxruntime against ``model.predict``: ``passed`` and each
    output (``OutputCheck``: ``max_abs_error``, ``max_rel_error``, ...)."""


class KerasVerificationFailed(TorchVerificationFailed):
    """The exported, folded file does not compute what ``model.predict`` does; nothing written."""


@dataclass
class KerasExportResult:
    """What ``export_keras`` wrote (``path``), folded (``report``) and proved (``verification``).

    ``report.folds`` name Keras layers where a node could be traced to one; ``node_layers``
    maps ONNX node names to layer names. ``report.counts["noop_casts_removed"]``: the
    float->float Casts of the export that were removed.
    """

    path: Path
    report: FoldReport
    verification: KerasVerification
    model: onnx.ModelProto
    backend: str
    batchnorm_layers: int
    nodes_exported: int
    node_layers: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "backend": self.backend,
            "batchnorm_layers": self.batchnorm_layers,
            "nodes_exported": self.nodes_exported,
            "report": self.report.to_dict(),
            "verification": self.verification.to_dict(),
            "node_layers": dict(self.node_layers),
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        """Strict JSON (``bnfold.storage.results``), like every bnfold report."""
        return to_json(self.to_dict()) + "\n"


def export_keras(
    model: Any,
    path: str | os.PathLike[str],
    *,
    sample: Any = None,
    disable: Iterable[str] = (),
    runs: int = 3,
    seed: int = 0,
    levels: str | Sequence[str] = DEFAULT_LEVELS,
    atol: float | None = None,
    rtol: float | None = None,
    **export_options: Any,
) -> KerasExportResult:
    """Export the Keras 3 ``model`` to ``path`` with BatchNormalization folded, verified
    against ``model.predict``.

    ``sample``: an input array (or a list of them, one per model input, or a dict by input
    name); without it a standard normal sample of batch 2 is drawn from ``model.inputs``.
    ``export_options`` go to ``model.export`` (``input_signature``, ``opset_version``, ...).
    ``disable``: bnfold patterns to leave out. ``runs``: input sets (the sample plus ``runs - 1``
    generated ones). ``levels``: onnxruntime levels the file is checked at. Raises
    ``KerasVerificationFailed`` (a ``VerificationFailed``, exit code 1) when an output
    differs, leaving no file (a previous file at ``path`` stays as it was).
    """
    keras = _import_keras()
    if runs < 1:
        raise UsageError(f"runs must be at least 1, got {runs}")
    level_list = parse_levels(levels if isinstance(levels, str) else list(levels))
    for reserved in ("filepath", "format"):
        if reserved in export_options:
            raise UsageError(f"export_keras sets {reserved!r} itself; do not pass it")
    external_data = export_options.pop("external_data", None)
    started = time.perf_counter()
    arrays = _sample_arrays(model, sample, seed)
    raw = _export(model, export_options)
    result = optimize(raw, disable=tuple(disable))
    layers = _weight_layers(model)
    node_layers = _node_layers(raw, layers)
    feeds, references = _references(model, raw, arrays, runs, seed)
    report = _named_report(model, result.report, node_layers)
    verification = KerasVerification(runs=len(feeds), levels=level_list, float64_opinion=False)

    def check_staged(staged: Path) -> None:
        _verify_file(staged, feeds, references, None, verification, atol, rtol)
        if not verification.passed:
            worst = verification.failures()[0]
            raise KerasVerificationFailed(
                f"the exported model differs from model.predict: output {worst.name!r}: "
                f"{worst.reason}; nothing was written to {path}",
                verification,
                hint="rerun with disable=[...] to find the fold at fault",
            )

    result.save(path, external_data=external_data, before_commit=check_staged)
    report.output = str(path)
    report.seconds = time.perf_counter() - started
    return KerasExportResult(
        path=Path(path),
        report=report,
        verification=verification,
        model=result.model,
        backend=str(keras.backend.backend()),
        batchnorm_layers=sum(
            1 for layer in _all_layers(model) if type(layer).__name__ == "BatchNormalization"
        ),
        nodes_exported=len(raw.graph.node),
        node_layers=node_layers,
    )


# ---- export ---------------------------------------------------------------------------------


def _import_keras() -> Any:
    try:
        import keras
    except ImportError:
        raise UsageError(
            "export_keras needs keras, which is not installed", hint=INSTALL_HINT
        ) from None
    if not str(getattr(keras, "__version__", "0")).startswith("3"):
        raise UsageError(
            f"export_keras needs Keras 3 (its own ONNX export), found {keras.__version__}",
            hint=INSTALL_HINT,
        )
    return keras


def _export(model: Any, options: dict[str, Any]) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory(prefix="bnfold-keras-") as folder:
        raw_path = Path(folder) / "raw.onnx"
        options = dict(options)
        options.setdefault("verbose", False)
        model.export(str(raw_path), format="onnx", **options)
        return onnx.load(str(raw_path))


def _sample_arrays(model: Any, sample: Any, seed: int) -> list[np.ndarray]:
    """The sample as one array per model input, in ``model.inputs``' order."""
    inputs = list(getattr(model, "inputs", None) or [])
    if sample is None:
        if not inputs:
            raise UsageError("the model has no known inputs; pass sample=...")
        rng = np.random.default_rng(seed)
        arrays = []
        for tensor in inputs:
            shape = tuple(FREE_DIM if d is None else int(d) for d in tensor.shape)
            arrays.append(rng.standard_normal(shape).astype(str(tensor.dtype)))
        return arrays
    if isinstance(sample, dict):
        names = [t.name for t in inputs]
        missing = [n for n in names if n not in sample]
        if missing:
            raise UsageError(f"sample has no value for the model inputs {missing}")
        return [np.asarray(sample[n]) for n in names]
    if isinstance(sample, (list, tuple)):
        return [np.asarray(s) for s in sample]
    return [np.asarray(sample)]


def _references(
    model: Any, raw: onnx.ModelProto, arrays: list[np.ndarray], runs: int, seed: int
) -> tuple[list[Feeds], list[Outputs]]:
    """Input sets (the sample, then generated ones) and ``model.predict`` on each."""
    input_names = _graph_inputs(raw)
    output_names = [o.name for o in raw.graph.output]
    if len(arrays) != len(input_names):
        raise UsageError(
            f"the export has {len(input_names)} inputs but the sample holds {len(arrays)} arrays"
        )
    sets = [arrays] + [_like(input_names, arrays, seed + i) for i in range(1, runs)]
    references = []
    for values in sets:
        predicted = model.predict(values[0] if len(values) == 1 else list(values), verbose=0)
        if isinstance(predicted, dict):
            predicted = [predicted[name] for name in model.output_names]
        outs = list(predicted) if isinstance(predicted, (list, tuple)) else [predicted]
        if len(outs) != len(output_names):
            raise UsageError(
                f"model.predict returns {len(outs)} arrays but the export has "
                f"{len(output_names)} outputs"
            )
        references.append(dict(zip(output_names, (np.asarray(o) for o in outs), strict=True)))
    feeds = [dict(zip(input_names, values, strict=True)) for values in sets]
    return feeds, references


# ---- layer names ----------------------------------------------------------------------------


def _fingerprint(array: np.ndarray) -> tuple[int, bytes]:
    """The same for a weight in any layout (a transposed Conv kernel): size and sorted values."""
    flat = np.sort(np.asarray(array, dtype=np.float32).ravel())
    return flat.size, flat.tobytes()


def _weight_layers(model: Any) -> dict[tuple[int, bytes], tuple[str, str]]:
    """Each weight's fingerprint -> (layer class, layer name); weights two layers share
    identical values (zeros, ones) are left out, they name no layer."""
    found: dict[tuple[int, bytes], tuple[str, str]] = {}
    shared: set[tuple[int, bytes]] = set()
    for layer in _all_layers(model):
        for weight in layer.weights:
            key = _fingerprint(np.asarray(weight.numpy()))
            if key in found and found[key][1] != layer.name:
                shared.add(key)
            found[key] = (type(layer).__name__, layer.name)
    for key in shared:
        del found[key]
    return found


def _all_layers(model: Any) -> list[Any]:
    result = []
    for layer in getattr(model, "layers", []):
        inner = getattr(layer, "layers", None)
        result.extend(_all_layers(layer) if inner else [layer])
    return result


def _node_layers(
    raw: onnx.ModelProto, layers: dict[tuple[int, bytes], tuple[str, str]]
) -> dict[str, str]:
    """ONNX node name -> Keras layer name, for nodes that read a layer's weight; then the
    nodes of a BN chain (elementwise ops and Casts between them) take its BN layer's name."""
    initializers = {t.name: t for t in raw.graph.initializer}
    constants = {
        n.output[0]: a.t
        for n in raw.graph.node
        if n.op_type == "Constant"
        for a in n.attribute
        if a.name == "value"
    }
    named: dict[str, tuple[str, str]] = {}
    for node in raw.graph.node:
        for name in node.input:
            tensor = initializers.get(name) or constants.get(name)
            if tensor is None or tensor.data_type != onnx.TensorProto.FLOAT:
                continue
            hit = layers.get(_fingerprint(numpy_helper.to_array(tensor)))
            if hit is not None and node.name:
                named[node.name] = hit
                break
    # Spread a BatchNormalization layer's name along its chain of elementwise nodes.
    chain_ops = {"Sub", "Mul", "Add", "Div", "Cast", "Sqrt", "Reciprocal"}
    producers = {o: n for n in raw.graph.node for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in raw.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    changed = True
    while changed:
        changed = False
        for node in raw.graph.node:
            hit = named.get(node.name)
            if hit is None or hit[0] != "BatchNormalization":
                continue
            around = [producers[i] for i in node.input if i in producers]
            around += [r for o in node.output for r in readers.get(o, [])]
            for other in around:
                if other.op_type in chain_ops and other.name and other.name not in named:
                    named[other.name] = hit
                    changed = True
    return {node: layer for node, (_, layer) in named.items()}


def _named_report(model: Any, report: FoldReport, node_layers: dict[str, str]) -> FoldReport:
    def named(label: str) -> str:  # a fold into several layers: "a, b"
        return ", ".join(node_layers.get(part, part) for part in label.split(", "))

    return replace(
        report,
        model=f"<keras model {getattr(model, 'name', type(model).__name__)}>",
        folds=[replace(f, bn=named(f.bn), into=named(f.into)) for f in report.folds],
        skipped=[replace(s, bn=named(s.bn)) for s in report.skipped],
    )
