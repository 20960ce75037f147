"""Load and save ONNX models safely.

- Loading validates external-data locations before any byte is read: a location must be a
  relative path that stays inside the model's folder after resolving symlinks
  (CVE-2024-27318 / CVE-2024-27319 class of bugs), and the file must exist.
- Saving is atomic: everything is written into a private temporary folder beside the target,
  flushed, then renamed into place, so a crash, a full disk or Ctrl-C leaves either the old
  state or the complete new file, never a partial one. The input file is never opened for
  writing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from .errors import ModelLoadError, OutputWriteError, UnsafeModelError, UsageError

PROTOBUF_LIMIT = 2**31 - 1
# Tensors at least this large go to the external data file when saving with external data.
EXTERNAL_THRESHOLD_BYTES = 1024


@dataclass
class LoadedModel:
    """A model and where it came from (``path`` is None for an in-memory ModelProto)."""

    model: onnx.ModelProto
    path: Path | None
    has_external_data: bool


def load_model(
    source: str | os.PathLike[str] | onnx.ModelProto, *, role: str = "model"
) -> LoadedModel:
    """Load ``source`` (a path or a ModelProto) with its external data, or raise a one-line error."""
    if isinstance(source, onnx.ModelProto):
        external = any(external_data_helper.uses_external_data(t) for t in _all_tensors(source))
        if external:
            raise UsageError(
                f"the in-memory {role} refers to external data",
                hint="pass the file path instead, or load it with onnx.load(path) first",
            )
        _check_basic_structure(source, role, "<in-memory model>")
        return LoadedModel(source, None, False)

    path = Path(source)
    if not path.exists():
        raise ModelLoadError(f"{role} file not found: {path}", hint="check the path")
    if path.is_dir():
        raise ModelLoadError(
            f"{role} path is a directory, not a file: {path}", hint="pass the .onnx file inside it"
        )
    size = path.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{role} file is empty: {path}", hint="re-export the model")
    if size > PROTOBUF_LIMIT:
        raise ModelLoadError(
            f"{role} file is {size / 2**30:.1f} GiB, over protobuf's 2 GiB limit: {path}",
            hint="save it with external data (onnx.save_model(..., save_as_external_data=True))",
        )
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(
            f"{role} is not a readable ONNX model: {path} ({_first_line(exc)})",
            hint="check that the file is a complete .onnx file",
        ) from None
    except OSError as exc:
        raise ModelLoadError(
            f"cannot read {role} {path}: {exc.strerror or exc}", hint="check permissions"
        ) from None
    _check_basic_structure(model, role, str(path))

    external_tensors = [
        t for t in _all_tensors(model) if external_data_helper.uses_external_data(t)
    ]
    base_dir = path.resolve().parent
    for tensor in external_tensors:
        _resolve_external_location(tensor, base_dir, role)
    if external_tensors:
        try:
            external_data_helper.load_external_data_for_model(model, str(base_dir))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"cannot read external data of {role} {path}: {_first_line(exc)}"
            ) from None
    return LoadedModel(model, path, bool(external_tensors))


def _resolve_external_location(tensor: onnx.TensorProto, base_dir: Path, role: str) -> Path:
    """Return the data file of ``tensor``, refusing anything that leaves ``base_dir``."""
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    hint = "external data must be a relative path inside the model's folder"
    if not location:
        raise ModelLoadError(f"{role}: tensor {tensor.name!r} has external data without a location")
    if (
        os.path.isabs(location)
        or location.startswith(("/", "\\"))
        or (len(location) > 1 and location[1] == ":")
    ):
        raise UnsafeModelError(
            f"{role}: external data location is absolute: {location!r}", hint=hint
        )
    if ".." in Path(location.replace("\\", "/")).parts:
        raise UnsafeModelError(
            f"{role}: external data location contains '..': {location!r}", hint=hint
        )
    target = (base_dir / location).resolve()
    if not target.is_relative_to(base_dir):
        raise UnsafeModelError(
            f"{role}: external data {location!r} resolves outside the model's folder (symlink?)",
            hint=hint,
        )
    if not target.is_file():
        raise ModelLoadError(
            f"{role}: external data file missing: {location!r} (next to the model)",
            hint="copy the data file beside the .onnx file",
        )
    return target


def _check_basic_structure(model: onnx.ModelProto, role: str, where: str) -> None:
    if not model.HasField("graph") or model.ir_version <= 0 or not model.opset_import:
        raise ModelLoadError(
            f"{role} is not a valid ONNX model (no graph, IR version or opset): {where}",
            hint="check that the file is an .onnx model",
        )


def _all_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    return list(external_data_helper._get_all_tensors(model))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def default_output_path(input_path: Path) -> Path:
    """``model.onnx`` -> ``model.folded.onnx`` beside the input."""
    return input_path.with_name(f"{input_path.stem}.folded{input_path.suffix or '.onnx'}")


def check_output_path(output: Path, input_path: Path | None, *, in_place: bool) -> None:
    """Refuse to overwrite the input without ``in_place``; refuse a missing output folder."""
    if input_path is not None and not in_place and _same_file(output, input_path):
        raise UsageError(
            f"output path is the input file: {output}",
            hint="choose another -o path, or pass --in-place to replace the input",
        )
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise OutputWriteError(f"output folder does not exist: {parent}", hint="create it first")
    if output.is_dir():
        raise OutputWriteError(f"output path is a directory: {output}", hint="give a file name")
    if not os.access(parent, os.W_OK):
        raise OutputWriteError(
            f"output folder is not writable: {parent}", hint="choose another -o path"
        )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def save_model(model: onnx.ModelProto, output: Path, *, external_data: bool = False) -> list[Path]:
    """Write ``model`` to ``output`` atomically; return the files written.

    With ``external_data`` (or when the model is too large for one protobuf), tensors of
    ``EXTERNAL_THRESHOLD_BYTES`` or more go to ``<output name>.data`` beside it.
    ``model`` itself is not modified.
    """
    output = Path(output)
    parent = output.parent if str(output.parent) else Path(".")
    needs_external = external_data or model.ByteSize() > PROTOBUF_LIMIT - 2**20
    data_name = f"{output.name}.data"
    try:
        staging = Path(
            tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".bnfold-tmp", dir=parent)
        )
    except OSError as exc:
        raise OutputWriteError(
            f"cannot write into {parent}: {exc.strerror or exc}", hint="check the folder"
        ) from None
    try:
        staged_model = staging / output.name
        if needs_external:
            to_write = onnx.ModelProto()
            to_write.CopyFrom(model)  # onnx's external-data writer strips the proto it is given
            onnx.save_model(
                to_write,
                str(staged_model),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data_name,
                size_threshold=EXTERNAL_THRESHOLD_BYTES,
            )
        else:
            with open(staged_model, "wb") as handle:
                handle.write(model.SerializeToString())
        written = []
        for staged in sorted(staging.iterdir()):
            _fsync(staged)
        # Data first, model last: a reader never sees a model whose data is missing.
        staged_data = staging / data_name
        if staged_data.exists():
            os.replace(staged_data, parent / data_name)
            written.append(parent / data_name)
        os.replace(staged_model, output)
        written.append(output)
        return written
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise OutputWriteError(
                f"disk full while writing {output}", hint="free space and run again"
            ) from None
        raise OutputWriteError(
            f"cannot write {output}: {exc.strerror or exc}", hint="check the output path"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        os.fsync(handle.fileno())
