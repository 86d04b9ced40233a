"""``upsampler train`` and ``upsampler export``."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer


def train(
    recipe: Path = typer.Argument(..., help="TOML recipe (see recipes/)."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue the run in train.output_dir from its latest checkpoint. Without it the "
        "folder must be new or empty.",
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

    One CPU or GPU: `upsampler train recipes/nano-4x.toml`.
    Several GPUs or nodes: `accelerate launch -m upsampler_cli.app train RECIPE` (or torchrun).

    Checkpoints, samples, metrics.jsonl, run.json and the resolved recipe go to train.output_dir
    (and, with train.log_with = "tensorboard" etc., the trackers' files to its logs/ folder).
    That folder must be new or empty, unless --resume continues the run in it.

    Ctrl-C stops with a summary and loses at most train.checkpoint_every steps.
    --resume continues exactly where the last checkpoint left off.

    Exit codes: 0 done; 1 stopped (Ctrl-C, a non-finite loss, a full disk);
    2 a recipe, data or run folder that cannot be trained.
    """
    from tqdm import tqdm

    from upsampler.data import DataError
    from upsampler.text.base import TextEncoderUnavailableError
    from upsampler.training.recipe import RecipeError, load_recipe
    from upsampler.training.trainer import OutputWriteError, Trainer, TrainingDivergedError

    given = list(overrides)
    overrides = given + ([f'train.output_dir="{output_dir.as_posix()}"'] if output_dir else [])
    try:
        parsed = load_recipe(recipe, overrides)
        trainer = Trainer(parsed, resume=resume)
    except (
        RecipeError,
        DataError,
        FileNotFoundError,
        FileExistsError,  # a run folder already in use
        TextEncoderUnavailableError,
    ) as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from error
    except KeyboardInterrupt:
        typer.secho("interrupted before training started; nothing was written", err=True)
        raise typer.Exit(1) from None

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
    except (TrainingDivergedError, OutputWriteError) as error:
        bar.close()
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from error
    except KeyboardInterrupt:
        bar.close()
        if trainer.is_main:
            resume_command = shlex.join(
                ["upsampler", "train", str(recipe), *(f"--set={o}" for o in given)]
                + ["--resume", "-o", parsed.train.output_dir]
            )
            typer.secho(_interrupted(trainer, resume_command), fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(1) from None
    bar.close()
    if trainer.is_main:
        typer.echo(f"done: {final}")
        typer.echo(
            f"export a release with: upsampler export {parsed.train.output_dir} -o MODEL_DIR"
        )


def _interrupted(trainer, resume_command: str) -> str:
    """What Ctrl-C kept, what it lost, and how to go on."""
    from upsampler.training.checkpoints import checkpoint_step, latest_checkpoint

    steps = trainer.recipe.train.steps
    lines = [f"interrupted: {trainer.step} of {steps} steps done"]
    last = latest_checkpoint(trainer.run_dir)
    if last is None:
        lines.append("no checkpoint was written yet, so no step is kept")
    else:
        done = checkpoint_step(last)
        lost = trainer.step - done
        lines.append(f"last checkpoint: {last} (step {done})")
        if lost > 0:
            lines.append(f"lost: the {lost} step{'s' if lost > 1 else ''} since it")
    lines.append(f"resume with: {resume_command}")
    return "\n".join(lines)


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
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Allow an output folder that is not empty: replace its config.json and "
        "diffusion_pytorch_model.safetensors, keep every other file. Never allowed for the run "
        "or checkpoint folder itself, a folder inside it or one that contains it.",
    ),
) -> None:
    """Write a slim release (the EMA generator only) that Upscaler.from_pretrained loads.

    The output folder must be new or empty unless --overwrite; nothing is ever deleted.

    Exit codes: 2 no checkpoint, or an output folder that is refused;
    1 the files could not be written (a full disk).
    """
    from safetensors import SafetensorError

    from upsampler.training.checkpoints import export_release

    try:
        folder = export_release(run, output, fp16=fp16, overwrite=overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as error:  # no checkpoint, refused
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from error
    except (OSError, RuntimeError, SafetensorError) as error:  # a full disk, permissions
        reason = getattr(error, "strerror", None) or str(error)
        typer.secho(
            f"error: could not write the release to {output}: {reason}; no file there was replaced",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1) from error
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 2**20
    typer.echo(f"wrote {folder} ({size:.1f} MiB)")
