"""Plugin execution providers: onnxruntime >= 1.22 loads EPs shipped as separate libraries.

A plugin package (``onnxruntime-ep-openvino``, installed by ``pip install bnfold[openvino]``)
exposes ``get_library_path()`` and ``get_ep_names()``. bnfold registers the library with
``onnxruntime.register_execution_provider_library`` once per process, finds the plugin's devices
with ``onnxruntime.get_ep_devices()``, and a session adds them with
``SessionOptions.add_provider_for_devices``. Another vendor's plugin fits by adding one line
to ``PLUGINS`` (short name -> import name of its Python package).

Provider truth is the same as for compiled-in providers: registered, a device found, and the
session really uses the EP (``session.get_providers()``), or ``unavailable`` with the reason.
"""

from __future__ import annotations

import importlib
import importlib.util
import platform
from functools import cache
from typing import Any

from ..errors import EnvironmentProblem

# short name -> (Python package of the plugin, pip extra / package that installs it)
PLUGINS: dict[str, tuple[str, str]] = {
    "openvino": ("onnxruntime_ep_openvino", "pip install 'bnfold[openvino]'"),
}
# Why a registered plugin may offer no device, said with the 'unavailable' reason.
NO_DEVICE_HINTS: dict[str, str] = {
    # onnxruntime-ep-openvino 1.8.1's factory skips every non-Intel hardware device, CPUs
    # included (ov_factory.cc; onnxruntime PR #31981 proposes allowing other CPUs).
    "openvino": "the OpenVINO plugin offers Intel devices only (CPU, GPU, NPU)",
}


def is_plugin(short: str) -> bool:
    """True when ``short`` names a provider bnfold loads as a plugin library."""
    return short in PLUGINS


def plugin_installed(short: str) -> bool:
    return is_plugin(short) and importlib.util.find_spec(PLUGINS[short][0]) is not None


def onnxruntime_repair() -> str:
    """The command that repairs a broken onnxruntime install on this platform."""
    package = (
        "onnxruntime-gpu"
        if platform.system() == "Linux" and platform.machine() == "x86_64"
        else "onnxruntime"
    )
    return f"pip install --force-reinstall {package}"


def import_onnxruntime() -> Any:
    """``onnxruntime``, or ``EnvironmentProblem`` (exit 8) when its install is broken.

    With both ``onnxruntime`` and ``onnxruntime-gpu`` installed and one removed, the other's
    files are half gone: ``import onnxruntime`` fails or has no ``InferenceSession``.
    """
    try:
        import onnxruntime as ort

        ort.InferenceSession  # noqa: B018 - a half-removed install lacks it
    except (ImportError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise EnvironmentProblem(
            f"onnxruntime is not installed or its install is broken ({first})",
            hint=f"repair it: `{onnxruntime_repair()}`",
        ) from None
    return ort


@cache
def register_plugin(short: str) -> tuple[bool, str | None]:
    """Register ``short``'s plugin library with onnxruntime once; ``(ok, reason if not)``."""
    package, install = PLUGINS[short]
    ort = import_onnxruntime()

    if not hasattr(ort, "register_execution_provider_library"):
        return False, f"onnxruntime {ort.__version__} cannot load plugin providers (needs >= 1.22)"
    try:
        module = importlib.import_module(package)
    except ImportError:
        return False, f"the {package} package is not installed ({install})"
    try:
        path = module.get_library_path()
        ort.register_execution_provider_library(short, path)
    except Exception as exc:  # noqa: BLE001 - a broken plugin is "unavailable", not a crash
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return False, f"cannot register the {package} plugin library: {first}"
    return True, None


def plugin_devices(full_name: str) -> list[Any]:
    """The ``OrtEpDevice`` objects onnxruntime offers for ``full_name`` (after registration)."""
    ort = import_onnxruntime()

    return [device for device in ort.get_ep_devices() if device.ep_name == full_name]


def describe_devices(short: str | None = None) -> str:
    """What onnxruntime found on this machine (and the plugin's known limit), for an
    'offers no device' reason."""
    ort = import_onnxruntime()

    found = []
    for device in ort.get_ep_devices():
        hardware = getattr(device, "device", None)
        kind = getattr(getattr(hardware, "type", None), "name", "?")
        vendor = getattr(hardware, "vendor", "") or getattr(device, "ep_vendor", "")
        found.append(f"{device.ep_name} on {kind} ({vendor})")
    text = ", ".join(found) or "none"
    hint = NO_DEVICE_HINTS.get(short or "")
    return f"{text}; {hint}" if hint else text


def parse_provider_options(values: list[str] | tuple[str, ...] | None) -> dict[str, dict[str, str]]:
    """``['cuda:use_tf32=0', 'cuda:device_id=1']`` -> ``{'cuda': {'use_tf32': '0', 'device_id': '1'}}``.

    Raises ``UsageError`` (exit 2) for anything not ``PROVIDER:KEY=VALUE``.
    """
    from ..errors import UsageError

    result: dict[str, dict[str, str]] = {}
    for value in values or ():
        provider, sep, rest = value.partition(":")
        key, eq, setting = rest.partition("=")
        if not sep or not eq or not provider.strip() or not key.strip():
            raise UsageError(
                f"--provider-option {value!r} is not PROVIDER:KEY=VALUE",
                hint="for example --provider-option cuda:use_tf32=0",
            )
        result.setdefault(provider.strip(), {})[key.strip()] = setting.strip()
    return result
