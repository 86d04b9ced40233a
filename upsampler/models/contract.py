"""What the engine needs from any model it runs: the one contract between models and inference.

The :class:`~upsampler.Upscaler` (tiling, memory, precision, alpha, several passes) calls
nothing else of a model, so that adding an architecture means implementing this, not touching
the engine. Three kinds implement it today: :class:`~upsampler.GigaGANUpsampler` (ours, with
text and style noise), :class:`~upsampler.AuraSRUpsampler` (style noise, no text) and
:class:`~upsampler.models.spandrel_model.SpandrelUpsampler` (community checkpoints: neither).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from upsampler.models.generator import UpsamplerOutput
from upsampler.text.base import TextEmbeddings


@runtime_checkable
class UpsamplerModel(Protocol):
    """A super-resolution network as the engine sees it. Models are ``nn.Module`` s: the
    engine moves them with ``nn.Module.to`` and calls them.

    Size rule: an input tile's sides must be multiples of ``size_multiple`` and at least
    ``min_size``; the engine pads tiles to satisfy it (the padding is cropped away).

    Optional: ``work_per_pixel_is_constant`` (a bool; False when absent): True lets the engine
    run a small image as one tile (a model without attention, whose work per pixel does not
    grow with the tile).
    """

    @property
    def scale(self) -> int:
        """Output size / input size: 1, 2, 3, 4 or 8."""

    @property
    def size_multiple(self) -> int:
        """Input sides must be multiples of this."""

    @property
    def min_size(self) -> int:
        """Input sides must be at least this."""

    @property
    def text_conditioning(self) -> bool:
        """Whether the model takes text (``forward``'s ``text``)."""

    @property
    def uses_styles(self) -> bool:
        """Whether the output depends on a style noise ``z`` (made per image by ``image_styles``
        and shared by all of that image's tiles)."""

    @property
    def input_noise_std(self) -> float:
        """Gaussian noise the model expects on its input (AuraSR's training augmentation); the
        engine draws it once per image from the image's seed, so tiles agree. 0 for none."""

    def supports_dtype(self, dtype: torch.dtype) -> bool:
        """Whether the network gives correct output in ``dtype`` (fp32 always)."""

    def activation_elements(self, tile: int) -> float:
        """Roughly how many activation values one ``tile`` x ``tile`` input keeps alive at once:
        the engine sizes tiles to fit memory from it."""

    def image_styles(
        self,
        text: TextEmbeddings | None,
        *,
        generator: torch.Generator,
        truncation_psi: float = 1.0,
    ) -> torch.Tensor | None:
        """The styles of one image (1, ...), from its text (None for none) and a ``z`` drawn
        from ``generator``; None for models without styles."""

    def forward(
        self,
        lq: torch.Tensor,
        text: TextEmbeddings | None = None,
        *,
        ws: torch.Tensor | None = None,
        add_input: bool = True,
    ) -> UpsamplerOutput:
        """lq (B, 3, H, W) in [0, 1] -> ``.hq`` (B, 3, scale*H, scale*W). ``ws``: the styles of
        :meth:`image_styles`, expanded to B. With ``add_input=False`` the output leaves out
        what :meth:`interpolated_input` adds (the engine adds that in float32)."""

    def interpolated_input(self, lq: torch.Tensor, size: tuple[int, int]) -> torch.Tensor | None:
        """What ``forward`` adds to its output at ``size`` as an input residual, or None."""
