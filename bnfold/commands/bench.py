"""`bnfold bench` (placeholder until its issue lands)."""

from __future__ import annotations

import click


@click.command(name="bench")
def command() -> None:
    """Not implemented yet."""
    raise click.ClickException("bnfold bench is not implemented yet")
