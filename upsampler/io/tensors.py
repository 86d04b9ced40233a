"""Images as the engine's tensors and back: one home for every conversion.

The engine works on float32 (B, 3, H, W) tensors in [0, 1]; images arrive as Pillow images,
NumPy arrays (uint8, uint16 or float; grey, grey + alpha, RGB, RGBA) or tensors. The
:class:`~upsampler.Upscaler`, the diffusers integration, the evaluation and the trainer's
sample grids all convert through these functions, as diffusers' pipelines all convert through
its ``VaeImageProcessor``:

* :func:`split_channels` / :func:`merge_channels`: (H, W, C) pixels <-> an RGB tensor and an
  alpha tensor (grey runs as RGB and comes back as its luma);
* :func:`array_to_pixels` / :func:`pixels_to_array`: NumPy arrays of any supported dtype <->
  float32 (H, W, C) pixels, and back in the array's own dtype;
* :func:`rgb_tensor`: any single image -> (3, H, W) float32 RGB on the CPU;
* :func:`to_uint8` / :func:`to_pil_rgb`: (3, H, W) or (1, 3, H, W) tensors -> 8-bit pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as Pillow's RGB -> L


def split_channels(pixels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(H, W, C) float32 in [0, 1], C = 1, 2, 3 or 4 -> rgb (1, 3, H, W), alpha (1, 1, H, W)
    or None. Grey is repeated to RGB."""
    channels = pixels.shape[2]
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1)[None].float()
    colour = tensor[:, :1].expand(-1, 3, -1, -1) if channels in (1, 2) else tensor[:, :3]
    alpha = tensor[:, -1:] if channels in (2, 4) else None
    return colour.contiguous(), alpha


def merge_channels(rgb: torch.Tensor, alpha: torch.Tensor | None, channels: int) -> np.ndarray:
    """Inverse of :func:`split_channels` for ``channels`` channels: grey comes back as the luma
    (BT.601) of the RGB."""
    if channels in (1, 2):
        luma = torch.tensor(LUMA, dtype=rgb.dtype)[None, :, None, None]
        rgb = (rgb * luma).sum(dim=1, keepdim=True)
    parts = [rgb] if alpha is None else [rgb, alpha]
    return torch.cat(parts, dim=1)[0].permute(1, 2, 0).numpy()


def array_peak(array: np.ndarray) -> float:
    """The value that stands for white in ``array``: 255, 65535, or 1.0 for floats.

    Raises:
        ValueError: another dtype.
    """
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        return float(np.iinfo(array.dtype).max)
    if np.issubdtype(array.dtype, np.floating):
        return 1.0
    raise ValueError(f"arrays must be uint8, uint16 or float in [0, 1], got {array.dtype}")


def array_to_pixels(array: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) uint8, uint16 or float -> (H, W, C) float32 in [0, 1] (clipped)."""
    peak = array_peak(array)
    pixels = (array.astype(np.float32) / np.float32(peak)).reshape(*array.shape[:2], -1)
    return np.clip(pixels, 0.0, 1.0)


def pixels_to_array(pixels: np.ndarray, like: np.ndarray) -> np.ndarray:
    """(H, W, C) float pixels -> an array of ``like``'s dtype (rounded for integers) and
    dimensions ((H, W) when ``like`` is)."""
    peak = array_peak(like)
    if peak != 1.0:
        pixels = np.clip(np.rint(pixels * peak), 0, peak)
    out = pixels.astype(like.dtype)
    return out[..., 0] if like.ndim == 2 else out


def rgb_tensor(image: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
    """One image as (3, H, W) float32 RGB in [0, 1] on the CPU: a Pillow image of any mode
    (alpha dropped), an (H, W[, 1|3]) array of uint8, uint16 or float, or a (1|3, H, W) or
    (H, W, 1|3) tensor (integer tensors scaled by their dtype's maximum).

    Raises:
        ValueError: another shape or channel count.
    """
    if isinstance(image, Image.Image):
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.shape[-1] not in (1, 3):
            raise ValueError(f"image arrays must have 1 or 3 channels last, got {image.shape}")
        tensor = torch.from_numpy(np.ascontiguousarray(array_to_pixels(image))).permute(2, 0, 1)
        return tensor.expand(3, -1, -1).contiguous()
    if isinstance(image, torch.Tensor):
        if image.ndim == 3 and image.shape[0] not in (1, 3) and image.shape[-1] in (1, 3):
            image = image.permute(2, 0, 1)  # (H, W, C) -> (C, H, W)
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"image tensors must have 1 or 3 channels, got {tuple(image.shape)}")
        image = image.detach().to("cpu")
        if not image.is_floating_point():
            image = image.float() / float(torch.iinfo(image.dtype).max)
        return image.float().expand(3, -1, -1).clamp(0.0, 1.0).contiguous()
    raise TypeError(
        f"images must be PIL images, NumPy arrays or tensors, got {type(image).__name__}"
    )


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (1, 3, H, W) float in [0, 1] (any device) -> (H, W, 3) uint8, rounded."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"one image expected, got a batch of {image.shape[0]}")
        image = image[0]
    scaled = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return scaled.permute(1, 2, 0).cpu().numpy()


def to_pil_rgb(image: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, 3, H, W) float in [0, 1] -> an 8-bit RGB Pillow image."""
    return Image.fromarray(to_uint8(image))
