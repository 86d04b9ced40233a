"""Training losses: adversarial, R1, reconstruction, LPIPS, matching-aware, CLIP.

LPIPS (``upsampler.losses.lpips``) and CLIP (``upsampler.losses.clip``) load real weights and
heavy packages, so they are imported from their modules when needed.
"""

from upsampler.losses.gan import (
    discriminator_loss,
    generator_adversarial_loss,
    mismatched,
    pyramid_loss,
    r1_penalty,
    reconstruction_loss,
    target_pyramid,
)

__all__ = [
    "discriminator_loss",
    "generator_adversarial_loss",
    "mismatched",
    "pyramid_loss",
    "r1_penalty",
    "reconstruction_loss",
    "target_pyramid",
]
