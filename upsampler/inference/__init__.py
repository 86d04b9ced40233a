"""Tiled inference: the Upscaler, pure tiling functions, and device/precision choice.

Its names are imported on first use (see ``upsampler._lazy``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from upsampler._lazy import attach

if TYPE_CHECKING:
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

__getattr__, __dir__ = attach(
    __name__,
    {
        "upsampler.inference.devices": (
            "resolve_device",
            "resolve_dtype",
            "supported_dtypes",
            "usable_dtypes",
        ),
        "upsampler.inference.tiling": (
            "TileBlender",
            "TilePlan",
            "blend",
            "blend_weights",
            "pad",
            "plan_tiles",
            "split",
            "tiled_apply",
        ),
        "upsampler.inference.upscaler": ("NonFiniteOutputError", "UpscaleProgress", "Upscaler"),
    },
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
