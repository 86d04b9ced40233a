"""The built-in degradation presets: named stage lists.

- ``realesrgan``: Real-ESRGAN x4plus's second-order pipeline with its published settings
  (``options/train_realesrgan_x4plus.yml`` in the Real-ESRGAN repository; Wang et al.,
  "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic Data", ICCVW
  2021, Sec. 3). Stage order follows its ``feed_data``.
- ``bicubic``: the classic anti-aliased bicubic downscale (MATLAB/PIL ``imresize``-style).
- ``diffusion``: for the plug-in stage after a diffusion model, whose low-resolution outputs are
  clean but soft and slightly noisy: a bicubic downscale, then a mild blur and mild Gaussian
  noise, for GigaGAN's use as a plug-in upsampler after diffusion models (Kang et al., CVPR
  2023). These ranges are our choice for "mild", not published settings.
"""

from __future__ import annotations

from upsampler.degradations.config import (
    KERNEL_TYPES,
    BlurStage,
    FinalStage,
    JpegStage,
    NoiseStage,
    ResizeStage,
    Stage,
)

__all__ = ["PRESETS", "preset_stages"]

# Resize exactly to the pipeline's output size.
_TO_TARGET_BICUBIC = ResizeStage(
    up_down_keep=(0.0, 0.0, 1.0),
    scale=(1.0, 1.0),
    relative_to="target",
    modes=("bicubic",),
    antialias=True,
)

PRESETS: dict[str, tuple[Stage, ...]] = {
    "realesrgan": (
        # ----- first order (Real-ESRGAN: blur_sigma, resize_prob/range, noise_range, ...)
        BlurStage(
            kernel_size=(7, 21),
            kernel_types=KERNEL_TYPES,
            kernel_probabilities=(0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
            sigma=(0.2, 3.0),
            generalized_beta=(0.5, 4.0),
            plateau_beta=(1.0, 2.0),
            sinc_probability=0.1,
        ),
        ResizeStage(up_down_keep=(0.2, 0.7, 0.1), scale=(0.15, 1.5), relative_to="current"),
        NoiseStage(
            gaussian_probability=0.5,
            gaussian_sigma=(1.0, 30.0),
            poisson_scale=(0.05, 3.0),
            gray_probability=0.4,
        ),
        JpegStage(quality=(30.0, 95.0)),
        # ----- second order (Real-ESRGAN: second_blur_prob, blur_sigma2, resize_prob2, ...)
        BlurStage(
            probability=0.8,
            kernel_size=(7, 21),
            sigma=(0.2, 1.5),
            generalized_beta=(0.5, 4.0),
            plateau_beta=(1.0, 2.0),
            sinc_probability=0.1,
        ),
        # Real-ESRGAN's second resize is relative to the output size (ori_h / scale * factor).
        ResizeStage(up_down_keep=(0.3, 0.4, 0.3), scale=(0.3, 1.2), relative_to="target"),
        NoiseStage(
            gaussian_probability=0.5,
            gaussian_sigma=(1.0, 25.0),
            poisson_scale=(0.05, 2.5),
            gray_probability=0.4,
        ),
        # ----- resize to the output size + final sinc (final_sinc_prob 0.8) and JPEG
        # (jpeg_range2), in random order.
        FinalStage(
            sinc_probability=0.8,
            jpeg_quality=(30.0, 95.0),
            jpeg_first_probability=0.5,
        ),
    ),
    "bicubic": (_TO_TARGET_BICUBIC,),
    "diffusion": (
        _TO_TARGET_BICUBIC,
        BlurStage(
            kernel_size=(7, 7),
            kernel_types=("iso", "aniso"),
            kernel_probabilities=(0.7, 0.3),
            sigma=(0.2, 1.0),
            sinc_probability=0.0,
        ),
        NoiseStage(gaussian_probability=1.0, gaussian_sigma=(0.0, 6.0), gray_probability=0.0),
    ),
}


def preset_stages(name: str) -> tuple[Stage, ...]:
    """The stage list of a built-in preset; ``ValueError`` naming the presets if unknown."""
    if name not in PRESETS:
        raise ValueError(f"unknown degradation preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]
