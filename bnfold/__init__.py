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

__version__ = "0.1.0"

from .api import OptimizeResult, check, optimize  # noqa: E402

# Bound after their subpackages are imported, so ``bnfold.verify``/``bnfold.bench`` are the
# functions (importing a subpackage later does not rebind the parent's attribute). Neither
# subpackage imports onnxruntime until a session is made.
from .bench import bench  # noqa: E402
from .errors import BnfoldError  # noqa: E402
from .verify import verify  # noqa: E402

__all__ = ["BnfoldError", "OptimizeResult", "__version__", "bench", "check", "optimize", "verify"]
