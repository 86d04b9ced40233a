"""Per-image kernels, folded once: style-modulated convolutions as plain convolutions.

A modulated convolution makes its kernel from the styles of each sample (the kernel-bank mix,
the modulation and the demodulation) and runs one grouped convolution with a group per sample.
Training needs that: every sample of a batch has its own ``z``. At inference every tile of an
image shares the image's styles, so each layer's kernel is the same for all of them.
:func:`folded_styles` computes those kernels once per image and, until the context ends, every
modulated layer runs as a plain convolution with the tiles as its batch. Blocks may fold
constant gains into the kernels as well (:meth:`StyleConv.fold_gain`), so that a scale after an
activation costs no pass over the activations.

The kernels are recorded, not recomputed by a second copy of the network's routing: the model
runs once on a tiny input with the image's styles while each layer records the kernel it makes.
Whatever decides which style reaches which layer (GigaGAN's style slots, AuraSR's shared
modulation vector) therefore decides it the same way for the folded model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from upsampler.text.base import TextEmbeddings


class StyleConv(nn.Module):
    """A convolution whose kernel is made per sample from styles; the base of the modulated
    convolutions. Subclasses implement :meth:`sample_kernels` and may hold a ``bias``.

    x: (b, i, h, w), styles (each (b, ...)) -> (b, o, h, w)
    """

    bias: torch.Tensor | None

    def __init__(self, kernel_size: int):
        super().__init__()
        self.padding = kernel_size // 2
        #: the kernel (o, i, k, k) and bias (o,) of the folded image, in the activations' dtype
        self.folded_weight: torch.Tensor | None = None
        self.folded_bias: torch.Tensor | None = None
        self._recording = False

    def sample_kernels(self, *styles: torch.Tensor) -> torch.Tensor:
        """Each sample's kernel: (b, o, i, k, k), in any floating dtype."""
        raise NotImplementedError

    @property
    def is_folded(self) -> bool:
        return self.folded_weight is not None

    def forward(self, x: torch.Tensor, *styles: torch.Tensor) -> torch.Tensor:
        if self.folded_weight is not None:
            return F.conv2d(x, self.folded_weight, self.folded_bias, padding=self.padding)
        batch, in_channels, height, width = x.shape
        weight = self.sample_kernels(*styles).to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if self._recording:
            if batch != 1:
                raise ValueError(f"folding records one image's kernels, got a batch of {batch}")
            self.folded_weight = weight[0].detach().clone()
            self.folded_bias = None if bias is None else bias.detach().clone()
        out_channels, kernel = weight.shape[1], weight.shape[-1]
        # One grouped convolution runs every sample with its own kernel.
        out = F.conv2d(
            x.reshape(1, batch * in_channels, height, width),
            weight.reshape(batch * out_channels, in_channels, kernel, kernel),
            padding=self.padding,
            groups=batch,
        ).reshape(batch, out_channels, height, width)
        return out if bias is None else out + bias[None, :, None, None]

    def fold_gain(self, gain: float) -> None:
        """Scale the folded kernel and bias by ``gain`` (a block moving a constant into them)."""
        if self.folded_weight is None:
            raise RuntimeError("fold_gain needs a folded layer")
        self.folded_weight = self.folded_weight * gain
        if self.folded_bias is not None:
            self.folded_bias = self.folded_bias * gain

    def unfold(self) -> None:
        self.folded_weight = self.folded_bias = None


def style_convs(model: nn.Module) -> list[StyleConv]:
    return [module for module in model.modules() if isinstance(module, StyleConv)]


def is_folded(model: nn.Module) -> bool:
    """Whether ``model``'s modulated layers currently run folded kernels."""
    return any(conv.is_folded for conv in style_convs(model))


@contextlib.contextmanager
def folded_styles(
    model: nn.Module,
    ws: torch.Tensor | None,
    text: TextEmbeddings | None = None,
    *,
    channels_last: bool = False,
) -> Iterator[bool]:
    """Within the context, ``model`` runs with the kernels of one image's styles folded in.

    ``ws`` is the image's styles (1, ...) as :meth:`image_styles` makes them, and ``text`` its
    text (one prompt) for a text-conditioned model. Inside, the model must be called with the
    same ``text`` (the attention still reads it) and gives what it gives unfolded with ``ws``
    for any batch of inputs, to float rounding; the ``ws`` it is called with is ignored by the
    folded layers. Yields whether anything was folded: models without styles (``ws`` None) or
    without modulated layers run unchanged. ``channels_last`` stores the kernels in that
    memory format (for inputs in it). Not for training: the kernels are constants.
    """
    convs = style_convs(model)
    if ws is None or not convs:
        yield False
        return
    if any(conv.is_folded for conv in convs):
        raise RuntimeError("this model is already folded to an image's styles")
    parameter = next(model.parameters())
    side = model.min_size
    probe = torch.zeros(1, 3, side, side, device=parameter.device, dtype=parameter.dtype)
    probe_text = None if text is None else text.index([0])
    try:
        for conv in convs:
            conv._recording = True
        with torch.no_grad():
            model(probe, probe_text, ws=ws[:1], add_input=False)
        for conv in convs:
            conv._recording = False
        if unused := [conv for conv in convs if not conv.is_folded]:
            raise RuntimeError(f"{len(unused)} modulated layers did not run while folding")
        for module in model.modules():
            finish = getattr(module, "finish_folding", None)
            if finish is not None:
                finish()
        if channels_last:
            for conv in convs:
                conv.folded_weight = conv.folded_weight.contiguous(
                    memory_format=torch.channels_last
                )
        yield True
    finally:
        for conv in convs:
            conv._recording = False
            conv.unfold()


@contextlib.contextmanager
def unfolded(model: nn.Module) -> Iterator[None]:
    """The model's per-sample path for the duration (its folded kernels kept aside)."""
    saved = [(conv, conv.folded_weight, conv.folded_bias) for conv in style_convs(model)]
    for conv, _, _ in saved:
        conv.unfold()
    try:
        yield
    finally:
        for conv, weight, bias in saved:
            conv.folded_weight, conv.folded_bias = weight, bias
