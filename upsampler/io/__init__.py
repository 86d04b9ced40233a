"""Finding, reading and writing image files: each done once, here.

* :mod:`upsampler.io.formats`: the suffixes read and written and the pixel limits (no imports);
* :mod:`upsampler.io.files`: :func:`find_images`, and atomic writing of files
  (:func:`atomic_output`) and model folders (``write_model_folder``);
* :mod:`upsampler.io.images`: the one image decoder (:func:`read_image`, :func:`read_rgb`,
  :func:`read_image_size`) and :func:`write_image`, which loses nothing and never half-writes;
* :mod:`upsampler.io.claims`: output files claimed by one of several workers.

Its names are imported on first use (see ``upsampler._lazy``); the formats, the pixel limits
and the file functions load neither NumPy nor Pillow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from upsampler._lazy import attach

if TYPE_CHECKING:
    from upsampler.io.files import atomic_output, find_images
    from upsampler.io.formats import (
        DEFAULT_MAX_PIXELS,
        IMAGE_SUFFIXES,
        TRAINING_MAX_PIXELS,
        WRITE_FORMATS,
    )
    from upsampler.io.images import (
        AnimatedImageError,
        ImageData,
        ImageReadError,
        ImageTooLargeError,
        ImageWriteError,
        UnsupportedImageError,
        apply_orientation,
        format_for_suffix,
        from_pil,
        read_image,
        read_image_size,
        read_rgb,
        to_pil,
        write_image,
    )

__getattr__, __dir__ = attach(
    __name__,
    {
        "upsampler.io.files": ("atomic_output", "find_images"),
        "upsampler.io.formats": (
            "DEFAULT_MAX_PIXELS",
            "IMAGE_SUFFIXES",
            "TRAINING_MAX_PIXELS",
            "WRITE_FORMATS",
        ),
        "upsampler.io.images": (
            "AnimatedImageError",
            "ImageData",
            "ImageReadError",
            "ImageTooLargeError",
            "ImageWriteError",
            "UnsupportedImageError",
            "apply_orientation",
            "format_for_suffix",
            "from_pil",
            "read_image",
            "read_image_size",
            "read_rgb",
            "to_pil",
            "write_image",
        ),
    },
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "TRAINING_MAX_PIXELS",
    "WRITE_FORMATS",
    "AnimatedImageError",
    "ImageData",
    "ImageReadError",
    "ImageTooLargeError",
    "ImageWriteError",
    "UnsupportedImageError",
    "apply_orientation",
    "atomic_output",
    "find_images",
    "format_for_suffix",
    "from_pil",
    "read_image",
    "read_image_size",
    "read_rgb",
    "to_pil",
    "write_image",
]
