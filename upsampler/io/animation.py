"""Animated GIF, WebP and PNG (APNG): read frame by frame, written back as the same kind of
animation with each frame's duration and the loop count.

:func:`~upsampler.io.images.read_image` refuses files with more than one frame
(:class:`~upsampler.io.images.AnimatedImageError`); :func:`upsampler.inference.video.upscale_video`
sends them here instead. Frames come out as Pillow composes them (whole frames, the earlier
ones' disposal applied), as (H, W, 3) uint8 RGB, or RGBA when any frame has transparency.
Writing keeps the durations (GIF stores hundredths of a second) and the loop count (GIF: no
loop extension when the source had none, so it plays once); GIF frames are quantised to 256
colours each, as in any GIF. GIF and APNG writers hold every output frame in memory until the
file is written; WebP encodes them as they come.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from upsampler.io.files import atomic_output
from upsampler.io.formats import DEFAULT_MAX_PIXELS
from upsampler.io.images import ImageReadError, ImageTooLargeError, ImageWriteError

ANIMATED_FORMATS = ("GIF", "WEBP", "PNG")


@dataclass(frozen=True)
class AnimationInfo:
    """An animation's format ("GIF", "WEBP", "PNG"), size, frame durations (ms), loop count
    (0: forever; None: no loop stored) and whether any frame has transparency."""

    format: str
    width: int
    height: int
    durations: tuple[float, ...]
    loop: int | None
    has_alpha: bool

    @property
    def frames(self) -> int:
        return len(self.durations)


def is_animation(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bool:
    """Whether ``path`` is a GIF, WebP or PNG file with more than one frame. Files that do not
    open are not (reading them as images says what is wrong with them)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.format in ANIMATED_FORMATS and getattr(image, "n_frames", 1) > 1
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return False


def scan_animation(
    path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> AnimationInfo:
    """Read every frame once for its duration and transparency (nothing is kept).

    Raises:
        ImageTooLargeError: frames over ``max_pixels``.
        ImageReadError: not an animation, truncated or corrupt.
    """
    path = Path(path)
    with _opened(path, max_pixels) as image:
        durations, has_alpha = [], False
        loop = image.info.get("loop")
        if image.format != "GIF" and loop is None:
            loop = 0
        for index in range(image.n_frames):
            image.seek(index)
            image.load()  # WebP and APNG set a frame's duration when it is loaded
            durations.append(float(image.info.get("duration", 0) or 0))
            if not has_alpha:
                alpha = np.asarray(image.convert("RGBA"))[..., 3]
                has_alpha = bool((alpha < 255).any())
        return AnimationInfo(image.format, *image.size, tuple(durations), loop, has_alpha)


def read_animation_frames(
    path: str | os.PathLike, info: AnimationInfo, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Iterator[np.ndarray]:
    """The frames, one at a time: (H, W, 4) uint8 RGBA when ``info.has_alpha``, else RGB."""
    path = Path(path)
    mode = "RGBA" if info.has_alpha else "RGB"
    with _opened(path, max_pixels) as image:
        for index in range(image.n_frames):
            image.seek(index)
            yield np.asarray(image.convert(mode))


def write_animation(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    info: AnimationInfo,
    *,
    format: str | None = None,
    quality: int = 95,
) -> None:
    """Write (H, W, 3|4) uint8 frames as an animation, atomically, with ``info``'s durations
    and loop count, in ``format`` ("GIF", "WEBP" or "PNG"; by default the source's).

    Raises:
        ValueError: a format that does not animate.
        ImageWriteError: the file system refused; nothing is left behind.
    """
    format = (format or info.format).upper()
    if format not in ANIMATED_FORMATS:
        raise ValueError(f"an animation can be written as GIF, WebP or PNG, not {format}")
    images = (Image.fromarray(np.ascontiguousarray(frame)) for frame in frames)
    first = next(images)
    durations = list(info.durations)
    # Pillow's APNG writer goes through the frames twice: a list for it.
    rest = list(images) if format == "PNG" else images
    options: dict = {"save_all": True, "append_images": rest, "duration": durations}
    if info.loop is not None:
        options["loop"] = info.loop
    if format == "GIF":
        # Whole frames: each replaces the last (disposal 2 clears transparent areas first).
        options.update(disposal=2 if info.has_alpha else 1, optimize=False)
    elif format == "WEBP":
        options.update(quality=quality, lossless=quality == 100, exact=True)
    try:
        with atomic_output(path) as temporary:
            first.save(temporary, format=format, **options)
    except OSError as error:
        raise ImageWriteError(f"{path}: cannot write ({error.strerror or error})") from error


class _opened:
    """The animation opened by Pillow, its frame size checked; decoder failures become
    :class:`ImageReadError` naming the file."""

    def __init__(self, path: Path, max_pixels: int):
        self.path, self.max_pixels = path, max_pixels

    def __enter__(self) -> Image.Image:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                self.image = Image.open(self.path)
        except Exception as error:
            raise ImageReadError(f"{self.path}: not an image ({error})") from error
        width, height = self.image.size
        if width * height > self.max_pixels:
            self.image.close()
            raise ImageTooLargeError(
                f"{self.path}: {width}x{height} = {width * height:,} pixels per frame is over "
                f"the limit of {self.max_pixels:,} (decompression-bomb guard); raise it with "
                "--max-pixels"
            )
        return self.image

    def __exit__(self, kind, error, traceback) -> None:
        self.image.close()
        # Exceptions only: KeyboardInterrupt and GeneratorExit pass as they are.
        if isinstance(error, Exception) and not isinstance(error, ImageReadError):
            raise ImageReadError(
                f"{self.path}: corrupt or truncated animation ({error})"
            ) from error
