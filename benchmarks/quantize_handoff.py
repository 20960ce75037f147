"""bnfold before int8 quantization: what onnxruntime's static quantization leaves in float.

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
  runs; the models' sessions are interleaved, so load on the machine falls on all of them.

``--forms`` applies, by hand (numpy + onnx), each form a BN after an activation can take
before quantizing, on 4 × [Conv 3×3 → Relu → BN] (onnxruntime issue #9938): bnfold's split
(scale into the Conv, the shift ``t = β − μ·s`` one Add after the Relu, exact for ``s > 0``),
the BN lowered to a 1×1 depthwise Conv, the BN as Mul + Add, and nothing.
"""

from __future__ import annotations

import argparse
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

from bnfold.integrations.quantization import (
    FLOAT_COMPUTE_OPS,
    optimized_ops,
    quantize_with_onnxruntime,
)

HERE = Path(__file__).resolve().parent
EPS = 1e-5
WARMUP = 5


@dataclass(frozen=True)
class Settings:
    """How big the models are and how long each is measured."""

    channels: int = 64
    size: int = 56
    width: int = 512
    calibration: int = 16
    eval: int = 8
    sessions: int = 5
    runs: int = 50
    threads: int = 1


@dataclass
class Row:
    """One quantized model: what stayed in float, how close it is, how fast it runs."""

    model: str
    pipeline: str
    ops: dict[str, int]  # onnxruntime's ORT_ENABLE_ALL graph of the int8 model
    cosine: float
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def islands(self) -> dict[str, int]:
        return {op: n for op, n in self.ops.items() if op in FLOAT_COMPUTE_OPS}

    @property
    def latency_ms(self) -> float:
        return statistics.median(self.latencies_ms)


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
    def random(cls, rng: np.random.Generator, channels: int) -> BatchNorm:
        return cls(
            rng.uniform(0.5, 2, channels),
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
    settings: Settings, form: BlockForm = _kept_bn, blocks: int = 4
) -> onnx.ModelProto:
    """``blocks`` × [Conv 3×3 → Relu → BN], the shape of onnxruntime issue #9938."""
    rng = np.random.default_rng(0)
    c, nodes, inits, x = settings.channels, [], [], "x"
    for i in range(blocks):
        w, b = _conv_weights(rng, c, c, 3)
        more, params = form(i, x, f"y{i}", w, b, BatchNorm.random(rng, c))
        nodes += more
        inits += params
        x = f"y{i}"
    return _model(nodes, inits, {"x": [1, c, settings.size, settings.size]}, x)


# -- measuring ----------------------------------------------------------------------------------


class RandomBatches(CalibrationDataReader):
    """``count`` standard-normal batches for every graph input (float32, fixed shapes)."""

    def __init__(self, model: onnx.ModelProto, count: int, seed: int) -> None:
        self.batches = list(random_batches(model, count, seed))
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position == len(self.batches):
            return None
        self.position += 1
        return self.batches[self.position - 1]


def random_batches(
    model: onnx.ModelProto, count: int, seed: int
) -> Iterator[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    inputs = [
        (i.name, [d.dim_value for d in i.type.tensor_type.shape.dim]) for i in model.graph.input
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
    calibration = RandomBatches(float_model, settings.calibration, seed=0)
    quantize_with_onnxruntime(source, target, calibration, per_channel=True)
    return target


def measure(
    original: onnx.ModelProto, candidates: dict[str, onnx.ModelProto], name: str, settings: Settings
) -> list[Row]:
    """Quantize each float candidate of ``original`` and measure it (islands, cosine, latency)."""
    evaluation = list(random_batches(original, settings.eval, seed=1))
    reference = outputs(original, evaluation)
    rows, files = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, (pipeline, candidate) in enumerate(candidates.items()):
            path = quantize(candidate, Path(tmp), f"m{index}", settings)
            files[pipeline] = path
            rows.append(
                Row(
                    name,
                    pipeline,
                    optimized_ops(path),
                    cosine(outputs(path, evaluation), reference),
                )
            )
        time_interleaved(rows, files, evaluation[0], settings)
    return rows


def time_interleaved(
    rows: list[Row], files: dict[str, Path], feeds: dict, settings: Settings
) -> None:
    """Per round, one fresh session per model, each timed ``runs`` times: its median, in ms."""
    for _ in range(settings.sessions):
        for row in rows:
            run = session(files[row.pipeline], settings.threads)
            for _ in range(WARMUP):
                run.run(None, feeds)
            times = []
            for _ in range(settings.runs):
                start = time.perf_counter()
                run.run(None, feeds)
                times.append(time.perf_counter() - start)
            row.latencies_ms.append(statistics.median(times) * 1e3)


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
    base = next(r.latency_ms for r in rows if r.pipeline == baseline)
    lines = [
        "| form before quantizing | float ops left | onnxruntime's graph of the int8 model | cosine to float | int8 ms (median) | speedup vs BN kept |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in rows:
        lines.append(
            f"| {row.pipeline} | {ops_text(row.islands)} | {ops_text(row.ops)} | {row.cosine:.5f} | "
            f"{row.latency_ms:.2f} | {base / row.latency_ms:.2f}× |"
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
        f"fresh sessions of each one's median of {settings.runs} runs, interleaved.",
        "",
        *forms_table(rows, baseline="nothing (BN kept)"),
    ]
    out.write_text("\n".join(doc) + "\n")
    print("\n".join(doc))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forms", action="store_true", help="the BN forms by hand (#9938 shape)")
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


if __name__ == "__main__":
    main()
