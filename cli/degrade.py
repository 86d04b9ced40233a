"""``upsampler degrade``: preview what a degradation preset does to your photos."""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import NoReturn

import typer

from upsampler_cli.reporting import exit_on_failures

#: Suffixes picked up when a folder is given (a file named explicitly is always tried).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
#: Decompression-bomb guard: larger images are refused (they would also need gigabytes as floats).
MAX_IMAGE_PIXELS = 100_000_000


class _InputError(Exception):
    """An input that cannot be degraded; reported, then skipped."""


def _collect(inputs: list[Path], output: Path) -> list[Path]:
    """Files as given; folders expanded (recursively, sorted) to their image files.

    Files inside the output folder are skipped, so re-running into a subfolder of an input
    folder does not degrade earlier outputs.
    """
    out_dir = output.resolve()
    paths: list[Path] = []
    for item in inputs:
        if item.is_dir():
            for path in sorted(item.rglob("*")):
                inside_output = (
                    out_dir == path.resolve().parent or out_dir in path.resolve().parents
                )
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not inside_output:
                    paths.append(path)
        else:
            paths.append(item)  # a missing file is reported when it is read
    return paths


def _load_rgb(path: Path):
    """Decode an image fully, guarded against decompression bombs and truncated files."""
    from PIL import Image, ImageFile, ImageOps

    if not path.is_file():
        raise _InputError("no such file")
    previous_limit, previous_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = MAX_IMAGE_PIXELS, False
    try:
        with warnings.catch_warnings():
            # Pillow only warns between the limit and twice the limit: refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return ImageOps.exif_transpose(image).convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise _InputError(f"larger than {MAX_IMAGE_PIXELS:,} pixels: {error}") from error
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # unreadable, truncated, corrupt
        raise _InputError(f"cannot decode image: {error}") from error
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = previous_limit, previous_truncated


def _center_crop(image, scale: int):
    width, height = image.size
    if width < scale or height < scale:
        raise _InputError(f"image is {width}x{height}, smaller than the scale {scale}")
    new_width, new_height = width - width % scale, height - height % scale
    left, top = (width - new_width) // 2, (height - new_height) // 2
    return image.crop((left, top, left + new_width, top + new_height))


def _save_png(image, path: Path) -> None:
    """Write atomically: a temporary file in the same folder, then ``os.replace``."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".degrade-", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            image.save(file, format="PNG")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


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


def _usage_error(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


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
        help="realesrgan, bicubic or diffusion; or a TOML recipe whose degradation table has stages.",
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
) -> None:
    """Degrade photos the way training will, to see what a model learns from.

    Writes NAME_lq0.png, NAME_lq1.png, ... (--count of them) per input into OUTPUT.

    With --sheet also NAME_sheet.png: the HQ image beside each LQ upscaled back (nearest).

    An input whose width or height is not a multiple of --scale is center-cropped down to a multiple.

    Unreadable or corrupt images are reported and skipped, and the exit code is then 1.
    """
    import numpy as np
    import torch
    from PIL import Image
    from tqdm import tqdm

    try:
        pipeline = _load_pipeline(preset, scale)
    except ValueError as error:
        _usage_error(f"--preset: {error}")
    try:
        torch_device = torch.device(device)
        torch.empty(0, device=torch_device)
    except (RuntimeError, AssertionError) as error:
        _usage_error(f"--device: {device!r} is not available: {error}")
    if output.exists() and not output.is_dir():
        _usage_error(f"--output: {output} exists and is not a folder")
    output.mkdir(parents=True, exist_ok=True)

    paths = _collect(inputs, output)
    if not paths:
        typer.secho("error: no images found in the inputs", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)

    used_stems: set[str] = set()
    failures: list[tuple[Path, str]] = []
    written = 0
    for index, path in enumerate(tqdm(paths, unit="image", desc="degrading")):
        stem = _unique_stem(path.stem, used_stems)
        try:
            image = _center_crop(_load_rgb(path), scale)
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
