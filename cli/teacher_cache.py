"""``upsampler teacher-cache``: compute a teacher's outputs once, for distillation."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import typer

from upsampler.io.formats import TRAINING_MAX_PIXELS
from upsampler_cli.common import usage_error


def _load_degradation(name: str, scale: int):
    """A preset name as it is; a TOML recipe through ``upsampler degrade``'s reader."""
    if not name.lower().endswith(".toml"):
        return name
    from upsampler_cli.degrade import _load_pipeline

    return _load_pipeline(name, scale)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def _complete_shards(folder: Path) -> tuple[int, int, int]:
    """(shards written, shards planned, samples in the written ones), from cache.json."""
    import json

    try:
        shards = json.loads((folder / "cache.json").read_text(encoding="utf-8"))["shards"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0, 0, 0
    written = [s for s in shards if (folder / s["file"]).is_file()]
    return len(written), len(shards), sum(s["count"] for s in written)


def teacher_cache(
    data: Path = typer.Argument(
        ..., help="Folder of training photos (searched recursively) or of .tar shards."
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Cache folder: new, empty, or a cache to resume."
    ),
    teacher: str = typer.Option(
        ...,
        "--teacher",
        help="The teacher: a checkpoint file (e.g. RealESRGAN_x4plus.safetensors), a model "
        "folder, a built-in name or a Hub id, as `upsampler upscale --model` takes.",
    ),
    degradation: str = typer.Option(
        "realesrgan",
        "--degradation",
        help="realesrgan, bicubic or diffusion; or a TOML recipe whose degradation table has "
        "stages.",
    ),
    scale: int = typer.Option(4, "--scale", min=1, help="The teacher's scale."),
    crop_size: int = typer.Option(
        128, "--crop-size", min=1, help="Side of the hq crops, a multiple of --scale."
    ),
    count: int = typer.Option(2048, "--count", min=1, help="Number of samples."),
    shard_size: int = typer.Option(
        256, "--shard-size", min=1, help="Samples per shard file (the unit of resuming)."
    ),
    seed: int = typer.Option(0, "--seed", help="Fixes every crop, degradation and noise."),
    device: str = typer.Option(
        "auto", "--device", help="Where the teacher runs: auto, cpu, cuda, cuda:1, mps."
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Crops per teacher call."),
    max_pixels: int = typer.Option(
        TRAINING_MAX_PIXELS,
        "--max-pixels",
        min=1,
        help="Skip photos with more pixels than this (decompression-bomb guard).",
    ),
) -> None:
    """Cache a teacher's outputs for distillation: lq crops, the teacher's output and hq.

    Makes --count crops of --crop-size from the photos in DATA, degrades each into an lq input, runs the teacher on it, and writes uint8 shards shard-00000.safetensors, ... and a cache.json that records the arguments. Training reads it with TeacherCacheDataset (docs/distillation.md).

    Resume: the cache is written one shard (--shard-size samples) at a time, each atomically. After Ctrl-C or a crash, run the same command again: complete shards are kept, the rest are built, and the result is byte for byte what an uninterrupted run on the same --device and --batch-size writes. A folder made with other arguments is refused, naming what differs (only --device and --batch-size may change, at the cost of float rounding differences in the shards built after the change).

    Exit codes: 0 done; 1 interrupted or failed while building; 2 bad arguments, data or teacher, or a cache folder made with other arguments.
    """
    from tqdm import tqdm

    from upsampler.data.teacher_cache import build_teacher_cache
    from upsampler.models.registry import ModelUnavailableError

    try:
        degradation_spec = _load_degradation(degradation, scale)
    except ValueError as error:
        usage_error(f"--degradation: {error}")
    bar = None
    started = time.perf_counter()
    first_done = 0

    def progress(done: int, total: int) -> None:
        nonlocal bar, first_done
        if bar is None:
            first_done = done
            bar = tqdm(total=total, initial=done, unit="crop", dynamic_ncols=True, smoothing=0.1)
            if done:
                bar.write(f"resuming: {done} of {total} samples are cached already")
        else:
            bar.update(done - bar.n)

    try:
        build_teacher_cache(
            data,
            output,
            teacher=teacher,
            degradation=degradation_spec,
            scale=scale,
            crop_size=crop_size,
            count=count,
            shard_size=shard_size,
            seed=seed,
            device=device,
            batch_size=batch_size,
            max_pixels=max_pixels,
            progress=progress,
        )
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        written, planned, samples = _complete_shards(output)
        command = shlex.join(
            ["upsampler", "teacher-cache", str(data), "-o", str(output), "--teacher", teacher]
            + ["--degradation", degradation, "--scale", str(scale), "--crop-size", str(crop_size)]
            + ["--count", str(count), "--shard-size", str(shard_size), "--seed", str(seed)]
            + (["--max-pixels", str(max_pixels)] if max_pixels != TRAINING_MAX_PIXELS else [])
        )
        if bar is None:
            message = "interrupted before any crop was made"
        else:
            message = (
                f"interrupted: kept {written} of {planned} shards ({samples} of {count} samples) "
                f"in {output}; the shard being built was dropped"
            )
        typer.secho(
            f"{message}. To resume, run the same command:\n  {command}",
            fg=typer.colors.YELLOW,
            err=True,
        )
        raise typer.Exit(1) from None
    except (ValueError, ModelUnavailableError, FileNotFoundError) as error:
        if bar is not None:
            bar.close()
            # The arguments were all checked before the first crop: this is a failure while
            # building, not a usage error.
            typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from error
        usage_error(str(error))
    bar.close()
    seconds = time.perf_counter() - started
    built = count - first_done
    rate = f", {built / seconds:.2f} crops/s" if built else ""
    megapixels = count * (crop_size // scale) ** 2 / 1e6
    typer.echo(
        f"done: {count} samples ({built} built now{rate}), {megapixels:.2f} input megapixels "
        f"through the teacher, {_folder_bytes(output) / 1e6:.1f} MB on disk, {seconds:.1f} s; "
        f"cache in {output}"
    )
