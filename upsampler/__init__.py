"""upsampler: GigaGAN super-resolution for images, 4x and 8x, with or without text."""

__version__ = "0.1.0"

from upsampler.inference.upscaler import Upscaler
from upsampler.models.aurasr import AuraSRUpsampler
from upsampler.models.discriminator import GigaGANDiscriminator
from upsampler.models.generator import GigaGANUpsampler, UpsamplerOutput
from upsampler.text.base import TextEmbeddings

__all__ = [
    "AuraSRUpsampler",
    "GigaGANDiscriminator",
    "GigaGANUpsampler",
    "TextEmbeddings",
    "UpsamplerOutput",
    "Upscaler",
    "__version__",
]
