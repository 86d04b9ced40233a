"""Upscaling a video: streamed, one style for the whole clip, resumable segment by segment.

    from upsampler import Upscaler

    upscaler = Upscaler.from_pretrained("nano-4x")
    upscaler.upscale_video("clip.mp4", "out/clip.mp4", seed=0, progress=print)

How a clip goes through (:func:`upscale_video`):

1. :func:`~upsampler.io.video.scan_video` checks the file before any frame is decoded (a video
   stream, a decoder, the pixel limit) and lists its keyframes from the packets.
2. The clip is cut at keyframes into segments of at least ``segment_seconds``
   (:func:`plan_segments`). Each is decoded from its keyframe, frame by frame, upscaled and
   encoded into a segment file written atomically into a hidden folder beside the output
   (``.NAME.segments/``): memory holds a few frames whatever the clip's length.
3. Every frame is upscaled with the same ``z`` and styles, drawn once from ``seed``, and the
   same folded kernels (:meth:`Upscaler.clip`): the detail the model invents stays put from
   frame to frame instead of re-rolling (temporal stability; benchmarks/video.py measures it).
4. When every segment is done, the output is assembled from them and the source's audio,
   subtitle and data streams (copied, not re-encoded), written atomically, and the segment
   folder removed. A killed or interrupted run leaves only finished segments: the next run
   with the same source and settings (the folder's ``manifest.json`` says which) starts after
   the last of them, and gives the file an uninterrupted run gives.

Timestamps are kept as they are (variable frame rate too) unless ``fps`` asks for a constant
rate, in which case each output tick shows the source frame on screen at that time (frames
are repeated or dropped; the audio is untouched).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from upsampler.io.animation import (
    is_animation,
    read_animation_frames,
    scan_animation,
    write_animation,
)
from upsampler.io.formats import ANIMATION_SUFFIXES, DEFAULT_MAX_PIXELS
from upsampler.io.video import (
    DEFAULT_CODEC,
    VideoInfo,
    assemble,
    check_output,
    encode_settings,
    frame_rotation,
    frame_to_rgb,
    read_frames,
    read_segment,
    rgb_to_frame,
    scan_video,
    write_segment,
)

if TYPE_CHECKING:
    from upsampler.inference.upscaler import UpscaleProgress, Upscaler
    from upsampler.text.base import TextEmbeddings

DEFAULT_SEGMENT_SECONDS = 10.0
_MANIFEST = "manifest.json"


@dataclass(frozen=True)
class VideoProgress:
    """Where :func:`upscale_video` is: ``frames_done`` of about ``frames`` output frames
    (counting those of segments finished by an earlier run, ``resumed``), in segment
    ``segment`` of ``segments`` (0-based)."""

    frames_done: int
    frames: int
    segment: int
    segments: int
    resumed: int


@dataclass(frozen=True)
class VideoResult:
    """What :func:`upscale_video` made: ``frames`` frames in ``target``, of which ``resumed``
    came from segments an earlier run had finished."""

    target: Path
    frames: int
    segments: int
    resumed: int
    seconds: float


def segments_folder(target: str | os.PathLike) -> Path:
    """The hidden folder beside ``target`` that holds its finished segments."""
    target = Path(target)
    return target.with_name(f".{target.name}.segments")


def finished_segments(target: str | os.PathLike) -> int:
    """How many finished segments of ``target`` wait in its segment folder."""
    return len(list(segments_folder(target).glob("segment-*.bin")))


def plan_segments(info: VideoInfo, seconds: float = DEFAULT_SEGMENT_SECONDS) -> list[int]:
    """The pts at which each segment starts: keyframes at least ``seconds`` apart. Segment k
    holds the frames with ``bounds[k] <= pts < bounds[k + 1]`` (the first also those before
    the first keyframe, the last everything after its start)."""
    if not seconds > 0:
        raise ValueError(f"segment_seconds must be positive, got {seconds}")
    bounds = [info.keyframes[0]]
    for key in info.keyframes[1:]:
        if (key - bounds[-1]) * info.time_base >= seconds:
            bounds.append(key)
    return bounds


def upscale_video(
    upscaler: Upscaler,
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    prompt: str | TextEmbeddings | None = None,
    seed: int = 0,
    tile: int | None = None,
    tile_overlap: int | None = None,
    batch_size: int | None = None,
    outscale: float | None = None,
    truncation_psi: float = 1.0,
    codec: str = DEFAULT_CODEC,
    crf: int | None = None,
    pix_fmt: str | None = None,
    fps: float | str | Fraction | None = None,
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    animation_format: str | None = None,
    progress: Callable[[VideoProgress], None] | None = None,
    tile_progress: Callable[[UpscaleProgress], None] | None = None,
) -> VideoResult:
    """Upscale the video ``source`` into ``target`` (its suffix picks the container; see
    :func:`~upsampler.io.video.output_suffix`), or an animated GIF/WebP/PNG into an animation
    of the same kind (:mod:`upsampler.io.animation`; ``codec``, ``crf``, ``pix_fmt``, ``fps``
    and ``segment_seconds`` do not apply to those).

    Args:
        prompt, seed, tile, tile_overlap, batch_size, outscale, truncation_psi: as for
            :meth:`Upscaler.upscale`; ``seed`` draws the one ``z`` of the whole clip.
        codec: "h264" (default, CRF 18), "h265" (CRF 20) or "ffv1" (lossless).
        crf: the constant rate factor of h264/h265 (0 is lossless, 51 the worst).
        pix_fmt: the output's pixel format; by default the source's chroma subsampling, and
            10 bits when the source has more than 8.
        fps: a constant output frame rate ("30000/1001", 25, ...); by default every source
            frame is kept with its timestamp (variable frame rate included).
        segment_seconds: the least length of a segment (cut at keyframes): what an
            interrupted run loses at most, and what a resume redoes.
        max_pixels: frames with more pixels are refused before decoding (``--max-pixels``).
        animation_format: "GIF", "WEBP" or "PNG" for an animated source (default: its own).
        progress: called after every encoded frame with a :class:`VideoProgress`.
        tile_progress: called after every batch of tiles of a frame.

    Raises:
        VideoReadError: (and subclasses) the source cannot be read: corrupt, truncated, no
            video stream, an unsupported codec, over the pixel limit.
        VideoWriteError: the output cannot be written (disk full): finished segments are kept.
        KeyboardInterrupt: passed on; finished segments are kept and the next run resumes.
    """
    source, target = Path(source), Path(target)
    started = time.monotonic()
    clip_options = dict(
        seed=seed,
        tile=tile,
        tile_overlap=tile_overlap,
        batch_size=batch_size,
        outscale=outscale,
        truncation_psi=truncation_psi,
        progress=tile_progress,
    )
    if source.suffix.lower() in ANIMATION_SUFFIXES and is_animation(source, max_pixels=max_pixels):
        info = scan_animation(source, max_pixels=max_pixels)
        frames = read_animation_frames(source, info, max_pixels=max_pixels)
        done = 0

        def upscaled(upscale_frame: Callable[[Any], Any]) -> Iterator[Any]:
            nonlocal done
            for frame in frames:
                yield upscale_frame(frame)
                done += 1
                if progress is not None:
                    progress(VideoProgress(done, info.frames, 0, 1, 0))

        with upscaler.clip(prompt, **clip_options) as upscale_frame:
            write_animation(target, upscaled(upscale_frame), info, format=animation_format)
        return VideoResult(target, done, 1, 0, time.monotonic() - started)

    info = scan_video(source, max_pixels=max_pixels)
    rate = None if fps is None else _rate(fps)
    settings = encode_settings(
        info,
        target,
        size=upscaler.output_size(info.height, info.width, outscale),
        codec=codec,
        crf=crf,
        pix_fmt=pix_fmt,
        fps=rate,
    )
    check_output(target, info, settings)  # a stream the output cannot hold fails now
    bounds = plan_segments(info, segment_seconds)
    work = segments_folder(target)
    manifest = {
        "source": _identity(source),
        "settings": settings.to_json(),
        "bounds": bounds,
        "upscale": {
            "model": _model_fingerprint(upscaler),
            "prompt": prompt if isinstance(prompt, str | None) else repr(prompt),
            "seed": seed,
            "outscale": outscale,
            "truncation_psi": truncation_psi,
            "tile": tile,
            "tile_overlap": tile_overlap,
        },
    }
    _prepare_folder(work, manifest)
    paths = [work / f"segment-{index:05d}.bin" for index in range(len(bounds))]
    counts = {index: read_segment(p)[0]["frames"] for index, p in enumerate(paths) if p.exists()}
    resumed = sum(counts.values())
    total = _output_frames(info, rate)
    done = resumed

    rotation = frame_rotation(info)
    with upscaler.clip(prompt, **clip_options) as upscale_frame:
        for index, path in enumerate(paths):
            if index in counts:
                continue

            def encoded(index: int = index) -> None:
                nonlocal done
                done += 1
                if progress is not None:
                    progress(VideoProgress(done, max(total, done), index, len(paths), resumed))

            start = bounds[index] if index else None
            end = bounds[index + 1] if index + 1 < len(bounds) else None
            frames = _segment_frames(info, start, end, settings, rate, upscale_frame, encoded)
            counts[index] = write_segment(path, frames, settings)

    assemble(target, info, paths, settings, rotation=rotation)
    shutil.rmtree(work, ignore_errors=True)
    return VideoResult(
        target,
        sum(counts.values()),
        len(paths),
        resumed,
        time.monotonic() - started,
    )


def _segment_frames(
    info: VideoInfo,
    start: int | None,
    end: int | None,
    settings: Any,
    rate: Fraction | None,
    upscale_frame: Callable[[Any], Any],
    encoded: Callable[[], None],
) -> Iterator[Any]:
    """The output frames of one segment, upscaled one source frame at a time.

    With ``rate``, output tick n (at n / rate seconds from the first frame) shows the source
    frame on screen then: a source frame on screen from t to its successor's time gives ticks
    ceil(t * rate) up to the successor's; frames that get no tick are not upscaled at all.
    """
    frames = read_frames(info, start, end)
    if rate is None:
        for frame in frames:
            rgb = upscale_frame(frame_to_rgb(frame, info.bit_depth))
            yield rgb_to_frame(rgb, frame.pts, settings)
            encoded()
        return
    stop = info.end if end is None else end
    pending = next(frames, None)
    while pending is not None:
        following = next(frames, None)
        until = stop if following is None else following.pts
        first = math.ceil((pending.pts - info.start) * info.time_base * rate)
        last = math.ceil((until - info.start) * info.time_base * rate)
        if last > first:
            rgb = upscale_frame(frame_to_rgb(pending, info.bit_depth))
            for tick in range(first, last):
                yield rgb_to_frame(rgb, tick, settings)
                encoded()
        pending = following


def _output_frames(info: VideoInfo, rate: Fraction | None) -> int:
    if rate is None:
        return info.frames
    return math.ceil((info.end - info.start) * info.time_base * rate)


def _rate(fps: float | str | Fraction) -> Fraction:
    try:
        rate = Fraction(str(fps)).limit_denominator(1_001_000)
    except (ValueError, ZeroDivisionError) as error:
        raise ValueError(
            f"fps must be a number or a fraction like 30000/1001, got {fps!r}"
        ) from error
    if not 0 < rate <= 1000:
        raise ValueError(f"fps must be in (0, 1000], got {fps!r}")
    return rate


def _identity(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _model_fingerprint(upscaler: Upscaler) -> str:
    """A digest of the model's class, config and weights (their sums): segments made by another
    model are not resumed."""
    import torch

    digest = hashlib.sha256(type(upscaler.model).__name__.encode())
    config = getattr(upscaler.model, "config", None)
    if config is not None:
        digest.update(json.dumps(dict(config), sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, tensor in sorted(upscaler.model.state_dict().items()):
            value = float(tensor.double().sum()) if tensor.is_floating_point() else 0.0
            digest.update(f"{name}:{tuple(tensor.shape)}:{value!r}".encode())
    digest.update(f"{upscaler.backend}:{upscaler.dtype}:{upscaler.fold_styles}".encode())
    return digest.hexdigest()[:16]


def _prepare_folder(work: Path, manifest: dict) -> None:
    """The segment folder for this run: kept when its manifest is this run's (a resume),
    emptied otherwise; leftover temporary files of a killed run removed."""
    manifest_path = work / _MANIFEST
    try:
        previous = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        previous = None
    if previous != json.loads(json.dumps(manifest)):
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    for leftover in work.glob(".*.part"):
        leftover.unlink(missing_ok=True)
    if previous != json.loads(json.dumps(manifest)):
        from upsampler.io.files import atomic_output

        with atomic_output(manifest_path) as temporary:
            temporary.write_text(json.dumps(manifest, indent=1))
