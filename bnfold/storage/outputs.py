"""The one writer: every file bnfold writes goes through an ``Outputs``.

- **Nothing the command reads is ever written.** An ``Outputs`` knows the files the command
  reads (each model and its external data files). ``plan`` refuses, with ``UsageError``
  (exit 2), a target that is one of them or aliases one (same resolved path, a symbolic link
  to it, or a hard link: same inode), or a target another output of the same command already
  uses. Commands plan every output before any work, so a refusal leaves nothing written;
  each write plans its target again.
- **Atomic.** A file is written into a private staging folder beside the target
  (``bnfold.storage.staging``), flushed, and renamed into place: the previous file or the complete
  new one, never a partial one. ``append`` (the ``GITHUB_STEP_SUMMARY``) is one ``write`` of
  the whole text to a file opened with ``O_APPEND``.
- **A model and its external data switch in one step** (``save_model``): the data goes to a
  name no file has yet (``<model>.data``, else ``<model>.1.data``, ...), the rename of the
  ``.onnx`` file is the single commit point, and only then is the data file the old model used
  (if named after it) removed. A crash at any step leaves the old model or the new one, each
  with its data; the next run beside it removes what the dead run left (``commit.json``).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import onnx
from onnx import external_data_helper

from ..errors import OutputWriteError, UsageError
from . import lazyio, streamwrite
from .staging import (
    fsync,
    fsync_folder,
    kill_point,
    sigint_deferred,
    staging_folder,
    write_error,
    write_record,
)

PROTOBUF_LIMIT = 2**31 - 1
# Tensors at least this large go to the external data file when saving with external data.
EXTERNAL_THRESHOLD_BYTES = 1024
# The steps of a model commit, in order (``BNFOLD_TEST_KILL_AT`` kills the process at one).
COMMIT_STEPS = ("staged", "recorded", "data-placed", "committed", "old-data-removed")


def aliases(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name one file: same resolved path (symlinks followed) or same inode."""
    with contextlib.suppress(OSError, RuntimeError):
        if a.resolve() == b.resolve():
            return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def model_files(path: Path) -> list[Path]:
    """``path`` and the external data files it refers to (what reading the model reads).

    Tolerant: a file that is not a readable model protects only itself (loading it later
    gives the one-line error).
    """
    files = [Path(path)]
    for location in data_locations(Path(path)):
        candidate = Path(path).parent / location
        if candidate.exists():
            files.append(candidate)
    return files


def data_locations(path: Path) -> list[str]:
    """The external-data locations a model file refers to (none when it cannot be read)."""
    try:
        # Not a regular file, or too large to be one protobuf: no valid model, no references.
        if not path.is_file() or path.stat().st_size > PROTOBUF_LIMIT:
            return []
        model = lazyio.read_lazy(path)
    except Exception:  # noqa: BLE001 - any unreadable file simply refers to nothing
        return []
    locations = set()
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        if lazyio.is_self_reference(tensor, path):
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location")
        if location:
            locations.add(location)
    return sorted(locations)


class Outputs:
    """What one command (or library call) reads and writes; see the module doc.

    ``reads`` are ``(path, description)`` pairs of protected files.
    """

    def __init__(self, reads: Iterable[tuple[Path, str]] = ()) -> None:
        self.reads: list[tuple[Path, str]] = []
        self.planned: list[tuple[Path, str]] = []
        for path, what in reads:
            self.read(path, what)

    def read(self, path: str | os.PathLike[str], what: str = "an input") -> None:
        """Protect ``path`` (a file this command reads)."""
        self.reads.append((Path(path), what))

    def read_model(self, path: str | os.PathLike[str], role: str = "input model") -> None:
        """Protect a model file and each external data file it refers to."""
        if any(aliases(Path(path), source) for source, _ in self.reads):
            return  # already protected (the CLI and the library both ask)
        files = model_files(Path(path))
        self.read(files[0], f"the {role}")
        for data in files[1:]:
            self.read(data, f"the {role}'s external data file {data.name!r}")

    def plan(
        self, path: str | os.PathLike[str], what: str, *, replaces_input: bool = False
    ) -> Path:
        """Check that ``path`` may be written as ``what``, and remember it; return it.

        ``UsageError`` (exit 2) when it is or aliases a file this command reads (unless
        ``replaces_input``: ``--in-place``) or another planned output; ``OutputWriteError``
        (exit 6) when its folder is missing or not writable.
        """
        target = Path(path)
        if not replaces_input:
            for source, name in self.reads:
                if aliases(target, source):
                    raise UsageError(
                        f"the {what} would overwrite {name}: {target}",
                        hint=_other_path(what, name),
                    )
        for other, name in self.planned:
            if name != what and aliases(target, other):
                raise UsageError(
                    f"the {what} and the {name} are the same file: {target}",
                    hint="give each output its own path",
                )
        check_writable_target(target, what=what)
        if (target, what) not in self.planned:
            self.planned.append((target, what))
        return target

    def write_text(self, path: str | os.PathLike[str], text: str, what: str) -> Path:
        """Write a UTF-8 text file (a report) atomically."""
        return self.write_file(path, what, lambda staged: staged.write_text(text, encoding="utf-8"))

    def write_file(
        self, path: str | os.PathLike[str], what: str, produce: Callable[[Path], object]
    ) -> Path:
        """Atomically write what ``produce(staged_path)`` writes (a plot, an ``.npz``)."""
        target = self.plan(path, what)
        with _staging(target) as staging:
            staged = staging / target.name
            produce(staged)
            if not staged.is_file():
                raise OutputWriteError(f"{what}: nothing was produced for {target}")
            fsync(staged)
            os.replace(staged, target)
        fsync_folder(target.parent if str(target.parent) else Path("."))
        return target

    def append(self, path: str | os.PathLike[str], text: str, what: str) -> Path:
        """Append ``text`` to ``path`` (created if missing) with one write (``O_APPEND``)."""
        target = self.plan(path, what)
        data = text.encode("utf-8")
        try:
            descriptor = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                written = os.write(descriptor, data)
                while written < len(data):  # only on odd file systems; keep the text whole
                    written += os.write(descriptor, data[written:])
            finally:
                os.close(descriptor)
        except OSError as exc:
            raise OutputWriteError(
                f"cannot append to {what} {target}: {exc.strerror or exc}",
                hint="check the path",
            ) from None
        return target

    def save_model(
        self,
        model: onnx.ModelProto,
        path: str | os.PathLike[str],
        *,
        external_data: bool = False,
        base_dir: Path | None = None,
        replaces_input: bool = False,
        before_commit: Callable[[Path], None] | None = None,
    ) -> list[Path]:
        """Write ``model`` to ``path`` and its data beside it in one commit; see the module doc.

        With ``external_data`` (or when the model is too large for one protobuf), tensors of
        ``EXTERNAL_THRESHOLD_BYTES`` or more go to a data file beside it. Tensors still
        referenced in their source files (``base_dir``) are copied from there in chunks.
        ``before_commit(staged_model)`` may check the complete staged model (its data beside
        it); if it raises, nothing is written. Returns the files written (data first).
        """
        target = self.plan(path, "output", replaces_input=replaces_input)
        needs_external = (
            external_data or lazyio.estimated_size(model, base_dir) > PROTOBUF_LIMIT - 2**24
        )
        taken = [path for path, _ in self.planned]
        data_path = free_data_path(target, taken) if needs_external else None
        if data_path is not None:
            self.plan(data_path, "output data", replaces_input=replaces_input)
        with _staging(target) as staging:
            staged_model = staging / target.name
            staged_data = staging / data_path.name if data_path else None
            _write_staged(model, staged_model, staged_data, base_dir)
            kill_point("staged")
            if before_commit is not None:
                before_commit(staged_model)
            for staged in (staged_data, staged_model):
                if staged is not None:
                    fsync(staged)
            obsolete = self._obsolete_data(target, data_path, replaces_input)
            new = []
            if staged_data is not None and data_path is not None:
                info = staged_data.stat()
                new.append([data_path.name, info.st_dev, info.st_ino])
            write_record(staging, {"target": target.name, "new": new, "obsolete": obsolete})
            kill_point("recorded")
            written = []
            # Ctrl-C waits until the model is committed and the old data removed (SIGKILL
            # cannot be held back: the next run finishes the job from commit.json).
            with sigint_deferred():
                if staged_data is not None and data_path is not None:
                    _place_new(staged_data, data_path)
                    written.append(data_path)
                    kill_point("data-placed")
                os.replace(staged_model, target)  # the commit point
                written.append(target)
                kill_point("committed")
                parent = target.parent if str(target.parent) else Path(".")
                fsync_folder(parent)
                for name in obsolete:
                    # Best effort: the new model is in place; a file that cannot be removed
                    # is only an unused leftover, not a failed write.
                    with contextlib.suppress(OSError):
                        (parent / name).unlink()
                kill_point("old-data-removed")
        return written

    def _obsolete_data(
        self, target: Path, new_data: Path | None, replaces_input: bool
    ) -> list[str]:
        """Data files of the model now at ``target`` that the new one no longer needs.

        Only files named after the target (``<name>.data``, ``<name>.<n>.data``: a data file
        under another name may be shared with other models) and, unless the input itself is
        replaced, none this command reads.
        """
        obsolete = []
        for location in data_locations(target):
            if not _data_name_pattern(target.name).fullmatch(location):
                continue
            if new_data is not None and location == new_data.name:
                continue
            path = target.parent / location
            if not replaces_input and any(aliases(path, source) for source, _ in self.reads):
                continue
            obsolete.append(location)
        return obsolete


def _data_name_pattern(model_name: str) -> re.Pattern[str]:
    """``<name>.data`` or ``<name>.<n>.data``: the data file names bnfold gives ``<name>``."""
    return re.compile(re.escape(model_name) + r"(\.\d+)?\.data")


def free_data_path(output: Path, taken: Iterable[Path] = ()) -> Path:
    """The data file name for ``output``: ``<name>.data``, else the first free ``<name>.<n>.data``.

    A name no file has (and no other output of the command will have: ``taken``), so placing
    the new data never replaces a file an existing model (the old output, the input of
    ``--in-place``) still reads.
    """
    taken = list(taken)
    candidate = output.with_name(f"{output.name}.data")
    number = 0
    while os.path.lexists(candidate) or any(aliases(candidate, other) for other in taken):
        number += 1
        candidate = output.with_name(f"{output.name}.{number}.data")
    return candidate


def _place_new(staged: Path, final: Path) -> None:
    """Give ``staged`` the name ``final``, which must not exist (never replace a file)."""
    try:
        os.link(staged, final)  # exclusive: EEXIST if another process took the name
    except FileExistsError:
        raise OutputWriteError(
            f"{final} appeared while bnfold was writing (another process?); nothing was written",
            hint="run it again",
        ) from None
    except OSError:
        # No hard links here (some network or FAT file systems): a rename, after a last check.
        if os.path.lexists(final):
            raise OutputWriteError(
                f"{final} appeared while bnfold was writing; nothing was written",
                hint="run it again",
            ) from None
        os.replace(staged, final)


def _staging(target: Path) -> contextlib.AbstractContextManager[Path]:
    """A staging folder beside ``target``; dead runs' folders there are cleaned up first."""
    return staging_folder(target, cleanup=_finish_dead_commit)


def _write_staged(
    model: onnx.ModelProto, staged_model: Path, staged_data: Path | None, base_dir: Path | None
) -> None:
    with open(staged_model, "wb") as handle:
        if staged_data is None:
            streamwrite.write_model(model, handle, base_dir)
            return
        with open(staged_data, "wb") as data_handle:
            streamwrite.write_model(
                model,
                handle,
                base_dir,
                data_handle=data_handle,
                data_location=staged_data.name,
                external_threshold=EXTERNAL_THRESHOLD_BYTES,
            )


def _finish_dead_commit(staging: Path, record: dict[str, object]) -> None:
    """Undo or complete what a killed ``save_model`` left outside its staging folder.

    Whichever model is now at the target decides: a new data file it does not refer to is
    removed (only if it is still the very file the dead run placed: same inode), and so is an
    obsolete data file it no longer refers to.
    """
    parent = staging.parent
    target = parent / str(record["target"])
    in_use = set(data_locations(target))
    new = record.get("new") or []
    obsolete = record.get("obsolete") or []
    assert isinstance(new, list) and isinstance(obsolete, list)
    for name, device, inode in new:
        path = parent / str(name)
        with contextlib.suppress(OSError):
            info = path.stat(follow_symlinks=False)
            if name not in in_use and (info.st_dev, info.st_ino) == (device, inode):
                path.unlink()
    for name in obsolete:
        if str(name) not in in_use:
            with contextlib.suppress(FileNotFoundError):
                (parent / str(name)).unlink()


def _other_path(what: str, overwritten: str) -> str:
    if what == "output" and overwritten == "the input model":
        return "choose another -o path, or pass --in-place to replace the input"
    if what.startswith("output"):
        return "choose another -o path"
    if what.startswith("-"):
        return f"give {what.split()[0]} another path"
    return "choose another path"


def check_writable_target(path: Path, *, what: str) -> None:
    """``path`` names a file that can be created: its folder exists and is writable."""
    parent = path.parent if str(path.parent) else Path(".")
    option = "-o" if what == "output" else what.split()[0]
    what = what.removesuffix(" file")  # "--report folder does not exist"
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


__all__ = [
    "COMMIT_STEPS",
    "EXTERNAL_THRESHOLD_BYTES",
    "Outputs",
    "aliases",
    "check_writable_target",
    "data_locations",
    "free_data_path",
    "model_files",
    "write_error",
]
