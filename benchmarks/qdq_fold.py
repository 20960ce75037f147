"""BN folded into QDQ Convs: onnxruntime's quantized kernels and latency, before and after.

    .venv/bin/python benchmarks/qdq_fold.py [--layers 4 --channels 64 --size 56]

Builds the issue-24 model (``tests/builders/qdq.py``: ``Q → DQ → Conv(DQ int8 W per channel,
DQ int32 b) → BN → Relu`` per layer, ``Q → DQ`` at the end), folds it with bnfold, counts
``QLinearConv`` in onnxruntime's optimized graph at ``ORT_ENABLE_ALL`` and times both models
there on one thread (``intra_op_num_threads=1``), interleaved, median of ``--runs``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.builders
import bnfold
from tests.builders.qdq import QdqSpec, count_fused, qdq_conv_model


def session(model: object, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(
        model.SerializeToString(),  # type: ignore[attr-defined]
        options,
        providers=["CPUExecutionProvider"],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    spec = QdqSpec(layers=args.layers, channels=args.channels, size=args.size, final_q=True)
    original = qdq_conv_model(spec)
    folded = bnfold.optimize(original).model
    feeds = {
        "x": np.random.default_rng(0)
        .standard_normal((1, args.channels, args.size, args.size))
        .astype(np.float32)
    }
    sessions = {
        "original": session(original, args.threads),
        "folded": session(folded, args.threads),
    }
    for s in sessions.values():
        for _ in range(10):
            s.run(None, feeds)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(args.runs):
        for name, s in sessions.items():
            start = time.perf_counter()
            s.run(None, feeds)
            times[name].append(time.perf_counter() - start)
    before, after = (statistics.median(times[n]) * 1e3 for n in ("original", "folded"))
    print(
        f"model: {args.layers} layers, {args.channels} channels, {args.size}x{args.size}, "
        f"onnxruntime {ort.__version__}, ORT_ENABLE_ALL, {args.threads} thread(s)"
    )
    print("| model | BatchNormalization | QLinearConv | median ms |")
    print("| --- | --- | --- | --- |")
    for name, model, ms in (("original", original, before), ("folded", folded, after)):
        bns = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
        print(f"| {name} | {bns} | {count_fused(model, threads=args.threads)} | {ms:.2f} |")
    print(f"speedup: {before / after:.2f}x")


if __name__ == "__main__":
    main()
