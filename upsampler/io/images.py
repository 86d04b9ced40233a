"""Reading and writing images without losing anything, and without ever half-writing a file.

What :func:`read_image` guarantees:

* The EXIF orientation is applied, so pixels are upright; the EXIF block is carried with its
  orientation reset to 1 (so viewers do not rotate the output a second time).
* The ICC profile is carried as is. CMYK images are converted to RGB through their embedded
  profile when they have one (the output then carries an sRGB profile), naively otherwise.
* Alpha is kept (RGBA, LA, palette images with transparency). Greyscale stays greyscale.
* 16-bit PNG and TIFF stay 16-bit: Pillow reads only greyscale 16-bit, so colour and
  grey+alpha 16-bit files are read and written with ``pypng`` (PNG) and ``tifffile`` (TIFF).
* Bad inputs raise :class:`ImageReadError` (a ``ValueError``) with the reason: missing or
  unreadable, zero bytes, not an image, truncated or corrupt, animated or multi-frame
  (:class:`AnimatedImageError`: extract the frames first), over the pixel limit
  (:class:`ImageTooLargeError`, the decompression-bomb guard, ``max_pixels``), or a pixel
  format with no faithful place to go (:class:`UnsupportedImageError`: 32-bit float, ...).

It is the one decoder of image files in the project. :func:`read_rgb` reads through it into an
8-bit RGB Pillow image (training crops, degradation previews), and :func:`read_image_size`
applies its checks to a file's header alone. All three take ``max_pixels``, whose default
``DEFAULT_MAX_PIXELS`` (:mod:`upsampler.io.formats`) every command can raise with
``--max-pixels``, and ``data``, the bytes of a file already in memory (a tar member).

What :func:`write_image` guarantees:

* Atomic writes (:func:`upsampler.io.files.atomic_output`): the image goes to a hidden
  temporary file in the target folder, is flushed to disk, then renamed over the target. An
  interrupted run leaves either the old file or the complete new one, never a truncated image;
  the temporary file is removed on any error, and one left by a killed process is named
  ``.NAME.*.part`` (not an image suffix).
* ICC profile and EXIF written where the format stores them (PNG, JPEG, WebP, TIFF; 16-bit
  colour TIFF keeps the ICC profile but not EXIF, which tifffile cannot write).
* TIFF is deflate-compressed, except with EXIF, which only Pillow's uncompressed writer keeps.
* Bit depth kept where the format has it: 16-bit for PNG and TIFF; JPEG, WebP and BMP are 8-bit.
  Greyscale stays greyscale except in WebP, which has no greyscale mode (saved as RGB).
  JPEG and BMP cannot store alpha (Pillow reads BMP alpha back as RGB): writing an image with
  alpha in either is a ``ValueError``.

Pixels travel as :class:`ImageData`: float32 (H, W, C) in [0, 1], which holds 8- and 16-bit
values exactly (float32 has a 24-bit mantissa).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

# atomic_output lives in upsampler.io.files; it is imported from here by older callers too.
from upsampler.io.files import atomic_output
from upsampler.io.formats import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_PNG_COMPRESSION,
    IMAGE_SUFFIXES,
    WRITE_FORMATS,
)

ORIENTATION_TAG = 0x0112
# TIFF tags that describe the file's own layout: meaningless (and wrong) once copied as EXIF.
_TIFF_LAYOUT_TAGS = {
    254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324,
    325, 338, 339, 34675,
}  # fmt: skip
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ImageReadError(ValueError):
    """An input that cannot be read faithfully; the message says which file and why."""


class ImageTooLargeError(ImageReadError):
    """More pixels than the configured limit (the decompression-bomb guard)."""


class AnimatedImageError(ImageReadError):
    """An animated or multi-frame image: not supported, extract the frames first."""


class UnsupportedImageError(ImageReadError):
    """An image whose pixel format has no faithful conversion (e.g. 32-bit float)."""


class ImageWriteError(OSError):
    """The output could not be written (the target is left as it was)."""


@dataclass(frozen=True)
class ImageData:
    """Decoded pixels and the metadata carried to the output.

    pixels: float32 (H, W, C) in [0, 1]; C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA.
    bit_depth: 8 or 16 bits per channel, as in the source; kept on writing where the format can.
    icc_profile: the ICC profile bytes, or None.
    exif: the EXIF block (with its ``Exif\\0\\0`` header), orientation reset to 1, or None.
    format: the source's Pillow format name ("PNG", "JPEG", ...), or None.
    """

    pixels: np.ndarray
    bit_depth: int = 8
    icc_profile: bytes | None = None
    exif: bytes | None = None
    format: str | None = None

    def __post_init__(self) -> None:
        if self.pixels.ndim != 3 or self.pixels.shape[2] not in (1, 2, 3, 4):
            raise ValueError(f"pixels must be (H, W, 1|2|3|4), got {self.pixels.shape}")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth}")

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def channels(self) -> int:
        return self.pixels.shape[2]

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)

    @property
    def is_grey(self) -> bool:
        return self.channels in (1, 2)

    @property
    def mode(self) -> str:
        """The Pillow-style mode name: L, LA, RGB or RGBA (with ``;16`` for 16-bit)."""
        name = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[self.channels]
        return name + (";16" if self.bit_depth == 16 else "")

    def with_pixels(self, pixels: np.ndarray) -> ImageData:
        """The same metadata with other pixels (e.g. the upscaled ones), same channel count."""
        if pixels.ndim != 3 or pixels.shape[2] != self.channels:
            raise ValueError(f"expected (H, W, {self.channels}) pixels, got {pixels.shape}")
        return replace(self, pixels=np.asarray(pixels, dtype=np.float32))


# --------------------------------------------------------------------------- reading


def read_image(
    path: str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    data: bytes | None = None,
) -> ImageData:
    """Decode an image file into upright pixels plus its metadata.

    Args:
        path: the file; with ``data``, only the name messages give it (``shard.tar:a.jpg``).
        max_pixels: images with more pixels are refused before their pixels are decoded (the
            decompression-bomb guard). Any value works, above Pillow's own limit too; the
            commands pass their ``--max-pixels`` here.
        data: the file's bytes, when they are in memory already (a member of a tar shard).

    Raises:
        ImageReadError: and its subclasses, with the file and the reason in the message.
    """
    path = Path(path)
    head = _head(path, data)
    with _opened(path, data, head, max_pixels) as image:
        decoded = (
            _read_tiff16(path, data, max_pixels)
            if image is None
            else _decode(image, path, data, head, max_pixels)
        )
        return ImageData(
            pixels=_to_float(decoded.array, decoded.bit_depth),
            bit_depth=decoded.bit_depth,
            icc_profile=decoded.icc_profile,
            exif=decoded.exif,
            format=decoded.format,
        )


def read_rgb(
    path: str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    data: bytes | None = None,
) -> Image.Image:
    """Decode an image file into an upright 8-bit RGB Pillow image, for code that works on
    RGB photos (training crops, degradation previews): grey is repeated to RGB, alpha dropped
    (the colour under it kept, as Pillow's ``convert("RGB")``), 16 bits rounded to 8;
    metadata is not kept. Reads, guards and fails exactly as :func:`read_image`.
    """
    path = Path(path)
    head = _head(path, data)
    with _opened(path, data, head, max_pixels) as image:
        if image is not None and _plain_rgb(image, head):
            # The common case (8-bit RGB JPEG, PNG, WebP) stays in Pillow: going through NumPy
            # would copy the whole image twice more, a third of the decoding time.
            _check_frames(image, path)
            _check_size(path, *image.size, max_pixels)
            image.load()
            return ImageOps.exif_transpose(image)  # a new image: it outlives the file
        decoded = (
            _read_tiff16(path, data, max_pixels)
            if image is None
            else _decode(image, path, data, head, max_pixels)
        )
        array = decoded.array
        rgb = np.repeat(array[..., :1], 3, axis=2) if array.shape[2] < 3 else array[..., :3]
        if decoded.bit_depth == 16:
            rgb = _to_int(_to_float(rgb, 16), 8)
        return Image.fromarray(np.ascontiguousarray(rgb))


def read_image_size(
    path: str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    data: bytes | None = None,
) -> tuple[int, int]:
    """The upright (width, height) of an image file, read from its header without decoding
    its pixels: a fast check of many files before any is read.

    Refuses, with the same errors as :func:`read_image`, what it can tell from the header: a
    missing or empty file, not an image, animated or multi-frame, over ``max_pixels``. A file
    it accepts can still turn out truncated or corrupt when read.
    """
    path = Path(path)
    head = _head(path, data)
    with _opened(path, data, head, max_pixels) as image:
        if image is None:  # a TIFF only tifffile opens: rare enough to be decoded for its size
            array = _read_tiff16(path, data, max_pixels).array
            return array.shape[1], array.shape[0]
        _check_frames(image, path)
        _check_size(path, *image.size, max_pixels)
        width, height = image.size
        # Pillow finds a PNG's eXIf chunk after the pixel data only by decoding them: such a
        # rare file's size is given as stored.
        in_header = image.format != "PNG" or "exif" in image.info
        orientation = image.getexif().get(ORIENTATION_TAG, 1) if in_header else 1
        if orientation in (5, 6, 7, 8):  # turned a quarter
            width, height = height, width
        return width, height


@dataclass(frozen=True)
class _Decoded:
    """Upright integer pixels, before :func:`read_image` makes floats of them."""

    array: np.ndarray  # (H, W, C) uint8 or uint16
    bit_depth: int
    icc_profile: bytes | None
    exif: bytes | None
    format: str | None


def _head(path: Path, data: bytes | None) -> bytes:
    """The file's first bytes (they tell 16-bit PNG and TIFF apart), once it is known to be a
    readable, non-empty file."""
    if data is not None:
        if not data:
            raise ImageReadError(f"{path}: empty file (0 bytes)")
        return data[:32]
    try:
        if not path.is_file():
            raise ImageReadError(
                f"{path}: no such file" if not path.exists() else f"{path}: not a file"
            )
        if path.stat().st_size == 0:
            raise ImageReadError(f"{path}: empty file (0 bytes)")
        with open(path, "rb") as handle:
            return handle.read(32)
    except OSError as error:
        raise ImageReadError(f"{path}: cannot read ({error.strerror or error})") from error


def _source(path: Path, data: bytes | None) -> Path | io.BytesIO:
    return io.BytesIO(data) if data is not None else path


@contextlib.contextmanager
def _opened(
    path: Path, data: bytes | None, head: bytes, max_pixels: int
) -> Iterator[Image.Image | None]:
    """The file opened by Pillow under the pixel limit; None for a TIFF that only tifffile
    opens (16-bit grey + alpha). Every failure, in opening or in the block (truncated data,
    a decompression bomb, memory), becomes an :class:`ImageReadError` naming the file."""
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check replaces Pillow's decompression-bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                with _pillow_pixel_limit(max_pixels):  # Pillow checks the size in open()
                    image = Image.open(_source(path, data))
            except UnidentifiedImageError:
                if head[:4] not in _TIFF_MAGIC:
                    raise
                image = None
            with image if image is not None else contextlib.nullcontext():
                yield image
    except ImageReadError:
        raise
    except Image.DecompressionBombError as error:  # only past twice max_pixels: see below
        raise ImageTooLargeError(
            f"{path}: over the limit of {max_pixels:,} pixels (decompression-bomb guard: "
            f"{error}); raise max_pixels (--max-pixels) to allow it"
        ) from error
    except UnidentifiedImageError as error:
        raise ImageReadError(f"{path}: not an image (or a format Pillow cannot read)") from error
    except MemoryError as error:
        raise ImageReadError(f"{path}: not enough memory to decode it") from error
    except Exception as error:  # every decoder failure of a bad file: truncated, corrupt, ...
        raise ImageReadError(f"{path}: corrupt or truncated image ({error})") from error


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_pixel_limit(max_pixels: int) -> Iterator[None]:
    """Let Pillow's own bomb guard follow ``max_pixels`` while one file is opened.

    Pillow refuses images over twice its global ``Image.MAX_IMAGE_PIXELS`` (about 179M pixels
    by default) before our own check can see them, so a larger ``max_pixels`` would have no
    effect. The global is raised to ``max_pixels`` (never lowered) for the duration, under a
    lock, and restored, so that reading an image changes nothing for other Pillow users
    (Pillow checks sizes when it opens a file, not when it decodes one).
    """
    with _PILLOW_LIMIT_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        if previous is not None and max_pixels > previous:
            Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = previous


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{path}: {width}x{height} = {width * height:,} pixels is over the limit of "
            f"{max_pixels:,} (decompression-bomb guard); raise max_pixels (--max-pixels) to allow it"
        )


def _check_frames(image: Image.Image, path: Path) -> None:
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        raise AnimatedImageError(
            f"{path}: animated or multi-frame image ({frames} frames) is not supported; "
            "extract the frames first"
        )


def _plain_rgb(image: Image.Image, head: bytes) -> bool:
    """Whether Pillow decodes ``image`` to exactly the pixels :func:`_decode` gives: 8-bit RGB,
    without a transparent colour, not 16-bit data that Pillow would cut to 8 bits."""
    return (
        image.mode == "RGB"
        and "transparency" not in image.info
        and not _png16_colour(head)
        and not (image.format == "TIFF" and _is_tiff16_colour(image))
    )


def _decode(
    image: Image.Image, path: Path, data: bytes | None, head: bytes, max_pixels: int
) -> _Decoded:
    _check_frames(image, path)
    _check_size(path, *image.size, max_pixels)
    if image.format == "TIFF" and _is_tiff16_colour(image):
        return _read_tiff16(path, data, max_pixels)
    png16 = _png16_colour(head)
    image.load()  # decode now, so truncation is reported here
    exif = image.getexif()
    orientation = exif.get(ORIENTATION_TAG, 1)
    icc_profile = image.info.get("icc_profile") or None
    if png16:
        array, bit_depth = _read_png16(path, data), 16
    else:
        array, bit_depth, icc_profile = _pil_pixels(image, icc_profile, path)
    return _Decoded(
        array=apply_orientation(array, orientation),
        bit_depth=bit_depth,
        icc_profile=icc_profile,
        exif=_exif_bytes(exif, tiff=image.format == "TIFF"),
        format=image.format,
    )


def _pil_pixels(
    image: Image.Image, icc_profile: bytes | None, path: Path
) -> tuple[np.ndarray, int, bytes | None]:
    """(H, W, C) uint8 or uint16 pixels of a Pillow image, its bit depth and ICC profile."""
    mode = image.mode
    if mode in ("L", "RGB") and "transparency" in image.info:
        # One transparent colour (PNG tRNS, greyscale GIF): make it a real alpha channel.
        converted = image.convert(mode + "A" if mode == "L" else "RGBA")
    elif mode in ("L", "LA", "RGB", "RGBA"):
        converted = image
    elif mode == "1":
        converted = image.convert("L")
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        converted = image.convert("RGBA" if has_alpha else "RGB")
    elif mode == "La":
        converted = image.convert("LA")
    elif mode == "RGBa":
        converted = image.convert("RGBA")
    elif mode in ("RGBX", "YCbCr", "HSV"):
        converted = image.convert("RGB")
    elif mode == "CMYK":
        converted, icc_profile = _cmyk_to_rgb(image, icc_profile)
    elif mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)[..., None], 16, icc_profile
    elif mode == "I":
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise UnsupportedImageError(
                f"{path}: 32-bit integer pixels outside [0, 65535] are not supported"
            )
        return values.astype(np.uint16)[..., None], 16, icc_profile
    else:
        raise UnsupportedImageError(f"{path}: pixel mode {mode!r} is not supported")
    array = np.asarray(converted, dtype=np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    return array, 8, icc_profile


def _cmyk_to_rgb(image: Image.Image, icc_profile: bytes | None) -> tuple[Image.Image, bytes | None]:
    """CMYK -> RGB through the embedded profile (output tagged sRGB), else Pillow's naive formula."""
    if icc_profile:
        with contextlib.suppress(ImageCms.PyCMSError, OSError):
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            srgb = ImageCms.createProfile("sRGB")
            rgb = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
            return rgb, ImageCms.ImageCmsProfile(srgb).tobytes()
    # Without a (usable) profile the colours are approximate; the CMYK profile cannot go on RGB.
    return image.convert("RGB"), None


def _png16_colour(head: bytes) -> bool:
    """Whether PNG header bytes describe a 16-bit image Pillow would truncate (not plain grey)."""
    if not head.startswith(_PNG_MAGIC) or len(head) < 26:
        return False
    bit_depth, colour_type = head[24], head[25]
    return bit_depth == 16 and colour_type in (2, 4, 6)


def _read_png16(path: Path, data: bytes | None) -> np.ndarray:
    import png  # pypng: Pillow has no 16-bit colour modes

    reader = png.Reader(bytes=data) if data is not None else png.Reader(filename=str(path))
    width, height, rows, info = reader.asDirect()
    array = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    return array.reshape(height, width, info["planes"])


def _is_tiff16_colour(image: Image.Image) -> bool:
    bits = image.tag_v2.get(258, (8,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    return max(bits) > 8 and image.tag_v2.get(277, 1) > 1


def _read_tiff16(path: Path, data: bytes | None, max_pixels: int) -> _Decoded:
    import tifffile

    with tifffile.TiffFile(_source(path, data)) as tiff:
        if len(tiff.pages) > 1:
            raise AnimatedImageError(
                f"{path}: multi-page TIFF ({len(tiff.pages)} pages) is not supported; "
                "extract the pages first"
            )
        page = tiff.pages.first
        _check_size(path, page.imagewidth, page.imagelength, max_pixels)
        if page.photometric not in (1, 2) or page.dtype != np.uint16:
            raise UnsupportedImageError(
                f"{path}: {page.dtype} TIFF with photometric {page.photometric!r} is not supported "
                "(16-bit RGB, RGBA, grey and grey + alpha are)"
            )
        try:
            array = page.asarray()
        except ValueError as error:  # e.g. LZW without the optional imagecodecs package
            raise UnsupportedImageError(
                f"{path}: cannot decode this 16-bit TIFF ({error}); `pip install imagecodecs` "
                "adds the missing codecs"
            ) from error
        if page.axes.startswith("S"):  # planar: (S, Y, X) -> (Y, X, S)
            array = np.moveaxis(array, 0, -1)
        if array.ndim == 2:
            array = array[..., None]
        icc = page.tags.get(34675)
        icc_profile = bytes(icc.value) if icc else None
        orientation = page.tags.get(274)
        orientation = int(orientation.value) if orientation else 1
    return _Decoded(
        array=apply_orientation(array[..., :4], orientation),
        bit_depth=16,
        icc_profile=icc_profile,
        exif=None,
        format="TIFF",
    )


def _exif_bytes(exif: Image.Exif, *, tiff: bool) -> bytes | None:
    """The EXIF block with orientation reset to 1; TIFF layout tags dropped."""
    if not len(exif):
        return None
    if tiff:
        for tag in _TIFF_LAYOUT_TAGS & set(exif):
            del exif[tag]
        if not len(exif):
            return None
    if ORIENTATION_TAG in exif:
        exif[ORIENTATION_TAG] = 1
    return exif.tobytes()


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Make (H, W, C) pixels upright for an EXIF orientation 1-8 (as PIL.ImageOps.exif_transpose)."""
    transposed = np.swapaxes(array, 0, 1)
    result = {
        2: lambda: array[:, ::-1],
        3: lambda: array[::-1, ::-1],
        4: lambda: array[::-1],
        5: lambda: transposed,
        6: lambda: transposed[:, ::-1],
        7: lambda: transposed[::-1, ::-1],
        8: lambda: transposed[::-1],
    }.get(orientation, lambda: array)()
    return np.ascontiguousarray(result)


def _to_float(array: np.ndarray, bit_depth: int) -> np.ndarray:
    return array.astype(np.float32) / np.float32(2**bit_depth - 1)


def _to_int(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    peak = 2**bit_depth - 1
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.clip(np.rint(pixels * peak), 0, peak).astype(dtype)


# --------------------------------------------------------------------------- PIL conversions


def from_pil(image: Image.Image) -> ImageData:
    """Pixels of an in-memory Pillow image, as they are (no EXIF rotation: they were given so)."""
    icc_profile = image.info.get("icc_profile") or None
    array, bit_depth, icc_profile = _pil_pixels(image, icc_profile, Path("<PIL image>"))
    exif = image.info.get("exif")
    return ImageData(
        pixels=_to_float(array, bit_depth),
        bit_depth=bit_depth,
        icc_profile=icc_profile,
        exif=exif if isinstance(exif, bytes) and exif else None,
        format=image.format,
    )


def to_pil(data: ImageData) -> Image.Image:
    """A Pillow image of ``data``: L, LA, RGB, RGBA (8-bit) or I;16 (16-bit grey).

    Pillow has no 16-bit colour modes: 16-bit colour comes back as 8-bit (use
    :func:`write_image` to keep 16 bits on disk). ICC and EXIF go into ``image.info``, where
    ``Image.save`` picks them up.
    """
    if data.bit_depth == 16 and data.channels == 1:
        image = Image.fromarray(_to_int(data.pixels[..., 0], 16))
    else:
        array = _to_int(data.pixels, 8)
        image = Image.fromarray(array[..., 0] if data.channels == 1 else array)
    if data.icc_profile:
        image.info["icc_profile"] = data.icc_profile
    if data.exif:
        image.info["exif"] = data.exif
    return image


# --------------------------------------------------------------------------- writing


def format_for_suffix(path: str | os.PathLike) -> str:
    """The Pillow format a path's suffix asks for ("PNG", "JPEG", "WEBP", "TIFF", "BMP")."""
    suffix = Path(path).suffix.lower()
    name = IMAGE_SUFFIXES.get(suffix)
    if name not in WRITE_FORMATS:
        raise ValueError(
            f"cannot write {suffix or 'files without a suffix'!r}; use one of "
            f"{', '.join(sorted({s for s, f in IMAGE_SUFFIXES.items() if f in WRITE_FORMATS}))}"
        )
    return name


def write_image(
    path: str | os.PathLike,
    data: ImageData,
    *,
    format: str | None = None,
    quality: int = 95,
    png_compression: int = DEFAULT_PNG_COMPRESSION,
) -> None:
    """Write ``data`` to ``path`` atomically, keeping bit depth, alpha, ICC and EXIF where the
    format can (see the module docstring).

    Args:
        format: "PNG", "JPEG", "WEBP", "TIFF" or "BMP"; by default from the suffix.
        quality: 1-100 for JPEG and WebP (WebP at 100 is lossless); ignored by lossless formats.
        png_compression: zlib level 0-9 of PNG files (higher: smaller and slower; lossless).

    Raises:
        ValueError: an unknown format, a bad quality, or alpha asked of JPEG.
        ImageWriteError: the file system refused; nothing is left behind.
    """
    format = (format or format_for_suffix(path)).upper()
    format = {"JPG": "JPEG", "TIF": "TIFF"}.get(format, format)
    if format not in WRITE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(WRITE_FORMATS)}, got {format!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in [1, 100], got {quality}")
    if not 0 <= png_compression <= 9:
        raise ValueError(f"png_compression must be in [0, 9], got {png_compression}")
    if format in ("JPEG", "BMP") and data.has_alpha:
        raise ValueError(f"{format} cannot store alpha; write this image as png, webp or tiff")
    try:
        with atomic_output(path) as temporary:
            if data.bit_depth == 16 and format == "PNG" and data.channels > 1:
                _write_png16(temporary, data, png_compression)
            elif data.bit_depth == 16 and format == "TIFF" and data.channels > 1:
                _write_tiff16(temporary, data)
            else:
                _write_pil(temporary, data, format, quality, png_compression)
    except (ValueError, ImageWriteError):
        raise
    except OSError as error:
        raise ImageWriteError(f"{path}: cannot write ({error.strerror or error})") from error


def _write_pil(
    path: Path, data: ImageData, format: str, quality: int, png_compression: int
) -> None:
    if data.bit_depth == 16 and format in ("PNG", "TIFF"):
        image = to_pil(data)  # only 16-bit grey reaches here: I;16
    else:
        image = to_pil(replace(data, bit_depth=8))
    if format == "WEBP" and image.mode == "LA":
        image = image.convert("RGBA")  # WebP has no grey + alpha
    options: dict = {}
    if data.icc_profile and format != "BMP":
        options["icc_profile"] = data.icc_profile
    if data.exif and format != "BMP":
        options["exif"] = data.exif
    if format == "JPEG":
        # 4:4:4 chroma at high quality: 4:2:0 would blur the colour detail we just added.
        options.update(quality=quality, subsampling=0 if quality >= 90 else 2)
    elif format == "WEBP":
        # exact: lossless WebP would otherwise drop the colour under fully transparent pixels.
        options.update(quality=quality, lossless=quality == 100, exact=True)
    elif format == "PNG":
        options.update(compress_level=png_compression)
    elif format == "TIFF" and not data.exif:
        # Deflate goes through libtiff, which cannot write an EXIF sub-IFD: with EXIF the file
        # stays uncompressed (Pillow's own writer) rather than lose the metadata.
        options.update(compression="tiff_deflate")
    image.save(path, format=format, **options)


def _write_png16(path: Path, data: ImageData, compression: int) -> None:
    import png  # pypng: Pillow has no 16-bit colour modes

    array = _to_int(data.pixels, 16)
    height, width, channels = array.shape
    writer = png.Writer(
        width,
        height,
        greyscale=channels in (1, 2),
        alpha=channels in (2, 4),
        bitdepth=16,
        compression=compression,
    )
    buffer = io.BytesIO()
    writer.write(buffer, array.reshape(height, width * channels))
    chunks = list(png.Reader(bytes=buffer.getvalue()).chunks())
    extra = []
    if data.icc_profile:
        extra.append((b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(data.icc_profile)))
    if data.exif:
        exif = data.exif[6:] if data.exif.startswith(b"Exif\x00\x00") else data.exif
        extra.append((b"eXIf", exif))
    with open(path, "wb") as handle:
        png.write_chunks(handle, [chunks[0], *extra, *chunks[1:]])  # IHDR first


def _write_tiff16(path: Path, data: ImageData) -> None:
    import tifffile

    array = _to_int(data.pixels, 16)
    tifffile.imwrite(
        path,
        array,
        photometric="minisblack" if data.is_grey else "rgb",
        extrasamples=["unassalpha"] if data.has_alpha else None,
        compression="zlib",
        iccprofile=data.icc_profile,
        metadata=None,
    )
