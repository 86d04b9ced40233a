"""``upsampler upscale``: upscale image files and folders, resumably, reporting every failure.

    upsampler upscale photos/ -o big/ --recursive            # 4x, subfolders mirrored
    upsampler upscale a.jpg b.png -o out/ --scale 8 --format png

Outputs are written atomically, so an existing output is always complete: without
``--overwrite`` it is skipped, and re-running an interrupted job resumes it. Bad inputs are
reported in the closing summary and the exit code is 1 when any input failed (2 for usage
errors such as an unknown model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import NoReturn

import typer

from upsampler.io.images import DEFAULT_MAX_PIXELS
from upsampler_cli.reporting import exit_on_failures

# Images whose tiles are at least this many get a second progress bar over their tiles.
TILE_BAR_THRESHOLD = 8


class OutputFormat(str, Enum):
    same = "same"
    png = "png"
    jpg = "jpg"
    webp = "webp"
    tiff = "tiff"


@dataclass
class _Job:
    source: Path
    target: Path
    format: str  # Pillow format name


def _usage_error(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _collect(
    inputs: list[Path], output: Path, recursive: bool
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """(file, path relative to the output folder) for every input image, plus missing inputs.

    Folders give their image files (by suffix; other files are ignored), sorted, recursing
    into subfolders with ``recursive``; anything inside the output folder is left out, so an
    output folder inside an input folder is never read back as input.
    """
    from upsampler.io.images import IMAGE_SUFFIXES

    out_dir = output.resolve()
    found: list[tuple[Path, Path]] = []
    missing: list[tuple[Path, str]] = []
    for item in inputs:
        if item.is_dir():
            pattern = "**/*" if recursive else "*"
            for path in sorted(item.glob(pattern)):
                if (
                    path.is_file()
                    and path.suffix.lower() in IMAGE_SUFFIXES
                    and not path.name.startswith(".")
                    and not _inside(path.resolve(), out_dir)
                ):
                    found.append((path, path.relative_to(item)))
        elif item.exists():
            found.append((item, Path(item.name)))
        else:
            missing.append((item, "no such file or folder"))
    return found, missing


def _plan(
    found: list[tuple[Path, Path]], output: Path, format: OutputFormat, suffix: str
) -> tuple[list[_Job], list[tuple[Path, str]]]:
    """The output path and format of every input; inputs that cannot have one fail here."""
    from upsampler.io.images import IMAGE_SUFFIXES, WRITE_FORMATS

    out_dir = output.resolve()
    jobs: list[_Job] = []
    failed: list[tuple[Path, str]] = []
    taken: dict[Path, Path] = {}
    for source, relative in found:
        if format is OutputFormat.same:
            name = IMAGE_SUFFIXES.get(source.suffix.lower())
            # GIF (palette) and unknown suffixes are written as PNG, which loses nothing.
            pil_format = name if name in WRITE_FORMATS else "PNG"
            extension = source.suffix if name in WRITE_FORMATS else ".png"
        else:
            pil_format = {"jpg": "JPEG", "tiff": "TIFF"}.get(format.value, format.value.upper())
            extension = WRITE_FORMATS[pil_format]
        target = output / relative.parent / f"{relative.stem}{suffix}{extension}"
        resolved = target.resolve()
        if not _inside(resolved, out_dir):  # e.g. a symlinked subfolder pointing elsewhere
            failed.append((source, f"output {target} would lie outside {output}"))
        elif resolved == source.resolve():
            failed.append((source, "output would overwrite the input; use --suffix or another -o"))
        elif resolved in taken:
            failed.append((source, f"output {target} is already made from {taken[resolved]}"))
        else:
            taken[resolved] = source
            jobs.append(_Job(source, target, pil_format))
    return jobs, failed


def _text_encoder(spec: str | None, weights: str | None):
    from upsampler.text import load_text_encoder

    if spec is None:
        return None
    backend, _, name = spec.partition(":")
    if not name:
        _usage_error(f"--text-encoder must be BACKEND:NAME (e.g. open_clip:ViT-B-32), got {spec!r}")
    try:
        return load_text_encoder(backend, name, weights)
    except Exception as error:  # unavailable weights, unknown backend: say so and stop
        _usage_error(f"cannot load text encoder {spec!r}: {error}")


def _caption(source: Path, prompt: str | None) -> str:
    """--prompt, else the sidecar ``NAME.txt`` beside the image, else the empty prompt."""
    if prompt is not None:
        return prompt
    sidecar = source.with_suffix(".txt")
    return sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else ""


def upscale(
    inputs: list[Path] = typer.Argument(..., help="Image files and folders of images."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (created if needed)."),
    recursive: bool = typer.Option(
        False, "--recursive", "-r", help="Descend into subfolders, mirroring them in the output."
    ),
    scale: float | None = typer.Option(
        None,
        "--scale",
        "-s",
        help="Output scale (default: the model's). Beyond it the model is re-applied "
        "(4x twice for 8x or 16x); other factors end with a high-quality resize.",
    ),
    model: str = typer.Option(
        "nano-4x", "--model", "-m", help="Built-in model name, model folder, or Hub id."
    ),
    prompt: str | None = typer.Option(
        None,
        "--prompt",
        "-p",
        help="Prompt for text-conditioned models (default: a NAME.txt caption beside each "
        "image, else the empty prompt).",
    ),
    text_encoder: str | None = typer.Option(
        None,
        "--text-encoder",
        help="Text encoder for text-conditioned models: BACKEND:NAME, e.g. "
        "transformers:/models/all-MiniLM-L6-v2 or open_clip:ViT-B-32.",
    ),
    text_weights: str | None = typer.Option(
        None, "--text-weights", help="open_clip pretrained tag or local checkpoint file."
    ),
    tile: int | None = typer.Option(
        None, "--tile", min=1, help="Tile side in input pixels (default: chosen from free memory)."
    ),
    tile_overlap: int | None = typer.Option(
        None,
        "--tile-overlap",
        min=0,
        help="Input pixels shared by neighbouring tiles (default 16).",
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Tiles per forward pass (default 1 on CPU, 4 on GPU)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, fp32, fp16 or bf16."),
    seed: int = typer.Option(0, "--seed", help="Seed of each image's style noise z."),
    format: OutputFormat = typer.Option(
        OutputFormat.same, "--format", "-f", help="Output format (same: the input's)."
    ),
    quality: int = typer.Option(
        95, "--quality", min=1, max=100, help="JPEG/WebP quality (WebP 100 is lossless)."
    ),
    suffix: str = typer.Option("", "--suffix", help="Added to output names, e.g. _4x."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Redo outputs that exist (default: skip them, resuming)."
    ),
    max_pixels: int = typer.Option(
        DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help="Refuse inputs with more pixels than this."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Upscale images 4x/8x with a GigaGAN upsampler, tile by tile, resuming where a run stopped."""
    from tqdm.auto import tqdm

    from upsampler.inference.upscaler import Upscaler
    from upsampler.io.images import read_image, write_image

    if os.sep in suffix or (os.altsep and os.altsep in suffix) or ".." in suffix:
        _usage_error(f"--suffix must not contain path separators or '..', got {suffix!r}")
    if output.exists() and not output.is_dir():
        _usage_error(f"--output {output} exists and is not a folder")

    found, failed = _collect(inputs, output, recursive)
    jobs, unplannable = _plan(found, output, format, suffix)
    failed += unplannable
    if not jobs and not failed:
        _usage_error("no images found in the inputs")
    skipped = [job for job in jobs if job.target.exists() and not overwrite]
    todo = [job for job in jobs if overwrite or not job.target.exists()]

    upscaler = None
    if todo:
        try:
            upscaler = Upscaler.from_pretrained(model, device=device, dtype=dtype)
        except Exception as error:  # missing weights, bad device or dtype: nothing can run
            _usage_error(str(error))
        if upscaler.text_conditioning:
            if text_encoder is None:
                _usage_error(
                    f"model {model!r} is text-conditioned: give --text-encoder BACKEND:NAME"
                )
            upscaler.text_encoder = _text_encoder(text_encoder, text_weights)
        elif prompt is not None:
            _usage_error(f"model {model!r} is unconditional: --prompt has no effect on it")
        if tile is not None and tile % upscaler.size_multiple:
            _usage_error(f"--tile must be a multiple of {upscaler.size_multiple}, got {tile}")
        if tile is not None and tile_overlap is not None and tile_overlap > tile // 2:
            _usage_error(
                f"--tile-overlap must be at most half the tile ({tile // 2}), got {tile_overlap}"
            )

    done = 0
    bar = tqdm(todo, desc="images", unit="image", disable=not progress, dynamic_ncols=True)
    for job in bar:
        bar.set_postfix_str(job.source.name, refresh=False)
        tile_bar = None

        def on_progress(event) -> None:
            nonlocal tile_bar
            if event.tiles < TILE_BAR_THRESHOLD or not progress:
                return
            if tile_bar is None or tile_bar.total != event.tiles:
                if tile_bar is not None:
                    tile_bar.close()
                pass_note = (
                    f" pass {event.pass_index + 1}/{event.passes}" if event.passes > 1 else ""
                )
                tile_bar = tqdm(
                    total=event.tiles, desc=f"tiles{pass_note}", unit="tile", leave=False
                )
            tile_bar.update(event.tiles_done - tile_bar.n)

        try:
            data = read_image(job.source, max_pixels=max_pixels)
            text = _caption(job.source, prompt) if upscaler.text_conditioning else None
            pixels = upscaler.upscale(
                data.pixels,
                text,
                seed=seed,
                tile=tile,
                tile_overlap=tile_overlap,
                batch_size=batch_size,
                outscale=scale,
                progress=on_progress,
            )
            write_image(job.target, data.with_pixels(pixels), format=job.format, quality=quality)
            done += 1
        except Exception as error:  # keep the folder going; every failure is reported below
            reason = str(error) or type(error).__name__
            failed.append((job.source, reason.removeprefix(f"{job.source}: ")))
        finally:
            if tile_bar is not None:
                tile_bar.close()
    bar.close()

    typer.echo(f"done {done}, skipped {len(skipped)}, failed {len(failed)}; outputs in {output}")
    if skipped:
        typer.echo(f"skipped {len(skipped)} whose output exists (--overwrite redoes them)")
    exit_on_failures(failed)
