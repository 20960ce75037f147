"""A float64 evaluation of the original: the truth a float32 tensor is judged against.

Only asked for when an output or site fails the float allowance (``compare.py``): onnx's
reference evaluator (numpy, ``onnx.reference.ReferenceEvaluator``) runs a copy of the
*original* in which every floating tensor is float64 (initializers, ``Constant`` values,
graph inputs, ``Cast``/``dtype`` targets). onnxruntime cannot do it: its CPU provider has no
float64 Conv. The evaluation is bounded (``MAX_WEIGHT_BYTES`` of weights, and the first
evaluation's time decides whether a second input set is evaluated); where it cannot run, the
failure stands and a note says why. Results are cached per input set: every provider and
level is judged against the same truth. The truth is checked against the onnxruntime
reference run first: if any float tensor of it (outputs, sites) is more than ``FLOAT64_TRUST``
away (relative), the numpy evaluator computes some op otherwise than onnxruntime, and no
tensor of that model is judged by it (a downstream one would inherit the difference).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..storage.lazyio import tensor_array
from .compare import FLOAT64_TRUST, relative_distance

_FLOATS = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16}
# Weights above this are not copied into numpy as float64 (twice their float32 size).
MAX_WEIGHT_BYTES = 1 << 30
# After an evaluation this slow, no further input set is evaluated.
MAX_SECONDS = 60.0


class Float64Truth:
    """``values(index)``: every tensor of the original, in float64, for input set ``index``."""

    def __init__(
        self, model: onnx.ModelProto, base_dir: Path | None, input_sets: list[dict[str, Any]]
    ) -> None:
        self._model = model
        self._base_dir = base_dir
        self._input_sets = input_sets
        self._evaluator: Any = None
        self._cache: dict[int, dict[str, np.ndarray]] = {}
        self.reference: list[dict[str, Any]] = []  # the onnxruntime reference, per input set
        self.unavailable: str | None = None
        self.seconds = 0.0

    def values(self, index: int) -> dict[str, np.ndarray] | None:
        """All named results of the float64 original on input set ``index`` (None: no truth,
        ``unavailable`` says why)."""
        if index in self._cache:
            return self._cache[index]
        if self.unavailable is not None:
            return None
        if self.seconds > MAX_SECONDS:
            self.unavailable = f"the float64 evaluation took {self.seconds:.0f} s; not repeated"
            return None
        started = time.perf_counter()
        try:
            if self._evaluator is None:
                from onnx.reference import ReferenceEvaluator

                self._evaluator = ReferenceEvaluator(
                    float64_copy(self._model, self._base_dir), new_ops=[_inference_batchnorm()]
                )
            feeds = {
                name: _widen(np.asarray(value)) for name, value in self._input_sets[index].items()
            }
            results = self._evaluator.run(None, feeds, intermediate=True)
        except Exception as exc:  # noqa: BLE001 - numpy kernels raise anything; no truth then
            text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            self.unavailable = f"the float64 evaluation failed: {type(exc).__name__}: {text}"
            return None
        finally:
            self.seconds += time.perf_counter() - started
        values = {
            name: value for name, value in results.items() if name and isinstance(value, np.ndarray)
        }
        self.unavailable = self._disagreement(values, index)
        if self.unavailable is not None:
            return None
        self._cache[index] = values
        return values

    def _disagreement(self, values: dict[str, np.ndarray], index: int) -> str | None:
        """Why ``values`` are no truth for input set ``index`` (None: they agree)."""
        run = self.reference[index] if index < len(self.reference) else {}
        for name, produced in run.items():
            if isinstance(produced, list) or name not in values:
                continue
            ref = np.asarray(produced)
            if ref.dtype.kind != "f" or values[name].shape != ref.shape:
                continue
            exact = values[name].astype(np.float64)
            finite = np.isfinite(ref) & np.isfinite(exact)
            apart = relative_distance(ref[finite].astype(np.float64), exact[finite])
            if apart > FLOAT64_TRUST:
                return (
                    f"the float64 evaluation differs from onnxruntime's original at `{name}`"
                    f" by {apart:.2g} (relative): some op is computed otherwise, no truth"
                )
        return None


def _inference_batchnorm() -> type:
    """BatchNormalization as onnxruntime runs it for inference, at every opset.

    onnx's reference ``BatchNormalization_9`` updates the statistics from the batch whenever
    ``momentum`` is set, and the schema's default sets it, so every opset-9..13 BN would be
    evaluated in training mode (5 % off onnxruntime on resnet50).
    """
    from onnx.reference.op_run import OpRun

    class BatchNormalization(OpRun):
        op_domain = ""

        def _run(self, x, scale, bias, mean, var, epsilon=None, training_mode=None, **_ignored):
            if training_mode:
                raise NotImplementedError("BatchNormalization in training mode")
            epsilon = 1e-5 if epsilon is None else epsilon
            shape = (1, -1) + (1,) * (x.ndim - 2)
            scale, bias, mean, var = (np.reshape(a, shape) for a in (scale, bias, mean, var))
            return ((x - mean) / np.sqrt(var + epsilon) * scale + bias,)

    return BatchNormalization


def _widen(value: np.ndarray) -> np.ndarray:
    return value.astype(np.float64) if value.dtype.kind == "f" else value


def float64_copy(model: onnx.ModelProto, base_dir: Path | None) -> onnx.ModelProto:
    """``model`` with every floating tensor, type and cast target made float64."""
    weight_bytes = sum(_nbytes(t) for t in model.graph.initializer)
    if weight_bytes * 2 > MAX_WEIGHT_BYTES:
        raise MemoryError(f"{weight_bytes / 2**20:.0f} MiB of weights")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    _widen_graph(copy.graph, base_dir)
    for function in copy.functions:
        for node in function.node:
            _widen_node(node, base_dir)
    return copy


def _nbytes(tensor: TensorProto) -> int:
    return int(np.prod(tensor.dims, dtype=np.int64)) * 4


def _widen_tensor(tensor: TensorProto, base_dir: Path | None) -> None:
    if tensor.data_type in _FLOATS:
        array = np.asarray(tensor_array(tensor, base_dir), dtype=np.float64)
        tensor.CopyFrom(numpy_helper.from_array(array, tensor.name))
    elif tensor.data_location == TensorProto.EXTERNAL:
        # A model read from a file keeps its large tensors there (``storage.lazyio``); the
        # reference evaluator reads none, so the integer ones (int8 weights, int32 biases,
        # shapes) come into memory as they are.
        tensor.CopyFrom(numpy_helper.from_array(tensor_array(tensor, base_dir), tensor.name))


def _widen_graph(graph: onnx.GraphProto, base_dir: Path | None) -> None:
    for tensor in graph.initializer:
        _widen_tensor(tensor, base_dir)
    for sparse in graph.sparse_initializer:
        _widen_tensor(sparse.values, base_dir)
    del graph.value_info[:]  # intermediate annotations: their float types are now wrong
    for value in [*graph.input, *graph.output]:
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type in _FLOATS:
            tensor_type.elem_type = TensorProto.DOUBLE
    for node in graph.node:
        _widen_node(node, base_dir)


def _widen_node(node: onnx.NodeProto, base_dir: Path | None) -> None:
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.TENSOR:
            _widen_tensor(attribute.t, base_dir)
        elif attribute.type == onnx.AttributeProto.GRAPH:
            _widen_graph(attribute.g, base_dir)
        elif attribute.type == onnx.AttributeProto.GRAPHS:
            for graph in attribute.graphs:
                _widen_graph(graph, base_dir)
        elif attribute.name in ("to", "dtype") and attribute.i in _FLOATS:
            attribute.i = TensorProto.DOUBLE
