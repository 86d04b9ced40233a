"""Networks (GigaGAN generator and discriminator, AuraSR's generator), the model contract the
engine runs them through, and the one loader for built-in names, folders, files and Hub ids.

Its names are imported on first use (see ``upsampler._lazy``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from upsampler._lazy import attach

if TYPE_CHECKING:
    from upsampler.models.contract import UpsamplerModel
    from upsampler.models.loading import check_weights, describe, load_model
    from upsampler.models.registry import (
        BUILTIN_MODELS,
        BuiltinModel,
        ModelUnavailableError,
        ModelWeightsError,
        builtin_names,
        builtin_path,
    )
    from upsampler.models.spandrel_model import CheckpointError, SpandrelUpsampler

__getattr__, __dir__ = attach(
    __name__,
    {
        "upsampler.models.contract": ("UpsamplerModel",),
        "upsampler.models.loading": ("check_weights", "describe", "load_model"),
        "upsampler.models.registry": (
            "BUILTIN_MODELS",
            "BuiltinModel",
            "ModelUnavailableError",
            "ModelWeightsError",
            "builtin_names",
            "builtin_path",
        ),
        "upsampler.models.spandrel_model": ("CheckpointError", "SpandrelUpsampler"),
    },
)

__all__ = [
    "BUILTIN_MODELS",
    "BuiltinModel",
    "CheckpointError",
    "ModelUnavailableError",
    "ModelWeightsError",
    "SpandrelUpsampler",
    "UpsamplerModel",
    "builtin_names",
    "builtin_path",
    "check_weights",
    "describe",
    "load_model",
]
