"""Degradations: turn high-resolution photos into realistic low-resolution training inputs.

Real-ESRGAN's second-order pipeline (blur kernels incl. generalized, plateau and sinc; random
resize; Gaussian and Poisson noise; JPEG; twice; then a final sinc and JPEG in random order),
batched on the images' device and seeded by an explicit ``torch.Generator``, plus presets for
the classic bicubic downscale and for diffusion outputs::

    from upsampler.degradations import DegradationPipeline, PairPool

    pipeline = DegradationPipeline.from_preset("realesrgan", scale=4)
    lq = pipeline(hq, generator=generator)  # (B, 3, H, W) -> (B, 3, H / 4, W / 4)

Its names are imported on first use (see ``upsampler._lazy``). See
``docs/degradations.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from upsampler._lazy import attach

if TYPE_CHECKING:
    from upsampler.degradations.config import (
        BlurStage,
        FinalStage,
        JpegStage,
        NoiseStage,
        ResizeStage,
        SincStage,
        Stage,
        parse_stage,
        parse_stages,
    )
    from upsampler.degradations.jpeg import jpeg_compress
    from upsampler.degradations.kernels import sample_blur_kernels, sample_sinc_kernels
    from upsampler.degradations.pipeline import DegradationPipeline, quantize
    from upsampler.degradations.pool import PairPool
    from upsampler.degradations.presets import PRESETS
    from upsampler.degradations.sharpen import unsharp_mask
    from upsampler.degradations.stages import (
        add_gaussian_noise,
        add_poisson_noise,
        apply_stage,
        filter2d,
        resize,
    )

__getattr__, __dir__ = attach(
    __name__,
    {
        "upsampler.degradations.config": (
            "BlurStage",
            "FinalStage",
            "JpegStage",
            "NoiseStage",
            "ResizeStage",
            "SincStage",
            "Stage",
            "parse_stage",
            "parse_stages",
        ),
        "upsampler.degradations.jpeg": ("jpeg_compress",),
        "upsampler.degradations.kernels": ("sample_blur_kernels", "sample_sinc_kernels"),
        "upsampler.degradations.pipeline": ("DegradationPipeline", "quantize"),
        "upsampler.degradations.pool": ("PairPool",),
        "upsampler.degradations.presets": ("PRESETS",),
        "upsampler.degradations.sharpen": ("unsharp_mask",),
        "upsampler.degradations.stages": (
            "add_gaussian_noise",
            "add_poisson_noise",
            "apply_stage",
            "filter2d",
            "resize",
        ),
    },
)

__all__ = [
    "PRESETS",
    "BlurStage",
    "DegradationPipeline",
    "FinalStage",
    "JpegStage",
    "NoiseStage",
    "PairPool",
    "ResizeStage",
    "SincStage",
    "Stage",
    "add_gaussian_noise",
    "add_poisson_noise",
    "apply_stage",
    "filter2d",
    "jpeg_compress",
    "parse_stage",
    "parse_stages",
    "quantize",
    "resize",
    "sample_blur_kernels",
    "sample_sinc_kernels",
    "unsharp_mask",
]
