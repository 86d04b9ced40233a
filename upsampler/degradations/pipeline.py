"""``DegradationPipeline``: turns high-resolution images into realistic low-resolution inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from upsampler.degradations.config import (
    FinalStage,
    ResizeStage,
    Stage,
    parse_stages,
    stage_to_dict,
)
from upsampler.degradations.presets import PRESETS, preset_stages
from upsampler.degradations.sharpen import unsharp_mask
from upsampler.degradations.stages import apply_stage

__all__ = ["DegradationPipeline", "quantize"]


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 256 levels of an 8-bit image: ``round(x * 255) / 255``."""
    return (images * 255.0).round().clamp(0.0, 255.0) / 255.0


def _ends_at_output_size(stages: Sequence[Stage], scale: int) -> bool:
    at_output = scale == 1
    for stage in stages:
        if isinstance(stage, FinalStage):
            at_output = True
        elif isinstance(stage, ResizeStage):
            if stage.relative_to == "target":
                at_output = stage.keeps_size
            elif not stage.keeps_size:
                at_output = False
    return at_output


class DegradationPipeline:
    """A list of degradation stages applied in order, ending at ``1 / scale`` of the input size.

    >>> pipeline = DegradationPipeline.from_preset("realesrgan", scale=4)
    >>> generator = torch.Generator().manual_seed(0)
    >>> lq = pipeline(torch.rand(2, 3, 64, 96), generator=generator)
    >>> tuple(lq.shape)
    (2, 3, 16, 24)

    Every stage draws its parameters per image (one resize factor per batch: see
    :class:`ResizeStage`) from the ``generator`` passed to each call, never from the global RNG;
    for a fixed generator state, device and batch the output is the same on every run. Draw on
    the images' device: a CUDA generator for CUDA images (a CPU generator works too, at the
    cost of copying its random numbers to the GPU).
    """

    def __init__(self, stages: Sequence[Stage], *, scale: int) -> None:
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        self.stages: tuple[Stage, ...] = parse_stages(list(stages))
        self.scale = scale
        if not _ends_at_output_size(self.stages, scale):
            raise ValueError(
                f"the stages must end at the output size (1/{scale} of the input): finish with a "
                "'final' stage, or a 'resize' with relative_to = 'target' and "
                "up_down_keep = [0, 0, 1]"
            )

    @classmethod
    def from_preset(cls, name: str, scale: int = 4) -> DegradationPipeline:
        """A built-in preset: ``realesrgan``, ``bicubic`` or ``diffusion`` (see ``presets.py``)."""
        return cls(preset_stages(name), scale=scale)

    @classmethod
    def from_config(
        cls, stages: Sequence[Mapping[str, Any]], scale: int = 4
    ) -> DegradationPipeline:
        """From a list of stage tables, e.g. a recipe's ``[[degradation.stages]]``.

        ``ValueError`` for an unknown stage type or key, a probability outside [0, 1] or a bad
        range, naming the stage's position.
        """
        return cls(parse_stages(stages), scale=scale)

    @staticmethod
    def preset_names() -> tuple[str, ...]:
        return tuple(PRESETS)

    def to_config(self) -> list[dict[str, Any]]:
        """The stage list as plain dicts (``from_config(p.to_config())`` rebuilds ``p``)."""
        return [stage_to_dict(stage) for stage in self.stages]

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` of the low-resolution output for an input of that size."""
        if height % self.scale or width % self.scale:
            raise ValueError(
                f"image size {height}x{width} (HxW) is not divisible by scale {self.scale}; "
                f"crop it to {height - height % self.scale}x{width - width % self.scale} first"
            )
        return height // self.scale, width // self.scale

    def __repr__(self) -> str:
        names = ", ".join(stage.type for stage in self.stages)
        return f"DegradationPipeline(scale={self.scale}, stages=[{names}])"

    @torch.no_grad()
    def __call__(self, hq: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Degrade a batch.

        hq: (B, 3, H, W) float in [0, 1], H and W divisible by ``scale``.
        Returns lq: (B, 3, H / scale, W / scale), same dtype and device, in [0, 1] and on 8-bit
        levels (``round(x * 255) / 255``) like an image read from disk.
        """
        if hq.ndim != 4 or hq.shape[1] != 3:
            raise ValueError(f"hq must be (B, 3, H, W), got shape {tuple(hq.shape)}")
        if not hq.is_floating_point():
            raise ValueError(f"hq must be a float tensor in [0, 1], got {hq.dtype}")
        if not isinstance(generator, torch.Generator):
            raise ValueError("pass an explicit torch.Generator (generator=...)")
        target_size = self.output_size(hq.shape[-2], hq.shape[-1])
        images = hq.clamp(0.0, 1.0)
        for stage in self.stages:
            images = apply_stage(images, stage, target_size=target_size, generator=generator)
        return quantize(images)

    def make_pair(
        self, hq: torch.Tensor, generator: torch.Generator, *, sharpen: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A training pair ``(lq, target)`` from hq: (B, 3, H, W) in [0, 1].

        With ``sharpen`` the target is ``unsharp_mask(hq)`` and lq is degraded from it, as
        Real-ESRGAN x4plus degrades its sharpened ground truth; else the target is ``hq``.
        """
        target = unsharp_mask(hq) if sharpen else hq
        return self(target, generator=generator), target
