"""Threads and CPU placement: what the sessions may use, recorded in every report.

onnxruntime's defaults (one intra-op thread per physical core, worker threads that spin
while waiting for work) are what deployments get, so they stay the default (``None`` here),
with one exception the judge decides: bench turns spinning off (``bench.design``), since it
runs two sessions in turn and the idle one's spinning threads take the timed one's cores.
On a machine shared with other work, spinning threads are a large source of
session-to-session noise, which is why the choice is recorded beside every verdict and can
be set: ``--threads``, ``--inter-threads``, ``--spinning/--no-spinning``, ``--cpus``.

``--cpus`` pins this process (and so the thread pools onnxruntime creates for each new
session, which inherit the creating thread's affinity) with ``os.sched_setaffinity``; the
previous affinity is restored afterwards. Linux only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError


@dataclass(frozen=True)
class Threads:
    """Session threading options; None means onnxruntime's default."""

    intra_op: int | None = None
    inter_op: int | None = None
    spinning: bool | None = None
    cpus: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "intra_op_threads": self.intra_op,
            "inter_op_threads": self.inter_op,
            "spinning": self.spinning,
            "cpus": list(self.cpus) if self.cpus is not None else None,
        }

    def describe(self) -> str:
        """``intra-op threads default, inter-op default, spinning default, all 2 CPUs``."""
        intra = "default" if not self.intra_op else str(self.intra_op)
        inter = "default" if not self.inter_op else str(self.inter_op)
        spin = {None: "default (on)", True: "on", False: "off"}[self.spinning]
        cpus = (
            f"pinned to CPUs {format_cpus(self.cpus)}"
            if self.cpus is not None
            else f"CPUs {format_cpus(usable_cpus())}"
        )
        return f"intra-op threads {intra}, inter-op {inter}, spinning {spin}, {cpus}"


def parse_cpus(text: str | None) -> tuple[int, ...] | None:
    """``'0,2-3'`` -> ``(0, 2, 3)``; None or empty -> None. Raises UsageError."""
    if text is None or not text.strip():
        return None
    cpus: set[int] = set()
    for token in (part.strip() for part in text.split(",")):
        low, _, high = token.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise UsageError(f"--cpus {text!r}: expected CPU numbers such as 0,2-3")
        first, last = int(low), int(high or low)
        if last < first:
            raise UsageError(f"--cpus {text!r}: range {token} runs backwards")
        cpus.update(range(first, last + 1))
    available = usable_cpus()
    if available and not cpus <= set(available):
        raise UsageError(
            f"--cpus {text!r}: this process may only use CPUs {format_cpus(available)}"
        )
    return tuple(sorted(cpus))


def usable_cpus() -> tuple[int, ...]:
    """CPUs this process may run on (empty where the OS cannot say)."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return ()


def format_cpus(cpus: tuple[int, ...] | None) -> str:
    """``(0, 1, 2, 5)`` -> ``0-2,5``."""
    if not cpus:
        return "?"
    parts: list[str] = []
    start = previous = cpus[0]
    for cpu in (*cpus[1:], None):
        if cpu is not None and cpu == previous + 1:
            previous = cpu
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if cpu is not None:
            start = previous = cpu
    return ",".join(parts)


@contextlib.contextmanager
def pinned(cpus: tuple[int, ...] | None) -> Iterator[None]:
    """Run the block with this process pinned to ``cpus`` (no-op for None)."""
    if cpus is None:
        yield
        return
    if not hasattr(os, "sched_setaffinity"):
        raise UsageError("--cpus needs Linux (os.sched_setaffinity)")
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
