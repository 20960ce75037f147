"""Load and save ONNX models safely.

- Loading refuses what is not a valid model with one line that names the problem (see
  ``bnfold.modelcheck``), and checks every external-data location before any byte of it is
  read: a location must be a relative path that stays inside the model's folder after
  resolving symlinks and name a regular file (the CVE-2024-27318 / CVE-2024-27319 class of
  bugs). bnfold reads the data itself, from the path it checked.
- Loading a file is lazy (``bnfold.lazyio``): large tensors stay in their file (the model
  itself, or its checked external data) and are read one at a time when a fold needs them.
- Saving streams (``lazyio.write_model``) and is atomic: everything is written into a private
  temporary folder beside the target, flushed, then renamed into place, so a crash, a full
  disk or Ctrl-C leaves either the old state or the complete new file, never a partial one.
  The input file is never opened for writing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from . import lazyio
from .errors import ModelLoadError, OutputWriteError, UnsafeModelError, UsageError
from .modelcheck import check_structure, check_tensor_sizes

PROTOBUF_LIMIT = 2**31 - 1
# Tensors at least this large go to the external data file when saving with external data.
EXTERNAL_THRESHOLD_BYTES = 1024
TEMP_SUFFIX = ".bnfold-tmp"
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
    resolved = path.resolve()
    try:
        model = lazyio.read_lazy(resolved)
    except (DecodeError, RuntimeError, ValueError, IndexError) as exc:
        raise ModelLoadError(
            f"{role} is not a readable ONNX model ({_first_line(exc)}): {path}",
            hint="the file is damaged or not .onnx: copy it again or re-export it",
        ) from None
    except OSError as exc:
        raise ModelLoadError(
            f"cannot read {role} {path}: {exc.strerror or exc}", hint="check permissions"
        ) from None
    _check_basic_fields(model, role, str(path))
    check_structure(model, role, str(path))

    base_dir = resolved.parent
    external = [
        t
        for t in _all_tensors(model)
        if external_data_helper.uses_external_data(t) and not lazyio.is_self_reference(t, resolved)
    ]
    # Every location is checked before the first byte of any of them is read.
    where = f"{role} {path}"
    files = [_resolve_external_location(tensor, base_dir, where) for tensor in external]
    for tensor, data_file in zip(external, files, strict=True):
        _check_external_range(tensor, data_file, where)
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


def _check_external_range(tensor: onnx.TensorProto, data_file: Path, where: str) -> None:
    """``tensor``'s offset and length lie inside ``data_file`` (already checked); no byte is read.

    The reference is normalised to an explicit offset and length, so later reads and the
    streaming writer never depend on the file's size.
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


# ---- output paths ---------------------------------------------------------------------------


def default_output_path(input_path: Path) -> Path:
    """``model.onnx`` -> ``model.folded.onnx`` beside the input."""
    return input_path.with_name(f"{input_path.stem}.folded{input_path.suffix or '.onnx'}")


def external_data_path(output: Path) -> Path:
    """Where ``save_model`` puts the external data of ``output``: ``<output name>.data``."""
    return output.with_name(f"{output.name}.data")


def check_output_path(output: Path, input_path: Path | None, *, in_place: bool) -> None:
    """Refuse to overwrite the input without ``in_place``; refuse a folder that cannot be used."""
    if input_path is not None and not in_place and same_file(output, input_path):
        raise UsageError(
            f"output path is the input file: {output}",
            hint="choose another -o path, or pass --in-place to replace the input",
        )
    check_writable_target(output, what="output")


def check_writable_target(path: Path, *, what: str) -> None:
    """``path`` names a file that can be created: its folder exists and is writable."""
    parent = path.parent if str(path.parent) else Path(".")
    option = "-o" if what == "output" else what
    if parent.exists() and not parent.is_dir():
        raise OutputWriteError(
            f"{what} folder is a file, not a folder: {parent}",
            hint=f"choose another {option} path",
        )
    if not parent.is_dir():
        raise OutputWriteError(
            f"{what} folder does not exist: {parent}", hint="create it first with mkdir -p"
        )
    if path.is_dir():
        raise OutputWriteError(f"{what} path is a folder: {path}", hint="give a file name")
    if not os.access(parent, os.W_OK):
        raise OutputWriteError(
            f"{what} folder is not writable: {parent}", hint=f"choose another {option} path"
        )


def check_side_file(path: Path, *, what: str, input_path: Path, output: Path | None) -> None:
    """A report file (``what``: "--report", "--markdown") may overwrite neither model file."""
    for protected, name in ((input_path, "the input model"), (output, "the output model")):
        if protected is not None and same_file(path, protected):
            raise UsageError(f"{what} path is {name}: {path}", hint=f"give {what} another path")
    check_writable_target(path, what=what)


def check_inputs_survive(
    loaded: LoadedModel, writes: list[tuple[Path, str]], *, in_place: bool
) -> None:
    """No file bnfold is about to write is one the input model was read from.

    ``writes`` are ``(path, what)`` pairs. With ``in_place`` the output and its data file may
    replace the input's (that is what was asked); nothing else may, e.g. ``-o weights.bin``
    or a report named after the input's external data.
    """
    if loaded.path is None:
        return
    protected = [(loaded.path, "the input model")] + [
        (data, f"the input's external data file {data.name!r}") for data in loaded.external_files
    ]
    for path, what in writes:
        for source, name in protected:
            allowed = in_place and what in ("output", "output data")
            if not allowed and same_file(path, source):
                option = what.split()[0] if what.startswith("--") else "-o"
                raise UsageError(
                    f"the {what} would overwrite {name}: {path}",
                    hint=f"choose another {option} path",
                )


def same_file(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name one file (same resolved path, or hard links to one inode)."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


# ---- atomic writes --------------------------------------------------------------------------


def save_model(
    model: onnx.ModelProto,
    output: Path,
    *,
    external_data: bool = False,
    base_dir: Path | None = None,
    before_commit: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Write ``model`` to ``output`` atomically; return the files written.

    ``before_commit`` is called with the complete staged model (its data file beside it)
    before anything is renamed into place; if it raises, nothing is written.

    With ``external_data`` (or when the model is too large for one protobuf), tensors of
    ``EXTERNAL_THRESHOLD_BYTES`` or more go to ``<output name>.data`` beside it. Tensors
    still referenced in their source files (``base_dir``) are copied from there in chunks.
    ``model`` itself is not modified. Raises ``OutputWriteError`` (exit 6) and leaves no
    temporary file behind, also on KeyboardInterrupt.
    """
    output = Path(output)
    parent = output.parent if str(output.parent) else Path(".")
    needs_external = (
        external_data or lazyio.estimated_size(model, base_dir) > PROTOBUF_LIMIT - 2**24
    )
    data_path = external_data_path(output)
    with _staging_folder(parent, output) as staging:
        staged_model = staging / output.name
        staged_data = staging / data_path.name
        with open(staged_model, "wb") as handle:
            if needs_external:
                with open(staged_data, "wb") as data_handle:
                    lazyio.write_model(
                        model,
                        handle,
                        base_dir,
                        data_handle=data_handle,
                        data_location=data_path.name,
                        external_threshold=EXTERNAL_THRESHOLD_BYTES,
                    )
            else:
                lazyio.write_model(model, handle, base_dir)
        if before_commit is not None:
            before_commit(staged_model)
        for staged in (staged_data, staged_model):
            if staged.exists():
                _fsync(staged)
        # Data first, model last: a reader never sees a model whose data is missing. Ctrl-C
        # waits until both names are in place, so the pair is never half-renamed.
        written = []
        with _sigint_deferred():
            if staged_data.exists():
                os.replace(staged_data, data_path)
                written.append(data_path)
            os.replace(staged_model, output)
            written.append(output)
        _fsync_folder(parent)
        return written


def write_text_atomic(path: Path, text: str) -> None:
    """Write a UTF-8 text file (a report) atomically: a temporary file beside it, then rename."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    with _staging_folder(parent, path) as staging:
        staged = staging / path.name
        staged.write_text(text, encoding="utf-8")
        _fsync(staged)
        os.replace(staged, path)


@contextlib.contextmanager
def _staging_folder(parent: Path, target: Path) -> Iterator[Path]:
    """A private folder beside ``target``, always removed; OSError becomes OutputWriteError."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=parent))
    except OSError as exc:
        raise _write_error(exc, target) from None
    try:
        yield staging
    except OSError as exc:
        raise _write_error(exc, target) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_error(exc: OSError, target: Path) -> OutputWriteError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputWriteError(
            f"disk full while writing {target}; nothing was written",
            hint="free some space or choose another -o path",
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputWriteError(
            f"cannot write {target}: {exc.strerror}; nothing was written",
            hint="choose a writable folder with -o",
        )
    return OutputWriteError(
        f"cannot write {target}: {exc.strerror or exc}; nothing was written",
        hint="check the output path",
    )


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back SIGINT (Ctrl-C) for the few renames that must happen together."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[object] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    """Make the renames durable (a no-op where folders cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
