"""The image files read and written, and the pixel limit: plain data with no imports, so the
command line can show them in its help without loading NumPy or Pillow."""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_SUFFIXES", "TRAINING_MAX_PIXELS", "WRITE_FORMATS"]

# The pixel limit of every image file read (upsampler.io.images.read_image): larger files are
# refused before their pixels are decoded, the decompression-bomb guard. Every command that
# reads images raises it with --max-pixels. 40 megapixels in: a 4x output of that is 640
# megapixels (about 2 GB as 8-bit RGB).
DEFAULT_MAX_PIXELS = 40_000_000
# The limit readers of training photos pass instead (the data loader, teacher caches, `upsampler
# degrade`, scripts/gather_photos.py): they crop or shrink what they read, and 45-100 megapixel
# camera photos are ordinary training data.
TRAINING_MAX_PIXELS = 200_000_000

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
