"""What several commands share: the usage error (exit status 2) and the ``--text-encoder``
option's loader."""

from __future__ import annotations

from typing import NoReturn

import typer


def usage_error(message: str) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with status 2 (a usage error)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def text_encoder_from_option(spec: str | None, weights: str | None):
    """The text encoder that ``--text-encoder BACKEND:NAME`` and ``--text-weights`` name, or None
    without one; a malformed option or an encoder that cannot load is a usage error."""
    from upsampler.text import load_text_encoder

    if spec is None:
        return None
    backend, _, name = spec.partition(":")
    if not name:
        usage_error(f"--text-encoder must be BACKEND:NAME (e.g. open_clip:ViT-B-32), got {spec!r}")
    try:
        return load_text_encoder(backend, name, weights)
    except Exception as error:  # unavailable weights, unknown backend: say so and stop
        usage_error(f"cannot load text encoder {spec!r}: {error}")
