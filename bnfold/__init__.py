"""bnfold: fold BatchNormalization into neighbouring layers of ONNX models.

Public API (mirrors the CLI)::

    result = bnfold.optimize("model.onnx")        # -> OptimizeResult(model, report)
    result.save("model.folded.onnx")
    result = bnfold.optimize("model.onnx", output="model.folded.onnx", verify=True, bench=True)
    report = bnfold.verify("model.onnx", result.model)
    report = bnfold.bench("model.onnx", result.model)
    report = bnfold.check("model.onnx")           # what optimize would fold

``import bnfold`` imports neither ``bnfold.verify`` nor ``bnfold.bench`` (nor onnxruntime):
they load on first use. Each of them is a package that can be called like its function, so
``bnfold.verify(...)`` works whether or not the subpackage was imported before (importing a
subpackage rebinds the parent's attribute to the module). Neither torch nor keras is imported.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from .errors import BnfoldError
from .version import __version__

if TYPE_CHECKING:
    from .api import OptimizeResult, check, optimize
    from .bench import bench
    from .integrations.graphsurgeon import fold_graph
    from .integrations.keras_export import export_keras
    from .integrations.torch_export import export_torch
    from .verify import verify

_CALLABLE_PACKAGES = ("verify", "bench")
# Loaded on first use: torch_export (keras_export) imports torch (keras) only when called,
# graphsurgeon its package.
_LAZY_FUNCTIONS = {
    # The front door too, so that ``bnfold.cli`` starts (and handles Ctrl-C and a missing
    # dependency) before onnx is imported.
    "OptimizeResult": ".api",
    "check": ".api",
    "optimize": ".api",
    "export_torch": ".integrations.torch_export",
    "export_keras": ".integrations.keras_export",
    "fold_graph": ".integrations.graphsurgeon",
}


class _CallablePackage(types.ModuleType):
    """``bnfold.verify`` / ``bnfold.bench``: the package, callable as its main function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__name__.rsplit(".", 1)[1])(*args, **kwargs)


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # The import system binds ``bnfold.verify`` to the subpackage when it is first loaded.
        if name in _CALLABLE_PACKAGES and isinstance(value, types.ModuleType):
            value.__class__ = _CallablePackage
        super().__setattr__(name, value)


def __getattr__(name: str) -> Any:
    if name in _CALLABLE_PACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_FUNCTIONS:
        return getattr(importlib.import_module(_LAZY_FUNCTIONS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


sys.modules[__name__].__class__ = _Package

__all__ = [
    "BnfoldError",
    "OptimizeResult",
    "__version__",
    "bench",
    "check",
    "export_keras",
    "export_torch",
    "fold_graph",
    "optimize",
    "verify",
]
