"""Load and save ONNX models safely.

- Loading refuses what is not a valid model with one line that names the problem (see
  ``bnfold.storage.modelcheck``), and checks every external-data location before any byte of it is
  read: a location must be a relative path that stays inside the model's folder after
  resolving symlinks and name a regular file (the CVE-2024-27318 / CVE-2024-27319 class of
  bugs). bnfold reads the data itself, from the path it checked. The model's folder is the
  folder of the path as given, as onnx and onnxruntime take it: for a symbolic link to a
  model file, the link's folder, not its target's.
- Loading a file is lazy (``bnfold.storage.lazyio``): large tensors stay in their file (the model
  itself, or its checked external data) and are read one at a time when a fold needs them.
- Saving is ``bnfold.storage.outputs``'s job (the one writer); the input is never opened for writing.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from ..errors import ModelLoadError, UnsafeModelError, UsageError, first_line
from . import lazyio
from .modelcheck import check_structure, check_tensor_sizes

PROTOBUF_LIMIT = 2**31 - 1
EXTERNAL_HINT = "external data must be a relative path to a file inside the model's folder"


@dataclass
class LoadedModel:
    """A model and where it came from (``path`` is None for an in-memory ModelProto).

    ``external_files`` are the resolved data files it was read from: bnfold never writes them.
    """

    model: onnx.ModelProto
    path: Path | None
    has_external_data: bool
    external_files: list[Path] = field(default_factory=list)
    # Folder the model's external tensor references are relative to (None: all inline).
    base_dir: Path | None = None

    @property
    def files(self) -> list[Path]:
        """Every file this model was read from (the model, then its data files)."""
        return ([self.path] if self.path is not None else []) + list(self.external_files)

    def materialized(self) -> onnx.ModelProto:
        """The model with every tensor's bytes in memory (for onnxruntime from bytes, etc.)."""
        if self.base_dir is None:
            return self.model
        return lazyio.load_all(self.model, self.base_dir)


def load_model(
    source: str | os.PathLike[str] | onnx.ModelProto, *, role: str = "model"
) -> LoadedModel:
    """Load ``source`` (a path or a ModelProto), or raise a one-line error.

    A file is read lazily: large tensors (inline or external) stay in their files and are
    referenced as external data relative to ``LoadedModel.base_dir``. Raises
    ``ModelLoadError`` (exit 3) for a missing, unreadable or invalid model and
    ``UnsafeModelError`` (exit 7) for external data that leaves the model's folder.
    """
    if isinstance(source, onnx.ModelProto):
        return _load_in_memory(source, role)
    path = Path(source)
    _check_model_file(path, role)
    # External data lies beside the path as given, as onnx and onnxruntime look for it: for a
    # symbolic link to a model, beside the link, not beside its target. Only the folder is
    # resolved (the safety rule compares resolved paths); the file is opened through its name
    # there, so the model's own bytes are referenced under that name too.
    base_dir = path.absolute().parent.resolve()
    resolved = base_dir / path.name
    try:
        model = lazyio.read_lazy(resolved)
    except (DecodeError, RuntimeError, ValueError, IndexError) as exc:
        raise ModelLoadError(
            f"{role} is not a readable ONNX model ({first_line(exc, 200)}): {path}",
            hint="the file is damaged or not .onnx: copy it again or re-export it",
        ) from None
    except OSError as exc:
        raise ModelLoadError(
            f"cannot read {role} {path}: {exc.strerror or exc}", hint="check permissions"
        ) from None
    _check_basic_fields(model, role, str(path))
    check_structure(model, role, str(path))

    external = [
        t
        for t in _all_tensors(model)
        if external_data_helper.uses_external_data(t) and not lazyio.is_self_reference(t, resolved)
    ]
    # Every location is checked before the first byte of any of them is read.
    where = f"{role} {path}"
    files = [_resolve_external_location(tensor, base_dir, where) for tensor in external]
    for tensor, data_file in zip(external, files, strict=True):
        _normalize_external_range(tensor, data_file, where)
    check_tensor_sizes(_all_tensors(model), role, str(path))
    return LoadedModel(model, path, bool(external), sorted(set(files)), base_dir)


def _load_in_memory(model: onnx.ModelProto, role: str) -> LoadedModel:
    if any(external_data_helper.uses_external_data(t) for t in _all_tensors(model)):
        raise UsageError(
            f"the in-memory {role} refers to external data",
            hint="pass the file path instead, or load it with onnx.load(path) first",
        )
    _check_basic_fields(model, role, "<in-memory model>")
    check_structure(model, role, "<in-memory model>")
    check_tensor_sizes(_all_tensors(model), role, "<in-memory model>")
    return LoadedModel(model, None, False)


def _check_model_file(path: Path, role: str) -> None:
    """Refuse what is not a readable regular file of a size protobuf can parse."""
    if not path.exists():
        raise ModelLoadError(f"{role} file not found: {path}", hint="check the path")
    if path.is_dir():
        raise ModelLoadError(
            f"{role} path is a directory, not a file: {path}", hint="pass the .onnx file inside it"
        )
    if not path.is_file():
        raise ModelLoadError(
            f"{role} path is not a regular file (device, FIFO or socket?): {path}",
            hint="pass an .onnx file",
        )
    size = path.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{role} file is empty: {path}", hint="re-export the model")
    if size > PROTOBUF_LIMIT:
        raise ModelLoadError(
            f"{role} file is {size / 2**30:.1f} GiB, over protobuf's 2 GiB limit: {path}",
            hint="re-save it with onnx.save_model(model, path, save_as_external_data=True)",
        )


def _resolve_external_location(tensor: onnx.TensorProto, base_dir: Path, where: str) -> Path:
    """Return the data file of ``tensor``, refusing anything that leaves ``base_dir``."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    if not location:
        raise ModelLoadError(
            f"{where}: tensor {tensor.name!r} has external data without a location",
            hint="re-export the model",
        )
    if (
        os.path.isabs(location)
        or location.startswith(("/", "\\"))
        or (len(location) > 1 and location[1] == ":")
    ):
        raise UnsafeModelError(
            f"{where}: external data location is absolute: {location!r}", hint=EXTERNAL_HINT
        )
    if ".." in Path(location.replace("\\", "/")).parts:
        raise UnsafeModelError(
            f"{where}: external data location contains '..': {location!r}", hint=EXTERNAL_HINT
        )
    target = (base_dir / location).resolve()
    if not target.is_relative_to(base_dir):
        raise UnsafeModelError(
            f"{where}: external data {location!r} resolves outside the model's folder (symlink?)",
            hint=EXTERNAL_HINT,
        )
    if not target.exists():
        raise ModelLoadError(
            f"{where}: external data file missing: {location!r} (next to the model)",
            hint="copy the data file beside the .onnx file",
        )
    if not stat.S_ISREG(target.stat().st_mode):
        raise UnsafeModelError(
            f"{where}: external data {location!r} is not a regular file (device, FIFO, folder?)",
            hint=EXTERNAL_HINT,
        )
    return target


def _normalize_external_range(tensor: onnx.TensorProto, data_file: Path, where: str) -> None:
    """Check that ``tensor``'s bytes lie inside ``data_file``, then rewrite its reference with
    an explicit offset and length (no byte is read).

    Later reads and the streaming writer then never depend on the data file's size.
    """
    info = {entry.key: entry.value for entry in tensor.external_data}
    try:
        offset = int(info.get("offset") or 0)
        length = int(info["length"]) if info.get("length") else None
    except ValueError:
        raise ModelLoadError(
            f"{where}: tensor {tensor.name!r} has a malformed external data offset or length",
            hint="re-export the model",
        ) from None
    if offset < 0 or (length is not None and length < 0):
        raise ModelLoadError(
            f"{where}: tensor {tensor.name!r} has a negative external data offset or length",
            hint="re-export the model",
        )
    size = data_file.stat().st_size
    if offset + (length or 0) > size:
        raise ModelLoadError(
            f"{where}: external data {data_file.name!r} ends before tensor {tensor.name!r} "
            f"(needs bytes {offset}..{offset + (length or 0)}, the file has {size})",
            hint="the data file is truncated: copy it again or re-export the model",
        )
    declared = size - offset if length is None else length
    entries = {"location": info["location"], "offset": str(offset), "length": str(declared)}
    del tensor.external_data[:]
    for key, value in entries.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _check_basic_fields(model: onnx.ModelProto, role: str, where: str) -> None:
    if not model.HasField("graph") or model.ir_version <= 0 or not model.opset_import:
        raise ModelLoadError(
            f"{role} is not a valid ONNX model (no graph, IR version or opset): {where}",
            hint="check that the file is an .onnx model",
        )


def _all_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    return list(external_data_helper._get_all_tensors(model))


# ---- output paths ---------------------------------------------------------------------------


def default_output_path(input_path: Path) -> Path:
    """``model.onnx`` -> ``model.folded.onnx`` beside the input."""
    return input_path.with_name(f"{input_path.stem}.folded{input_path.suffix or '.onnx'}")
