"""``upsampler train`` and ``upsampler export``."""

from __future__ import annotations

from pathlib import Path

import typer

from upsampler.data import DataError
from upsampler.text.base import TextEncoderUnavailableError
from upsampler.training.recipe import RecipeError, load_recipe


def train(
    recipe: Path = typer.Argument(..., help="TOML recipe (see recipes/)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the latest checkpoint in train.output_dir."
    ),
    overrides: list[str] = typer.Option(
        [],
        "--set",
        help="Override a recipe value, e.g. --set train.steps=200 --set data.path=photos (repeatable).",
    ),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", "-o", help="Shortcut for --set train.output_dir=..."
    ),
) -> None:
    """Train an upsampler from a recipe.

    One CPU or GPU: `upsampler train recipes/nano-4x.toml`. Several GPUs or nodes:
    `accelerate launch -m upsampler_cli.app train RECIPE` (or torchrun). Checkpoints, samples,
    metrics.jsonl and the resolved recipe go to train.output_dir; interrupting loses at most
    train.checkpoint_every steps, and --resume continues exactly where the last checkpoint left off.
    """
    from tqdm import tqdm

    from upsampler.training.trainer import Trainer, TrainingDivergedError

    overrides = list(overrides) + (
        [f'train.output_dir="{output_dir.as_posix()}"'] if output_dir else []
    )
    try:
        parsed = load_recipe(recipe, overrides)
        trainer = Trainer(parsed, resume=resume)
    except (RecipeError, DataError, FileNotFoundError, TextEncoderUnavailableError) as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from error

    bar = tqdm(
        total=parsed.train.steps,
        initial=trainer.step,
        unit="step",
        disable=not trainer.is_main,
        dynamic_ncols=True,
    )
    shown = ("g_loss", "d_loss", "reconstruction", "lpips")

    def progress(step: int, logs: dict) -> None:
        bar.update(step - bar.n)
        bar.set_postfix({k: f"{logs[k]:.4f}" for k in shown if k in logs}, refresh=False)

    trainer.progress = progress
    try:
        final = trainer.train()
    except TrainingDivergedError as error:
        bar.close()
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from error
    bar.close()
    if trainer.is_main:
        typer.echo(f"done: {final}")
        typer.echo(
            f"export a release with: upsampler export {parsed.train.output_dir} -o MODEL_DIR"
        )


def export(
    run: Path = typer.Argument(
        ..., help="A run folder (its latest checkpoint is used) or one checkpoint folder."
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Folder for the release (config.json + safetensors)."
    ),
    fp16: bool = typer.Option(
        False, "--fp16", help="Store the weights in half precision (half the size)."
    ),
) -> None:
    """Write a slim release (the EMA generator only) that Upscaler.from_pretrained loads."""
    from upsampler.training.checkpoints import export_release

    try:
        folder = export_release(run, output, fp16=fp16)
    except FileNotFoundError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from error
    size = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    typer.echo(f"wrote {folder} ({size:.1f} MiB)")
