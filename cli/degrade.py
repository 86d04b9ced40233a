"""``upsampler degrade``: preview what a degradation preset does to your photos."""

from __future__ import annotations

from pathlib import Path

import typer

from upsampler.io.files import atomic_output, find_images
from upsampler.io.formats import TRAINING_MAX_PIXELS
from upsampler_cli.common import usage_error
from upsampler_cli.reporting import exit_on_failures


class _InputError(Exception):
    """An input that cannot be degraded; reported, then skipped."""


def _load_rgb(path: Path, max_pixels: int):
    """The upright 8-bit RGB image of a file, through the guarded decoder (decompression bombs,
    truncated files); _InputError with the reason."""
    from upsampler.io.images import ImageReadError, read_rgb

    try:
        return read_rgb(path, max_pixels=max_pixels)
    except ImageReadError as error:
        raise _InputError(str(error).removeprefix(f"{path}: ")) from error


def _center_crop(image, scale: int):
    width, height = image.size
    if width < scale or height < scale:
        raise _InputError(f"image is {width}x{height}, smaller than the scale {scale}")
    new_width, new_height = width - width % scale, height - height % scale
    left, top = (width - new_width) // 2, (height - new_height) // 2
    return image.crop((left, top, left + new_width, top + new_height))


def _save_png(image, path: Path) -> None:
    with atomic_output(path) as temporary:
        image.save(temporary, format="PNG")


def _load_pipeline(preset: str, scale: int):
    """A preset name, or a TOML file with ``[[degradation.stages]]`` (a training recipe) or
    top-level ``[[stages]]`` tables, or a recipe's ``[degradation] preset = ...``."""
    from upsampler.degradations import DegradationPipeline

    if preset in DegradationPipeline.preset_names() or not preset.lower().endswith(".toml"):
        return DegradationPipeline.from_preset(preset, scale=scale)
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    path = Path(preset)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from error
    table = data.get("degradation", data)
    if table.get("stages"):
        return DegradationPipeline.from_config(table["stages"], scale=scale)
    if "preset" in table:
        return DegradationPipeline.from_preset(table["preset"], scale=scale)
    raise ValueError(f"{path} has no [[degradation.stages]], [[stages]] or degradation.preset")


def _unique_stem(stem: str, used: set[str]) -> str:
    candidate, number = stem, 2
    while candidate in used:
        candidate, number = f"{stem}-{number}", number + 1
    used.add(candidate)
    return candidate


def degrade(
    inputs: list[Path] = typer.Argument(
        ..., help="Image files and/or folders of images (searched recursively)."
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Folder for the outputs (created if missing)."
    ),
    preset: str = typer.Option(
        "realesrgan",
        "--preset",
        help="realesrgan, bicubic or diffusion; or a TOML file of stages, or a recipe (its "
        "degradation table: a preset or stages).",
    ),
    scale: int = typer.Option(
        4, "--scale", min=1, help="Downscaling factor (4 or 8 for our models)."
    ),
    seed: int = typer.Option(
        0, "--seed", help="Input number i (in the order given, folders sorted) uses seed + i."
    ),
    count: int = typer.Option(1, "--count", "-n", min=1, help="Degraded variants per input."),
    sheet: bool = typer.Option(
        False, "--sheet", help="Also write NAME_sheet.png: HQ | each LQ upscaled back (nearest)."
    ),
    device: str = typer.Option("cpu", "--device", help="Torch device to degrade on (cpu, cuda)."),
    max_pixels: int = typer.Option(
        TRAINING_MAX_PIXELS,
        "--max-pixels",
        min=1,
        help="Refuse inputs with more pixels than this (decompression-bomb guard).",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Degrade photos the way training will, to see what a model learns from.

    Writes NAME_lq0.png, NAME_lq1.png, ... (--count of them) per input into OUTPUT, each
    atomically.

    With --sheet also NAME_sheet.png: the HQ image beside each LQ upscaled back (nearest).

    An input whose width or height is not a multiple of --scale is center-cropped down to a multiple.

    Folders are searched recursively for image files (hidden ones skipped, the output folder
    too). Unreadable or corrupt images, and images over --max-pixels, are reported and skipped,
    and the exit code is then 1.
    """
    import numpy as np
    import torch
    from PIL import Image
    from tqdm import tqdm

    try:
        pipeline = _load_pipeline(preset, scale)
    except ValueError as error:
        usage_error(f"--preset: {error}")
    try:
        torch_device = torch.device(device)
        torch.empty(0, device=torch_device)
    except (RuntimeError, AssertionError) as error:
        usage_error(f"--device: {device!r} is not available: {error}")
    if output.exists() and not output.is_dir():
        usage_error(f"--output: {output} exists and is not a folder")
    output.mkdir(parents=True, exist_ok=True)

    # Files as given (a missing one is reported when read); folders' images, never the outputs.
    paths = find_images(inputs, recursive=True, exclude=output)
    if not paths:
        typer.secho("error: no images found in the inputs", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)

    used_stems: set[str] = set()
    failures: list[tuple[Path, str]] = []
    written = 0
    for index, path in enumerate(tqdm(paths, unit="image", desc="degrading", disable=not progress)):
        stem = _unique_stem(path.stem, used_stems)
        try:
            image = _center_crop(_load_rgb(path, max_pixels), scale)
        except _InputError as error:
            failures.append((path, str(error)))
            continue
        hq = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None]
        hq = hq.to(torch_device, torch.float32) / 255.0
        generator = torch.Generator(torch_device).manual_seed(seed + index)
        lq_images = []
        # One call per variant, not one batch of `count`: the pipeline draws one resize factor
        # per batch, so separate calls give every variant its own.
        for variant in range(count):
            lq = pipeline(hq, generator=generator)
            lq_array = (lq[0] * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
            lq_image = Image.fromarray(lq_array)
            _save_png(lq_image, output / f"{stem}_lq{variant}.png")
            lq_images.append(lq_image)
            written += 1
        if sheet:
            contact = Image.new("RGB", (image.width * (1 + count), image.height))
            contact.paste(image, (0, 0))
            for variant, lq_image in enumerate(lq_images):
                upscaled = lq_image.resize(image.size, Image.Resampling.NEAREST)
                contact.paste(upscaled, (image.width * (1 + variant), 0))
            _save_png(contact, output / f"{stem}_sheet.png")
            written += 1

    done = len(paths) - len(failures)
    typer.echo(f"wrote {written} images for {done} of {len(paths)} inputs to {output}")
    exit_on_failures(failures)
