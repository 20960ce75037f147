"""Run ONE tool on ONE model in this (fresh) process and write a JSON result.

``python benchmarks/child.py TOOL INPUT OUTPUT RESULT.json``
``python benchmarks/child.py --verify ORIGINAL CANDIDATE RESULT.json [bnfold verify options]``
``python benchmarks/child.py --bench ORIGINAL CANDIDATE RESULT.json ITERS WARMUP LEVELS``

The tool's module is imported before the clock starts; ``work_s`` is the time from reading
the input to the output being on disk (load + transform + save, whatever the tool does).
``rss_base_mb`` is this process's resident memory after the imports, ``rss_peak_mb`` its peak
(VmHWM). The parent also polls the child's memory (for a child that dies, and to stop one
that grows past the limit).

``--verify``/``--bench`` time the whole command and, by wrapping ``InferenceSession``'s
``__init__``/``run``/``run_with_iobinding``, the part spent inside onnxruntime: the rest is
what bnfold adds.

Every tool writes external data (``OUTPUT.data``) exactly when the input has external data,
using the tool's own way of doing so.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def _peak_mb() -> float:
    """Peak resident memory of this process image (VmHWM).

    Not ``getrusage().ru_maxrss``: Linux carries the parent's high-water mark into a child
    across fork/vfork + exec, so a parent that once held a big model would inflate it.
    """
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def op_counts(path: str) -> dict[str, int]:
    """Node count per op type (``domain::op`` outside the default domain), subgraphs included."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    counts: dict[str, int] = {}

    def walk(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            key = (
                node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
            )
            counts[key] = counts.get(key, 0) + 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for sub in attr.graphs:
                    walk(sub)

    walk(model.graph)
    return counts


class OrtClock:
    """Time spent inside onnxruntime: session creation and runs (patched on the class)."""

    def __init__(self) -> None:
        self.create_s = 0.0
        self.run_s = 0.0
        self.runs = 0
        self.sessions = 0

    def install(self) -> None:
        import onnxruntime as ort

        cls = ort.InferenceSession
        clock = self
        init, run, run_binding = cls.__init__, cls.run, cls.run_with_iobinding

        def timed_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            try:
                return init(self, *args, **kwargs)
            finally:
                clock.create_s += time.perf_counter() - start
                clock.sessions += 1

        def timed_run(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            try:
                return run(self, *args, **kwargs)
            finally:
                clock.run_s += time.perf_counter() - start
                clock.runs += 1

        def timed_run_binding(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            try:
                return run_binding(self, *args, **kwargs)
            finally:
                clock.run_s += time.perf_counter() - start
                clock.runs += 1

        cls.__init__, cls.run, cls.run_with_iobinding = timed_init, timed_run, timed_run_binding

    def to_dict(self) -> dict:
        return {
            "ort_create_s": self.create_s,
            "ort_run_s": self.run_s,
            "ort_runs": self.runs,
            "ort_sessions": self.sessions,
        }


def _has_external_data(path: str) -> bool:
    # Read lazily: onnx.load would parse a one-file model's weights before the tool runs,
    # and that peak would be charged to the tool (VmHWM never goes down).
    import onnx

    from bnfold.storage.lazyio import is_self_reference, read_lazy

    resolved = Path(path).resolve()
    model = read_lazy(resolved)
    return any(
        t.data_location == onnx.TensorProto.EXTERNAL and not is_self_reference(t, resolved)
        for t in model.graph.initializer
    )


# --------------------------------------------------------------------------------------------
# tools: each is (prepare() -> run(src, dst, external))


def onnx_io() -> Callable[[str, str, bool], str]:
    import onnx

    def run(src: str, dst: str, external: bool) -> str:
        model = onnx.load(src)
        if external:
            onnx.save(
                model,
                dst,
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=os.path.basename(dst) + ".data",
                size_threshold=1024,
            )
        else:
            onnx.save(model, dst)
        return "onnx.load + onnx.save"

    return run


def bnfold_api() -> Callable[[str, str, bool], str]:
    import bnfold

    def run(src: str, dst: str, external: bool) -> str:
        result = bnfold.optimize(src)
        result.save(dst)
        counts = result.report.counts
        return (
            f"{len(result.report.folds)} folded, {len(result.report.skipped)} kept; "
            f"BN {counts.get('batchnorm_before')} -> {counts.get('batchnorm_after')}"
        )

    return run


def bnfold_cli() -> Callable[[str, str, bool], str]:
    from bnfold.cli import main

    def run(src: str, dst: str, external: bool) -> str:
        try:
            main(["optimize", src, "-o", dst, "-q"], prog_name="bnfold", standalone_mode=False)
        except SystemExit as exc:  # ctx.exit inside the group
            if exc.code not in (0, None):
                raise RuntimeError(f"bnfold optimize exited {exc.code}") from None
        return "bnfold optimize -q (click main, in process)"

    return run


def bnfold_no_fsync() -> Callable[[str, str, bool], str]:
    """bnfold with its fsyncs turned into no-ops: what the durable commit costs (compare with
    ``bnfold``). Still atomic (staged, renamed), but a power cut could lose the new file."""
    import bnfold.storage.outputs

    bnfold.storage.outputs.fsync = lambda path: None  # type: ignore[assignment]
    bnfold.storage.outputs.fsync_folder = lambda folder: None  # type: ignore[assignment]
    run = bnfold_api()

    def run_no_fsync(src: str, dst: str, external: bool) -> str:
        return run(src, dst, external) + " (fsync off)"

    return run_no_fsync


def bnfold_io() -> Callable[[str, str, bool], str]:
    """bnfold's reading and writing alone (no fold): ``load_model`` + ``Outputs.save_model``."""
    from bnfold.storage.load import load_model
    from bnfold.storage.outputs import Outputs

    def run(src: str, dst: str, external: bool) -> str:
        loaded = load_model(src)
        outputs = Outputs()
        outputs.read_model(src)
        outputs.save_model(
            loaded.model, dst, external_data=loaded.has_external_data, base_dir=loaded.base_dir
        )
        return "bnfold load_model + Outputs.save_model (lazy read, streamed atomic write)"

    return run


def onnx_ir_io() -> Callable[[str, str, bool], str]:
    """onnx-ir's reading and writing alone (what onnxscript builds on): ``ir.load`` + ``ir.save``."""
    import onnx_ir as ir

    def run(src: str, dst: str, external: bool) -> str:
        model = ir.load(src)
        ir.save(model, dst, external_data=os.path.basename(dst) + ".data" if external else None)
        return "onnx_ir.load + onnx_ir.save"

    return run


def cp_tool() -> Callable[[str, str, bool], str]:
    """The floor: copy the model and its data files byte for byte (``shutil.copyfile``, which
    copies in the kernel). The copy refers to its data files by their original names."""
    import shutil

    from bnfold.storage.outputs import model_files

    def run(src: str, dst: str, external: bool) -> str:
        files = model_files(Path(src))
        shutil.copyfile(files[0], dst)
        for data in files[1:]:
            shutil.copyfile(data, Path(dst).parent / data.name)
        return "shutil.copyfile of the model and its data files"

    return run


def ort_basic() -> Callable[[str, str, bool], str]:
    import onnxruntime as ort

    def run(src: str, dst: str, external: bool) -> str:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = dst
        if external:
            options.add_session_config_entry(
                "session.optimized_model_external_initializers_file_name",
                os.path.basename(dst) + ".data",
            )
            options.add_session_config_entry(
                "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
            )
        ort.InferenceSession(src, options, providers=["CPUExecutionProvider"])
        return "InferenceSession(level=BASIC, optimized_model_filepath)"

    return run


def _onnxscript(full: bool) -> Callable[[str, str, bool], str]:
    import onnx_ir as ir
    from onnxscript import optimizer, rewriter
    from onnxscript.rewriter.rules.common import (
        fuse_batchnorm_into_conv_rule,
        fuse_batchnorm_into_conv_transpose_rule,
        fuse_batchnorm_into_gemm_rule,
    )

    rules = [
        fuse_batchnorm_into_conv_rule,
        fuse_batchnorm_into_conv_transpose_rule,
        fuse_batchnorm_into_gemm_rule,
    ]

    def run(src: str, dst: str, external: bool) -> str:
        model = ir.load(src)
        if full:
            optimizer.optimize(model)
        else:
            model = rewriter.rewrite(model, pattern_rewrite_rules=rules)
        ir.save(model, dst, external_data=os.path.basename(dst) + ".data" if external else None)
        if full:
            return "onnxscript.optimizer.optimize (constant folding + default rewrites)"
        return "onnxscript.rewriter.rewrite(fuse_batchnorm_into_{conv,conv_transpose,gemm}_rule)"

    return run


def onnxscript_rules() -> Callable[[str, str, bool], str]:
    return _onnxscript(full=False)


def onnxscript_optimize() -> Callable[[str, str, bool], str]:
    return _onnxscript(full=True)


def onnxoptimizer_tool() -> Callable[[str, str, bool], str]:
    import onnx
    import onnxoptimizer
    from onnxoptimizer import onnx_opt_cpp2py_export as C

    def run(src: str, dst: str, external: bool) -> str:
        if external:
            # onnxoptimizer's own path for models with external data (what optimize() falls
            # back to after a failed in-memory attempt).
            C.optimize_from_path(src, dst, ["fuse_bn_into_conv"], os.path.basename(dst) + ".data")
            return "optimize_from_path(['fuse_bn_into_conv'])"
        model = onnx.load(src)
        onnx.save(onnxoptimizer.optimize(model, ["fuse_bn_into_conv"]), dst)
        return "onnxoptimizer.optimize(['fuse_bn_into_conv'])"

    return run


def onnxslim_tool() -> Callable[[str, str, bool], str]:
    import onnxslim

    def run(src: str, dst: str, external: bool) -> str:
        onnxslim.slim(src, dst, save_as_external_data=external)
        return "onnxslim.slim (defaults)"

    return run


def onnxsim_tool() -> Callable[[str, str, bool], str]:
    import onnx
    import onnxsim

    def run(src: str, dst: str, external: bool) -> str:
        model, ok = onnxsim.simplify(src, output_path=dst)
        if not os.path.exists(dst):
            if external:
                onnx.save(
                    model,
                    dst,
                    save_as_external_data=True,
                    location=os.path.basename(dst) + ".data",
                )
            else:
                onnx.save(model, dst)
        return f"onnxsim.simplify (defaults, check_n=0), check={ok}"

    return run


TOOLS: dict[str, Callable[[], Callable[[str, str, bool], str]]] = {
    "onnx-io": onnx_io,
    "bnfold": bnfold_api,
    "bnfold-cli": bnfold_cli,
    "bnfold-nofsync": bnfold_no_fsync,
    "bnfold-io": bnfold_io,
    "onnx-ir-io": onnx_ir_io,
    "cp": cp_tool,
    "onnxruntime": ort_basic,
    "onnxscript-rules": onnxscript_rules,
    "onnxscript-optimize": onnxscript_optimize,
    "onnxoptimizer": onnxoptimizer_tool,
    "onnxslim": onnxslim_tool,
    "onnxsim": onnxsim_tool,
}


def run_verify(original: str, candidate: str, result_path: str, extra: list[str]) -> int:
    """``bnfold verify`` through its click entry point, in process, with onnxruntime timed."""
    clock = OrtClock()
    clock.install()
    from bnfold.cli import main as cli

    report_path = result_path + ".report.json"
    args = ["verify", original, candidate, "-q", "--report", report_path, *extra]
    result: dict = {"args": args}
    started = time.perf_counter()
    code: int | str | None = 0
    try:
        # standalone_mode=False: click returns the exit code of ctx.exit(N) instead of exiting
        returned = cli(args, prog_name="bnfold", standalone_mode=False)
        code = returned if isinstance(returned, int) else 0
    except SystemExit as exc:
        code = exc.code
    except BaseException as exc:  # noqa: BLE001
        code = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
        traceback.print_exc()
    result["total_s"] = time.perf_counter() - started
    result["exit"] = code if code is not None else 0
    if code == 3:
        # The candidate failed bnfold's structure checks (other tools add opset imports,
        # change the IR version, ...): still compare the numbers, without those checks.
        import bnfold

        try:
            numeric = bnfold.verify(
                original,
                candidate,
                providers="cpu",
                levels="disable,all",
                check_structure=False,
                save_failing=False,
            )
            result["numeric"] = {"passed": numeric.passed, "summary": numeric.summary_line()}
        except BaseException as exc:  # noqa: BLE001
            result["numeric"] = {"passed": None, "summary": f"{type(exc).__name__}: {exc}"[:300]}
    result["rss_peak_mb"] = _peak_mb()
    result.update(clock.to_dict())
    try:
        result["report"] = json.loads(Path(report_path).read_text())
    except (OSError, ValueError):
        result["report"] = None
    Path(result_path).write_text(json.dumps(result, default=str))
    return 0


def run_bench(original: str, candidate: str, result_path: str, extra: list[str]) -> int:
    """``bnfold.bench`` (library call) with onnxruntime timed; ``extra`` = iters warmup levels."""
    clock = OrtClock()
    clock.install()
    import bnfold

    iters, warmup, levels = int(extra[0]), int(extra[1]), extra[2]
    started = time.perf_counter()
    result: dict = {"iters": iters, "warmup": warmup, "levels": levels}
    try:
        report = bnfold.bench(
            original, candidate, providers="cpu", levels=levels, iters=iters, warmup=warmup
        )
        result["ok"] = True
        try:
            result["report"] = report.to_dict()
        except Exception:  # noqa: BLE001 - the report's shape is not ours
            result["report"] = None
    except BaseException as exc:  # noqa: BLE001
        result["ok"] = False
        result["error"] = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
        traceback.print_exc()
    result["total_s"] = time.perf_counter() - started
    result["rss_peak_mb"] = _peak_mb()
    result.update(clock.to_dict())
    Path(result_path).write_text(json.dumps(result, default=str))
    return 0


def main() -> int:
    if sys.argv[1] == "--verify":
        return run_verify(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    if sys.argv[1] == "--bench":
        return run_bench(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    tool, src, dst, result_path = sys.argv[1:5]
    result: dict = {"tool": tool, "ok": False}
    t0 = time.perf_counter()
    try:
        external = _has_external_data(src)
        run = TOOLS[tool]()
        result["import_s"] = time.perf_counter() - t0
        result["rss_base_mb"] = _rss_mb()
        started = time.perf_counter()
        result["note"] = run(src, dst, external)
        result["work_s"] = time.perf_counter() - started
        if not Path(dst).exists():
            raise RuntimeError("the tool wrote no output file")
        result["ok"] = True
    except BaseException as exc:  # noqa: BLE001 - every failure becomes a one-line reason
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        result["error"] = f"{type(exc).__name__}: {lines[0][:300] if lines else ''}".strip()
        traceback.print_exc()
    result["rss_peak_mb"] = _peak_mb()
    # Counted after the peak was taken: reading the graphs back does not inflate it.
    try:
        result["ops_in"] = op_counts(src)
        if result["ok"]:
            result["ops_out"] = op_counts(dst)
    except BaseException as exc:  # noqa: BLE001
        result["stats_error"] = f"{type(exc).__name__}: {exc}"
    Path(result_path).write_text(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
