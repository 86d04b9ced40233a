"""``upsampler eval``: PSNR, SSIM and LPIPS of models beside bicubic and Lanczos."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from upsampler.degradations.presets import PRESETS
from upsampler.io.formats import DEFAULT_MAX_PIXELS
from upsampler_cli.reporting import exit_on_failures


def eval_command(
    data_dir: Path = typer.Argument(..., help="Folder of high-resolution images (recursive)."),
    models: list[str] = typer.Option(
        [],
        "--model",
        "-m",
        help="Built-in name, model folder, checkpoint file (.safetensors/.pth, through "
        "spandrel) or Hub id, run through the tiled engine (repeat to compare several).",
    ),
    revision: str | None = typer.Option(
        None, "--revision", help="Hub branch, tag or commit of the Hub ids given with -m."
    ),
    baselines: list[Path] = typer.Option(
        [],
        "--baseline",
        help="A checkpoint file (.safetensors or .pth state dict, through spandrel) run on each "
        "whole image at once, as its own project runs it, e.g. RealESRGAN_x4plus.pth "
        "(repeatable).",
    ),
    degradation: str = typer.Option(
        "bicubic",
        "--degradation",
        "-d",
        help=f"Degradation preset: {', '.join(PRESETS)}.",
    ),
    scale: int = typer.Option(
        4,
        "--scale",
        "-s",
        help="Upscaling factor. A model of another factor runs as `upscale --scale` runs it "
        "(8 with a 4x model: two passes, then a 2x reduction), and its row says so.",
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the degradations and of the models' z (same seed, same numbers)."
    ),
    limit: int | None = typer.Option(None, "--limit", help="Evaluate only the first N images."),
    json_path: Path | None = typer.Option(
        None, "--json", help="Also write every number (means and per image) to this JSON file."
    ),
    lpips_net: str = typer.Option("alex", "--lpips-net", help="LPIPS trunk: alex or vgg."),
    lpips_dir: Path | None = typer.Option(
        None, "--lpips-dir", help="LPIPS weights folder (default: as `upsampler prepare-lpips`)."
    ),
    crop_border: int | None = typer.Option(
        None,
        "--crop-border",
        help="Pixels dropped from every edge before scoring (default: scale).",
    ),
    rgb: bool = typer.Option(
        False, "--rgb", help="PSNR/SSIM on RGB instead of the luma channel Y (the SR convention)."
    ),
    markdown: bool = typer.Option(False, "--markdown", help="Print the table as Markdown."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1 or mps."),
    max_pixels: int = typer.Option(
        DEFAULT_MAX_PIXELS,
        "--max-pixels",
        help="Skip (and report) images larger than this many pixels: a guard against "
        "decompression bombs; raise it for very large photos.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Score models beside bicubic and Lanczos: PSNR, SSIM, LPIPS and seconds per image.

    Every method gets the very same inputs: each image of DATA_DIR is cropped to a multiple
    of the scale and degraded once with a seeded preset. Needs real LPIPS weights
    (`upsampler prepare-lpips`).
    """
    from tqdm import tqdm

    from upsampler.evaluation import (
        evaluate,
        format_table,
        interpolation_method,
        spandrel_method,
        upscaler_method,
    )
    from upsampler.inference.devices import resolve_device
    from upsampler.models.registry import ModelUnavailableError
    from upsampler.models.spandrel_model import SpandrelUnavailableError

    def fail(error: BaseException) -> typer.Exit:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        return typer.Exit(2)

    try:
        if degradation not in PRESETS:
            raise ValueError(
                f"unknown degradation {degradation!r}; expected one of {', '.join(PRESETS)}"
            )
        if scale < 1:
            raise ValueError(f"--scale must be >= 1, got {scale}")
        resolved = resolve_device(device)
        methods = [interpolation_method("bicubic", scale), interpolation_method("lanczos", scale)]
        for model in models:
            methods.append(
                upscaler_method(model, scale=scale, seed=seed, device=resolved, revision=revision)
            )
        for baseline in baselines:
            methods.append(spandrel_method(baseline, scale=scale, device=resolved))
        names = [method.name for method in methods]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(
                f"two methods are called {', '.join(duplicates)}: give the models or baseline files "
                "with different names"
            )
    except (ValueError, OSError, ModelUnavailableError, SpandrelUnavailableError) as error:
        raise fail(error) from error

    bar = None  # made at the first image, when the count is known

    def on_image(index: int, total: int, name: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(
                total=total, unit="image", dynamic_ncols=True, leave=False, disable=not progress
            )
        bar.set_postfix_str(name, refresh=False)
        bar.update(1)

    def close_bar() -> None:
        if bar is not None:
            bar.close()

    try:
        report = evaluate(
            data_dir,
            methods,
            degradation=degradation,
            scale=scale,
            seed=seed,
            limit=limit,
            crop_border=crop_border,
            y_channel=not rgb,
            lpips_net=lpips_net,
            lpips_weights_dir=lpips_dir,
            device=resolved,
            on_image=on_image,
            max_pixels=max_pixels,
        )
    except (ValueError, OSError) as error:  # LPIPSWeightsNotFoundError is a FileNotFoundError
        close_bar()  # before the message, which would otherwise share the bar's line
        raise fail(error) from error
    close_bar()

    channel = "RGB" if rgb else "Y (BT.601)"
    typer.echo(
        f"{len(report.images)} images from {report.data_dir}, {scale}x, degradation "
        f"{degradation} (seed {seed}); PSNR/SSIM on {channel}, LPIPS-{lpips_net} on RGB, "
        f"{report.crop_border} px border cropped; device {resolved}"
    )
    typer.echo(format_table(report, markdown=markdown))
    if json_path is not None:
        from upsampler.io.files import atomic_output

        with atomic_output(json_path) as temporary:
            temporary.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        typer.echo(f"wrote {json_path}")
    # Scores over fewer images than asked for are not what was asked: exit 1, as upscale does.
    exit_on_failures(
        [(image, f"skipped, not scored: {reason}") for image, reason in report.skipped]
    )
