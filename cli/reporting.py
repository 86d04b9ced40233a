"""Closing reports shared by the batch commands."""

from __future__ import annotations

from collections.abc import Sequence

import typer


def exit_on_failures(failures: Sequence[tuple[object, str]]) -> None:
    """List every failed input with its reason on stderr and exit with status 1; no-op if none."""
    if not failures:
        return
    typer.secho(f"{len(failures)} input(s) failed:", fg=typer.colors.RED, err=True)
    for source, reason in failures:
        typer.secho(f"  {source}: {reason}", err=True)
    raise typer.Exit(1)
