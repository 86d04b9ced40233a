"""Integrations with other libraries, each imported only when first used.

``import upsampler`` stays cheap: ``upsampler.integrations.diffusers`` (which imports diffusers'
pipeline machinery, and with it transformers) loads the first time one of its names is asked for
(see ``upsampler._lazy``):

    from upsampler.integrations import UpscaledPipeline          # or
    from upsampler.integrations.diffusers import UpscaledPipeline
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from upsampler._lazy import attach

if TYPE_CHECKING:
    from upsampler.integrations.diffusers import (
        UpscaledPipeline,
        decode_latents,
        upscale_pipeline_output,
    )

__getattr__, __dir__ = attach(
    __name__,
    {
        "upsampler.integrations.diffusers": (
            "UpscaledPipeline",
            "decode_latents",
            "upscale_pipeline_output",
        ),
    },
)

__all__ = ["UpscaledPipeline", "decode_latents", "upscale_pipeline_output"]
