"""Networks (GigaGAN generator and discriminator, AuraSR's generator), the model contract the
engine runs them through, and the one loader for built-in names, folders, files and Hub ids."""

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
