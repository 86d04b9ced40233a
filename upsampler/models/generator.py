"""The GigaGAN upsampler generator: an asymmetric U-Net with style modulation.

Kang et al., "Scaling up GANs for Text-to-Image Synthesis" (CVPR 2023), Sec. 3.4 and App. B:
the upsampler encodes the low-resolution image with a few stride-2 stages, then decodes with
more upsampling stages than the encoder had downsampling ones (3 down / 6 up for 8x), with skip
connections, style-modulated convolutions with sample-adaptive kernel selection at every level,
and self- and cross-attention at the lowest resolutions. The decoder emits an RGB image at every
level (an image pyramid) for the multi-scale discriminator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from upsampler.models.layers import (
    AttentionBlock,
    MappingNetwork,
    ModulatedResBlock,
    TextTransformer,
    ToRGB,
    leaky_relu,
)
from upsampler.text.base import TextEmbeddings

SUPPORTED_SCALES = (2, 4, 8)

# Presets: names a user can ask for, from a CPU-friendly model to the paper's scale.
# Every value is a constructor argument; scale and text conditioning are chosen per call.
PRESETS: dict[str, dict] = {
    # CPU-friendly: thin high-resolution stages, where most of the pixels are.
    "nano": dict(
        encoder_channels=[32, 64, 128],
        upsample_channels=[32, 16, 16],
        blocks_per_level=1,
        num_kernels=2,
        z_dim=64,
        style_dim=128,
        mapping_layers=2,
        attention_levels=[2],
        attention_heads=4,
        text_dim=128,
        text_layers=1,
        text_heads=4,
    ),
    "small": dict(
        encoder_channels=[64, 128, 256],
        upsample_channels=[64, 32, 32],
        blocks_per_level=2,
        num_kernels=4,
        z_dim=128,
        style_dim=256,
        mapping_layers=4,
        attention_levels=[2],
        attention_heads=8,
        text_dim=256,
        text_layers=2,
        text_heads=4,
    ),
    "base": dict(
        encoder_channels=[128, 256, 512, 512],
        upsample_channels=[128, 64, 64],
        blocks_per_level=2,
        num_kernels=4,
        z_dim=128,
        style_dim=512,
        mapping_layers=4,
        attention_levels=[2, 3],
        attention_heads=8,
        text_dim=512,
        text_layers=2,
        text_heads=8,
    ),
    # Paper scale (about 0.7B parameters, like GigaGAN's upsampler): 3 down / 6 up for 8x.
    "giga": dict(
        encoder_channels=[256, 512, 768, 1024],
        upsample_channels=[256, 128, 64],
        blocks_per_level=2,
        num_kernels=4,
        z_dim=128,
        style_dim=1024,
        mapping_layers=4,
        attention_levels=[2, 3],
        attention_heads=16,
        text_dim=1024,
        text_layers=4,
        text_heads=16,
    ),
    # CPU student for distilling Real-ESRGAN x4plus (RRDBNet), which does all its work at the
    # input resolution. nano spends most of its FLOPs below it (a 3-level U-Net with attention)
    # and, taught with L1 to that teacher, plateaus soft; a plain stack of 64-channel convs at
    # the input resolution learns it far better. So: one level (no downsampling, no attention:
    # text reaches the convolutions through w alone), a trunk of 2 x 4 modulated residual
    # blocks at 64 channels with adaptive kernel selection (about 90% of the FLOPs), then thin
    # upsampling stages of one block each (16, then 8 channels) that keep the RGB pyramid.
    # 256x256 -> 1024x1024: 88 GFLOP, 1/27 of RRDBNet's, and about 1/25 of its CPU time through
    # the Upscaler (benchmarks/presets.py). In a short L1 comparison it beat a 48-channel,
    # 2 x 6-block trunk and nano.
    "student": dict(
        encoder_channels=[64],
        upsample_channels=[16, 8, 8],
        blocks_per_level=4,
        upsample_blocks=1,
        num_kernels=2,
        z_dim=64,
        style_dim=128,
        mapping_layers=2,
        attention_levels=[],
        attention_heads=4,
        text_dim=128,
        text_layers=1,
        text_heads=4,
    ),
}


@dataclass
class UpsamplerOutput(BaseOutput):
    """hq: (B, 3, scale*H, scale*W), roughly in [0, 1] (not clamped, so losses keep their gradients).

    pyramid: the decoder's RGB images from the lowest resolution to ``hq`` (``hq`` is the last),
    present only when ``return_pyramid=True``.
    """

    hq: torch.Tensor
    pyramid: list[torch.Tensor] | None = None


class GigaGANUpsampler(ModelMixin, ConfigMixin):
    """GigaGAN upsampler generator ``G(lq, text, z) -> hq``.

    Args:
        scale: upscaling factor, 2, 4 or 8.
        encoder_channels: width of each encoder level; level 0 works at the input resolution and
            each next level halves it, so there are ``len - 1`` stride-2 stages and input sides
            must be multiples of ``2 ** (len - 1)`` (:attr:`size_multiple`).
        upsample_channels: width of each decoder stage above the input resolution, from 2x to
            8x; the first ``log2(scale)`` entries are used, so one preset serves every scale.
        blocks_per_level: residual blocks at each encoder and decoder level.
        upsample_blocks: residual blocks in each decoder stage above the input resolution;
            None gives them ``blocks_per_level``. Fewer lets a model keep a deep trunk at the
            input resolution and still upsample with thin, cheap stages (the "student" preset).
        num_kernels: size of each convolution's kernel bank (adaptive kernel selection).
        z_dim, style_dim, mapping_layers: the mapping network ``z -> w``.
        attention_levels: encoder levels (0 = input resolution) that get self-attention, and
            cross-attention to the text when conditioned, in both encoder and decoder.
        attention_heads: heads of those attention blocks.
        text_conditioning: False builds the unconditional variant, with no text parameters.
        text_embed_dim: width of the frozen text encoder's embeddings (512 for CLIP ViT-B).
        text_dim, text_layers, text_heads: the learned text transformer.
        residual_input: add a bicubic upsample of ``lq`` to every pyramid level, so the network
            only learns the detail that interpolation misses (faster, more stable training).
        w_avg_beta: decay of the tracked mean style used by the truncation trick.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        *,
        scale: int = 4,
        encoder_channels: list[int] = (64, 128, 256),
        upsample_channels: list[int] = (64, 32, 32),
        blocks_per_level: int = 1,
        upsample_blocks: int | None = None,
        num_kernels: int = 4,
        z_dim: int = 128,
        style_dim: int = 256,
        mapping_layers: int = 2,
        attention_levels: list[int] = (2,),
        attention_heads: int = 4,
        text_conditioning: bool = False,
        text_embed_dim: int = 512,
        text_dim: int = 256,
        text_layers: int = 2,
        text_heads: int = 4,
        residual_input: bool = True,
        w_avg_beta: float = 0.995,
    ):
        super().__init__()
        encoder_channels = list(encoder_channels)
        upsample_channels = list(upsample_channels)
        attention_levels = sorted(set(attention_levels))
        if scale not in SUPPORTED_SCALES:
            raise ValueError(f"scale must be one of {SUPPORTED_SCALES}, got {scale}")
        num_upsample = int(math.log2(scale))
        if len(upsample_channels) < num_upsample:
            raise ValueError(
                f"scale {scale} needs {num_upsample} upsample_channels entries, got {upsample_channels}"
            )
        if not encoder_channels:
            raise ValueError("encoder_channels must name at least one level")
        if bad := [level for level in attention_levels if not 0 <= level < len(encoder_channels)]:
            raise ValueError(
                f"attention_levels {bad} outside the {len(encoder_channels)} encoder levels"
            )
        if blocks_per_level < 1:
            raise ValueError(f"blocks_per_level must be >= 1, got {blocks_per_level}")
        if upsample_blocks is None:
            upsample_blocks = blocks_per_level
        elif upsample_blocks < 1:
            raise ValueError(f"upsample_blocks must be >= 1, got {upsample_blocks}")

        self.num_levels = len(encoder_channels)
        self.num_upsample = num_upsample
        text_width = text_dim if text_conditioning else None
        block = dict(style_dim=style_dim, num_kernels=num_kernels)

        # Text branch: absent (no parameters at all) in the unconditional variant.
        self.text_transformer = (
            TextTransformer(
                embed_dim=text_embed_dim, dim=text_dim, num_layers=text_layers, num_heads=text_heads
            )
            if text_conditioning
            else None
        )
        self.mapping = MappingNetwork(
            z_dim=z_dim, style_dim=style_dim, num_layers=mapping_layers, text_dim=text_width
        )
        # Tracked mean style for the truncation trick (BigGAN / StyleGAN): updated while training.
        self.register_buffer("w_avg", torch.zeros(style_dim))

        # Encoder: a stem at the input resolution, then stride-2 stages.
        self.stem = nn.Conv2d(3, encoder_channels[0], 3, padding=1)
        self.downsamples = nn.ModuleList(
            nn.Conv2d(encoder_channels[i - 1], encoder_channels[i], 3, stride=2, padding=1)
            for i in range(1, self.num_levels)
        )
        self.encoder_blocks = nn.ModuleList(
            nn.ModuleList(ModulatedResBlock(c, c, **block) for _ in range(blocks_per_level))
            for c in encoder_channels
        )
        self.encoder_attention = nn.ModuleDict(
            {
                str(level): AttentionBlock(
                    encoder_channels[level], num_heads=attention_heads, text_dim=text_width
                )
                for level in attention_levels
            }
        )

        # Decoder: back up through the encoder levels (with skips), then num_upsample stages more.
        decoder_channels = list(reversed(encoder_channels)) + upsample_channels[:num_upsample]
        self.decoder_channels = decoder_channels
        self.decoder_blocks = nn.ModuleList()
        for index, channels in enumerate(decoder_channels):
            if index == 0:
                in_channels = channels  # the bottleneck
            elif index < self.num_levels:
                in_channels = decoder_channels[index - 1] + channels  # upsampled + encoder skip
            else:
                in_channels = decoder_channels[index - 1]
            count = blocks_per_level if index < self.num_levels else upsample_blocks
            blocks = [ModulatedResBlock(in_channels, channels, **block)]
            blocks += [ModulatedResBlock(channels, channels, **block) for _ in range(count - 1)]
            self.decoder_blocks.append(nn.ModuleList(blocks))
        self.decoder_attention = nn.ModuleDict(
            {
                str(level): AttentionBlock(
                    encoder_channels[level], num_heads=attention_heads, text_dim=text_width
                )
                for level in attention_levels
            }
        )
        self.to_rgb = nn.ModuleList(ToRGB(c, style_dim=style_dim) for c in decoder_channels)

        # Each modulated layer takes its own style slot, so style mixing can switch mid-network.
        self.num_styles = (
            sum(
                b.num_styles
                for blocks in (*self.encoder_blocks, *self.decoder_blocks)
                for b in blocks
            )
            + len(self.to_rgb) * ToRGB.num_styles
        )

    # ------------------------------------------------------------------ presets

    @staticmethod
    def preset_names() -> list[str]:
        return list(PRESETS)

    @classmethod
    def preset_config(
        cls,
        name: str,
        *,
        scale: int = 4,
        text_conditioning: bool = False,
        text_embed_dim: int = 512,
    ) -> dict:
        """The constructor arguments of preset ``name`` (see :data:`PRESETS`)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return dict(
            PRESETS[name],
            scale=scale,
            text_conditioning=text_conditioning,
            text_embed_dim=text_embed_dim,
        )

    @classmethod
    def from_preset(
        cls,
        name: str,
        scale: int = 4,
        text_conditioning: bool = False,
        *,
        text_embed_dim: int = 512,
    ) -> GigaGANUpsampler:
        """A randomly initialised generator with preset ``name`` ("nano", "small", "base", "giga")."""
        return cls(
            **cls.preset_config(
                name,
                scale=scale,
                text_conditioning=text_conditioning,
                text_embed_dim=text_embed_dim,
            )
        )

    @classmethod
    def preset_parameter_count(
        cls, name: str, *, scale: int = 4, text_conditioning: bool = False
    ) -> int:
        """Parameters of a preset, counted on the meta device (no memory allocated)."""
        with torch.device("meta"):
            model = cls.from_preset(name, scale=scale, text_conditioning=text_conditioning)
        return sum(p.numel() for p in model.parameters())

    # ------------------------------------------------------------------ contract

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** (self.num_levels - 1)

    @property
    def text_conditioning(self) -> bool:
        return self.config.text_conditioning

    @property
    def min_size(self) -> int:
        """Two pixels at the lowest level: group norms fail on 1x1 maps of thin layers."""
        return 2 * self.size_multiple

    #: the output depends on the style noise z (the engine shares one z across an image's tiles)
    uses_styles = True

    @property
    def work_per_pixel_is_constant(self) -> bool:
        """No attention: the work per input pixel does not grow with the tile, so an image
        that fits one tile is best run whole (optional for the engine's models; see
        :func:`upsampler.inference.memory.auto_tile`)."""
        return not self.config.attention_levels

    #: no noise on the input (AuraSR has some)
    input_noise_std = 0.0

    def supports_dtype(self, dtype: torch.dtype) -> bool:
        """fp32, bf16 and fp16 (the engine retries a tile in fp32 if fp16 overflows)."""
        return dtype in (torch.float32, torch.bfloat16, torch.float16)

    def image_styles(
        self,
        text: TextEmbeddings | None,
        *,
        generator: torch.Generator,
        truncation_psi: float = 1.0,
    ) -> torch.Tensor:
        """ws (1, num_styles, style_dim) of one image: its z from ``generator``, mapped with
        the global token of ``text`` (the text transformer's, from the prompt's embeddings)."""
        text_global = None
        if text is not None:
            weight = next(self.parameters())  # the text branch runs in the model's dtype
            text = text.to(weight.device, weight.dtype)
            _, text_global = self.text_transformer(text.tokens, text.pooled, text.mask)
        return self.styles(
            1, text_global=text_global, generator=generator, truncation_psi=truncation_psi
        )

    def pyramid_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(H, W) of every pyramid level for an input of ``height x width``, lowest first."""
        sizes = []
        for index in range(len(self.decoder_channels)):
            factor = 2.0 ** (index - (self.num_levels - 1))
            sizes.append((int(height * factor), int(width * factor)))
        return sizes

    def activation_elements(self, tile: int) -> float:
        """A rough upper bound of the activation elements one ``tile x tile`` forward holds at
        once (per sample): the widest decoder block, the encoder skips, the attention maps."""
        peak = 0.0
        for index, channels in enumerate(self.decoder_channels):
            side = tile * 2.0 ** (index - (self.num_levels - 1))
            skip = channels if 0 < index < self.num_levels else 0
            # input + skip, two conv outputs, their activations and the residual sum
            peak = max(peak, (channels + skip + 4 * channels) * side * side)
        skips = sum(
            channels * (tile / 2**level) ** 2
            for level, channels in enumerate(self.config.encoder_channels)
        )
        attention = sum(
            self.config.attention_heads * (tile / 2**level) ** 4
            for level in self.config.attention_levels
        )
        return peak + skips + attention

    # ------------------------------------------------------------------ styles

    def sample_z(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise z: (batch_size, z_dim), drawn from ``generator`` on its own device."""
        device = generator.device if generator is not None else self.w_avg.device
        return torch.randn(batch_size, self.config.z_dim, generator=generator, device=device)

    def _mapping(
        self, z: torch.Tensor, text_global: torch.Tensor | None, truncation_psi: float
    ) -> torch.Tensor:
        w = self.mapping(z.to(self.w_avg.device, self.w_avg.dtype), text_global)
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():
                self.w_avg.lerp_(
                    w.detach().mean(dim=0).to(self.w_avg.dtype), 1.0 - self.config.w_avg_beta
                )
        if truncation_psi != 1.0:
            w = self.w_avg.to(w.dtype) + truncation_psi * (w - self.w_avg.to(w.dtype))
        return w

    def styles(
        self,
        batch_size: int,
        *,
        text_global: torch.Tensor | None = None,
        z: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        truncation_psi: float = 1.0,
        mix_z: torch.Tensor | None = None,
        mix_cutoff: int | None = None,
    ) -> torch.Tensor:
        """Per-layer styles ws: (B, num_styles, style_dim).

        With ``mix_z``, layers from ``mix_cutoff`` on take the style of ``mix_z`` instead
        (StyleGAN's style mixing: coarse layers from one z, fine ones from another).
        """
        if z is None:
            z = self.sample_z(batch_size, generator)
        if z.shape != (batch_size, self.config.z_dim):
            raise ValueError(f"z must be {(batch_size, self.config.z_dim)}, got {tuple(z.shape)}")
        w = self._mapping(z, text_global, truncation_psi)
        ws = w[:, None].expand(-1, self.num_styles, -1)
        if mix_z is not None:
            if mix_cutoff is None or not 0 <= mix_cutoff <= self.num_styles:
                raise ValueError(
                    f"mix_cutoff must be in [0, {self.num_styles}] with mix_z, got {mix_cutoff}"
                )
            w_mix = self._mapping(mix_z, text_global, truncation_psi)
            layer = torch.arange(self.num_styles, device=w.device)[None, :, None]
            ws = torch.where(layer < mix_cutoff, ws, w_mix[:, None])
        return ws

    # ------------------------------------------------------------------ forward

    def _check_input(self, lq: torch.Tensor) -> None:
        if lq.ndim != 4 or lq.shape[1] != 3:
            raise ValueError(f"lq must be (B, 3, H, W), got shape {tuple(lq.shape)}")
        height, width = lq.shape[-2:]
        if height % self.size_multiple or width % self.size_multiple:
            raise ValueError(
                f"input sides must be multiples of {self.size_multiple} for this model, got {height}x{width}; "
                "pad the input (the Upscaler's tiling does this for you)"
            )

    def forward(
        self,
        lq: torch.Tensor,
        text: TextEmbeddings | None = None,
        *,
        z: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        truncation_psi: float = 1.0,
        mix_z: torch.Tensor | None = None,
        mix_cutoff: int | None = None,
        ws: torch.Tensor | None = None,
        return_pyramid: bool = False,
        add_input: bool = True,
    ) -> UpsamplerOutput:
        """Upscale ``lq``: (B, 3, H, W) in [0, 1] -> ``hq``: (B, 3, scale*H, scale*W).

        Args:
            text: text embeddings of the B prompts; required when text-conditioned, ignored
                otherwise. Use the empty prompt's embeddings for "no text".
            z: (B, z_dim) noise; drawn from ``generator`` when not given.
            truncation_psi: 1 keeps full variety; 0 uses the mean style (z is ignored).
            mix_z, mix_cutoff: style mixing (see :meth:`styles`).
            ws: precomputed per-layer styles (B, num_styles, style_dim), e.g. one image's
                styles shared by all its tiles; overrides z and truncation.
            return_pyramid: also return the decoder's RGB image at every level.
            add_input: False leaves the interpolated input (``residual_input``) out of every
                level, so the caller can add :meth:`interpolated_input` itself in float32: in
                bf16 the sum would round the output to 8 bits (the Upscaler does this).
        """
        self._check_input(lq)
        batch = lq.shape[0]
        text_local = text_mask = text_global = None
        if self.text_transformer is not None:
            if text is None:
                raise ValueError(
                    "this upsampler is text-conditioned: pass text embeddings (the empty prompt's for none)"
                )
            if len(text) != batch:
                raise ValueError(f"got {len(text)} text embeddings for a batch of {batch} images")
            text = text.to(lq.device, lq.dtype)
            text_local, text_global = self.text_transformer(text.tokens, text.pooled, text.mask)
            text_mask = text.mask
        if ws is None:
            ws = self.styles(
                batch,
                text_global=text_global,
                z=z,
                generator=generator,
                truncation_psi=truncation_psi,
                mix_z=mix_z,
                mix_cutoff=mix_cutoff,
            )
        elif ws.shape[:2] != (batch, self.num_styles):
            raise ValueError(f"ws must be (B, {self.num_styles}, style_dim), got {tuple(ws.shape)}")
        ws = ws.to(lq.dtype)
        style_index = 0

        def next_styles(count: int) -> torch.Tensor:
            nonlocal style_index
            chunk = ws[:, style_index : style_index + count]
            style_index += count
            return chunk

        # Encoder.
        x = self.stem(lq * 2.0 - 1.0)
        skips = []
        for level in range(self.num_levels):
            if level > 0:
                x = leaky_relu(self.downsamples[level - 1](x))
            for block in self.encoder_blocks[level]:
                x = block(x, next_styles(block.num_styles))
            if str(level) in self.encoder_attention:
                x = self.encoder_attention[str(level)](x, text_local, text_mask)
            skips.append(x)

        # Decoder, accumulating the RGB pyramid (StyleGAN2's skip generator).
        rgb = None
        pyramid = []
        for index, blocks in enumerate(self.decoder_blocks):
            level = (
                self.num_levels - 1 - index
            )  # encoder level at this resolution (negative above it)
            first = 0
            if index > 0 and level < 0 and blocks[0].conv1.is_folded:
                # Above the input resolution (no encoder skip): the first block upsamples itself.
                x = blocks[0].forward_upsampled(x)
                next_styles(blocks[0].num_styles)
                first = 1
            elif index > 0:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
                if level >= 0:
                    x = torch.cat([x, skips[level]], dim=1)
            for block in blocks[first:]:
                x = block(x, next_styles(block.num_styles))
            if level >= 0 and str(level) in self.decoder_attention:
                x = self.decoder_attention[str(level)](x, text_local, text_mask)
            residual = self.to_rgb[index](x, next_styles(1)[:, 0])
            rgb = (
                residual
                if rgb is None
                # (contiguous: in channels-last, 3 channels interpolate several times slower)
                else F.interpolate(rgb.contiguous(), scale_factor=2.0, mode="bilinear") + residual
            )
            if return_pyramid or index == len(self.decoder_blocks) - 1:
                base = self.interpolated_input(lq, rgb.shape[-2:]) if add_input else None
                pyramid.append(rgb if base is None else base + rgb)

        hq = pyramid[-1]
        return UpsamplerOutput(hq=hq, pyramid=pyramid if return_pyramid else None)

    def interpolated_input(self, lq: torch.Tensor, size: tuple[int, int]) -> torch.Tensor | None:
        """What the model adds to its output at ``size`` when ``residual_input`` is on (None
        when off): ``lq`` resized to ``size``, bicubic upward, area downward, in ``lq``'s dtype.
        """
        if not self.config.residual_input:
            return None
        size = tuple(size)
        if size == tuple(lq.shape[-2:]):
            return lq
        if size[0] < lq.shape[-2]:
            return F.interpolate(lq, size=size, mode="area")
        return F.interpolate(lq, size=size, mode="bicubic", align_corners=False)
