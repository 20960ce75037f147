"""What a folder holds, byte for byte: to prove a failed command left nothing behind."""

from __future__ import annotations

import hashlib
from pathlib import Path

# Hashing a multi-GiB sparse file would read gigabytes of zeros: big files are compared by
# size and modification time instead (bnfold never opens an input for writing anyway).
HASH_LIMIT_BYTES = 64 * 2**20


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (hidden ones included) -> a digest of its content."""
    state = {}
    for path in sorted(folder.rglob("*")):
        relative = str(path.relative_to(folder))
        if path.is_symlink():
            state[relative] = f"symlink -> {path.readlink()}"
        elif path.is_dir():
            state[relative] = "folder"
        elif not path.is_file():
            state[relative] = "special file"
        elif path.stat().st_size > HASH_LIMIT_BYTES:
            info = path.stat()
            state[relative] = f"size {info.st_size}, mtime {info.st_mtime_ns}"
        else:
            state[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    """Temporary files bnfold may have left (its staging folders end in ``.bnfold-tmp``)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if "bnfold-tmp" in p.name)
