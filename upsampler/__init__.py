"""upsampler: GigaGAN super-resolution for images, 4x and 8x, with or without text.

Importing the package is cheap: the names below, and the sub-packages, are imported the first
time they are used (see ``upsampler._lazy``), so torch and diffusers load with the first model
or engine, and the command line answers ``--help`` at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from upsampler._lazy import attach

__version__ = "0.1.0"

if TYPE_CHECKING:
    from upsampler.inference.upscaler import Upscaler
    from upsampler.models.aurasr import AuraSRUpsampler
    from upsampler.models.discriminator import GigaGANDiscriminator
    from upsampler.models.generator import GigaGANUpsampler, UpsamplerOutput
    from upsampler.text.base import TextEmbeddings

__getattr__, __dir__ = attach(
    __name__,
    {
        "upsampler.inference.upscaler": ("Upscaler",),
        "upsampler.models.aurasr": ("AuraSRUpsampler",),
        "upsampler.models.discriminator": ("GigaGANDiscriminator",),
        "upsampler.models.generator": ("GigaGANUpsampler", "UpsamplerOutput"),
        "upsampler.text.base": ("TextEmbeddings",),
    },
)

__all__ = [
    "AuraSRUpsampler",
    "GigaGANDiscriminator",
    "GigaGANUpsampler",
    "TextEmbeddings",
    "UpsamplerOutput",
    "Upscaler",
    "__version__",
]
