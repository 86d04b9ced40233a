"""The GigaGAN discriminator: multi-scale input, multi-scale output, text projection.

GigaGAN (Sec. 3.3) feeds the discriminator an image pyramid and asks for a prediction at
every scale, so the generator's low-resolution pyramid levels get their own adversarial
signal. Text enters by projection (Miyato & Koyama 2018): the logit gains the inner product
of the image features with a text vector, which makes "real image, wrong text" detectable
(the matching-aware loss).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from upsampler.models.layers import leaky_relu
from upsampler.text.base import TextEmbeddings


class _DownBlock(nn.Module):
    """Residual block that halves the resolution. x: (b, c, h, w) -> (b, o, h/2, w/2)"""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.skip(F.avg_pool2d(x, 2))
        x = leaky_relu(self.conv2(leaky_relu(self.conv1(x))))
        return (x + residual) / math.sqrt(2.0)


class _ResBlock(nn.Module):
    """Residual block at constant resolution. x: (b, c, h, w) -> (b, c, h, w)"""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + leaky_relu(self.conv2(leaky_relu(self.conv1(x))))) / math.sqrt(2.0)


class GigaGANDiscriminator(ModelMixin, ConfigMixin):
    """Multi-scale discriminator ``D(images, lq, text) -> [logits per scale]``.

    Args:
        channels: width of each level, from the full output resolution (level 0) down; each
            level halves the resolution and takes the pyramid image of its size, if given.
        blocks_per_level: extra residual blocks at each level.
        lq_conditioning: also show the (upsampled) low-resolution input at every level, so the
            discriminator judges fidelity to the input as well as realism.
        text_conditioning: projection conditioning on the text; False = image branch only.
        text_embed_dim: width of the frozen text encoder's embeddings.
        text_dim: width of the discriminator's text vector.
    """

    @register_to_config
    def __init__(
        self,
        *,
        channels: list[int] = (64, 128, 256, 256),
        blocks_per_level: int = 1,
        lq_conditioning: bool = True,
        text_conditioning: bool = False,
        text_embed_dim: int = 512,
        text_dim: int = 256,
    ):
        super().__init__()
        channels = list(channels)
        if len(channels) < 1:
            raise ValueError("channels must name at least one level")
        in_channels = 6 if lq_conditioning else 3
        self.num_scales = len(channels)
        self.from_rgb = nn.ModuleList(nn.Conv2d(in_channels, c, 1) for c in channels)
        self.downs = nn.ModuleList(
            _DownBlock(channels[i - 1], channels[i]) for i in range(1, len(channels))
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(*(_ResBlock(c) for _ in range(blocks_per_level))) for c in channels
        )
        # One patch-wise prediction per scale (multi-scale output).
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in channels)
        if text_conditioning:
            self.text_mlp = nn.Sequential(
                nn.Linear(2 * text_embed_dim, text_dim), nn.GELU(), nn.Linear(text_dim, text_dim)
            )
            self.text_projections = nn.ModuleList(nn.Linear(text_dim, c) for c in channels)
        else:
            self.text_mlp = None
            self.text_projections = None

    @property
    def size_multiple(self) -> int:
        """Sides of the full-resolution image must be multiples of this."""
        return 2 ** (self.num_scales - 1)

    def _text_vector(self, text: TextEmbeddings) -> torch.Tensor:
        """(b, text_dim): pooled embedding and masked mean of the tokens, through an MLP."""
        mask = text.mask[..., None].to(text.tokens.dtype)
        mean_tokens = (text.tokens * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.text_mlp(torch.cat([text.pooled, mean_tokens], dim=-1))

    def forward(
        self,
        images: torch.Tensor | list[torch.Tensor],
        lq: torch.Tensor | None = None,
        text: TextEmbeddings | None = None,
    ) -> list[torch.Tensor]:
        """Judge images; returns one logit map (B, 1, h_i, w_i) per scale, full resolution first.

        Args:
            images: the full-resolution image (B, 3, H, W) in [0, 1], or its pyramid as a list
                from full resolution down (each level half the previous one); levels not given
                are simply not injected. At most ``num_scales`` levels.
            lq: the low-resolution input (B, 3, h, w); required when ``lq_conditioning``.
            text: embeddings of the prompts; required when text-conditioned.
        """
        if isinstance(images, torch.Tensor):
            images = [images]
        images = list(images)
        if not 1 <= len(images) <= self.num_scales:
            raise ValueError(f"expected 1 to {self.num_scales} pyramid levels, got {len(images)}")
        height, width = images[0].shape[-2:]
        if height % self.size_multiple or width % self.size_multiple:
            raise ValueError(
                f"image sides must be multiples of {self.size_multiple}, got {height}x{width}"
            )
        for level, image in enumerate(images):
            expected = (images[0].shape[0], 3, height >> level, width >> level)
            if tuple(image.shape) != expected:
                raise ValueError(
                    f"pyramid level {level} must be {expected}, got {tuple(image.shape)}"
                )
        if self.config.lq_conditioning and lq is None:
            raise ValueError(
                "this discriminator is conditioned on the low-resolution input: pass lq"
            )
        text_vector = None
        if self.text_mlp is not None:
            if text is None:
                raise ValueError("this discriminator is text-conditioned: pass text embeddings")
            text_vector = self._text_vector(text.to(images[0].device, images[0].dtype))

        logits = []
        x = None
        for level in range(self.num_scales):
            if level > 0:
                x = self.downs[level - 1](x)
            if level < len(images):
                image = images[level] * 2.0 - 1.0
                if self.config.lq_conditioning:
                    lq_up = (
                        F.interpolate(lq.to(image.dtype), size=image.shape[-2:], mode="bilinear")
                        * 2.0
                        - 1.0
                    )
                    image = torch.cat([image, lq_up], dim=1)
                injected = self.from_rgb[level](image)
                x = injected if x is None else (x + injected) / math.sqrt(2.0)
            x = self.blocks[level](x)
            logit = self.heads[level](x)
            if text_vector is not None:
                projection = self.text_projections[level](text_vector)[:, :, None, None]
                logit = logit + (x * projection).sum(dim=1, keepdim=True) / math.sqrt(x.shape[1])
            logits.append(logit)
        return logits
