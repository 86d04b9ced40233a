"""Tiled inference: the Upscaler and pure tiling functions."""

from upsampler.inference.registry import (
    BUILTIN_MODELS,
    BuiltinModel,
    ModelUnavailableError,
    ModelWeightsError,
    builtin_names,
    builtin_path,
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
    check_weights,
    load_upsampler,
    resolve_device,
    resolve_dtype,
    supported_dtypes,
)

__all__ = [
    "BUILTIN_MODELS",
    "BuiltinModel",
    "ModelUnavailableError",
    "ModelWeightsError",
    "NonFiniteOutputError",
    "TileBlender",
    "TilePlan",
    "UpscaleProgress",
    "Upscaler",
    "blend",
    "blend_weights",
    "builtin_names",
    "builtin_path",
    "check_weights",
    "load_upsampler",
    "pad",
    "plan_tiles",
    "resolve_device",
    "resolve_dtype",
    "split",
    "supported_dtypes",
    "tiled_apply",
]
