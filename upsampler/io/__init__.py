"""Image reading and writing that loses nothing and never half-writes."""

from upsampler.io.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    WRITE_FORMATS,
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
