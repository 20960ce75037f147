"""bnfold before int8 quantization: what onnxruntime's static quantization leaves in float.

    .venv/bin/python benchmarks/quantize_handoff.py            # the hand-off: quantize_handoff.md
    .venv/bin/python benchmarks/quantize_handoff.py --forms    # BN forms by hand: quantize_forms.md

Every model is quantized by onnxruntime's pipeline (``quant_pre_process`` then
``quantize_static``: QDQ, uint8 activations, int8 weights per channel, MinMax calibration on
``--calibration`` random standard-normal batches, seed 0) and then measured:

- **float islands**: the BatchNormalization, Mul, Add, Conv, MatMul, ... nodes of onnxruntime's
  ``ORT_ENABLE_ALL`` graph of the int8 model (``bnfold.integrations.quantization.float_islands``),
  the arithmetic that still runs in float (a quantized node is a ``QLinear*`` kernel there);
- **cosine** of the int8 model's output to the float model's, ``Σ y·r / (‖y‖·‖r‖)`` over
  ``--eval`` other random batches (seed 1) flattened together;
- **latency**: median over ``--sessions`` fresh sessions (``ORT_ENABLE_ALL``, CPU,
  ``--threads`` intra-op threads) of each session's median of ``--runs`` runs after 5 warm-up
  runs; the models' runs are interleaved, so load on the machine falls on all of them alike.
  Speedups are given by these medians and by the best sessions (each model's lowest).

``--forms`` applies, by hand (numpy + onnx), each form a BN after an activation can take
before quantizing, on 4 × [Conv 3×3 → Relu → BN] (onnxruntime issue #9938): bnfold's split
(scale into the Conv, the shift ``t = β − μ·s`` one Add after the Relu, exact for ``s > 0``),
the BN lowered to a 1×1 depthwise Conv, the BN as Mul + Add, and nothing.

The hand-off (the default) compares, per model (``Conv → Relu → BN``, the same with every
other γ < 0, Keras' ``Dense → Relu → BN`` as BatchNormalization and as Mul + Add, a real Keras
model when ``keras`` imports on the torch backend, a residual block), onnxruntime's pipeline alone with bnfold first:
``bnfold.optimize(target="quantize")`` (``bnfold optimize --target quantize``) and the default
profile, and checks issue 25's thresholds on the ``quantize`` rows.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader

import bnfold
from bnfold.engine.report import FoldReport
from bnfold.integrations.quantization import (
    FLOAT_COMPUTE_OPS,
    optimized_ops,
    quantize_with_onnxruntime,
)

HERE = Path(__file__).resolve().parent
EPS = 1e-5
# onnxruntime's integer kernels besides QLinear*: what a quantized Gemm/MatMul/Conv becomes
INT8_KERNELS = frozenset({"QGemm", "MatMulInteger", "MatMulIntegerToFloat", "ConvInteger"})
WARMUP = 5
BEST_SESSION = (
    "the best session (the lowest of those medians) is the one least disturbed by other work "
    "on the machine, the second speedup."
)


@dataclass(frozen=True)
class Settings:
    """How big the models are and how long each is measured."""

    channels: int = 64
    size: int = 56
    width: int = 512
    batch: int = 32  # rows of the Dense models, and any free dimension
    calibration: int = 16
    eval: int = 8
    sessions: int = 7
    runs: int = 50
    threads: int = 1


@dataclass
class Row:
    """One quantized model: what stayed in float, how close it is, how fast it runs."""

    model: str
    pipeline: str
    ops: dict[str, int]  # onnxruntime's ORT_ENABLE_ALL graph of the int8 model
    cosine: float
    same_as: str | None = None  # an earlier row whose int8 file is byte for byte this one's
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def islands(self) -> dict[str, int]:
        return {op: n for op, n in self.ops.items() if op in FLOAT_COMPUTE_OPS}

    @property
    def quantized(self) -> dict[str, int]:
        return {
            op: n for op, n in self.ops.items() if op in INT8_KERNELS or op.startswith("QLinear")
        }

    @property
    def latency_ms(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def latency_text(self) -> str:
        spread = f"{min(self.latencies_ms):.2f}–{max(self.latencies_ms):.2f}"
        return f"{self.latency_ms:.2f} [{spread}]"

    def speedups(self, baseline: Row) -> tuple[float, float]:
        """How many times faster than ``baseline``: by the sessions' medians, and by their best
        sessions (the least disturbed by other work on the machine)."""
        return (
            baseline.latency_ms / self.latency_ms,
            min(baseline.latencies_ms) / min(self.latencies_ms),
        )

    def speedup_text(self, baseline: Row) -> str:
        median, best = self.speedups(baseline)
        return f"{median:.2f}× ({best:.2f}×)"


# -- building blocks ----------------------------------------------------------------------------


def _tensor(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def _model(nodes: list, inits: list, inputs: dict[str, list[int]], output: str) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "quantize_handoff",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    onnx.checker.check_model(model)
    return model


@dataclass(frozen=True)
class BatchNorm:
    """One BN's parameters; ``BN(x) = s·x + t`` with ``s = γ/sqrt(σ² + ε)``, ``t = β − μ·s``."""

    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, channels: int, negative: bool = False) -> BatchNorm:
        """Random statistics; ``negative``: every other γ < 0, a scale Relu cannot pass."""
        sign = np.where(np.arange(channels) % 2 == 1, -1.0, 1.0) if negative else 1.0
        return cls(
            sign * rng.uniform(0.5, 2, channels),
            rng.standard_normal(channels) * 0.5,
            rng.standard_normal(channels) * 0.5,
            rng.uniform(0.5, 2, channels),
        )

    @property
    def scale(self) -> np.ndarray:
        return self.gamma / np.sqrt(self.var + EPS)

    @property
    def shift(self) -> np.ndarray:
        return self.beta - self.mean * self.scale

    def node(self, name: str, x: str, y: str) -> tuple[list, list]:
        names = [f"{name}_{k}" for k in ("gamma", "beta", "mean", "var")]
        values = (self.gamma, self.beta, self.mean, self.var)
        inits = [_tensor(n, v) for n, v in zip(names, values, strict=True)]
        return [
            helper.make_node("BatchNormalization", [x, *names], [y], name=name, epsilon=EPS)
        ], inits


def _conv(
    name: str, x: str, y: str, weight: np.ndarray, bias: np.ndarray, **attrs: object
) -> tuple:
    inits = [_tensor(f"{name}_W", weight), _tensor(f"{name}_B", bias)]
    return [helper.make_node("Conv", [x, f"{name}_W", f"{name}_B"], [y], name=name, **attrs)], inits


def _conv_weights(rng: np.random.Generator, c_out: int, c_in: int, k: int) -> tuple:
    weight = rng.standard_normal([c_out, c_in, k, k]) * (2.0 / (c_in * k * k)) ** 0.5
    return weight, rng.standard_normal(c_out) * 0.1


# -- the forms of a BN after an activation, by hand ---------------------------------------------

# form -> how a Conv → Relu → BN block is written: (nodes, initializers) from (i, x, y, W, b, bn)
BlockForm = Callable[[int, str, str, np.ndarray, np.ndarray, BatchNorm], tuple[list, list]]


def _kept_bn(i: int, x: str, y: str, w: np.ndarray, b: np.ndarray, bn: BatchNorm) -> tuple:
    conv, inits = _conv(f"conv{i}", x, f"c{i}", w, b, pads=[1, 1, 1, 1])
    norm, params = bn.node(f"bn{i}", f"r{i}", y)
    return [*conv, helper.make_node("Relu", [f"c{i}"], [f"r{i}"]), *norm], inits + params


def _split(i: int, x: str, y: str, w: np.ndarray, b: np.ndarray, bn: BatchNorm) -> tuple:
    """``Add(Relu(Conv(x; W·s, b·s)), t)``: ``Relu(s·z) = s·Relu(z)`` for ``s > 0``."""
    s = bn.scale
    conv, inits = _conv(
        f"conv{i}", x, f"c{i}", w * s[:, None, None, None], b * s, pads=[1, 1, 1, 1]
    )
    add = helper.make_node("Add", [f"r{i}", f"t{i}"], [y], name=f"shift{i}")
    relu = helper.make_node("Relu", [f"c{i}"], [f"r{i}"])
    return [*conv, relu, add], [*inits, _tensor(f"t{i}", bn.shift[:, None, None])]


def _dwconv(i: int, x: str, y: str, w: np.ndarray, b: np.ndarray, bn: BatchNorm) -> tuple:
    """The BN as ``Conv(group=C, W = s as [C, 1, 1, 1], B = t)``."""
    conv, inits = _conv(f"conv{i}", x, f"c{i}", w, b, pads=[1, 1, 1, 1])
    c = len(bn.scale)
    lowered, params = _conv(f"bn{i}", f"r{i}", y, bn.scale.reshape(c, 1, 1, 1), bn.shift, group=c)
    return [*conv, helper.make_node("Relu", [f"c{i}"], [f"r{i}"]), *lowered], inits + params


def _mul_add(i: int, x: str, y: str, w: np.ndarray, b: np.ndarray, bn: BatchNorm) -> tuple:
    """The BN as ``Mul(s) → Add(t)``, each a ``[C, 1, 1]`` constant."""
    conv, inits = _conv(f"conv{i}", x, f"c{i}", w, b, pads=[1, 1, 1, 1])
    nodes = [
        *conv,
        helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        helper.make_node("Mul", [f"r{i}", f"s{i}"], [f"m{i}"], name=f"bn{i}_mul"),
        helper.make_node("Add", [f"m{i}", f"t{i}"], [y], name=f"bn{i}_add"),
    ]
    consts = [_tensor(f"s{i}", bn.scale[:, None, None]), _tensor(f"t{i}", bn.shift[:, None, None])]
    return nodes, inits + consts


FORMS: dict[str, BlockForm] = {
    "split (scale into Conv, shift as Add)": _split,
    "BN as 1×1 depthwise Conv": _dwconv,
    "BN as Mul + Add": _mul_add,
    "nothing (BN kept)": _kept_bn,
}


def conv_relu_bn(
    settings: Settings, form: BlockForm = _kept_bn, negative: bool = False, blocks: int = 4
) -> onnx.ModelProto:
    """``blocks`` × [Conv 3×3 → Relu → BN], the shape of onnxruntime issue #9938; with
    ``negative`` every other γ < 0 (no exact split: ``Relu(s·z) ≠ s·Relu(z)`` for ``s < 0``)."""
    rng = np.random.default_rng(0)
    c, nodes, inits, x = settings.channels, [], [], "x"
    for i in range(blocks):
        w, b = _conv_weights(rng, c, c, 3)
        bn = BatchNorm.random(rng, c, negative)
        more, params = form(i, x, f"y{i}", w, b, bn)
        nodes += more
        inits += params
        x = f"y{i}"
    return _model(nodes, inits, {"x": [1, c, settings.size, settings.size]}, x)


def dense_relu_bn(settings: Settings, form: str = "batchnorm", layers: int = 3) -> onnx.ModelProto:
    """Keras' ``Dense → Relu → BN``: ``layers`` × [MatMul → bias Add → Relu → BN], then a Dense
    head; the BN as ``BatchNormalization`` (``form="batchnorm"``) or as ``Mul(s) → Add(t)``
    (``"mul-add"``, how Keras' exporters write it)."""
    rng = np.random.default_rng(1)
    c, nodes, inits, x = settings.width, [], [], "x"
    for i in range(layers + 1):
        width = c if i < layers else 16
        inits += [
            _tensor(f"W{i}", rng.standard_normal([c, width]) * (2.0 / c) ** 0.5),
            _tensor(f"b{i}", rng.standard_normal(width) * 0.1),
        ]
        nodes += [
            helper.make_node("MatMul", [x, f"W{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"d{i}"]),
        ]
        x = f"d{i}"
        if i == layers:
            break
        nodes.append(helper.make_node("Relu", [x], [f"r{i}"]))
        bn = BatchNorm.random(rng, c)
        if form == "batchnorm":
            more, params = bn.node(f"bn{i}", f"r{i}", f"n{i}")
        else:
            more = [
                helper.make_node("Mul", [f"r{i}", f"s{i}"], [f"k{i}"], name=f"bn{i}_mul"),
                helper.make_node("Add", [f"k{i}", f"t{i}"], [f"n{i}"], name=f"bn{i}_add"),
            ]
            params = [_tensor(f"s{i}", bn.scale), _tensor(f"t{i}", bn.shift)]
        nodes += more
        inits += params
        x = f"n{i}"
    return _model(nodes, inits, {"x": [settings.batch, c]}, x)


def residual(settings: Settings, blocks: int = 2) -> onnx.ModelProto:
    """``blocks`` × [Conv → BN → Relu → Conv → BN → Add(skip) → Relu], ResNet's basic block."""
    rng = np.random.default_rng(2)
    c, nodes, inits, x = settings.channels, [], [], "x"
    for i in range(blocks):
        for j in (0, 1):
            name, source = f"b{i}c{j}", x if j == 0 else f"b{i}r0"
            w, b = _conv_weights(rng, c, c, 3)
            conv, params = _conv(name, source, f"{name}_y", w, b, pads=[1, 1, 1, 1])
            norm, bn_params = BatchNorm.random(rng, c).node(f"{name}_bn", f"{name}_y", f"{name}_n")
            nodes += [*conv, *norm]
            inits += params + bn_params
            if j == 0:
                nodes.append(helper.make_node("Relu", [f"{name}_n"], [f"b{i}r0"]))
        nodes += [
            helper.make_node("Add", [f"b{i}c1_n", x], [f"b{i}sum"]),
            helper.make_node("Relu", [f"b{i}sum"], [f"b{i}out"]),
        ]
        x = f"b{i}out"
    return _model(nodes, inits, {"x": [1, c, settings.size, settings.size]}, x)


def keras_dense_relu_bn(settings: Settings) -> tuple[onnx.ModelProto, onnx.ModelProto, str] | None:
    """A Keras 3 model (``Dense(relu) → BN`` twice, then a Dense head) on the torch backend:
    Keras' own export, and ``bnfold.integrations.keras_export.export_keras``'s folded file
    (bnfold's default profile, verified against ``model.predict``) with what it folded. None
    without keras."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError:
        return None
    from bnfold.integrations.keras_export import export_keras

    keras.utils.set_random_seed(3)
    c = settings.width
    layers = [keras.Input((c,))]
    for _ in range(2):
        layers += [keras.layers.Dense(c, activation="relu"), keras.layers.BatchNormalization()]
    model = keras.Sequential([*layers, keras.layers.Dense(16)])
    rng = np.random.default_rng(3)
    for layer in model.layers:  # as if trained: Keras starts BN as identity and biases at 0
        if isinstance(layer, keras.layers.BatchNormalization):
            bn = BatchNorm.random(rng, c)
            layer.set_weights([bn.gamma, bn.beta, bn.mean, bn.var])
        else:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.standard_normal(bias.shape) * 0.1])
    model(np.zeros((settings.batch, c), np.float32))  # Keras exports only a model once called
    with tempfile.TemporaryDirectory() as tmp:
        raw, folded = Path(tmp) / "raw.onnx", Path(tmp) / "folded.onnx"
        model.export(str(raw), format="onnx", verbose=False)
        exported = export_keras(model, folded)
        return onnx.load(raw), onnx.load(folded), f"export_keras: {what_folded(exported.report)}"


# -- measuring ----------------------------------------------------------------------------------


class RandomBatches(CalibrationDataReader):
    """``count`` standard-normal batches for every graph input (float32, a free dimension
    ``free`` long)."""

    def __init__(self, model: onnx.ModelProto, count: int, seed: int, free: int) -> None:
        self.batches = list(random_batches(model, count, seed, free))
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position == len(self.batches):
            return None
        self.position += 1
        return self.batches[self.position - 1]


def random_batches(
    model: onnx.ModelProto, count: int, seed: int, free: int
) -> Iterator[dict[str, np.ndarray]]:
    """Standard-normal float32 inputs; a dimension without a value is ``free`` long."""
    rng = np.random.default_rng(seed)
    inputs = [
        (i.name, [d.dim_value or free for d in i.type.tensor_type.shape.dim])
        for i in model.graph.input
    ]
    for _ in range(count):
        yield {name: rng.standard_normal(shape).astype(np.float32) for name, shape in inputs}


def session(model: Path | onnx.ModelProto, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def outputs(model: Path | onnx.ModelProto, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    run = session(model, threads=os.cpu_count() or 1)
    return np.concatenate([run.run(None, feeds)[0].ravel() for feeds in batches]).astype(np.float64)


def cosine(y: np.ndarray, r: np.ndarray) -> float:
    """``Σ y·r / (‖y‖·‖r‖)``."""
    return float(np.dot(y, r) / (np.linalg.norm(y) * np.linalg.norm(r)))


def quantize(float_model: onnx.ModelProto, folder: Path, name: str, settings: Settings) -> Path:
    """onnxruntime's pipeline on ``float_model``, calibrated on random batches; the int8 file."""
    source, target = folder / f"{name}.onnx", folder / f"{name}.int8.onnx"
    onnx.save(float_model, source)
    calibration = RandomBatches(float_model, settings.calibration, 0, settings.batch)
    quantize_with_onnxruntime(source, target, calibration, per_channel=True)
    return target


def measure(
    original: onnx.ModelProto, candidates: dict[str, onnx.ModelProto], name: str, settings: Settings
) -> list[Row]:
    """Quantize each float candidate of ``original`` and measure it (islands, cosine, latency)."""
    evaluation = list(random_batches(original, settings.eval, 1, settings.batch))
    reference = outputs(original, evaluation)
    rows, files, seen = [], {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, (pipeline, candidate) in enumerate(candidates.items()):
            path = quantize(candidate, Path(tmp), f"m{index}", settings)
            files[pipeline] = path
            row = Row(
                name, pipeline, optimized_ops(path), cosine(outputs(path, evaluation), reference)
            )
            row.same_as = seen.get(path.read_bytes())
            seen.setdefault(path.read_bytes(), pipeline)
            rows.append(row)
        time_interleaved(rows, files, evaluation[0], settings)
    return rows


def time_interleaved(
    rows: list[Row], files: dict[str, Path], feeds: dict, settings: Settings
) -> None:
    """Per round, a fresh session per model, run in turn ``runs`` times (one run of each model,
    then the next), so a burst of load on the machine falls on every model alike; each
    session's median, in ms, goes to its row."""
    for _ in range(settings.sessions):
        sessions = [session(files[row.pipeline], settings.threads) for row in rows]
        for run in sessions:
            for _ in range(WARMUP):
                run.run(None, feeds)
        times: list[list[float]] = [[] for _ in rows]
        for _ in range(settings.runs):
            for run, spent in zip(sessions, times, strict=True):
                start = time.perf_counter()
                run.run(None, feeds)
                spent.append(time.perf_counter() - start)
        for row, spent in zip(rows, times, strict=True):
            row.latencies_ms.append(statistics.median(spent) * 1e3)


# -- tables -------------------------------------------------------------------------------------


def machine(settings: Settings) -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    cpu = _cpu_name() or platform.processor() or platform.machine()
    return (
        f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, {cpu}, {os.cpu_count()} CPUs "
        f"(load average {load} at the end), intra-op threads {settings.threads}"
    )


def _cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def ops_text(ops: dict[str, int]) -> str:
    return ", ".join(f"{n} {op}" for op, n in ops.items()) or "none"


def forms_table(rows: list[Row], baseline: str) -> list[str]:
    base = next(r for r in rows if r.pipeline == baseline)
    lines = [
        "| form before quantizing | float ops left | onnxruntime's graph of the int8 model | cosine to float | int8 ms: median [sessions' min–max] | speedup vs BN kept: medians (best sessions) |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in rows:
        lines.append(
            f"| {row.pipeline} | {ops_text(row.islands)} | {ops_text(row.ops)} | {row.cosine:.5f} | "
            f"{row.latency_text} | {row.speedup_text(base)} |"
        )
    return lines


def run_forms(settings: Settings, out: Path, command: str) -> None:
    original = conv_relu_bn(settings)
    candidates = {label: conv_relu_bn(settings, form) for label, form in FORMS.items()}
    rows = measure(original, candidates, "conv-relu-bn", settings)
    doc = [
        "# The form of a BN after an activation, before int8 quantization",
        "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Machine: {machine(settings)}.",
        "",
        f"Model: 4 × [Conv 3×3 → Relu → BN], {settings.channels} channels, "
        f"{settings.size}×{settings.size}, batch 1, float32, ir_version 8, opset 13 (the shape of "
        "onnxruntime issue #9938). Each form is written by hand (numpy + onnx), then "
        "`quant_pre_process` and `quantize_static` (QDQ, uint8 activations, int8 weights per "
        f"channel, MinMax on {settings.calibration} random batches). Float ops: BatchNormalization, "
        "Mul, Add, Conv, ... nodes of onnxruntime's `ORT_ENABLE_ALL` graph of the int8 model. "
        f"Cosine over {settings.eval} other random batches. Latency: median over {settings.sessions} "
        f"fresh sessions of each one's median of {settings.runs} runs, the models' runs interleaved; "
        f"{BEST_SESSION}",
        "",
        *forms_table(rows, baseline="nothing (BN kept)"),
    ]
    out.write_text("\n".join(doc) + "\n")
    print("\n".join(doc))


# -- the hand-off: onnxruntime alone against bnfold first ---------------------------------------

ALONE = "onnxruntime alone"
QUANTIZE = "bnfold `--target quantize`, then onnxruntime"
DEFAULT = "bnfold default, then onnxruntime"
AFFINE = ("BatchNormalization", "Mul", "Add", "Sub", "Div")  # a BN or what it can become
COSINE_SLACK = 0.001  # issue 25: cosine no worse than onnxruntime alone, within this
SPEEDUP_FLOOR = 1.05  # issue 25: on the Conv → Relu → BN model
CONV_MODEL = "conv-relu-bn (#9938)"


def folded(model: onnx.ModelProto, target: str) -> tuple[onnx.ModelProto, str]:
    """bnfold's output for ``target`` and what it did, in a few words."""
    result = bnfold.optimize(model, target=target)
    return result.model, what_folded(result.report)


def what_folded(report: FoldReport) -> str:
    """``2 conv-bn-split; kept: negative-scale``: folds by pattern, then the reasons kept."""
    patterns = collections.Counter(fold.pattern for fold in report.folds)
    done = ", ".join(f"{n} {pattern}" for pattern, n in sorted(patterns.items())) or "nothing"
    kept = sorted({s.reason for s in report.skipped})
    return done + (f"; kept: {', '.join(kept)}" if kept else "")


def handoff_models(settings: Settings, keras: bool) -> Iterator[tuple[str, onnx.ModelProto, dict]]:
    """(name, float model, pipeline → (float model handed to onnxruntime, what bnfold did))."""
    built = {
        CONV_MODEL: conv_relu_bn(settings),
        "conv-relu-bn, half the γ < 0": conv_relu_bn(settings, negative=True),
        "dense-relu-bn (BatchNormalization)": dense_relu_bn(settings),
        "dense-relu-bn (Mul + Add)": dense_relu_bn(settings, form="mul-add"),
        "residual block": residual(settings),
    }
    for name, model in built.items():
        yield (
            name,
            model,
            {
                ALONE: (model, ""),
                QUANTIZE: folded(model, "quantize"),
                DEFAULT: folded(model, "default"),
            },
        )
    exported = keras_dense_relu_bn(settings) if keras else None
    if exported is not None:
        raw, by_export_keras, note = exported
        yield (
            "keras dense-relu-bn (torch backend)",
            raw,
            {
                ALONE: (raw, ""),
                QUANTIZE: folded(raw, "quantize"),
                DEFAULT: (by_export_keras, note),
            },
        )


def run_handoff(settings: Settings, keras: bool) -> tuple[list[Row], dict[tuple[str, str], str]]:
    rows, notes = [], {}
    for name, original, candidates in handoff_models(settings, keras):
        rows += measure(
            original, {p: model for p, (model, _) in candidates.items()}, name, settings
        )
        notes.update({(name, p): note for p, (_, note) in candidates.items()})
        print(f"measured {name}", flush=True)
    return rows, notes


def handoff_table(rows: list[Row], notes: dict[tuple[str, str], str]) -> list[str]:
    alone = {r.model: r for r in rows if r.pipeline == ALONE}
    lines = [
        "| model | pipeline | what bnfold did | float ops left | int8 kernels | cosine to float | int8 ms: median [sessions' min–max] | speedup vs onnxruntime alone: medians (best sessions) |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in rows:
        lines.append(
            f"| {row.model} | {row.pipeline} | {_did(row, notes[(row.model, row.pipeline)])} | "
            f"{ops_text(row.islands)} | {ops_text(row.quantized)} | {row.cosine:.5f} | "
            f"{row.latency_text} | "
            f"{row.speedup_text(alone[row.model])} |"
        )
    return lines


def _did(row: Row, note: str) -> str:
    same = f" (same int8 file as {row.same_as})" if row.same_as else ""
    return (note or "–") + same


def done_when(rows: list[Row]) -> list[str]:
    """Issue 25's thresholds for the ``--target quantize`` rows, one line per model."""
    alone = {r.model: r for r in rows if r.pipeline == ALONE}
    lines = []
    for row in (r for r in rows if r.pipeline == QUANTIZE):
        affine = {op: n for op, n in row.islands.items() if op in AFFINE}
        base = alone[row.model]
        checks = [
            f"float BN/Mul/Add left: {ops_text(affine)} ({'ok' if not affine else 'FAIL'})",
            f"cosine {row.cosine:.5f} vs {base.cosine:.5f} alone "
            f"({'ok' if row.cosine >= base.cosine - COSINE_SLACK else 'FAIL'})",
        ]
        if row.model == CONV_MODEL:
            verdict = "ok" if min(row.speedups(base)) >= SPEEDUP_FLOOR else "FAIL"
            checks.append(
                f"int8 speedup {row.speedup_text(base)} (both ≥ {SPEEDUP_FLOOR}×: {verdict})"
            )
        lines.append(f"- **{row.model}**: " + "; ".join(checks))
    return lines


def write_handoff(settings: Settings, keras: bool, out: Path, command: str) -> None:
    rows, notes = run_handoff(settings, keras)
    doc = [
        "# The quantization hand-off: onnxruntime alone against bnfold first",
        "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"bnfold {bnfold.__version__} from `{Path(bnfold.__file__).parent}`.",
        f"Machine: {machine(settings)}.",
        "",
        "Each float model goes through `quant_pre_process` and `quantize_static` (QDQ, uint8 "
        "activations, int8 weights per channel, MinMax on "
        f"{settings.calibration} random batches) as it is, after `bnfold optimize --target "
        "quantize`, and after bnfold's default profile. Float ops: BatchNormalization, Mul, Add, "
        "Conv, MatMul, ... nodes of onnxruntime's `ORT_ENABLE_ALL` graph of the int8 model "
        f"(quantized nodes are `QLinear*` kernels there). Cosine over {settings.eval} other random "
        f"batches. Latency: median over {settings.sessions} fresh sessions of each one's median "
        f"of {settings.runs} runs, the models' runs interleaved; {BEST_SESSION} Conv models: {settings.channels} channels, "
        f"{settings.size}×{settings.size}, batch 1; Dense models: width {settings.width}, "
        f"batch {settings.batch}.",
        "",
        *handoff_table(rows, notes),
        "",
        "## Issue 25's thresholds (`--target quantize` rows)",
        "",
        *done_when(rows),
    ]
    out.write_text("\n".join(doc) + "\n")
    print("\n".join(doc))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forms", action="store_true", help="the BN forms by hand (#9938 shape)")
    parser.add_argument("--no-keras", action="store_true", help="leave out the Keras model")
    parser.add_argument("--out", type=Path, default=None, help="the Markdown file to write")
    defaults = Settings()
    for name, value in vars(defaults).items():
        parser.add_argument(f"--{name}", type=int, default=value)
    args = parser.parse_args(argv)
    # onnxruntime.quantization warns on the root logger for every per-channel BN parameter
    logging.getLogger().setLevel(logging.ERROR)
    settings = Settings(**{k: getattr(args, k) for k in vars(defaults)})
    command = " ".join(
        ["python benchmarks/quantize_handoff.py", *(argv if argv is not None else sys.argv[1:])]
    )
    if args.forms:
        run_forms(settings, args.out or HERE / "quantize_forms.md", command)
    else:
        write_handoff(
            settings, not args.no_keras, args.out or HERE / "quantize_handoff.md", command
        )


if __name__ == "__main__":
    main()
