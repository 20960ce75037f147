"""bnfold: fold BatchNormalization into neighbouring layers of ONNX models.

Public API (mirrors the CLI)::

    result = bnfold.optimize("model.onnx")        # -> OptimizeResult(model, report)
    result.save("model.folded.onnx")
    report = bnfold.verify("model.onnx", result.model)
    report = bnfold.bench("model.onnx", result.model)
    report = bnfold.check("model.onnx")           # what optimize would fold

onnxruntime is imported only by verify and bench, torch never.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .api import OptimizeResult, check, optimize  # noqa: E402
from .errors import BnfoldError  # noqa: E402


def verify(original: Any, candidate: Any, **options: Any) -> Any:
    """Prove ``candidate`` computes what ``original`` computes; see ``bnfold.verify.verify``."""
    from .verify import verify as _verify

    return _verify(original, candidate, **options)


def bench(original: Any, candidate: Any, **options: Any) -> Any:
    """Compare latency of ``original`` and ``candidate``; see ``bnfold.bench.bench``."""
    from .bench import bench as _bench

    return _bench(original, candidate, **options)


__all__ = ["BnfoldError", "OptimizeResult", "__version__", "bench", "check", "optimize", "verify"]
