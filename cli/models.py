"""``upsampler models`` (what can be loaded) and ``upsampler info MODEL`` (what a model is)."""

from __future__ import annotations

import typer

# What --model accepts besides the built-in names, for `upsampler models`.
OTHER_SOURCES = (
    ("FOLDER", "a save_pretrained folder (config.json + safetensors): upsampler export, train"),
    ("AURASR_FOLDER", "AuraSR's config.json + model.safetensors (fal/AuraSR, fal/AuraSR-v2)"),
    (
        "FILE.safetensors|.pth",
        "a community checkpoint through spandrel: ESRGAN/Real-ESRGAN, SwinIR, HAT, DAT, SPAN, ...",
    ),
    ("owner/repo", "a Hub repository of either folder kind (cached ones load offline)"),
    ("owner/repo/FILE", "one checkpoint file in a Hub repository"),
)


def models() -> None:
    """List the built-in models and the other kinds of model --model accepts."""
    from upsampler.models.registry import BUILTIN_MODELS, is_available

    typer.echo("built-in (inside the package, offline):")
    width = max(len(name) for name in BUILTIN_MODELS)
    for name, model in BUILTIN_MODELS.items():
        state = "" if is_available(name) else "  [weights not shipped in this release]"
        text = "text" if model.text_conditioning else "no text"
        typer.echo(
            f"  {name:<{width}}  {model.scale}x, {model.preset}, {text}: {model.description}{state}"
        )
    typer.echo("\nalso accepted by --model (see docs/models.md):")
    width = max(len(kind) for kind, _ in OTHER_SOURCES)
    for kind, what in OTHER_SOURCES:
        typer.echo(f"  {kind:<{width}}  {what}")


def info(
    model: str = typer.Argument(
        ..., help="Built-in name, model folder, checkpoint file or Hub id."
    ),
    revision: str | None = typer.Option(
        None, "--revision", help="Hub branch, tag or commit (Hub ids only)."
    ),
) -> None:
    """Print what a model is: architecture, scale, parameters, size rule, precisions, text."""
    from upsampler.models.loading import describe, load_model

    try:
        loaded = load_model(model, revision=revision)
    except (ImportError, OSError, ValueError, RuntimeError) as error:
        # ModelUnavailableError is a RuntimeError, CheckpointError a ValueError
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from error
    facts = describe(loaded)
    size_rule = f"multiple of {facts['size_multiple']}, at least {facts['min_size']} px"
    source = getattr(loaded, "source", "") or model
    rows = (
        ("model", model),
        ("source", source),
        ("architecture", facts["architecture"]),
        ("scale", f"{facts['scale']}x"),
        ("parameters", "unknown" if facts["parameters"] is None else f"{facts['parameters']:,}"),
        ("input size", f"{size_rule} (the engine pads tiles to fit)"),
        ("precisions", ", ".join(facts["dtypes"])),
        ("text", "text-conditioned" if facts["text_conditioning"] else "unconditional"),
        ("style noise z", "yes (--seed)" if facts["style_noise"] else "no (deterministic)"),
    )
    for label, value in rows:
        typer.echo(f"{label:<13} {value}")
