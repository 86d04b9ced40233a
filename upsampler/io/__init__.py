"""Image reading and writing that loses nothing and never half-writes.

Its names are imported on first use (see ``upsampler._lazy``); the formats and the pixel limit
live in the import-free ``upsampler.io.formats``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from upsampler._lazy import attach

if TYPE_CHECKING:
    from upsampler.io.formats import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, WRITE_FORMATS
    from upsampler.io.images import (
        AnimatedImageError,
        ImageData,
        ImageReadError,
        ImageTooLargeError,
        ImageWriteError,
        UnsupportedImageError,
        apply_orientation,
        atomic_output,
        format_for_suffix,
        from_pil,
        read_image,
        to_pil,
        write_image,
    )

__getattr__, __dir__ = attach(
    __name__,
    {
        "upsampler.io.formats": ("DEFAULT_MAX_PIXELS", "IMAGE_SUFFIXES", "WRITE_FORMATS"),
        "upsampler.io.images": (
            "AnimatedImageError",
            "ImageData",
            "ImageReadError",
            "ImageTooLargeError",
            "ImageWriteError",
            "UnsupportedImageError",
            "apply_orientation",
            "atomic_output",
            "format_for_suffix",
            "from_pil",
            "read_image",
            "to_pil",
            "write_image",
        ),
    },
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "WRITE_FORMATS",
    "AnimatedImageError",
    "ImageData",
    "ImageReadError",
    "ImageTooLargeError",
    "ImageWriteError",
    "UnsupportedImageError",
    "apply_orientation",
    "atomic_output",
    "format_for_suffix",
    "from_pil",
    "read_image",
    "to_pil",
    "write_image",
]
