"""Tiled inference: the Upscaler, pure tiling functions, and device/precision choice."""

from upsampler.inference.devices import (
    resolve_device,
    resolve_dtype,
    supported_dtypes,
    usable_dtypes,
)
from upsampler.inference.tiling import (
    TileBlender,
    TilePlan,
    blend,
    blend_weights,
    pad,
    plan_tiles,
    split,
    tiled_apply,
)
from upsampler.inference.upscaler import (
    NonFiniteOutputError,
    UpscaleProgress,
    Upscaler,
)

__all__ = [
    "NonFiniteOutputError",
    "TileBlender",
    "TilePlan",
    "UpscaleProgress",
    "Upscaler",
    "blend",
    "blend_weights",
    "pad",
    "plan_tiles",
    "resolve_device",
    "resolve_dtype",
    "split",
    "supported_dtypes",
    "tiled_apply",
    "usable_dtypes",
]
