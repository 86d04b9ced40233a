"""Tiled inference: the Upscaler, pure tiling functions, device/precision choice, and video.

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
    from upsampler.inference.video import VideoProgress, VideoResult, upscale_video

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
        "upsampler.inference.video": ("VideoProgress", "VideoResult", "upscale_video"),
    },
)

__all__ = [
    "NonFiniteOutputError",
    "TileBlender",
    "TilePlan",
    "UpscaleProgress",
    "Upscaler",
    "VideoProgress",
    "VideoResult",
    "blend",
    "blend_weights",
    "pad",
    "plan_tiles",
    "resolve_device",
    "resolve_dtype",
    "split",
    "supported_dtypes",
    "tiled_apply",
    "upscale_video",
    "usable_dtypes",
]
