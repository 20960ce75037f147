"""Private staging folders beside a target, and the clean-up of those a killed run left.

Every write happens in a folder ``.<target name>.<owner>.<random>.bnfold-tmp`` beside the
target (same file system, so the final ``os.replace`` is atomic). ``<owner>`` is
``<host id>-<pid>``: the host id hashes the host name and the PID namespace, so a run can tell
that a folder belongs to a process on this machine (and in this container) that no longer
exists. Such folders (SIGKILL, OOM killer, power cut) are removed by the next run that stages
beside them, together with the files their commit record (``commit.json``, see
``bnfold.storage.outputs``) says the dead run may have left outside the folder.

``kill_point(name)`` is test-only fault injection: when ``BNFOLD_TEST_KILL_AT`` names the
step, the process SIGKILLs itself there, so tests can kill a commit at every step without
relying on timing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import OutputWriteError

TEMP_SUFFIX = ".bnfold-tmp"
RECORD_NAME = "commit.json"
KILL_ENV = "BNFOLD_TEST_KILL_AT"
_OWNED = re.compile(r"\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.[^.]+" + re.escape(TEMP_SUFFIX) + "$")


def kill_point(name: str) -> None:
    """Test-only: SIGKILL this process at step ``name`` when ``BNFOLD_TEST_KILL_AT=name``."""
    if os.environ.get(KILL_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _host_id() -> str:
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    node = os.uname().nodename if hasattr(os, "uname") else ""
    # crc32 is enough to tell hosts apart here; hashlib would cost start-up time.
    return f"{zlib.crc32((node + chr(0) + namespace).encode()):08x}"


def owner_tag() -> str:
    """``<host id>-<pid>``: who made a staging folder."""
    return f"{_host_id()}-{os.getpid()}"


@contextlib.contextmanager
def staging_folder(
    target: Path, *, cleanup: Callable[[Path, dict[str, object]], None] | None = None
) -> Iterator[Path]:
    """A private folder beside ``target``, always removed; OSError becomes OutputWriteError.

    Folders of dead runs beside ``target`` are removed first; ``cleanup(folder, record)`` is
    called for each one that holds a commit record.
    """
    parent = target.parent if str(target.parent) else Path(".")
    remove_stale(parent, cleanup)
    # Ctrl-C is held back while the folder is made and while it is removed: a KeyboardInterrupt
    # between mkdtemp and the try, or in the middle of rmtree, would leave it behind.
    with sigint_deferred():
        try:
            staging = Path(
                tempfile.mkdtemp(
                    prefix=f".{target.name}.{owner_tag()}.", suffix=TEMP_SUFFIX, dir=parent
                )
            )
        except OSError as exc:
            raise write_error(exc, target) from None
    try:
        yield staging
    except OSError as exc:
        raise write_error(exc, target) from None
    finally:
        with sigint_deferred():
            shutil.rmtree(staging, ignore_errors=True)


def remove_stale(
    parent: Path, cleanup: Callable[[Path, dict[str, object]], None] | None = None
) -> list[Path]:
    """Remove staging folders in ``parent`` whose process is gone; return what was removed.

    Only folders made on this host and PID namespace by a process that no longer exists:
    another machine's or container's folder, or a live process's, is never touched.
    """
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return []
    removed = []
    host = _host_id()
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    for entry in entries:
        match = _OWNED.search(entry.name)
        if match is None or match["host"] != host or not entry.is_dir(follow_symlinks=False):
            continue
        if _process_exists(int(match["pid"])):
            continue
        folder = Path(entry.path)
        record = read_record(folder)
        if record is not None and cleanup is not None:
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                cleanup(folder, record)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def write_record(staging: Path, record: dict[str, object]) -> None:
    """Write the commit record durably before any file outside ``staging`` is touched."""
    path = staging / RECORD_NAME
    partial = staging / (RECORD_NAME + ".partial")
    partial.write_text(json.dumps(record), encoding="utf-8")
    fsync(partial)
    os.replace(partial, path)
    fsync_folder(staging)


def read_record(staging: Path) -> dict[str, object] | None:
    try:
        data = json.loads((staging / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_error(exc: OSError, target: Path) -> OutputWriteError:
    """The one-line error (exit 6) for an OSError while writing ``target``."""
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
def sigint_deferred() -> Iterator[None]:
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


def fsync(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        os.fsync(handle.fileno())


def fsync_folder(folder: Path) -> None:
    """Make renames durable (a no-op where folders cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
