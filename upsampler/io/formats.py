"""The image files read and written, the pixel limit and the PNG compression level: plain data
with no imports, so the command line can show them in its help without loading NumPy or
Pillow."""

from __future__ import annotations

__all__ = [
    "ANIMATION_SUFFIXES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_PNG_COMPRESSION",
    "IMAGE_SUFFIXES",
    "TRAINING_MAX_PIXELS",
    "VIDEO_SUFFIXES",
    "WRITE_FORMATS",
]

# The pixel limit of every image file read (upsampler.io.images.read_image): larger files are
# refused before their pixels are decoded, the decompression-bomb guard. Every command that
# reads images raises it with --max-pixels. 40 megapixels in: a 4x output of that is 640
# megapixels (about 2 GB as 8-bit RGB).
DEFAULT_MAX_PIXELS = 40_000_000

# The limit readers of training photos pass instead (the data loader, teacher caches, `upsampler
# degrade`, scripts/gather_photos.py): they crop or shrink what they read, and 45-100 megapixel
# camera photos are ordinary training data.
TRAINING_MAX_PIXELS = 200_000_000

# zlib level of PNG outputs. For a 3840x2160 upscale (2 cores): level 1 0.49 s and 5.8 MiB,
# 3 0.80 s and 5.4 MiB, 6 (Pillow's default) 2.17 s and 4.7 MiB, 9 22.1 s and 4.4 MiB: 3 saves
# most of the time for 15% more bytes.
DEFAULT_PNG_COMPRESSION = 3

# Input suffixes and the Pillow format each one is read as; other files in a folder are ignored.
IMAGE_SUFFIXES: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".gif": "GIF",
}
# Formats written, with the suffix they get.
WRITE_FORMATS: dict[str, str] = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "WEBP": ".webp",
    "TIFF": ".tif",
    "BMP": ".bmp",
}
# Suffixes of image files that may hold an animation (GIF, WebP, APNG): upscaled as one
# (upsampler.io.animation) when they have more than one frame.
ANIMATION_SUFFIXES = (".gif", ".webp", ".png", ".apng")
# Video files a folder gives whatever their content says (so a broken one is reported, not
# skipped); files with other suffixes are taken as videos only when FFmpeg probes them as one.
VIDEO_SUFFIXES = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg",
    ".flv", ".wmv", ".asf", ".3gp", ".ogv", ".nut", ".mxf",
)  # fmt: skip
