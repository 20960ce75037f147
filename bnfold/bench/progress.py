"""Progress reporting for long benchmarks, kept out of the timed region.

``bench()`` talks to a ``ProgressSink``; the CLI passes a ``RichProgress`` when stderr is a
terminal and ``--quiet`` is off. The rich bar is refreshed by hand (``auto_refresh=False``)
and at most every ``REFRESH_S`` seconds, so no background thread competes for the CPU and
the GIL while the models are being timed.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Protocol

REFRESH_S = 0.1


class ProgressSink(Protocol):
    def begin(self, label: str, total: float, unit: str) -> None:
        """A new setting starts; ``total`` rounds (``unit='rounds'``) or seconds (``'s'``)."""

    def update(self, completed: float) -> None:
        """``completed`` rounds or seconds of the current setting are done."""

    def end(self) -> None:
        """The current setting is done."""


class RichProgress:
    """A rich progress bar on stderr, one task per setting."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            auto_refresh=False,
            transient=True,
        )
        self._task: Any = None
        self._last_refresh = 0.0

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._progress.stop()

    def begin(self, label: str, total: float, unit: str) -> None:
        self._task = self._progress.add_task(f"{label} ({unit})", total=total)
        self._refresh(force=True)

    def update(self, completed: float) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=completed)
            self._refresh()

    def end(self) -> None:
        if self._task is not None:
            task = self._progress.tasks[-1]
            self._progress.update(self._task, completed=task.total)
            self._refresh(force=True)
            self._progress.remove_task(self._task)
            self._task = None

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_refresh >= REFRESH_S:
            self._progress.refresh()
            self._last_refresh = now
