"""Training losses: adversarial, R1, reconstruction, LPIPS, matching-aware, CLIP.

LPIPS (``upsampler.losses.lpips``) and CLIP (``upsampler.losses.clip``) load real weights and
heavy packages, so they are imported from their modules when needed. The names below are
imported on first use (see ``upsampler._lazy``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from upsampler._lazy import attach

if TYPE_CHECKING:
    from upsampler.losses.gan import (
        discriminator_loss,
        generator_adversarial_loss,
        mismatched,
        pyramid_loss,
        r1_penalty,
        reconstruction_loss,
        target_pyramid,
    )

__getattr__, __dir__ = attach(
    __name__,
    {
        "upsampler.losses.gan": (
            "discriminator_loss",
            "generator_adversarial_loss",
            "mismatched",
            "pyramid_loss",
            "r1_penalty",
            "reconstruction_loss",
            "target_pyramid",
        ),
    },
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
