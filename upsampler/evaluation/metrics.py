"""Image-quality metrics as super-resolution papers report them: PSNR, SSIM and LPIPS.

All take ``images`` and ``references`` of shape (B, 3, H, W), float in [0, 1], and return one
value per image, shape (B,), float64 (LPIPS: float32). The SR convention (BasicSR, and the
MATLAB code of the classic papers) is to measure PSNR and SSIM on the luma channel Y of
ITU-R BT.601 YCbCr after cropping ``scale`` pixels off every border; ``y_channel=False``
measures on RGB instead.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

__all__ = ["lpips_distance", "psnr", "rgb_to_y", "ssim"]

# ITU-R BT.601 "studio swing" luma, as MATLAB's rgb2ycbcr and BasicSR's ``rgb2ycbcr(y_only)``:
# Y = 16 + 65.481 R + 128.553 G + 24.966 B for R, G, B in [0, 1] and Y in [16, 235] / 255.
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0

# SSIM (Wang et al. 2004): 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03.
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5  # scikit-image: int(truncate * sigma + 0.5) with truncate = 3.5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03


def _check_pair(images: torch.Tensor, references: torch.Tensor) -> None:
    if images.shape != references.shape:
        raise ValueError(
            f"images and references must have the same shape, got {tuple(images.shape)} and "
            f"{tuple(references.shape)}"
        )
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) images, got shape {tuple(images.shape)}")


def rgb_to_y(images: torch.Tensor) -> torch.Tensor:
    """BT.601 luma: (B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) Y in [16/255, 235/255]."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB images, got shape {tuple(images.shape)}")
    weights = images.new_tensor(_Y_WEIGHTS).view(1, 3, 1, 1)
    return ((images * weights).sum(dim=1, keepdim=True) + _Y_OFFSET) / 255.0


def _prepare(
    images: torch.Tensor, references: torch.Tensor, crop_border: int, y_channel: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    _check_pair(images, references)
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    height, width = images.shape[-2:]
    if 2 * crop_border >= min(height, width):
        raise ValueError(f"crop_border={crop_border} leaves nothing of a {height}x{width} image")
    images = images.double()
    references = references.double().to(images.device)
    if crop_border:
        images = images[..., crop_border:-crop_border, crop_border:-crop_border]
        references = references[..., crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        images, references = rgb_to_y(images), rgb_to_y(references)
    return images, references


def psnr(
    images: torch.Tensor,
    references: torch.Tensor,
    *,
    crop_border: int = 0,
    y_channel: bool = True,
) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, ``10 log10(1 / MSE)`` with a peak of 1.

    images, references: (B, 3, H, W) in [0, 1]. ``crop_border`` pixels are dropped from every
    edge first (SR papers use the scale factor); ``y_channel`` measures BT.601 luma instead of
    RGB. Returns (B,) float64; identical images give ``inf``.
    """
    images, references = _prepare(images, references, crop_border, y_channel)
    mse = (images - references).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(1.0 / mse)


def _gaussian_window(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    offsets = torch.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=dtype, device=device)
    window = torch.exp(-0.5 * (offsets / _SSIM_SIGMA) ** 2)
    return window / window.sum()


def _filter_valid(images: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of (N, 1, H, W) keeping only fully covered ('valid') pixels."""
    size = window.numel()
    images = F.conv2d(images, window.view(1, 1, size, 1))
    return F.conv2d(images, window.view(1, 1, 1, size))


def ssim(
    images: torch.Tensor,
    references: torch.Tensor,
    *,
    crop_border: int = 0,
    y_channel: bool = True,
    data_range: float = 1.0,
) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), Gaussian-weighted, per image.

    images, references: (B, 3, H, W) in [0, 1]. The 11x11 Gaussian window (sigma 1.5) is
    applied only where it fits inside the image and the SSIM map is averaged there -- the same
    number as scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range)`` (which filters the whole image but
    then drops the 5 border pixels each window reaches past) and as MATLAB/BasicSR's
    ``ssim``. With ``y_channel=False`` the three RGB channels are averaged. Returns (B,)
    float64 in [-1, 1]; identical images give 1.
    """
    images, references = _prepare(images, references, crop_border, y_channel)
    batch, channels, height, width = images.shape
    if min(height, width) < 2 * _SSIM_RADIUS + 1:
        raise ValueError(
            f"SSIM needs at least {2 * _SSIM_RADIUS + 1}x{2 * _SSIM_RADIUS + 1} pixels after "
            f"cropping, got {height}x{width}"
        )
    window = _gaussian_window(images.dtype, images.device)
    x = images.reshape(batch * channels, 1, height, width)
    y = references.reshape(batch * channels, 1, height, width)
    mu_x, mu_y = _filter_valid(x, window), _filter_valid(y, window)
    # Population (not sample) covariances, as use_sample_covariance=False.
    var_x = _filter_valid(x * x, window) - mu_x * mu_x
    var_y = _filter_valid(y * y, window) - mu_y * mu_y
    cov_xy = _filter_valid(x * y, window) - mu_x * mu_y
    c1 = (_SSIM_K1 * data_range) ** 2
    c2 = (_SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    )
    return ssim_map.reshape(batch, -1).mean(dim=1)


def lpips_distance(
    images: torch.Tensor,
    references: torch.Tensor,
    *,
    model: torch.nn.Module | None = None,
    net: str = "alex",
    weights_dir: str | os.PathLike[str] | None = None,
) -> torch.Tensor:
    """LPIPS v0.1 distance with real weights: (B, 3, H, W) in [0, 1] -> (B,) float32.

    Pass a ``model`` from :func:`upsampler.losses.lpips.load_lpips` to reuse it; otherwise one
    is loaded for ``net`` ("alex", what SR papers report, or "vgg") from ``weights_dir``
    (``LPIPSWeightsNotFoundError`` when the weights are not prepared). Lower is better.
    """
    _check_pair(images, references)
    if model is None:
        from upsampler.losses.lpips import load_lpips

        model = load_lpips(net, weights_dir=weights_dir, device=images.device)
    with torch.no_grad():
        return model(images, references).float()
