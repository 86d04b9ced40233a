"""``upsampler presets``: the generator presets with their sizes."""

from __future__ import annotations

import typer


def presets(
    scale: int = typer.Option(
        4, "--scale", help="Upscaling factor the counts are given for (2, 4 or 8)."
    ),
    text: bool = typer.Option(
        False,
        "--text/--no-text",
        help="Count the text-conditioned variant instead of the unconditional one.",
    ),
) -> None:
    """List the generator presets with their parameter counts."""
    from upsampler.models.generator import SUPPORTED_SCALES, GigaGANUpsampler

    if scale not in SUPPORTED_SCALES:
        choices = ", ".join(map(str, SUPPORTED_SCALES))
        raise typer.BadParameter(f"must be one of {choices}, got {scale}", param_hint="--scale")
    typer.echo(
        f"{'preset':<8} {'parameters':>14}  (scale {scale}, {'text' if text else 'unconditional'})"
    )
    for name in GigaGANUpsampler.preset_names():
        count = GigaGANUpsampler.preset_parameter_count(name, scale=scale, text_conditioning=text)
        typer.echo(f"{name:<8} {count:>14,}")
