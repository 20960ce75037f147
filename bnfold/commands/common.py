"""Rendering helpers and the report files every command writes (through ``bnfold.storage.outputs``)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from ..storage.outputs import Outputs

SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


def output_width() -> int:
    """The one width rule of every command: ``$COLUMNS`` if set, else the terminal's, else 80.

    Piped output is laid out like an 80-column terminal, so a log reads as the screen did.
    """
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        try:
            return os.get_terminal_size(sys.stdout.fileno()).columns or 80
        except (OSError, ValueError):
            return 80
    return 80


def stdout_console(quiet: bool = False, **options: Any) -> Console:
    """A console for the human-readable report, ``output_width()`` columns wide.

    Tables fit the width; a one-line message (``wrote PATH``) stays one line, whole, so a
    path can be copied; the reports wrap their prose themselves (``soft_wrap=False``).
    """
    return _ReportConsole(quiet=quiet, soft_wrap=True, width=output_width(), **options)


# The spinners running now (``progress_status``): a report line must not land after one's text.
_SPINNERS: list[Any] = []


class _ReportConsole(Console):
    """A ``Console`` that clears a running spinner (on stderr, the same terminal) before it
    prints and draws it again after, so no line starts after the spinner's text."""

    def print(self, *objects: Any, **options: Any) -> None:
        if not _SPINNERS:
            super().print(*objects, **options)
            return
        spinner = _SPINNERS[-1]
        spinner.stop()
        try:
            super().print(*objects, **options)
        finally:
            spinner.start()


class ReportFiles:
    """``--report``, ``--markdown`` and the ``GITHUB_STEP_SUMMARY`` append of one command.

    Every path is planned (checked against the files the command reads, exit 2; and for a
    usable folder, exit 6) when this is made, before the command does any work.
    """

    def __init__(
        self,
        outputs: Outputs,
        report_path: Path | None = None,
        markdown_path: Path | None = None,
        *,
        summary: bool = True,
    ) -> None:
        self.outputs = outputs
        self.report_path = report_path
        self.markdown_path = markdown_path
        self.summary_path = Path(os.environ[SUMMARY_ENV]) if os.environ.get(SUMMARY_ENV) else None
        if not summary:
            self.summary_path = None
        for path, what in self._targets():
            outputs.plan(path, what)

    def _targets(self) -> list[tuple[Path, str]]:
        targets = [
            (self.report_path, "--report file"),
            (self.markdown_path, "--markdown file"),
            (self.summary_path, f"{SUMMARY_ENV} file"),
        ]
        return [(path, what) for path, what in targets if path is not None]

    def write(self, json_text: str, markdown: str) -> None:
        """Write the JSON and Markdown reports atomically; append the Markdown to the summary."""
        if self.report_path is not None:
            self.outputs.write_text(self.report_path, json_text, "--report file")
        if self.markdown_path is not None:
            self.outputs.write_text(self.markdown_path, markdown, "--markdown file")
        if self.summary_path is not None:
            self.outputs.append(self.summary_path, markdown + "\n", f"{SUMMARY_ENV} file")


@dataclass(frozen=True)
class ReportPaths:
    """``--report`` and ``--markdown`` as given (``report_options`` builds it)."""

    report_path: Path | None = None
    markdown_path: Path | None = None

    def files(self, outputs: Outputs, *, summary: bool = True) -> ReportFiles:
        """The report files, planned against what ``outputs`` reads (see ``ReportFiles``)."""
        return ReportFiles(outputs, self.report_path, self.markdown_path, summary=summary)


@contextlib.contextmanager
def progress_status(enabled: bool) -> Iterator[Callable[[str], None]]:
    """A spinner line on stderr for steps that take more than a moment (large models).

    Yields a function that sets its text. Off (a no-op) when stderr is not a terminal, so
    logs and pipelines stay clean.
    """
    if not enabled:
        yield lambda text: None
        return
    with Console(stderr=True).status("") as status:
        _SPINNERS.append(status)
        try:
            yield status.update
        finally:
            _SPINNERS.remove(status)
