"""`bnfold verify` (placeholder until its issue lands)."""

from __future__ import annotations

import click


@click.command(name="verify")
def command() -> None:
    """Not implemented yet."""
    raise click.ClickException("bnfold verify is not implemented yet")
