"""onnxruntime sessions per execution provider and optimization level, and provider truth.

Provider truth: onnxruntime-gpu lists ``CUDAExecutionProvider`` as available on a machine
without a GPU (or without the CUDA libraries) and then silently builds a CPU-only session.
A result computed that way says nothing about CUDA, so after creating every session we read
``session.get_providers()``: unless the requested provider is the first one the session
really uses, the result is ``unavailable`` with the reason onnxruntime logged (the library it
could not load), captured from its native stderr while the session was created.

onnxruntime's own log lines (``[E:onnxruntime:...]``, ``[W:onnxruntime:...]``) never reach the
user's terminal: session creation and runs are captured (``quiet_native``), and the captured
text is only shown when verbose mode is on (``set_verbose``, the CLI's ``--verbose``). The
one-line ``error:`` bnfold prints stays the only error line.

onnxruntime is imported lazily, only here, and only when a session is made.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import ModelLoadError, UsageError
from .providers import (
    describe_devices,
    import_onnxruntime,
    is_plugin,
    plugin_devices,
    register_plugin,
)

# Short names -> onnxruntime provider names. Full names are accepted too (any spelling of case).
PROVIDER_NAMES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
_ALIASES: dict[str, str] = {"trt": "tensorrt", "directml": "dml", "gpu": "cuda"}

# Provider options used unless the caller passes its own: the first device, nothing clever.
DEFAULT_PROVIDER_OPTIONS: dict[str, dict[str, Any]] = {
    "cuda": {"device_id": 0},
    "tensorrt": {"device_id": 0},
    "rocm": {"device_id": 0},
    "migraphx": {"device_id": 0},
    # OpenVINO's CPU plugin computes in bfloat16 by default where the CPU has bf16 units
    # (AMX, AVX512-BF16): a float32 model then differs from itself by ~1e-3, which no fold
    # caused. Keep the model's precision; pass --provider-option openvino:load_config=... to
    # choose another.
    "openvino": {
        "load_config": json.dumps({d: {"INFERENCE_PRECISION_HINT": "f32"} for d in ("CPU", "GPU")})
    },
}

# Level names -> attribute names of ``onnxruntime.GraphOptimizationLevel``.
LEVELS: dict[str, str] = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}

# The only configuration a reference may use: CPU, no graph optimization. At BASIC level
# onnxruntime already fuses Conv+BatchNormalization itself, so an optimized reference would
# compare a fold against a fold and prove nothing.
REFERENCE_PROVIDER = "cpu"
REFERENCE_LEVEL = "disable"

# Native logging is process-wide: serialize captures so two threads never swap fds at once.
_CAPTURE_LOCK = threading.Lock()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_VERBOSE = False


def set_verbose(flag: bool) -> bool:
    """Show onnxruntime's own log text on stderr (True) or hide it (False); returns the old value."""
    global _VERBOSE
    old, _VERBOSE = _VERBOSE, bool(flag)
    return old


def provider_full_name(provider: str) -> str:
    """``'cuda'`` -> ``'CUDAExecutionProvider'``; a full name is returned unchanged."""
    return PROVIDER_NAMES.get(provider, provider)


def canonical_provider(token: str) -> str:
    """One provider name -> its short name (``'CUDAExecutionProvider'`` -> ``'cuda'``), or UsageError."""
    key = token.strip()
    lowered = key.lower()
    lowered = _ALIASES.get(lowered, lowered)
    if lowered in PROVIDER_NAMES:
        return lowered
    for short, full in PROVIDER_NAMES.items():
        if lowered == full.lower():
            return short
    if key.endswith("ExecutionProvider") and key[0].isalpha():
        return key  # a provider we have no short name for: pass it through to onnxruntime
    known = ", ".join(PROVIDER_NAMES)
    raise UsageError(
        f"unknown execution provider {token!r}",
        hint=f"use one of {known}, or a full onnxruntime name such as CUDAExecutionProvider",
    )


def parse_providers(text: str | None) -> list[str] | None:
    """``'cpu,cuda'`` -> ``['cpu', 'cuda']``; ``None`` -> ``None`` (meaning: the default set).

    Short names, aliases (``trt``) and full onnxruntime names are accepted case-insensitively;
    known full names come back as short names. Duplicates are dropped, order is kept.
    """
    if text is None:
        return None
    tokens = [t for t in (part.strip() for part in text.split(",")) if t]
    if not tokens:
        raise UsageError("--providers is empty", hint="for example --providers cpu,cuda")
    result: list[str] = []
    for token in tokens:
        name = canonical_provider(token)
        if name not in result:
            result.append(name)
    return result


def parse_levels(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """``'disable,all'`` -> ``['disable', 'all']``.

    Names: ``disable, basic, extended, all`` (also the ``ORT_*`` attribute names). Note that
    ``all`` is one level (``ORT_ENABLE_ALL``, what deployments use), not "every level".
    """
    parts = text if isinstance(text, (list, tuple)) else str(text).split(",")
    tokens = [t.strip() for t in parts if t.strip()]
    if not tokens:
        raise UsageError("--level is empty", hint="use one or more of disable,basic,extended,all")
    by_attribute = {attr.lower(): name for name, attr in LEVELS.items()}
    result: list[str] = []
    for token in tokens:
        name = token.lower()
        name = by_attribute.get(name, name)
        if name not in LEVELS:
            raise UsageError(
                f"unknown optimization level {token!r}",
                hint="use a comma list of disable,basic,extended,all",
            )
        if name not in result:
            result.append(name)
    return result


@dataclass
class SessionResult:
    """One attempt to build a session; ``session`` is None unless ``status == 'ok'``."""

    provider: str
    level: str
    session: Any | None
    actual_providers: list[str]
    status: str  # 'ok' | 'unavailable'
    reason: str | None
    create_ms: float
    provider_options: dict[str, Any] = field(default_factory=dict)


def _ort() -> Any:
    """onnxruntime; a broken install is ``EnvironmentProblem`` (exit 8) with the repair."""
    return import_onnxruntime()


def onnxruntime_version() -> str:
    """The installed onnxruntime version (imports onnxruntime)."""
    return str(_ort().__version__)


def session_options(
    level: str,
    threads: int | None = None,
    *,
    inter_threads: int | None = None,
    spinning: bool | None = None,
) -> Any:
    """``SessionOptions`` at ``level`` (a ``LEVELS`` key), with ``threads`` intra-op threads,
    ``inter_threads`` inter-op threads and spin-waiting on or off (None/0: onnxruntime's
    default). Spinning is set for both pools (``session.intra_op.allow_spinning`` and
    ``session.inter_op.allow_spinning``)."""
    ort = _ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
    if threads:
        options.intra_op_num_threads = threads
    if inter_threads:
        options.inter_op_num_threads = inter_threads
    if spinning is not None:
        flag = "1" if spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", flag)
        options.add_session_config_entry("session.inter_op.allow_spinning", flag)
    return options


@contextlib.contextmanager
def capture_native_output() -> Iterator[io.StringIO]:
    """Capture what onnxruntime writes to the process's stdout/stderr (C++ logger included).

    onnxruntime reports why a provider library failed to load only on native stderr, and
    its Python layer prints fallback notices to stdout; both would otherwise clutter the
    user's terminal. The text is available in the yielded buffer after the block.
    """
    buffer = io.StringIO()
    with _CAPTURE_LOCK, tempfile.TemporaryFile(mode="w+b") as sink:
        saved: list[tuple[int, int]] = []
        try:
            for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
                if stream is not None:
                    with contextlib.suppress(Exception):
                        stream.flush()
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                    os.dup2(sink.fileno(), fd)
                except OSError:
                    continue
            with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                yield buffer
        finally:
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            buffer.write(sink.read().decode("utf-8", "replace"))
            if _VERBOSE and buffer.getvalue():
                # --verbose: the user asked to see onnxruntime's own lines.
                sys.stderr.write(buffer.getvalue())
                sys.stderr.flush()


def summarize_ort_log(text: str) -> str | None:
    """Boil onnxruntime's log text down to the reason a provider did not load, or None.

    Keeps the library that failed to load and the dependency it missed, and onnxruntime's
    requirement line (``Require cuDNN 9.* and CUDA 13.*``).
    """
    reasons: list[str] = []
    for raw in _ANSI.sub("", text).splitlines():
        line = raw.strip()
        loaded = re.search(r"Failed to load library (\S+) with error: (.+)", line)
        if loaded:
            reasons.append(f"cannot load {Path(loaded.group(1)).name}: {loaded.group(2).strip()}")
            continue
        required = re.search(r"(Require [^.]*(?:\.\*[^.]*)*)\.", line)
        if required:
            reasons.append(required.group(1).strip())
            continue
        if "EP Error" in line or "Please install" in line:
            reasons.append(re.sub(r"^.*?\] ", "", line)[:200])
    unique = list(dict.fromkeys(reasons))
    return "; ".join(unique)[:500] if unique else None


def _model_source(model: onnx.ModelProto | str | Path) -> str | bytes:
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString()
    return str(model)


def _first_line(exc: BaseException) -> str:
    text = _ANSI.sub("", str(exc)).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


# onnxruntime exception class names that mean "this model is not loadable", whatever provider.
_MODEL_ERRORS = {
    "InvalidGraph",
    "InvalidProtobuf",
    "InvalidArgument",
    "NoSuchFile",
    "NotImplemented",
}


@dataclass(frozen=True)
class ModelWithData:
    """A ``ModelProto`` whose external tensor references are relative to ``data_dir`` (a
    lazily loaded model, or a copy of one, handed to onnxruntime as bytes)."""

    model: onnx.ModelProto
    data_dir: Path | None


SessionModel = onnx.ModelProto | str | Path | ModelWithData


def create_session(
    model: SessionModel,
    provider: str,
    level: str,
    *,
    threads: int | None = None,
    provider_options: dict[str, Any] | None = None,
    role: str = "model",
    inter_threads: int | None = None,
    spinning: bool | None = None,
) -> SessionResult:
    """Build an onnxruntime session for ``model`` on ``provider`` at optimization ``level``.

    Returns ``status='unavailable'`` (with the reason) when the provider is not in this
    onnxruntime build, fails to load, or onnxruntime silently put the session on another
    provider. Raises ``ModelLoadError`` when the model itself cannot be loaded.
    ``provider`` is a short or full name (see ``parse_providers``), ``level`` a ``LEVELS`` key.
    A ``ModelWithData`` names the folder its ``ModelProto``'s external tensors are in.
    """
    external_data_dir = model.data_dir if isinstance(model, ModelWithData) else None
    if isinstance(model, ModelWithData):
        model = model.model
    ort = _ort()
    short = canonical_provider(provider)
    full = provider_full_name(short)
    if level not in LEVELS:
        raise UsageError(
            f"unknown optimization level {level!r}", hint=f"use one of {', '.join(LEVELS)}"
        )
    options = dict(DEFAULT_PROVIDER_OPTIONS.get(short, {}))
    options.update(provider_options or {})

    def result(
        session: Any, actual: list[str], status: str, reason: str | None, ms: float
    ) -> SessionResult:
        return SessionResult(short, level, session, actual, status, reason, ms, options)

    available = list(ort.get_available_providers())
    devices: list[Any] = []
    # A plugin EP is always created the plugin way. Once its library is registered,
    # onnxruntime also lists it in get_available_providers(), and a session that names it in
    # a providers list then runs silently on CPU (seen with OpenVINO on Intel CPUs).
    if is_plugin(short):
        with capture_native_output():
            registered, why = register_plugin(short)
            devices = plugin_devices(full) if registered else []
        if not registered:
            return result(None, [], "unavailable", f"{full} (plugin): {why}", 0.0)
        if not devices:
            reason = (
                f"{full} (plugin) is registered but offers no device on this machine"
                f" (onnxruntime found: {describe_devices(short)})"
            )
            return result(None, [], "unavailable", reason, 0.0)
    elif full not in available:
        reason = f"{full} is not in this onnxruntime build ({ort.__version__}; it has {', '.join(available)})"
        return result(None, [], "unavailable", reason, 0.0)

    providers: list[Any] | None = (
        ["CPUExecutionProvider"] if full == "CPUExecutionProvider" else [(full, options)]
    )
    if full != "CPUExecutionProvider" and providers is not None:
        providers.append("CPUExecutionProvider")  # for the nodes the provider does not take
    if devices:
        providers = None  # a plugin EP is added to the session options, per device
    start = time.perf_counter()
    with capture_native_output() as log:
        try:
            sess_options = session_options(
                level, threads, inter_threads=inter_threads, spinning=spinning
            )
            if external_data_dir is not None and isinstance(model, onnx.ModelProto):
                sess_options.add_session_config_entry(
                    "session.model_external_initializers_file_folder_path", str(external_data_dir)
                )
            if devices:
                # Plugin EPs take string options; the CPU EP still runs what the plugin does not take.
                sess_options.add_provider_for_devices(
                    devices[:1], {str(k): str(v) for k, v in options.items()}
                )
            session = ort.InferenceSession(
                _model_source(model),
                sess_options=sess_options,
                providers=providers,
                enable_fallback=0,  # never retry silently on another provider
            )
            error: BaseException | None = None
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes
            session, error = None, exc
    elapsed = (time.perf_counter() - start) * 1000.0
    logged = summarize_ort_log(log.getvalue())

    if error is not None:
        model_error = type(error).__name__ in _MODEL_ERRORS or full == "CPUExecutionProvider"
        if model_error:
            raise ModelLoadError(
                f"onnxruntime cannot load the {role}: {_first_line(error)}",
                hint=f"onnxruntime {ort.__version__} may not support an op or type in it; re-export it",
            ) from None
        reason = f"{full} failed to start: {logged or _first_line(error)}"
        return result(None, [], "unavailable", reason, elapsed)

    if hasattr(session, "disable_fallback"):
        session.disable_fallback()  # a failing run must raise, not rerun on CPU
    actual = list(session.get_providers())
    if not actual or actual[0] != full:
        reason = (
            f"onnxruntime built the session on {', '.join(actual) or 'no provider'} instead of {full}"
            f": {logged or 'it logged no reason'}"
        )
        return result(None, actual, "unavailable", reason, elapsed)
    return result(session, actual, "ok", None, elapsed)


def _tiny_probe_model() -> onnx.ModelProto:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "bnfold_probe", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)


@cache
def probe_provider(provider: str) -> tuple[bool, str | None]:
    """Whether ``provider`` really runs here (a tiny Relu session and one run), and why not.

    Cached per process: loading provider libraries is slow and its answer does not change.
    """
    attempt = create_session(_tiny_probe_model(), provider, "disable", role="probe model")
    if attempt.status != "ok" or attempt.session is None:
        return False, attempt.reason
    try:
        with capture_native_output():
            attempt.session.run(None, {"x": np.ones((1, 4), np.float32)})
    except Exception as exc:  # noqa: BLE001 - any failure means "does not really work"
        return False, f"{provider_full_name(provider)} failed a test run: {_first_line(exc)}"
    return True, None


def default_providers() -> list[str]:
    """``['cpu']`` plus ``'cuda'`` when CUDA really works here (probed once, cached)."""
    providers = ["cpu"]
    if cuda_available()[0]:
        providers.append("cuda")
    return providers


def cuda_available() -> tuple[bool, str | None]:
    """``(True, None)`` when a CUDA session really runs on the GPU, else ``(False, reason)``."""
    if "CUDAExecutionProvider" not in _ort().get_available_providers():
        return (
            False,
            "this onnxruntime build has no CUDAExecutionProvider (install onnxruntime-gpu)",
        )
    return probe_provider("cuda")


_MISSING_LIBRARY = re.compile(r"(lib[\w.+-]+?\.so[\w.]*): cannot open shared object file")


def brief_reason(reason: str | None, limit: int = 60) -> str:
    """One clause for why CUDA is unavailable (``libcublasLt.so.13 missing``), not
    onnxruntime's whole log: the short form of ``cuda_available()``'s reason."""
    text = (reason or "unknown reason").strip()
    missing = _MISSING_LIBRARY.findall(text)
    if missing:
        return f"{missing[-1]} missing"
    if "no CUDAExecutionProvider" in text:
        return "this onnxruntime build has none"
    clause = text.splitlines()[0].split("; ")[0]
    return clause if len(clause) <= limit else clause[: limit - 1] + "…"


# onnxruntime's Python API cannot take or return bfloat16 numpy arrays (ml_dtypes): those go
# through OrtValues with the raw 16-bit payload.
_BFLOAT16_TYPE = "tensor(bfloat16)"


def _is_bfloat16(array: np.ndarray) -> bool:
    return array.dtype.name == "bfloat16"


def run_session(session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Run ``session`` on ``feeds``; return outputs by name (bfloat16 handled both ways)."""
    with capture_native_output():  # onnxruntime logs a failing node as [E:onnxruntime...]
        return _run(session, feeds)


def _run(session: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, Any]:
    names = [output.name for output in session.get_outputs()]
    uses_bf16 = any(_is_bfloat16(v) for v in feeds.values()) or any(
        output.type == _BFLOAT16_TYPE for output in session.get_outputs()
    )
    if not uses_bf16:
        return dict(zip(names, session.run(names, dict(feeds)), strict=True))
    ort = _ort()
    values = {}
    for name, array in feeds.items():
        if _is_bfloat16(array):
            raw = np.ascontiguousarray(array).view(np.uint16)
            values[name] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
                raw, onnx.TensorProto.BFLOAT16
            )
        else:
            values[name] = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array))
    # Bind every output to host memory so the raw copy below never reads device memory.
    binding = session.io_binding()
    for name, value in values.items():
        binding.bind_ortvalue_input(name, value)
    for name in names:
        binding.bind_output(name, "cpu")
    session.run_with_iobinding(binding)
    outputs = binding.get_outputs()
    return {name: _ortvalue_to_numpy(value) for name, value in zip(names, outputs, strict=True)}


def _ortvalue_to_numpy(value: Any) -> Any:
    if value.data_type() != _BFLOAT16_TYPE:
        return value.numpy()
    import ml_dtypes

    shape = tuple(value.shape())
    count = int(np.prod(shape)) if shape else 1
    if count == 0:
        return np.zeros(shape, dtype=ml_dtypes.bfloat16)
    buffer = (ctypes.c_uint16 * count).from_address(value.data_ptr())
    raw = np.ctypeslib.as_array(buffer).copy()  # copy: the OrtValue owns that memory
    return raw.view(ml_dtypes.bfloat16).reshape(shape)
