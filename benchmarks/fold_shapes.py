"""Is each fold shape bnfold writes no slower under onnxruntime's default level (``all``)?

For every fold shape (a small model that holds it several times) this writes the original and
what ``bnfold optimize`` makes of it, then records two things:

1. **structure** (deterministic): the op counts of onnxruntime's level-``all`` graph of both
   (``SessionOptions.optimized_model_filepath``). A fold that adds ``ReorderInput``/
   ``ReorderOutput`` nodes breaks the NCHWc layout onnxruntime gives Conv chains;
2. **time**: ``bnfold bench ORIGINAL CANDIDATE --level all --threads 1 --min-time 16``
   (batch 1: every model has a fixed batch of 1), its verdict and speedup with the 95%
   interval (a candidate identical to the original is not timed).

Variants marked *forced* are folds bnfold does not apply by default, written here only to
show why (``conv-bn-split`` on a Conv feature map; ``--lower-standalone`` forms).

Usage: ``python benchmarks/fold_shapes.py [--quick] [SHAPE ...]``; writes
``benchmarks/work/fold_shapes/`` (models, bench reports) and ``benchmarks/fold_shapes.md``
(``--work DIR`` and ``--out FILE.md`` elsewhere). ``--smoke`` times each pair for a moment
only (``--pairs 2 --iters 3 --warmup 1``): it checks that the script runs, not the speed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import bnfold
import bnfold.patterns.producer as producer

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "fold_shapes"
RESULTS = HERE / "fold_shapes.md"
C, HW = 32, 56  # NCHWc needs channels in multiples of its block (8 or 16)
BENCH_TIMING = ["--min-time", "16"]
SMOKE_TIMING = ["--pairs", "2", "--iters", "3", "--warmup", "1"]


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _init(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value.astype(np.float32), name)


def _bn(rng: np.random.Generator, name: str, channels: int, inp: str, out: str) -> tuple:
    params = [
        rng.uniform(0.5, 2, channels),
        rng.standard_normal(channels),
        rng.standard_normal(channels) * 0.1,
        rng.uniform(0.5, 2, channels),
    ]
    names = [f"{name}_{k}" for k in ("scale", "B", "mean", "var")]
    node = helper.make_node("BatchNormalization", [inp, *names], [out], name=name)
    return node, [_init(n, p) for n, p in zip(names, params, strict=True)]


def _conv_w(rng: np.random.Generator, name: str, c_out: int, c_in: int, k: int) -> onnx.TensorProto:
    return _init(name, rng.standard_normal([c_out, c_in, k, k]) * (1.0 / (c_in * k * k)) ** 0.5)


def _model(nodes: list, inits: list, x_shape: list[int], outputs: list[str]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "fold_shape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    inferred = onnx.shape_inference.infer_shapes(model)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    return model


def relu_bn_padded_conv(blocks: int = 4) -> onnx.ModelProto:
    """tf2onnx's Keras CNN: ``Conv → Relu → BN → Conv(SAME 3×3)``: only a split applies."""
    rng = _rng()
    nodes, inits, x = [], [], "x"
    for i in range(blocks):
        inits.append(_conv_w(rng, f"w{i}", C, C, 3))
        nodes.append(helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], auto_pad="SAME_UPPER"))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        bn, params = _bn(rng, f"bn{i}", C, f"r{i}", f"n{i}")
        nodes.append(bn)
        inits += params
        x = f"n{i}"
    inits.append(_conv_w(rng, "wl", C, C, 3))
    nodes.append(helper.make_node("Conv", [x, "wl"], ["y"], auto_pad="SAME_UPPER"))
    return _model(nodes, inits, [1, C, HW, HW], ["y"])


def conv_cast_mul_add(blocks: int = 4) -> onnx.ModelProto:
    """torch's export: ``Conv → Cast(float→float) → Mul → Add → Relu``."""
    rng = _rng()
    nodes, inits, x = [], [], "x"
    for i in range(blocks):
        inits += [
            _conv_w(rng, f"w{i}", C, C, 3),
            _init(f"s{i}", rng.uniform(0.5, 2, [C, 1, 1])),
            _init(f"t{i}", rng.standard_normal([C, 1, 1])),
        ]
        nodes += [
            helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
            helper.make_node("Cast", [f"c{i}"], [f"k{i}"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"k{i}", f"s{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", f"t{i}"], [f"a{i}"]),
            helper.make_node("Relu", [f"a{i}"], [f"r{i}"]),
        ]
        x = f"r{i}"
    return _model(nodes, inits, [1, C, HW, HW], [x])


def bn_into_same_1x1(blocks: int = 4) -> onnx.ModelProto:
    """``Conv → Relu → BN → Conv(1×1, SAME)``: the consumer fold (auto_pad pads nothing)."""
    rng = _rng()
    nodes, inits, x = [], [], "x"
    for i in range(blocks):
        inits += [_conv_w(rng, f"w{i}", C, C, 3), _conv_w(rng, f"p{i}", C, C, 1)]
        nodes.append(helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        bn, params = _bn(rng, f"bn{i}", C, f"r{i}", f"n{i}")
        nodes.append(bn)
        inits += params
        nodes.append(helper.make_node("Conv", [f"n{i}", f"p{i}"], [f"q{i}"], auto_pad="SAME_UPPER"))
        x = f"q{i}"
    return _model(nodes, inits, [1, C, HW, HW], [x])


def dense_relu_bn_heads(heads: int = 5, width: int = 512) -> onnx.ModelProto:
    """A Dense → Relu → BN feeding ``heads`` output Gemms (folded into all of them)."""
    rng = _rng()
    inits = [_init("W", rng.standard_normal([width, width]) / width**0.5)]
    nodes = [
        helper.make_node("Gemm", ["x", "W"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
    ]
    bn, params = _bn(rng, "bn", width, "r", "n")
    nodes.append(bn)
    inits += params
    for head in range(heads):
        inits.append(_init(f"H{head}", rng.standard_normal([width, 64]) / width**0.5))
        nodes.append(helper.make_node("Gemm", ["n", f"H{head}"], [f"o{head}"]))
    return _model(nodes, inits, [1, width], [f"o{h}" for h in range(heads)])


def dense_relu_bn_tanh(layers: int = 4, width: int = 512) -> onnx.ModelProto:
    """``Gemm → Relu → BN → Tanh``: the split on a 2-D tensor (no NCHWc there)."""
    rng = _rng()
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        inits.append(_init(f"W{i}", rng.standard_normal([width, width]) / width**0.5))
        nodes.append(helper.make_node("Gemm", [x, f"W{i}"], [f"g{i}"]))
        nodes.append(helper.make_node("Relu", [f"g{i}"], [f"r{i}"]))
        bn, params = _bn(rng, f"bn{i}", width, f"r{i}", f"n{i}")
        nodes.append(bn)
        inits += params
        nodes.append(helper.make_node("Tanh", [f"n{i}"], [f"t{i}"]))
        x = f"t{i}"
    return _model(nodes, inits, [1, width], [x])


def standalone_bn(blocks: int = 4) -> onnx.ModelProto:
    """``Conv → Sigmoid → BN → Conv(pads 1)``: nothing folds it; ``--lower-standalone`` forms."""
    rng = _rng()
    nodes, inits, x = [], [], "x"
    for i in range(blocks):
        inits.append(_conv_w(rng, f"w{i}", C, C, 3))
        nodes.append(helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Sigmoid", [f"c{i}"], [f"r{i}"]))
        bn, params = _bn(rng, f"bn{i}", C, f"r{i}", f"n{i}")
        nodes.append(bn)
        inits += params
        x = f"n{i}"
    inits.append(_conv_w(rng, "wl", C, C, 3))
    nodes.append(helper.make_node("Conv", [x, "wl"], ["y"], pads=[1, 1, 1, 1]))
    return _model(nodes, inits, [1, C, HW, HW], ["y"])


def concat_bn(blocks: int = 4) -> onnx.ModelProto:
    """``Concat(Conv, Conv) → BN → Relu`` (each Conv takes its slice of the BN)."""
    rng = _rng()
    nodes, inits, x = [], [], "x"
    half = C // 2
    for i in range(blocks):
        inits += [_conv_w(rng, f"a{i}", half, C, 3), _conv_w(rng, f"b{i}", half, C, 1)]
        nodes += [
            helper.make_node("Conv", [x, f"a{i}"], [f"ca{i}"], pads=[1, 1, 1, 1]),
            helper.make_node("Conv", [x, f"b{i}"], [f"cb{i}"]),
            helper.make_node("Concat", [f"ca{i}", f"cb{i}"], [f"k{i}"], axis=1),
        ]
        bn, params = _bn(rng, f"bn{i}", C, f"k{i}", f"n{i}")
        nodes.append(bn)
        inits += params
        nodes.append(helper.make_node("Relu", [f"n{i}"], [f"r{i}"]))
        x = f"r{i}"
    return _model(nodes, inits, [1, C, HW, HW], [x])


class _ForcedSplit:
    """Apply ``conv-bn-split`` on a Conv feature map as bnfold did before the rule."""

    def __enter__(self) -> None:
        self.saved = producer.NCHW_RANK
        producer.NCHW_RANK = -1

    def __exit__(self, *exc: object) -> None:
        producer.NCHW_RANK = self.saved


# shape: (model factory, [(variant label, optimize options, forced?)])
SHAPES: dict[str, tuple[Callable[[], onnx.ModelProto], list[tuple[str, dict, bool]]]] = {
    "relu-bn-padded-conv": (
        relu_bn_padded_conv,
        [("default (BN kept: slower-at-level-all)", {}, False), ("split, shift as Add", {}, True)],
    ),
    "conv-cast-mul-add": (conv_cast_mul_add, [("default", {}, False)]),
    "bn-into-same-1x1-conv": (bn_into_same_1x1, [("default", {}, False)]),
    "dense-relu-bn-5-heads": (dense_relu_bn_heads, [("default", {}, False)]),
    "dense-relu-bn-tanh": (dense_relu_bn_tanh, [("default", {}, False)]),
    "concat-bn": (concat_bn, [("default", {}, False)]),
    "standalone-bn": (
        standalone_bn,
        [
            ("--lower-standalone mul-add", {"lower_standalone": "mul-add"}, True),
            ("--lower-standalone dwconv", {"lower_standalone": "dwconv"}, True),
        ],
    ),
}
QUICK = ("relu-bn-padded-conv", "dense-relu-bn-5-heads")


def ort_ops(path: Path) -> dict[str, int]:
    """Op counts of onnxruntime's level-``all`` graph of ``path`` (CPU provider)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = os.path.join(tmp, "opt.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath).graph
    counts = collections.Counter(
        (
            node.op_type
            if node.domain in ("", "ai.onnx")
            else f"{node.domain.split('.')[-1]}.{node.op_type}"
        )
        for node in graph.node
    )
    return dict(sorted(counts.items()))


def bench(original: Path, candidate: Path, report: Path, timing: list[str]) -> dict:
    command = [
        sys.executable, "-m", "bnfold", "bench", str(original), str(candidate),
        "--level", "all", "--threads", "1", *timing, "--report", str(report), "-q",
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, text=True)
    data = json.loads(report.read_text())
    row = data["comparisons"][0]
    return {
        "summary": data["summary"],
        **{k: row.get(k) for k in ("verdict", "speedup", "ci_low", "ci_high")},
    }


def run(names: list[str], timing: list[str] = BENCH_TIMING) -> list[dict]:
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        factory, variants = SHAPES[name]
        model = factory()
        original = WORK / f"{name}.onnx"
        onnx.save(model, original)
        for label, options, forced in variants:
            if forced and not options:
                with _ForcedSplit():
                    result = bnfold.optimize(model, **options)
            else:
                result = bnfold.optimize(model, **options)
            slug = label.split(" ")[0].strip("-") or "variant"
            candidate = WORK / f"{name}.{slug}.{len(rows)}.onnx"
            onnx.save(result.model, candidate)
            load = os.getloadavg()[0]
            if result.model.SerializeToString() == model.SerializeToString():
                timed = {"summary": "identical to the original: not timed"}
            else:
                timed = bench(original, candidate, WORK / f"{candidate.stem}.bench.json", timing)
            rows.append(
                {
                    "shape": name,
                    "variant": label,
                    "forced": forced,
                    "folds": [f"{f.pattern}: {f.direction}" for f in result.report.folds],
                    "kept": [f"{s.reason}" for s in result.report.skipped],
                    "ort_original": ort_ops(original),
                    "ort_candidate": ort_ops(candidate),
                    "load": round(load, 2),
                    **timed,
                }
            )
            print(name, label, timed["summary"], flush=True)
    return rows


def render(rows: list[dict], timing: list[str] = BENCH_TIMING) -> str:
    lines = [
        "# Fold shapes at onnxruntime's default level (`all`), batch 1",
        "",
        f"Written by `python benchmarks/fold_shapes.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"onnxruntime {__import__('onnxruntime').__version__}, {os.cpu_count()} CPUs shared with other work "
        "(the load average when each bench started is listed). Timing: `bnfold bench ORIGINAL "
        f"CANDIDATE --level all --threads 1 {' '.join(timing)}`. Structure: op counts of onnxruntime's level-`all` graph.",
        "",
        "| shape | variant | what bnfold did | onnxruntime graph: original → candidate | verdict (speedup, 95% interval) | load |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        did = "; ".join(sorted(set(row["folds"]))) or "nothing folded"
        if row["kept"]:
            did += f" (kept: {', '.join(sorted(set(row['kept'])))})"
        variant = row["variant"] + (" *(forced)*" if row["forced"] else "")
        ops = f"{_ops(row['ort_original'])} → {_ops(row['ort_candidate'])}"
        speed = row.get("speedup")
        timed = (
            f"{row.get('verdict')} ({speed:.3f}×, [{row.get('ci_low'):.3f}, {row.get('ci_high'):.3f}])"
            if isinstance(speed, float)
            else row["summary"]
        )
        lines.append(f"| {row['shape']} | {variant} | {did} | {ops} | {timed} | {row['load']} |")
    return "\n".join(lines) + "\n"


def _ops(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {op}" for op, n in counts.items())


def main(argv: list[str] | None = None) -> None:
    global WORK
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shapes", nargs="*", help=f"any of {', '.join(SHAPES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument(
        "--work",
        default=None,
        help="models and bench reports (default benchmarks/work/fold_shapes)",
    )
    parser.add_argument("--out", default=str(RESULTS), help="the Markdown table to write")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"bench {' '.join(SMOKE_TIMING)} instead of {' '.join(BENCH_TIMING)}: runs, times nothing",
    )
    args = parser.parse_args(argv)
    names = args.shapes or (list(QUICK) if args.quick else list(SHAPES))
    unknown = sorted(set(names) - set(SHAPES))
    if unknown:
        parser.error(f"unknown shape(s): {', '.join(unknown)}")
    if args.work:
        WORK = Path(args.work).resolve()
    timing = SMOKE_TIMING if args.smoke else BENCH_TIMING
    rows = run(names, timing)
    (WORK / "results.json").write_text(json.dumps(rows, indent=1))
    out = Path(args.out)
    out.write_text(render(rows, timing))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
