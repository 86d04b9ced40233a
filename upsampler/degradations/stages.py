"""Degradation stages: pure functions on a batch of images.

Every function takes ``images`` of shape ``(B, 3, H, W)``, float, in [0, 1], on any device,
and returns a batch in [0, 1] of the same dtype and device (the same shape, except resizes).
Randomness comes only from the ``generator`` argument. Per-image parameters (kernels, noise
levels, JPEG qualities, on/off draws) are drawn for the whole batch at once and applied in
batch: a stage splits a batch into at most a few groups (one per interpolation mode, or
"filtered" vs "left alone") and never loops over images.

Two layers:

- deterministic building blocks given explicit per-image parameters: :func:`filter2d`,
  :func:`resize`, :func:`add_gaussian_noise`, :func:`add_poisson_noise` (its noise is drawn
  from the generator), and :func:`upsampler.degradations.jpeg.jpeg_compress`;
- :func:`apply_stage`, which draws a stage's parameters from its config (Real-ESRGAN's
  ``feed_data`` in ``realesrgan/models/realesrgan_model.py``) and calls the building blocks.

Real-ESRGAN clamps at its noise and JPEG steps; here every stage clamps its output, so each
stage keeps the [0, 1] range on its own (the difference is an overshoot of a sinc or bicubic
filter carried one stage further in Real-ESRGAN).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from upsampler.degradations._sampling import bernoulli, choice, normal, poisson, uniform
from upsampler.degradations.config import (
    BlurStage,
    FinalStage,
    JpegStage,
    NoiseStage,
    ResizeStage,
    SincStage,
    Stage,
)
from upsampler.degradations.jpeg import jpeg_compress
from upsampler.degradations.kernels import sample_blur_kernels, sample_sinc_kernels

__all__ = [
    "add_gaussian_noise",
    "add_poisson_noise",
    "apply_stage",
    "filter2d",
    "resize",
]

# torchvision's rgb_to_grayscale weights (ITU-R BT.601), as Real-ESRGAN's grey Poisson noise.
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def _check_images(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be a float tensor in [0, 1], got {images.dtype}")


def _pad(images: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect-pad by ``pad`` on each side (BasicSR's ``filter2D``); an image smaller than the
    pad cannot be reflected, so it is edge-replicated instead."""
    if pad == 0:
        return images
    height, width = images.shape[-2:]
    mode = "reflect" if pad < height and pad < width else "replicate"
    return F.pad(images, (pad, pad, pad, pad), mode=mode)


def _trim(kernels: torch.Tensor) -> torch.Tensor:
    """Crop zero borders shared by every kernel of the batch (exact; saves work on small kernels)."""
    size = kernels.shape[-1]
    support = (kernels != 0).any(dim=0)  # (k, k): nonzero in some kernel
    nonzero = (support.any(dim=0) | support.any(dim=1)).nonzero()
    if nonzero.numel() == 0:
        return kernels
    margin = min(int(nonzero.min()), size - 1 - int(nonzero.max()))
    return kernels[:, margin : size - margin, margin : size - margin] if margin > 0 else kernels


def _is_identity(kernels: torch.Tensor) -> torch.Tensor:
    """(B,) bool: True where a kernel is the unit impulse (filtering with it is a no-op)."""
    centre = kernels.shape[-1] // 2
    impulse = torch.zeros_like(kernels[0])
    impulse[centre, centre] = 1
    return (kernels == impulse).flatten(1).all(dim=1)


def filter2d(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Filter each image with its own kernel (correlation, reflect padding): (B, C, H, W).

    images: (B, C, H, W) float; kernels: (B, k, k) with k odd, one per image (or (1, k, k) for
    all). BasicSR's ``filter2D``: a grouped ``conv2d`` (on this CPU it beat an FFT filter at
    every kernel size from 7 to 21 and image size from 64 to 384). Not clamped.
    """
    batch, channels, height, width = images.shape
    if kernels.ndim != 3 or kernels.shape[-1] != kernels.shape[-2] or kernels.shape[-1] % 2 == 0:
        raise ValueError(f"kernels must be (B, k, k) with k odd, got {tuple(kernels.shape)}")
    if kernels.shape[0] == 1:
        kernels = kernels.expand(batch, -1, -1)
    if kernels.shape[0] != batch:
        raise ValueError(f"need one kernel per image ({batch}), got {kernels.shape[0]}")
    kernels = _trim(kernels.to(device=images.device, dtype=images.dtype))
    size = kernels.shape[-1]
    if size == 1:
        return images * kernels.view(batch, 1, 1, 1)
    padded = _pad(images, size // 2)
    # One grouped convolution: group i*C + c filters channel c of image i with kernel i.
    weight = kernels.repeat_interleave(channels, dim=0).unsqueeze(1)  # (B*C, 1, k, k)
    flat = padded.reshape(1, batch * channels, *padded.shape[-2:])
    return F.conv2d(flat, weight, groups=batch * channels).view(batch, channels, height, width)


def resize(
    images: torch.Tensor, size: tuple[int, int], mode: str, *, antialias: bool = False
) -> torch.Tensor:
    """Resize to ``size = (height, width)`` with ``mode`` (area, bilinear, bicubic, nearest),
    clamped to [0, 1]: (B, 3, height, width). ``antialias`` applies to bilinear and bicubic."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    if mode in ("bilinear", "bicubic"):
        resized = F.interpolate(
            images, size=size, mode=mode, align_corners=False, antialias=antialias
        )
    elif mode in ("area", "nearest"):
        resized = F.interpolate(images, size=size, mode=mode)
    else:
        raise ValueError(f"unknown resize mode {mode!r}")
    return resized.clamp_(0.0, 1.0)


def _resize_per_image(
    images: torch.Tensor,
    size: tuple[int, int],
    mode_index: torch.Tensor,
    modes: tuple[str, ...],
    *,
    antialias: bool,
) -> torch.Tensor:
    """Resize image i with ``modes[mode_index[i]]``: one interpolate call per mode, not per image."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    resized = images.new_empty(images.shape[0], images.shape[1], *size)
    for index, mode in enumerate(modes):
        members = (mode_index == index).nonzero().squeeze(1)
        if members.numel():
            resized[members] = resize(images[members], size, mode, antialias=antialias)
    return resized


def add_gaussian_noise(
    images: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Add Gaussian noise of ``sigma`` (B,) 8-bit levels; ``gray`` (B,) bool gives the same noise
    in all channels. Clamped to [0, 1]. Real-ESRGAN's ``random_add_gaussian_noise_pt``."""
    noise = normal(generator, tuple(images.shape), device=images.device, dtype=images.dtype)
    noise = torch.where(gray.view(-1, 1, 1, 1), noise[:, :1].expand_as(noise), noise)
    noise = noise * (sigma.to(images.dtype) / 255.0).view(-1, 1, 1, 1)
    return (images + noise).clamp_(0.0, 1.0)


def _poisson_noise(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Poisson noise with BasicSR's intensity scale: (B, C, H, W).

    The image is rounded to 8-bit levels and ``vals = 2 ** ceil(log2(distinct levels))`` per
    image (``generate_poisson_noise_pt``). BasicSR counts distinct levels with one
    ``torch.unique`` per image; a per-image histogram (one ``bincount``) counts them for the
    whole batch at once.
    """
    batch = images.shape[0]
    levels = (images * 255.0).round_().clamp_(0, 255)
    rounded = levels / 255.0
    offsets = (torch.arange(batch, device=images.device) * 256).view(-1, 1, 1, 1)
    histogram = torch.bincount((levels.long() + offsets).flatten(), minlength=256 * batch)
    distinct = (histogram.view(batch, 256) > 0).sum(dim=1).clamp_(min=1)
    vals = torch.exp2(torch.ceil(torch.log2(distinct.to(images.dtype)))).view(-1, 1, 1, 1)
    return poisson(generator, rounded * vals) / vals - rounded


def add_poisson_noise(
    images: torch.Tensor, scale: torch.Tensor, gray: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Add Poisson (shot) noise scaled by ``scale`` (B,); ``gray`` (B,) bool draws it once from the
    luma and adds it to all channels. Clamped to [0, 1]. Real-ESRGAN's
    ``random_add_poisson_noise_pt``, with colour and grey noise drawn only for the images that
    use them."""
    noise = torch.zeros_like(images)
    colour_members = (~gray).nonzero().squeeze(1)
    gray_members = gray.nonzero().squeeze(1)
    if colour_members.numel():
        noise[colour_members] = _poisson_noise(images[colour_members], generator)
    if gray_members.numel():
        weights = torch.tensor(_GRAY_WEIGHTS, device=images.device, dtype=images.dtype)
        luma = (images[gray_members] * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        noise[gray_members] = _poisson_noise(luma, generator).expand(-1, 3, -1, -1)
    noise = noise * scale.to(images.dtype).view(-1, 1, 1, 1)
    return (images + noise).clamp_(0.0, 1.0)


def _on_members(
    images: torch.Tensor,
    selected: torch.Tensor,
    function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Apply ``function(images[members], members)`` to the selected images only (same shape)."""
    members = selected.nonzero().squeeze(1)
    if members.numel() == 0:
        return images
    if members.numel() == images.shape[0]:
        return function(images, members)
    result = images.clone()
    result[members] = function(images[members], members)
    return result


def _filter_where_needed(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Filter with per-image kernels, skipping the images whose kernel is an impulse."""
    kernels = kernels.to(images.device)
    return _on_members(
        images,
        ~_is_identity(kernels),
        lambda chosen, members: filter2d(chosen, kernels[members]).clamp_(0.0, 1.0),
    )


def _blur(images: torch.Tensor, stage: BlurStage, generator: torch.Generator) -> torch.Tensor:
    batch, device = images.shape[0], images.device
    kernels = sample_blur_kernels(
        batch,
        kernel_size=stage.kernel_size,
        kernel_types=stage.kernel_types,
        kernel_probabilities=stage.kernel_probabilities,
        sigma=stage.sigma,
        generalized_beta=stage.generalized_beta,
        plateau_beta=stage.plateau_beta,
        sinc_probability=stage.sinc_probability,
        generator=generator,
        device=device,
    )
    # Real-ESRGAN's second_blur_prob is one draw per batch; here every image draws its own.
    selected = bernoulli(generator, batch, stage.probability, device=device)
    return _on_members(
        images,
        selected,
        lambda chosen, members: filter2d(chosen, kernels[members]).clamp_(0.0, 1.0),
    )


def _random_resize(
    images: torch.Tensor,
    stage: ResizeStage,
    target_size: tuple[int, int],
    generator: torch.Generator,
) -> torch.Tensor:
    cpu = torch.device("cpu")
    # One direction and factor per batch (a batch must keep one size to stay one tensor).
    direction = int(choice(generator, 1, stage.up_down_keep, device=cpu)[0])
    number = float(uniform(generator, (1,), 0.0, 1.0, device=cpu)[0])
    low, high = stage.scale
    factor = (1.0 + (high - 1.0) * number, low + (1.0 - low) * number, 1.0)[direction]
    mode_index = choice(generator, images.shape[0], (1.0,) * len(stage.modes), device=images.device)
    base = tuple(images.shape[-2:]) if stage.relative_to == "current" else target_size
    size = (max(1, int(base[0] * factor)), max(1, int(base[1] * factor)))
    return _resize_per_image(images, size, mode_index, stage.modes, antialias=stage.antialias)


def _noise(images: torch.Tensor, stage: NoiseStage, generator: torch.Generator) -> torch.Tensor:
    batch, device = images.shape[0], images.device
    selected = bernoulli(generator, batch, stage.probability, device=device)
    gaussian = bernoulli(generator, batch, stage.gaussian_probability, device=device)
    gray = bernoulli(generator, batch, stage.gray_probability, device=device)
    sigma = uniform(generator, (batch,), *stage.gaussian_sigma, device=device)
    scale = uniform(generator, (batch,), *stage.poisson_scale, device=device)
    # Real-ESRGAN draws Gaussian-or-Poisson once per batch; here every image draws its own.
    images = _on_members(
        images,
        selected & gaussian,
        lambda chosen, members: add_gaussian_noise(
            chosen, sigma[members], gray[members], generator
        ),
    )
    return _on_members(
        images,
        selected & ~gaussian,
        lambda chosen, members: add_poisson_noise(chosen, scale[members], gray[members], generator),
    )


def _jpeg(images: torch.Tensor, stage: JpegStage, generator: torch.Generator) -> torch.Tensor:
    batch, device = images.shape[0], images.device
    quality = uniform(generator, (batch,), *stage.quality, device=device)
    selected = bernoulli(generator, batch, stage.probability, device=device)
    return _on_members(
        images, selected, lambda chosen, members: jpeg_compress(chosen, quality[members])
    )


def _sinc(images: torch.Tensor, stage: SincStage, generator: torch.Generator) -> torch.Tensor:
    kernels = sample_sinc_kernels(
        images.shape[0],
        probability=stage.probability,
        kernel_size=stage.kernel_size,
        cutoff=stage.cutoff,
        generator=generator,
        device=images.device,
    )
    return _filter_where_needed(images, kernels)


def _final(
    images: torch.Tensor,
    stage: FinalStage,
    target_size: tuple[int, int],
    generator: torch.Generator,
) -> torch.Tensor:
    """Real-ESRGAN's last step: [resize to target, sinc] and [JPEG] in an order drawn per image.

    The batch is split into the two orders (two groups, each processed in batch)."""
    batch, device = images.shape[0], images.device
    jpeg_first = bernoulli(generator, batch, stage.jpeg_first_probability, device=device)
    mode_index = choice(generator, batch, (1.0,) * len(stage.modes), device=device)
    kernels = sample_sinc_kernels(
        batch,
        probability=stage.sinc_probability,
        kernel_size=stage.sinc_kernel_size,
        cutoff=stage.sinc_cutoff,
        generator=generator,
        device=device,
    )
    quality = uniform(generator, (batch,), *stage.jpeg_quality, device=device)

    def resize_and_sinc(chosen: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
        chosen = _resize_per_image(
            chosen, target_size, mode_index[members], stage.modes, antialias=False
        )
        return _filter_where_needed(chosen, kernels[members])

    def compress(chosen: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
        return jpeg_compress(chosen, quality[members])

    result = images.new_empty(batch, images.shape[1], *target_size)
    for selected, steps in (
        (jpeg_first, (compress, resize_and_sinc)),
        (~jpeg_first, (resize_and_sinc, compress)),
    ):
        members = selected.nonzero().squeeze(1)
        if members.numel() == 0:
            continue
        chosen = images[members]
        for step in steps:
            chosen = step(chosen, members)
        result[members] = chosen
    return result


def apply_stage(
    images: torch.Tensor,
    stage: Stage,
    *,
    target_size: tuple[int, int],
    generator: torch.Generator,
) -> torch.Tensor:
    """Draw ``stage``'s random parameters from ``generator`` and apply them to the batch.

    images: (B, 3, H, W) float in [0, 1]; target_size: the pipeline's output (height, width),
    used by resizes relative to it. Returns (B, 3, H', W') in [0, 1], same dtype and device.
    """
    _check_images(images)
    if isinstance(stage, BlurStage):
        return _blur(images, stage, generator)
    if isinstance(stage, ResizeStage):
        return _random_resize(images, stage, target_size, generator)
    if isinstance(stage, NoiseStage):
        return _noise(images, stage, generator)
    if isinstance(stage, JpegStage):
        return _jpeg(images, stage, generator)
    if isinstance(stage, SincStage):
        return _sinc(images, stage, generator)
    if isinstance(stage, FinalStage):
        return _final(images, stage, target_size, generator)
    raise TypeError(f"not a degradation stage: {stage!r}")
