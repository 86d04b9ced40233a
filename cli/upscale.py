"""``upsampler upscale``: upscale image and video files and folders, resumably, reporting every
failure.

    upsampler upscale photos/ -o big/ --recursive            # 4x, subfolders mirrored
    upsampler upscale a.jpg b.png -o out/ --scale 8 --format png
    upsampler upscale clip.mp4 -o out/ --video-codec h264 --crf 16

Videos (found in folders by probing their content) and animated GIF/WebP/PNG go through
:func:`upsampler.inference.video.upscale_video` (docs/video.md): one style for the whole clip,
audio and subtitles copied, and segments kept on interruption so that running the command again
resumes the clip where it stopped.

Outputs are written atomically, so an existing output is always complete: without
``--overwrite`` it is skipped, and re-running an interrupted job resumes it. Each output is
claimed before it is made (:mod:`upsampler.io.claims`), so concurrent runs and the processes of
``accelerate launch`` / ``torchrun`` (:mod:`upsampler_cli.workers`) share a folder without doing
a file twice. Bad inputs are reported in the closing summary and the exit code is 1 when any
input failed or the run was interrupted (2 for usage errors such as an unknown model).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import typer

from upsampler.io.files import find_images, first_of_each_file
from upsampler.io.formats import (
    ANIMATION_SUFFIXES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_PNG_COMPRESSION,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    WRITE_FORMATS,
)
from upsampler_cli.common import text_encoder_from_option, usage_error
from upsampler_cli.reporting import exit_on_failures

# Images whose tiles are at least this many get a second progress bar over their tiles.
TILE_BAR_THRESHOLD = 8


class Backend(str, Enum):
    torch = "torch"
    onnxruntime = "onnxruntime"


class VideoCodec(str, Enum):
    h264 = "h264"
    h265 = "h265"
    ffv1 = "ffv1"


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
    format: str  # Pillow format name (of an image or an animation); "" for a video
    kind: str = "image"  # "image", "animation" or "video"


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _collect(
    inputs: list[Path], output: Path, recursive: bool
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """(file, path relative to the output folder) for every input image or video, plus missing
    inputs.

    Folders give their image files as :func:`~upsampler.io.files.find_images` finds them (by
    suffix, hidden ones skipped, sorted) and their videos as
    :func:`~upsampler.io.video.find_videos` does (video suffixes, and other files FFmpeg probes
    as video), recursing into subfolders with ``recursive``; anything inside the output folder
    is left out, so an output folder inside an input folder is never read back as input. A
    file reached twice (given twice, or given and inside a folder given) is taken once, where
    it first comes.
    """
    from upsampler.io.video import find_videos

    found: list[tuple[Path, Path]] = []
    missing: list[tuple[Path, str]] = []
    for item in inputs:
        if item.is_dir():
            images = find_images(item, recursive=recursive, exclude=output)
            videos = find_videos(item, recursive=recursive, exclude=output)
            for path in sorted(images + videos):
                found.append((path, path.relative_to(item)))
        elif item.exists():
            found.append((item, Path(item.name)))
        else:
            missing.append((item, "no such file or folder"))
    return first_of_each_file(found, path=lambda pair: pair[0]), missing


def _kind(source: Path, max_pixels: int) -> str:
    """ "video" for any file without an image suffix (the video reader says what is wrong with
    one that is not a video), "animation" for a GIF/WebP/PNG with several frames, else "image"."""
    suffix = source.suffix.lower()
    if suffix in VIDEO_SUFFIXES or suffix not in IMAGE_SUFFIXES:
        return "video"
    if suffix in ANIMATION_SUFFIXES:
        from upsampler.io.animation import is_animation

        if is_animation(source, max_pixels=max_pixels):
            return "animation"
    return "image"


def _plan(
    found: list[tuple[Path, Path]],
    output: Path,
    format: OutputFormat,
    suffix: str,
    video_codec: str = "h264",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[list[_Job], list[tuple[Path, str]]]:
    """The output path and format of every input; inputs that cannot have one fail here.

    Videos keep their container when it holds ``video_codec`` (else Matroska); animations stay
    animations: their own format with ``same``, else PNG (APNG) or WebP.
    """
    from upsampler.io.video import output_suffix

    out_dir = output.resolve()
    jobs: list[_Job] = []
    failed: list[tuple[Path, str]] = []
    taken: dict[Path, Path] = {}
    for source, relative in found:
        kind = _kind(source, max_pixels) if source.is_file() else "image"
        if kind == "video":
            pil_format, extension = "", output_suffix(source, video_codec)
        elif kind == "animation":
            from upsampler.io.animation import ANIMATED_FORMATS

            pil_format = {"same": IMAGE_SUFFIXES[source.suffix.lower()], "png": "PNG"}.get(
                format.value, format.value.upper()
            )
            if pil_format not in ANIMATED_FORMATS:
                failed.append(
                    (source, f"an animation cannot be written as {format.value}; use "
                     "--format same, png or webp")
                )  # fmt: skip
                continue
            extension = source.suffix if format is OutputFormat.same else f".{format.value}"
        elif format is OutputFormat.same:
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
            jobs.append(_Job(source, target, pil_format, kind))
    return jobs, failed


def _caption(source: Path, prompt: str | None) -> str:
    """--prompt, else the sidecar ``NAME.txt`` beside the image, else the empty prompt."""
    if prompt is not None:
        return prompt
    sidecar = source.with_suffix(".txt")
    return sidecar.read_text(encoding="utf-8").strip() if sidecar.is_file() else ""


def _positive_scale(value: float | None) -> float | None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise typer.BadParameter(f"must be a positive number, got {value}")
    return value


def upscale(
    inputs: list[Path] = typer.Argument(
        ..., help="Image and video files, and folders of them (videos found by probing)."
    ),
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
        callback=_positive_scale,
    ),
    model: str = typer.Option(
        "nano-4x",
        "--model",
        "-m",
        help="Built-in name, model folder (ours or AuraSR's), checkpoint file (.safetensors, "
        ".pth: ESRGAN, SwinIR, ... through spandrel), or Hub id (owner/repo or "
        "owner/repo/FILE). `upsampler models` lists them.",
    ),
    revision: str | None = typer.Option(
        None, "--revision", help="Hub branch, tag or commit of a Hub id --model."
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
    backend: Backend = typer.Option(
        Backend.torch,
        "--backend",
        help="torch, or onnxruntime: each image's style is folded, exported to ONNX once and "
        "run by ONNX Runtime on the CPU in fp32 (needs upsampler\\[onnx]). A MODEL.onnx file "
        "runs in ONNX Runtime either way.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of each image's style noise z."),
    format: OutputFormat = typer.Option(
        OutputFormat.same, "--format", "-f", help="Output format (same: the input's)."
    ),
    quality: int = typer.Option(
        95, "--quality", min=1, max=100, help="JPEG/WebP quality (WebP 100 is lossless)."
    ),
    png_compression: int = typer.Option(
        DEFAULT_PNG_COMPRESSION,
        "--png-compression",
        min=0,
        max=9,
        help="PNG zlib level, lossless either way: higher is smaller and slower (a 3840x2160 "
        "output: 3 takes 0.8 s, 6 2.2 s for 13% fewer bytes, 9 22 s).",
    ),
    suffix: str = typer.Option("", "--suffix", help="Added to output names, e.g. _4x."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Redo outputs that exist (default: skip them, resuming)."
    ),
    max_pixels: int = typer.Option(
        DEFAULT_MAX_PIXELS,
        "--max-pixels",
        min=1,
        help="Refuse inputs (video: frames) with more pixels than this.",
    ),
    video_codec: VideoCodec = typer.Option(
        VideoCodec.h264,
        "--video-codec",
        help="Video output codec: h264 (default CRF 18), h265 (CRF 20) or ffv1 (lossless; "
        "written as .mkv). The container is the input's when it holds the codec, else .mkv.",
    ),
    crf: int | None = typer.Option(
        None,
        "--crf",
        min=0,
        max=51,
        help="Video quality for h264/h265: lower is better, 0 is lossless (default 18 / 20).",
    ),
    pix_fmt: str | None = typer.Option(
        None,
        "--pix-fmt",
        help="Video pixel format, e.g. yuv420p, yuv444p, yuv420p10le (default: the input's "
        "chroma subsampling, 10-bit when the input has more than 8 bits).",
    ),
    fps: str | None = typer.Option(
        None,
        "--fps",
        help="Constant output frame rate, e.g. 25 or 30000/1001 (default: keep every frame "
        "and its timestamp, variable frame rate included).",
    ),
    segment_seconds: float = typer.Option(
        10.0,
        "--segment",
        min=0.001,
        help="Seconds per video segment, at least (cut at keyframes): videos are encoded in "
        "segments, and an interrupted run resumes after the last finished one.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Upscale images 4x/8x with a GigaGAN upsampler, tile by tile, resuming where a run stopped.

    Videos and animated GIF/WebP/PNG are upscaled frame by frame with one style for the whole
    clip; a video's audio, subtitles and metadata are copied (docs/video.md). Outputs that
    exist are skipped (--overwrite redoes them), so running the same command again after an
    interruption resumes it, a video from its last finished segment. Several runs, or the processes of
    `accelerate launch -m upsampler_cli.app upscale ...` / `torchrun`, can share one output
    folder: each file is claimed by one process and made once. Exit status: 0 when every
    input was upscaled or skipped, 1 when any failed or the run was interrupted (Ctrl-C), 2 for
    usage errors (unknown model, unwritable output folder, ...).
    """
    from upsampler_cli.workers import Workers

    if os.sep in suffix or (os.altsep and os.altsep in suffix) or ".." in suffix:
        usage_error(f"--suffix must not contain path separators or '..', got {suffix!r}")
    if output.exists() and not output.is_dir():
        usage_error(f"--output {output} exists and is not a folder")
    _refuse_input_in_output(inputs, output)

    if crf is not None and video_codec is VideoCodec.ffv1:
        usage_error("--crf is for h264 and h265; ffv1 is lossless")
    if fps is not None:
        from upsampler.inference.video import _rate

        try:
            _rate(fps)
        except ValueError as error:
            usage_error(f"--{error}")
    found, failed = _collect(inputs, output, recursive)
    jobs, unplannable = _plan(found, output, format, suffix, video_codec.value, max_pixels)
    failed += unplannable
    if not jobs and not failed:
        usage_error("no images or videos found in the inputs")
    _check_writable(output)
    workers = Workers.from_environment(device)
    started = time.time()
    todo = [job for job in jobs if overwrite or not job.target.exists()]
    skipped = len(jobs) - len(todo)

    upscaler = None
    if todo:
        upscaler = _load_upscaler(
            model,
            revision,
            workers.device,
            dtype,
            text_encoder,
            text_weights,
            prompt,
            tile,
            tile_overlap,
            backend.value,
        )

    show = progress and workers.is_main
    run = _Run(
        todo=todo,
        upscaler=upscaler,
        workers=workers,
        started=started,
        overwrite=overwrite,
        options=dict(
            seed=seed,
            tile=tile,
            tile_overlap=tile_overlap,
            batch_size=batch_size,
            outscale=scale,
            prompt=prompt,
            max_pixels=max_pixels,
            quality=quality,
            png_compression=png_compression,
            video_codec=video_codec.value,
            crf=crf,
            pix_fmt=pix_fmt,
            fps=fps,
            segment_seconds=segment_seconds,
        ),
        show_progress=show,
    )
    try:
        run.work()
    except KeyboardInterrupt:
        run.close_bars()
        if workers.is_main:
            _report_interrupt(run, skipped, failed, output)
        raise typer.Exit(1) from None
    run.close_bars()

    # Every process reports to the main one; the summary and the exit code cover them all.
    # (Inputs missing or unplannable, and outputs that existed before, are the same list in
    # every process: counted once.)
    results = workers.gather((run.done, run.failed))
    done = sum(r[0] for r in results)
    failed += [failure for r in results for failure in r[1]]
    if not workers.is_main:
        raise typer.Exit(1 if failed else 0)
    others = f", made by another run {run.taken}" if workers.world_size == 1 and run.taken else ""
    typer.echo(f"done {done}, skipped {skipped}, failed {len(failed)}{others}; outputs in {output}")
    if workers.world_size > 1:
        shares = ", ".join(f"{rank}: {r[0]}" for rank, r in enumerate(results))
        typer.echo(f"done by process (rank: images): {shares}")
    if skipped:
        typer.echo(f"skipped {skipped} whose output exists (--overwrite redoes them)")
    exit_on_failures(failed)


def _refuse_input_in_output(inputs: list[Path], output: Path) -> None:
    """An input folder that is the output folder, or inside it, would give no images: outputs
    are never read back as inputs. Say so rather than "no images found"."""
    out_dir = output.resolve()
    for item in inputs:
        if item.is_dir() and _inside(item.resolve(), out_dir):
            where = "is" if item.resolve() == out_dir else "is inside"
            usage_error(
                f"input folder {item} {where} the output folder {output}: outputs must go to a "
                f"folder of their own (e.g. -o {item.resolve().name}_upscaled), which may lie "
                "inside the input folder"
            )


def _check_writable(output: Path) -> None:
    """Create the output folder and write a probe file there, before any model is loaded."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(dir=output, prefix=".upsampler-probe-")
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        usage_error(f"cannot write to the output folder {output}: {error.strerror or error}")


def _load_upscaler(
    model: str,
    revision: str | None,
    device: str,
    dtype: str,
    text_encoder: str | None,
    text_weights: str | None,
    prompt: str | None,
    tile: int | None,
    tile_overlap: int | None,
    backend: str = "torch",
):
    from upsampler.inference.upscaler import Upscaler

    try:
        upscaler = Upscaler.from_pretrained(
            model, device=device, dtype=dtype, revision=revision, backend=backend
        )
    except Exception as error:  # missing weights, bad device or dtype: nothing can run
        usage_error(str(error))
    if upscaler.text_conditioning:
        if text_encoder is None:
            usage_error(f"model {model!r} is text-conditioned: give --text-encoder BACKEND:NAME")
        upscaler.text_encoder = text_encoder_from_option(text_encoder, text_weights)
    elif prompt is not None:
        usage_error(f"model {model!r} is unconditional: --prompt has no effect on it")
    if tile is not None and tile % upscaler.size_multiple:
        usage_error(f"--tile must be a multiple of {upscaler.size_multiple}, got {tile}")
    if tile is not None and tile_overlap is not None and tile_overlap > tile // 2:
        usage_error(
            f"--tile-overlap must be at most half the tile ({tile // 2}), got {tile_overlap}"
        )
    return upscaler


@dataclass
class _Run:
    """The loop over the files of one process, and its counts (read after an interruption too)."""

    todo: list[_Job]
    upscaler: object
    workers: object
    started: float
    overwrite: bool
    options: dict
    show_progress: bool
    done: int = 0
    taken: int = 0  # made, or being made, by another process when this one came to it
    failed: list = field(default_factory=list)
    settled: int = 0  # done + failed by this process
    current: Path | None = None
    current_target: Path | None = None
    _bar: object = None
    _tile_bar: object = None
    _frame_bar: object = None

    def work(self) -> None:
        from tqdm.auto import tqdm

        from upsampler.io.claims import leftover_parts, remove_parts, try_claim

        self._bar = tqdm(
            total=len(self.todo),
            desc="images",
            unit="image",
            disable=not self.show_progress or not self.todo,  # nothing to do: no empty bar
            dynamic_ncols=True,
        )
        parts = leftover_parts({job.target.parent for job in self.todo})
        for index in self.workers.order(len(self.todo)):
            job = self.todo[index]
            try:
                claim = try_claim(job.target)
            except OSError as error:  # e.g. a read-only subfolder: every process would fail
                if self.workers.failed_elsewhere(str(job.target)):
                    self.taken += 1
                else:
                    self.workers.mark_failed(str(job.target))
                    reason = f"cannot write {job.target}: {error.strerror or error}"
                    self._settle(job, failure=reason)
                continue
            if claim is None:  # another process is making it right now
                self.taken += 1
                continue
            with claim:
                # Claimed: no live process writes this output, so its temporary files are
                # leftovers of a killed run.
                remove_parts(parts.pop(job.target, []))
                key = str(job.target)
                # Made by another process since listed, or failed in another process of this
                # job (which reports it): nothing to do here.
                if self._made_meanwhile(job.target) or self.workers.failed_elsewhere(key):
                    self.taken += 1
                    continue
                self.current, self.current_target = job.source, job.target
                failure = self._upscale_one(job)
                self.current = self.current_target = None
                if failure is not None:
                    self.workers.mark_failed(key)
                self._settle(job, failure=failure)

    def _made_meanwhile(self, target: Path) -> bool:
        """The output exists now: made by another process or run after this one listed it."""
        try:
            modified = target.stat().st_mtime
        except FileNotFoundError:
            return False
        return not self.overwrite or modified >= self.started

    def _settle(self, job: _Job, *, failure: str | None = None) -> None:
        if failure is not None:
            self.failed.append((job.source, failure))
        self.settled += 1
        self.workers.add_finished()
        if self._bar is not None:
            self._bar.set_postfix_str(job.source.name, refresh=False)
            self._bar.update(self.workers.finished(self.settled) - self._bar.n)

    def _upscale_one(self, job: _Job) -> str | None:
        """Upscale and write one file; the reason it failed, or None."""
        from upsampler.io.images import read_image, write_image

        options = self.options
        if job.kind != "image":
            return self._upscale_clip(job)
        try:
            data = read_image(job.source, max_pixels=options["max_pixels"])
            text = (
                _caption(job.source, options["prompt"]) if self.upscaler.text_conditioning else None
            )
            pixels = self.upscaler.upscale(
                data.pixels,
                text,
                seed=options["seed"],
                tile=options["tile"],
                tile_overlap=options["tile_overlap"],
                batch_size=options["batch_size"],
                outscale=options["outscale"],
                progress=self._on_tiles,
            )
            write_image(
                job.target,
                data.with_pixels(pixels),
                format=job.format,
                quality=options["quality"],
                png_compression=options["png_compression"],
            )
            self.done += 1
            return None
        except Exception as error:  # keep the folder going; every failure is reported at the end
            reason = str(error) or type(error).__name__
            return reason.removeprefix(f"{job.source}: ")
        finally:
            if self._tile_bar is not None:
                self._tile_bar.close()
                self._tile_bar = None

    def _upscale_clip(self, job: _Job) -> str | None:
        """Upscale one video or animation; the reason it failed, or None."""
        options = self.options
        try:
            text = (
                _caption(job.source, options["prompt"]) if self.upscaler.text_conditioning else None
            )
            self.upscaler.upscale_video(
                job.source,
                job.target,
                text,
                seed=options["seed"],
                tile=options["tile"],
                tile_overlap=options["tile_overlap"],
                batch_size=options["batch_size"],
                outscale=options["outscale"],
                codec=options["video_codec"],
                crf=options["crf"],
                pix_fmt=options["pix_fmt"],
                fps=options["fps"],
                segment_seconds=options["segment_seconds"],
                max_pixels=options["max_pixels"],
                animation_format=job.format or None,
                progress=self._on_frames,
                tile_progress=self._on_tiles,
            )
            self.done += 1
            return None
        except Exception as error:  # keep the folder going; every failure is reported at the end
            reason = str(error) or type(error).__name__
            return reason.removeprefix(f"{job.source}: ")
        finally:
            for bar in (self._tile_bar, self._frame_bar):
                if bar is not None:
                    bar.close()
            self._tile_bar = self._frame_bar = None

    def _on_frames(self, event) -> None:
        """The frames bar of a video: frames/s and the time left, from tqdm."""
        from tqdm.auto import tqdm

        if not self.show_progress:
            return
        if self._frame_bar is None:
            self._frame_bar = tqdm(
                total=event.frames,
                initial=event.resumed,
                desc="frames",
                unit="frame",
                leave=False,
                dynamic_ncols=True,
            )
        if event.frames != self._frame_bar.total:
            self._frame_bar.total = event.frames
        self._frame_bar.update(event.frames_done - self._frame_bar.n)

    def _on_tiles(self, event) -> None:
        from tqdm.auto import tqdm

        if event.tiles < TILE_BAR_THRESHOLD or not self.show_progress:
            return
        if self._tile_bar is None or self._tile_bar.total != event.tiles:
            if self._tile_bar is not None:
                self._tile_bar.close()
            note = f" pass {event.pass_index + 1}/{event.passes}" if event.passes > 1 else ""
            self._tile_bar = tqdm(total=event.tiles, desc=f"tiles{note}", unit="tile", leave=False)
        self._tile_bar.update(event.tiles_done - self._tile_bar.n)

    def close_bars(self) -> None:
        for bar in (self._tile_bar, self._frame_bar, self._bar):
            if bar is not None:
                bar.close()
        self._tile_bar = self._frame_bar = self._bar = None


def _report_interrupt(run: _Run, skipped: int, failed: list, output: Path) -> None:
    """What an interrupted run did, what it did not, and how to go on."""
    failed = failed + run.failed
    left = len(run.todo) - run.settled - run.taken
    typer.secho("interrupted", fg=typer.colors.RED, err=True)
    if run.workers.world_size > 1:
        finished = run.workers.finished(run.settled)
        typer.echo(f"all processes: {finished} of {len(run.todo)} file(s) finished", err=True)
    typer.echo(
        f"done {run.done}, skipped {skipped}, failed {len(failed)}, "
        f"not done {left}; outputs in {output}",
        err=True,
    )
    if run.current is not None:
        from upsampler.inference.video import finished_segments

        kept = finished_segments(run.current_target) if run.current_target else 0
        if kept:
            typer.echo(
                f"{run.current} was in progress: nothing was written under its output's name; "
                f"its {kept} finished segment(s) are kept and the same command resumes after them",
                err=True,
            )
        else:
            typer.echo(f"{run.current} was in progress: nothing of it was written", err=True)
    for source, reason in failed:
        typer.echo(f"  failed {source}: {reason}", err=True)
    typer.echo("run the same command again to resume: finished outputs are skipped", err=True)
