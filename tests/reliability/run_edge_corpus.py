"""Fold N unseen random graphs of the issue-10 edge classes and count what went wrong.

    .venv/bin/python tests/reliability/run_edge_corpus.py -n 500 --seed 1
    .venv/bin/python tests/reliability/run_edge_corpus.py -n 200 --seed 7 --kind scopes --show 5
    .venv/bin/python tests/reliability/run_edge_corpus.py --seed 31 --replay 1383   # one graph

Graph i of a run is drawn from ``numpy.random.default_rng([seed, i])`` by
``tests.builders.fuzz.edge_graphs.edge_graph`` (classes in turn unless ``--kind``), so a (seed, i) pair
names one graph for good. Each is checked with the fuzzer's property
(``tests.builders.fuzz.checks.check_optimize_is_safe`` with ``collect``: every property is checked, not
only up to the first failure) and counted once under each category it failed: wrong folds,
invalid outputs, non-idempotent runs, false report statements, crashes (and an input proto
modified). ``generator-error`` counts graphs the generator built badly
(they are not bnfold's fault; it should be 0). ``--save DIR`` writes each failing model and
its feeds (``DIR/<seed>-<i>-<class>.onnx`` and ``.npz``) to turn into regression tests.
It also counts BatchNormalization folded and kept (by reason): zero failures by refusing
everything would be no result. Exit status 1 when any failure was found, else 0.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``tests`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np
import onnx

from tests.builders.fuzz.checks import (
    CATEGORIES,
    PropertyViolation,
    check_optimize_is_safe,
)
from tests.builders.fuzz.edge_graphs import GENERATORS, RandomChoices, edge_graph

LABELS = {
    "wrong-fold": "wrong folds",
    "invalid-output": "invalid outputs",
    "non-idempotent": "non-idempotent runs",
    "false-report": "false report statements",
    "crash": "crashes",
    "input-modified": "input protos modified",
}


def run(count: int, seed: int, kind: str | None, show: int, save: Path | None) -> int:
    import onnxruntime

    onnxruntime.set_default_logger_severity(4)  # a refused folded model is counted, not logged
    kinds = [kind] if kind else list(GENERATORS)
    totals: collections.Counter[str] = collections.Counter()
    by_class: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    examples: dict[str, list[str]] = collections.defaultdict(list)
    reasons: collections.Counter[str] = collections.Counter()
    started = time.perf_counter()
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        chosen = kinds[index % len(kinds)]
        try:
            graph = edge_graph(RandomChoices(rng), rng, chosen)
        except Exception as error:  # noqa: BLE001 - the generator's fault, not bnfold's
            _count("generator-error", chosen, f"{index}: {error}", totals, by_class, examples)
            continue
        by_class[graph.kind.split("/")[0]]["graphs"] += 1
        failures: list[PropertyViolation] = []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = check_optimize_is_safe(
                    graph.model, graph.feeds, graph.dtype, collect=failures
                )
        except Exception as error:  # noqa: BLE001 - the original did not run: a generator bug
            line = f"{seed}-{index} {graph.kind}: {type(error).__name__}: {error}"
            _count("generator-error", graph.kind, line.splitlines()[0], totals, by_class, examples)
            continue
        if result is not None:  # how much was folded: 0 failures by refusing all is no result
            folded = sum(f.kind == "BatchNormalization" for f in result.report.folds)
            by_class[graph.kind.split("/")[0]]["bn-folded"] += folded
            totals["bn-folded"] += folded
            for skip in result.report.skipped:
                by_class[graph.kind.split("/")[0]]["bn-kept"] += 1
                totals["bn-kept"] += 1
                reasons[skip.reason] += 1
        first_of_each = {failure.category: failure for failure in reversed(failures)}
        for category, failure in first_of_each.items():  # a graph counts once per category
            line = f"{seed}-{index} {graph.kind}: {str(failure).splitlines()[0][:300]}"
            _count(category, graph.kind, line, totals, by_class, examples)
        if failures:
            totals["any"] += 1
            by_class[graph.kind.split("/")[0]]["any"] += 1
            if save is not None:
                _save(save, f"{seed}-{index}-{graph.kind.replace('/', '_')}", graph)
    _print(count, seed, totals, by_class, examples, show, time.perf_counter() - started)
    print("kept BNs by reason: " + ", ".join(f"{r} {n}" for r, n in reasons.most_common()))
    return 1 if any(totals[c] for c in CATEGORIES) else 0


def _count(category, kind, line, totals, by_class, examples) -> None:  # type: ignore[no-untyped-def]
    totals[category] += 1
    by_class[kind.split("/")[0]][category] += 1
    examples[category].append(line)


def _save(folder: Path, stem: str, graph) -> None:  # type: ignore[no-untyped-def]
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(graph.model, folder / f"{stem}.onnx")
    arrays = {f"{i}:{name}": v for i, feeds in enumerate(graph.feeds) for name, v in feeds.items()}
    np.savez(folder / f"{stem}.npz", **arrays)


def _print(count, seed, totals, by_class, examples, show, seconds) -> None:  # type: ignore[no-untyped-def]
    print(f"{count} unseen edge graphs, seed {seed}, {seconds:.1f} s (graphs with each failure)")
    for category, label in LABELS.items():
        print(f"  {label:<26} {totals[category]}")
    print(f"  {'graphs with any failure':<26} {totals['any']}")
    print(f"  {'generator errors':<26} {totals['generator-error']}")
    print(f"BatchNormalization folded {totals['bn-folded']}, kept {totals['bn-kept']}")
    columns = ["graphs", "bn-folded", "bn-kept", "any", *CATEGORIES, "generator-error"]
    print("\nper class: " + ", ".join(columns))
    for name in sorted(by_class):
        print(f"  {name:<14} " + " ".join(f"{by_class[name][c]:>5}" for c in columns))
    for category in [*CATEGORIES, "generator-error"]:
        for line in examples[category][:show]:
            print(f"[{category}] {line}")


def replay(seed: int, index: int, count: int, kind: str | None) -> int:
    """Rebuild graph ``index`` of a run (same seed, count and kind), print what it is, what
    optimize reported, and every property it breaks."""
    kinds = [kind] if kind else list(GENERATORS)
    del count  # graph i depends on (seed, i) and the class order only
    rng = np.random.default_rng([seed, index])
    graph = edge_graph(RandomChoices(rng), rng, kinds[index % len(kinds)])
    print(f"{seed}-{index} {graph.kind}: {' | '.join(graph.steps)}")
    print(onnx.printer.to_text(graph.model.graph))
    failures: list[PropertyViolation] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = check_optimize_is_safe(graph.model, graph.feeds, graph.dtype, collect=failures)
    if result is not None:
        for fold in result.report.folds:
            print(f"folded {fold.bn} into {fold.into} ({fold.pattern}, {fold.rounding_error:.2e})")
        for skip in result.report.skipped:
            print(f"kept {skip.bn}: {skip.reason} ({skip.detail})")
    for failure in failures:
        print(failure)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=200, help="graphs to draw")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", choices=sorted(GENERATORS), help="only this class")
    parser.add_argument("--show", type=int, default=3, help="examples to print per category")
    parser.add_argument("--save", type=Path, help="folder for failing models and feeds")
    parser.add_argument("--replay", type=int, metavar="I", help="only graph I, in detail")
    args = parser.parse_args(argv)
    if args.replay is not None:
        return replay(args.seed, args.replay, args.count, args.kind)
    return run(args.count, args.seed, args.kind, args.show, args.save)


if __name__ == "__main__":
    sys.exit(main())
