"""One base error; each subclass maps to one documented exit code.

The CLI prints ``error: <message>`` (one line, with what to do) and exits with ``exit_code``.
The library raises these and never calls ``sys.exit`` itself.
"""

from __future__ import annotations


class BnfoldError(Exception):
    """Base of every error bnfold reports to a user. ``str(err)`` is one line."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class VerificationFailed(BnfoldError):
    """The candidate does not compute the same function as the original (exit 1)."""

    exit_code = 1


class UsageError(BnfoldError):
    """The command line or API arguments are wrong (exit 2)."""

    exit_code = 2


class ModelLoadError(BnfoldError):
    """An input model cannot be read, is not a valid ONNX model, or fails structure checks (exit 3)."""

    exit_code = 3


class ProviderUnavailable(BnfoldError):
    """An explicitly requested execution provider cannot run on this machine (exit 4)."""

    exit_code = 4


class CandidateSlower(BnfoldError):
    """``--fail-if-slower`` tripped: the candidate is significantly slower (exit 5)."""

    exit_code = 5


class OutputWriteError(BnfoldError):
    """The output cannot be written: folder missing, not writable, disk full (exit 6)."""

    exit_code = 6


class UnsafeModelError(ModelLoadError):
    """The model refers to files outside its folder (external-data path traversal) (exit 7)."""

    exit_code = 7


class EnvironmentProblem(BnfoldError):
    """The Python environment is broken: a dependency is missing or fails to import; the
    message says how to repair it (exit 8). Not a bug in bnfold, not a bad input."""

    exit_code = 8


class Interrupted(BnfoldError):
    """Interrupted by the user (SIGINT); nothing was written (exit 130)."""

    exit_code = 130


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of ``str(exc)`` (at most ``limit`` characters), or the class name.

    Third-party errors (protobuf, onnx, onnxruntime) span many lines; a user gets one.
    """
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:limit]


EXIT_CODES: dict[int, str] = {
    0: "success (verify: equivalent; check: no foldable BatchNormalization left)",
    1: "verify: outputs differ; check: foldable BatchNormalization remains",
    2: "usage error (bad option or argument; an output that would overwrite an input)",
    3: "input cannot be read or is not a valid ONNX model",
    4: "a requested execution provider is unavailable",
    5: "bench --fail-if-slower: candidate significantly slower",
    6: "output cannot be written (folder missing, permissions, disk full)",
    7: "unsafe model: external data outside the model's folder",
    8: "environment problem: a dependency is missing or broken (the message says how to repair it)",
    70: "internal error (a bug: rerun as `bnfold --debug COMMAND …` and report it)",
    130: "interrupted",
}
