"""Where bnfold spends time and memory on one model: phases, resident memory, cProfile.

``python benchmarks/profile_bnfold.py MODEL [--out OUT.onnx] [--json R.json] [--cprofile P.txt]``

1. Phases, in a fresh process: ``load`` (``bnfold.storage.load.load_model``), ``fold``
   (``bnfold.engine.driver.fold_model``), ``save`` (``bnfold.storage.outputs.Outputs.save_model``, external data
   when the input had it); for each, the wall time, resident memory at its end and the
   peak resident memory during it (VmHWM, reset before each phase via /proc/self/clear_refs).
2. Then ``bnfold.optimize(MODEL).save(OUT)`` under cProfile; the top functions by cumulative
   and by own time go to ``--cprofile`` (and the first lines to stdout).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import time
from pathlib import Path


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def hwm_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_hwm() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def phases(model: str, out: str) -> dict:
    from bnfold.engine.driver import FoldOptions, fold_model
    from bnfold.patterns import default_patterns
    from bnfold.storage.load import load_model
    from bnfold.storage.outputs import Outputs

    result: dict = {"rss_start_mb": rss_mb(), "phases": []}

    def phase(name: str, fn):  # type: ignore[no-untyped-def]
        # The kernel's own high-water mark, reset per phase: exact even while a C call holds
        # the GIL (a sampling thread would miss the peaks inside SerializeToString).
        exact = reset_hwm()
        start = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - start
        result["phases"].append(
            {
                "phase": name,
                "seconds": seconds,
                "rss_end_mb": rss_mb(),
                "rss_peak_mb": hwm_mb() if exact else None,
            }
        )
        return value

    hwm_before = hwm_mb()
    loaded = phase("load", lambda: load_model(model))
    phase(
        "fold",
        lambda: fold_model(
            loaded.model, default_patterns(), FoldOptions(), base_dir=loaded.base_dir
        ),
    )
    phase(
        "save",
        lambda: Outputs().save_model(
            loaded.model,
            Path(out),
            external_data=loaded.has_external_data,
            base_dir=loaded.base_dir,
        ),
    )
    result["rss_hwm_mb"] = max([hwm_before] + [p["rss_peak_mb"] or 0.0 for p in result["phases"]])
    return result


def profile(model: str, out: str, top: int = 30) -> str:
    import bnfold

    profiler = cProfile.Profile()
    profiler.enable()
    bnfold.optimize(model).save(out)
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs()
    text.write("== by cumulative time ==\n")
    stats.sort_stats("cumulative").print_stats(top)
    text.write("== by own time ==\n")
    stats.sort_stats("tottime").print_stats(top)
    return text.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--out", default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--cprofile", default=None)
    args = parser.parse_args()
    out = args.out or str(Path(args.model).with_suffix(".profile.onnx"))
    result = {"model": args.model}
    try:
        result.update(phases(args.model, out))
    except Exception as exc:  # noqa: BLE001
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.cprofile and "error" not in result:
        text = profile(args.model, out)
        Path(args.cprofile).write_text(text)
        print(text[:6000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
