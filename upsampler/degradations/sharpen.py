"""Unsharp-mask sharpening of training targets.

Real-ESRGAN sharpens the ground truth before training (``USMSharp`` in BasicSR, used for the
L1 and perceptual targets of x4plus: ``l1_gt_usm``, ``percep_gt_usm``) so the upsampler learns
to produce crisp output rather than the softness of typical photos.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["unsharp_mask"]


def _gaussian_1d(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    offsets = torch.arange(size, device=device, dtype=torch.float64) - (size - 1) / 2
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (weights / weights.sum()).to(dtype)


def _separable_blur(images: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Blur every channel with the outer product of ``weights`` (reflect padding)."""
    channels = images.shape[1]
    pad = weights.numel() // 2
    height, width = images.shape[-2:]
    mode = "reflect" if pad < height and pad < width else "replicate"
    padded = F.pad(images, (pad, pad, pad, pad), mode=mode)
    horizontal = weights.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = weights.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    blurred = F.conv2d(padded, horizontal, groups=channels)
    return F.conv2d(blurred, vertical, groups=channels)


def unsharp_mask(
    images: torch.Tensor,
    *,
    weight: float = 0.5,
    radius: int = 50,
    threshold: float = 10.0,
) -> torch.Tensor:
    """Sharpen with BasicSR's ``USMSharp`` (the defaults are Real-ESRGAN's): (B, C, H, W) in [0, 1].

    images: (B, C, H, W) float in [0, 1]. ``radius`` is the Gaussian's size (made odd; its sigma
    is OpenCV's default for that size, ``0.3 * ((size - 1) / 2 - 1) + 0.8``); the residual
    ``images - blur`` is added with ``weight`` where it exceeds ``threshold`` 8-bit levels,
    through a soft (blurred) mask so flat areas and their noise are left alone.
    """
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float (B, C, H, W) tensor, got {tuple(images.shape)}")
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")
    size = radius + 1 if radius % 2 == 0 else radius
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    weights = _gaussian_1d(size, sigma, images.device, images.dtype)
    residual = images - _separable_blur(images, weights)
    mask = (residual.abs() * 255.0 > threshold).to(images.dtype)
    soft_mask = _separable_blur(mask, weights)
    sharp = (images + weight * residual).clamp(0.0, 1.0)
    return soft_mask * sharp + (1.0 - soft_mask) * images
