"""``upsampler convert``: turn other projects' checkpoints into our ``save_pretrained`` folders.

    upsampler convert aurasr models/AuraSR -o models/aurasr-ours
    upsampler convert aurasr models/AuraSR/model.safetensors -o models/aurasr-ours

The output folder is what ``GigaGANUpsampler.save_pretrained`` writes for our own models
(``config.json`` + ``diffusion_pytorch_model.safetensors``), so ``Upscaler.from_pretrained`` and
``upsampler upscale --model`` load it like any other.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Convert other projects' upsampler checkpoints into model folders of ours.",
    no_args_is_help=True,
)


@app.command(
    "aurasr",
    epilog="Only safetensors weights are read, never the pickled model.ckpt. Files are written "
    "to a hidden folder inside OUTPUT and renamed into place, config.json last, so an "
    "interrupted run leaves no half-written model. OUTPUT must be new or empty unless "
    "--overwrite, and may never be, be inside or contain the AuraSR folder. Exit code 2: "
    "missing or malformed files, or a refused output folder.",
)
def aurasr(
    source: Path = typer.Argument(
        ...,
        help="AuraSR folder (config.json + model.safetensors, as published as fal/AuraSR and "
        "fal/AuraSR-v2) or its model.safetensors file, with config.json beside it.",
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Folder to write (created; nothing is written outside it)."
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Allow an output folder that is not empty: replace its config.json and "
        "diffusion_pytorch_model.safetensors, keep every other file.",
    ),
) -> None:
    """Convert AuraSR weights (v1 or v2) into a model folder of ours, checking every tensor."""
    from upsampler.models.aurasr_checkpoint import convert_aurasr

    try:
        folder = convert_aurasr(source, output, overwrite=overwrite)
    except (OSError, ValueError) as error:  # missing/bad files, existing output
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from error
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 2**20
    typer.echo(f"wrote {folder} ({size:.1f} MiB): load it with --model {folder}")
