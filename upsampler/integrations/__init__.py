"""Integrations with other libraries, each imported only when first used.

``import upsampler`` stays cheap: ``upsampler.integrations.diffusers`` (which imports diffusers'
pipeline machinery, and with it transformers) loads the first time one of its names is asked for:

    from upsampler.integrations import UpscaledPipeline          # or
    from upsampler.integrations.diffusers import UpscaledPipeline
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from upsampler.integrations.diffusers import (
        UpscaledPipeline,
        decode_latents,
        upscale_pipeline_output,
    )

# name -> the module that defines it, imported on first access (PEP 562 module __getattr__).
_LAZY = {
    "UpscaledPipeline": "upsampler.integrations.diffusers",
    "decode_latents": "upsampler.integrations.diffusers",
    "upscale_pipeline_output": "upsampler.integrations.diffusers",
}

__all__ = ["UpscaledPipeline", "decode_latents", "upscale_pipeline_output"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
