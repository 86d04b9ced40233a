"""GAN and reconstruction losses, as pure functions of tensors.

Logits come from :class:`~upsampler.GigaGANDiscriminator`: a list with one patch map per
scale; each scale counts equally.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def generator_adversarial_loss(fake_logits: list[torch.Tensor]) -> torch.Tensor:
    """Non-saturating generator loss, softplus(-D(G(lq))), averaged over scales."""
    return torch.stack([F.softplus(-logit).mean() for logit in fake_logits]).mean()


def discriminator_loss(
    real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]
) -> torch.Tensor:
    """softplus(-D(real)) + softplus(D(fake)), averaged over scales."""
    real = torch.stack([F.softplus(-logit).mean() for logit in real_logits]).mean()
    fake = torch.stack([F.softplus(logit).mean() for logit in fake_logits]).mean()
    return real + fake


def r1_penalty(real_logits: list[torch.Tensor], real_images: list[torch.Tensor]) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): squared gradient norm of D(real) w.r.t. the real inputs.

    ``real_images`` must require grad and be the tensors the logits were computed from.
    Returns the batch mean of ||grad||^2 summed over every pyramid level.
    """
    total = sum(logit.sum() for logit in real_logits)
    gradients = torch.autograd.grad(total, real_images, create_graph=True)
    return sum(g.pow(2).flatten(1).sum(1) for g in gradients).mean()


def reconstruction_loss(
    output: torch.Tensor, target: torch.Tensor, kind: str = "l1", eps: float = 1e-3
) -> torch.Tensor:
    """L1 or Charbonnier (a smooth L1: sqrt(d^2 + eps^2)) between images of the same size."""
    if kind == "l1":
        return (output - target).abs().mean()
    if kind == "charbonnier":
        return torch.sqrt((output - target).pow(2) + eps * eps).mean()
    raise ValueError(f"reconstruction loss must be 'l1' or 'charbonnier', got {kind!r}")


def target_pyramid(hq: torch.Tensor, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """``hq`` area-downscaled to every size (sizes at or above hq's are returned as hq)."""
    return [
        hq if tuple(size) == tuple(hq.shape[-2:]) else F.interpolate(hq, size=size, mode="area")
        for size in sizes
    ]


def pyramid_loss(pyramid: list[torch.Tensor], hq: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Reconstruction of every pyramid level below the output against the downscaled target."""
    lower = pyramid[:-1]
    if not lower:
        return hq.new_zeros(())
    targets = target_pyramid(hq, [tuple(level.shape[-2:]) for level in lower])
    return torch.stack(
        [
            reconstruction_loss(level, target, kind)
            for level, target in zip(lower, targets, strict=True)
        ]
    ).mean()


def mismatched(batch_size: int) -> torch.Tensor:
    """Indices that pair every image with another image's text (a rotation by one)."""
    if batch_size < 2:
        raise ValueError("the matching-aware loss needs a batch of at least 2 images")
    return torch.roll(torch.arange(batch_size), shifts=1)
