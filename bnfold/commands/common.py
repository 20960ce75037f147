"""Options and rendering helpers shared by the commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from rich.console import Console


def stdout_console(quiet: bool = False) -> Console:
    """A console for the human-readable report (plain text when not a terminal)."""
    return Console(quiet=quiet, soft_wrap=False, width=None if sys.stdout.isatty() else 160)


def append_github_summary(markdown: str) -> None:
    """Append ``markdown`` to the GitHub Actions job summary when running there."""
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(markdown + "\n")


def write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


existing_model = click.Path(exists=False, dir_okay=True, path_type=Path)
