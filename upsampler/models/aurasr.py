"""AuraSR's generator (fal's open GigaGAN-style 4x upsampler), runnable by our Upscaler.

AuraSR (package ``aura-sr``, weights ``fal/AuraSR`` and ``fal/AuraSR-v2``, 618M parameters) is an
unconditional GigaGAN-style U-Net, but not our :class:`~upsampler.models.generator.GigaGANUpsampler`
with other sizes: its convolutions are SiLU-activated and modulated as ``w * (1 + m)`` with no
equalised learning rate, one linear layer turns the style into every layer's modulation, six
residual blocks per level each feed a skip connection, attention blocks are RMS-normed
transformers, upsampling is nearest + 3x3 convolution, there is no RGB pyramid and no bicubic
residual, and its input is perturbed with a little Gaussian noise. Expressing all that as options
of ``GigaGANUpsampler`` would put a branch in nearly every line of it, so this is a separate
``ModelMixin + ConfigMixin`` class that keeps the *inference contract* the
:class:`~upsampler.Upscaler` relies on (``scale``, ``size_multiple``, ``text_conditioning``,
``styles(...)``, ``forward(lq, text, ws=...) -> UpsamplerOutput``, ``activation_elements``), so
``Upscaler``, tiling, dtype handling and ``upsampler upscale --model DIR`` work unchanged.

Its defaults are the published checkpoints' architecture (AuraSR v1 and v2 share one
config.json), so ``AuraSRUpsampler()`` builds the 618M-parameter network. Loading AuraSR's own
layout (``config.json`` + ``model.safetensors``, with its state-dict names) is
:mod:`upsampler.models.aurasr_checkpoint`; the names here are ours.

Differences from the reference forward, all deliberate:

* Any input size that is a multiple of :attr:`size_multiple` (8), not only 64x64.
* The input noise (``input_noise_std`` = 0.001, drawn by the reference from the global RNG on
  every call) is added only when given (``input_noise``). The Upscaler draws it once per image
  from the image's seed, so overlapping tiles see the same pixels and a seed fixes the output.
* Style modulation, kernel selection, demodulation and RMS norms are computed in float32 even
  when the network runs in bf16/fp16, so half precision changes only the convolutions.

Notation in shape comments: b - batch, n - kernels in a bank, o/i - output/input channels,
k - kernel size, h/w - height/width, d - style width.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from upsampler.models.folding import StyleConv
from upsampler.models.generator import UpsamplerOutput
from upsampler.text.base import TextEmbeddings

# The reference's default skip scale when its config gives none.
DEFAULT_SKIP_CONNECT_SCALE = 2**-0.5


class ScaledLinear(nn.Module):
    """The mapping network's linear layer: weights and bias multiplied by ``lr_mul`` at run time."""

    def __init__(self, in_features: int, out_features: int, *, lr_mul: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight.to(x.dtype), self.bias.to(x.dtype)
        return F.linear(x, weight * self.lr_mul, bias * self.lr_mul)


class RMSNorm(nn.Module):
    """Unit L2 norm over channels times sqrt(channels) and a learned gain, in float32.

    x: (b, c, h, w) -> (b, c, h, w)
    """

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32: in fp16 a sum of squares over 1024 channels overflows easily.
        normed = F.normalize(x.float(), dim=1) * self.weight.float() * math.sqrt(x.shape[1])
        return normed.to(x.dtype)


class ModulatedConv2d(StyleConv):
    """A bias-free convolution whose kernel is a per-sample softmax mix of a bank (GigaGAN's
    adaptive kernel selection), scaled per input channel by ``1 + modulation`` and demodulated
    (StyleGAN2). The modulation and the kernel logits come from the caller (one shared linear
    layer computes them for the whole network).

    x: (b, i, h, w), modulation: (b, i), kernel_logits: (b, n) -> (b, o, h, w)
    """

    bias = None

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int, num_kernels: int):
        super().__init__(kernel_size)
        self.weight = nn.Parameter(
            torch.empty(num_kernels, out_channels, in_channels, kernel_size, kernel_size)
        )
        nn.init.kaiming_normal_(self.weight, a=0, mode="fan_in", nonlinearity="leaky_relu")

    def sample_kernels(self, modulation: torch.Tensor, kernel_logits: torch.Tensor) -> torch.Tensor:
        """Each sample's kernel, made in float32: (b, o, i, k, k)."""
        selection = kernel_logits.float().softmax(dim=-1)  # (b, n)
        weight = torch.einsum("bn,noikl->boikl", selection, self.weight.float())
        weight = weight * (modulation.float() + 1.0)[:, None, :, None, None]
        return weight * weight.pow(2).sum(dim=(2, 3, 4), keepdim=True).clamp(min=1e-8).rsqrt()


class ResBlock(nn.Module):
    """Two modulated 3x3 convolutions, each followed by SiLU, plus a (1x1 when needed) skip.

    Consumes four modulation tensors in order: conv1's channel scales and kernel logits, then
    conv2's. x: (b, i, h, w) -> (b, o, h, w)
    """

    def __init__(self, in_channels: int, out_channels: int, *, num_kernels: int):
        super().__init__()
        self.conv1 = ModulatedConv2d(
            in_channels, out_channels, kernel_size=3, num_kernels=num_kernels
        )
        self.conv2 = ModulatedConv2d(
            out_channels, out_channels, kernel_size=3, num_kernels=num_kernels
        )
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        #: widths of the four slices of the shared modulation vector this block consumes
        self.modulation_dims = [in_channels, num_kernels, out_channels, num_kernels]

    def forward(self, x: torch.Tensor, modulations: Iterator[torch.Tensor]) -> torch.Tensor:
        h = F.silu(self.conv1(x, next(modulations), next(modulations)))
        h = F.silu(self.conv2(h, next(modulations), next(modulations)))
        return h + (x if self.skip is None else self.skip(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention over all pixels after an RMS norm; ``heads * dim_head`` wide.

    x: (b, c, h, w) -> (b, c, h, w) (the residual is added by :class:`Transformer`)
    """

    def __init__(self, channels: int, *, heads: int, dim_head: int):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        self.norm = RMSNorm(channels)
        self.qkv = nn.Conv2d(channels, 3 * heads * dim_head, 1, bias=False)
        self.out = nn.Conv2d(heads * dim_head, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        qkv = self.qkv(self.norm(x)).reshape(batch, 3, self.heads, self.dim_head, height * width)
        q, k, v = qkv.transpose(-1, -2).unbind(dim=1)  # each (b, heads, hw, dim_head)
        attended = F.scaled_dot_product_attention(q, k, v)
        merged = attended.transpose(-1, -2).reshape(batch, -1, height, width)
        return self.out(merged)


class FeedForward(nn.Module):
    """RMS norm, 1x1 convolution to ``mult`` times the width, GELU, 1x1 convolution back."""

    def __init__(self, channels: int, *, mult: int = 4):
        super().__init__()
        self.norm = RMSNorm(channels)
        self.expand = nn.Conv2d(channels, channels * mult, 1)
        self.project = nn.Conv2d(channels * mult, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(F.gelu(self.expand(self.norm(x))))


class TransformerLayer(nn.Module):
    def __init__(self, channels: int, *, heads: int, dim_head: int):
        super().__init__()
        self.attention = SelfAttention(channels, heads=heads, dim_head=dim_head)
        self.feed_forward = FeedForward(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention(x) + x
        return self.feed_forward(x) + x


class Transformer(nn.Module):
    """``depth`` pre-norm self-attention + feed-forward layers on a feature map."""

    def __init__(self, channels: int, *, depth: int, heads: int, dim_head: int):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(channels, heads=heads, dim_head=dim_head) for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class Upsample(nn.Module):
    """Nearest-neighbour 2x, then a 3x3 convolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class EncoderLevel(nn.Module):
    """``blocks`` residual blocks (each output is a skip), optional attention, stride-2 conv."""

    def __init__(
        self,
        channels: int,
        out_channels: int,
        *,
        blocks: int,
        num_kernels: int,
        attention: Transformer | None,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock(channels, channels, num_kernels=num_kernels) for _ in range(blocks)
        )
        self.attention = attention
        self.downsample = nn.Conv2d(channels, out_channels, 3, stride=2, padding=1)


class DecoderLevel(nn.Module):
    """Upsample, then ``blocks`` residual blocks (each taking one skip, while skips remain),
    then optional attention."""

    def __init__(
        self,
        in_channels: int,
        block_in_channels: int,
        channels: int,
        *,
        blocks: int,
        num_kernels: int,
        attention: Transformer | None,
    ):
        super().__init__()
        self.upsample = Upsample(in_channels, channels)
        self.blocks = nn.ModuleList(
            ResBlock(block_in_channels, channels, num_kernels=num_kernels) for _ in range(blocks)
        )
        self.attention = attention


class AuraSRUpsampler(ModelMixin, ConfigMixin):
    """AuraSR's unconditional U-Net upsampler ``G(lq, z) -> hq``; defaults are the published model.

    Args:
        dim: base width; level widths are ``dim`` times the multipliers, and the output level
            is ``dim`` wide (the reference's ``init_dim`` must equal it for its forward to run).
        up_dim_mults: width multipliers of the decoder levels, highest resolution first.
        down_dim_mults: width multipliers of the encoder's stride-2 outputs; the encoder's input
            width is the decoder width at the input resolution. ``len(up) - len(down)``
            decoder levels lie above the input resolution, so ``scale = 2 ** (len(up) -
            len(down))`` and input sides must be multiples of ``2 ** len(down)``.
        full_attn, attn_depths: per decoder level (highest resolution first, as the reference
            lists them): whether it has a transformer and its depth. The encoder levels use the
            first ``len(down_dim_mults)`` entries.
        mid_attn_depth: depth of the transformer at the lowest resolution.
        attn_heads, attn_dim_head: every transformer's heads and head width.
        num_conv_kernels: size of each convolution's kernel bank.
        blocks_per_level: residual blocks per level (6 in the reference, where it is fixed).
        z_dim, style_dim, mapping_layers, mapping_lr_mul: the mapping network ``z -> w``.
        skip_connect_scale: factor on every skip connection.
        input_noise_std: standard deviation of the Gaussian noise added to the input (in
            [0, 1] units) before clamping, as the reference does on every call.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        *,
        dim: int = 64,
        up_dim_mults: list[int] = (1, 2, 4, 8, 16),
        down_dim_mults: list[int] = (4, 8, 16),
        full_attn: list[bool] = (False, False, False, True, True),
        attn_depths: list[int] = (2, 2, 2, 2, 4),
        mid_attn_depth: int = 4,
        attn_heads: int = 8,
        attn_dim_head: int = 64,
        num_conv_kernels: int = 4,
        blocks_per_level: int = 6,
        z_dim: int = 128,
        style_dim: int = 512,
        mapping_layers: int = 4,
        mapping_lr_mul: float = 0.1,
        skip_connect_scale: float = 0.4,
        input_noise_std: float = 0.001,
    ):
        super().__init__()
        up_dim_mults, down_dim_mults = list(up_dim_mults), list(down_dim_mults)
        full_attn, attn_depths = list(full_attn), list(attn_depths)
        if not 0 < len(down_dim_mults) < len(up_dim_mults):
            raise ValueError(
                f"need 1 <= len(down_dim_mults) < len(up_dim_mults), got {len(down_dim_mults)} "
                f"and {len(up_dim_mults)}"
            )
        if not len(full_attn) == len(attn_depths) == len(up_dim_mults):
            raise ValueError(
                f"full_attn ({len(full_attn)}) and attn_depths ({len(attn_depths)}) need one "
                f"entry per up_dim_mults entry ({len(up_dim_mults)})"
            )
        if num_conv_kernels < 1 or blocks_per_level < 1:
            raise ValueError(
                f"num_conv_kernels and blocks_per_level must be >= 1, got {num_conv_kernels} "
                f"and {blocks_per_level}"
            )
        # Widths as the reference computes them.
        up_dims = [dim, *(dim * m for m in up_dim_mults)]
        encoder_input = up_dims[len(up_dim_mults) - len(down_dim_mults)]
        down_dims = [encoder_input, *(dim * m for m in down_dim_mults)]
        down_pairs = list(zip(down_dims[:-1], down_dims[1:], strict=True))
        up_pairs = list(zip(up_dims[:-1], up_dims[1:], strict=True))
        self.num_down = len(down_pairs)

        def transformer(channels: int, depth: int) -> Transformer:
            return Transformer(channels, depth=depth, heads=attn_heads, dim_head=attn_dim_head)

        self.mapping = nn.ModuleList(
            ScaledLinear(z_dim if i == 0 else style_dim, style_dim, lr_mul=mapping_lr_mul)
            for i in range(mapping_layers)
        )
        self.stem = nn.Conv2d(3, encoder_input, 7, padding=3)
        self.encoder = nn.ModuleList(
            EncoderLevel(
                channels,
                out_channels,
                blocks=blocks_per_level,
                num_kernels=num_conv_kernels,
                attention=transformer(channels, attn_depths[i]) if full_attn[i] else None,
            )
            for i, (channels, out_channels) in enumerate(down_pairs)
        )
        mid = up_dims[-1]
        if down_dims[-1] != mid:
            raise ValueError(
                f"the encoder ends at width {down_dims[-1]} but the decoder starts at {mid}: "
                "dim * down_dim_mults[-1] must equal dim * up_dim_mults[-1]"
            )
        self.mid_block1 = ResBlock(mid, mid, num_kernels=num_conv_kernels)
        self.mid_attention = transformer(mid, mid_attn_depth)
        self.mid_block2 = ResBlock(mid, mid, num_kernels=num_conv_kernels)
        self.decoder = nn.ModuleList()
        for index, (channels, out_channels) in enumerate(reversed(up_pairs)):
            level = len(up_pairs) - 1 - index  # its index in full_attn / attn_depths
            if index < self.num_down:
                skip = down_pairs[self.num_down - 1 - index][0]
                if skip != channels:
                    raise ValueError(
                        f"decoder level {index} is {channels} wide but its skips are {skip}; "
                        "these multipliers do not form a U-Net"
                    )
            self.decoder.append(
                DecoderLevel(
                    mid if index == 0 else out_channels,
                    2 * channels if index < self.num_down else channels,
                    channels,
                    blocks=blocks_per_level,
                    num_kernels=num_conv_kernels,
                    attention=transformer(channels, attn_depths[level])
                    if full_attn[level]
                    else None,
                )
            )
        self.final_block = ResBlock(dim, dim, num_kernels=num_conv_kernels)
        self.to_rgb = nn.Conv2d(dim, 3, 1)
        # One linear layer computes every convolution's modulation, in the order they run.
        self.modulation_dims = [
            width
            for block in self._blocks_in_order()
            for width in block.modulation_dims  # type: ignore[attr-defined]
        ]
        self.style_to_modulation = nn.Linear(style_dim, sum(self.modulation_dims))

    def _blocks_in_order(self) -> list[nn.Module]:
        return [
            *(block for level in self.encoder for block in level.blocks),
            self.mid_block1,
            self.mid_block2,
            *(block for level in self.decoder for block in level.blocks),
            self.final_block,
        ]

    # ------------------------------------------------------------------ contract

    @property
    def scale(self) -> int:
        return 2 ** (len(self.config.up_dim_mults) - len(self.config.down_dim_mults))

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2**self.num_down

    @property
    def text_conditioning(self) -> bool:
        return False

    #: the Upscaler shares one style per image: (B, num_styles, style_dim) with one slot here
    num_styles = 1
    #: the output depends on the style noise z (AuraSR's ``noise``)
    uses_styles = True

    @property
    def min_size(self) -> int:
        return 2 * self.size_multiple

    @property
    def input_noise_std(self) -> float:
        return float(self.config.input_noise_std)

    def supports_dtype(self, dtype: torch.dtype) -> bool:
        """fp32, bf16 and fp16: the styles stay fp32 whatever the weights' dtype."""
        return dtype in (torch.float32, torch.bfloat16, torch.float16)

    def image_styles(
        self,
        text: TextEmbeddings | None,
        *,
        generator: torch.Generator,
        truncation_psi: float = 1.0,
    ) -> torch.Tensor:
        """ws (1, 1, style_dim) of one image, its z drawn from ``generator``; no text."""
        if text is not None:
            raise ValueError("AuraSR is unconditional: text must be None")
        return self.styles(1, generator=generator, truncation_psi=truncation_psi)

    def activation_elements(self, tile: int) -> float:
        """A rough upper bound of the activation elements one ``tile x tile`` forward holds at
        once (per sample): the widest level's block, the skips, the attention matrices."""
        config = self.config
        up_dims = [config.dim, *(config.dim * m for m in config.up_dim_mults)]
        peak = 0.0
        for index, channels in enumerate(reversed(up_dims[:-1])):
            side = tile * 2.0 ** (index + 1 - self.num_down)
            inputs = 2 * channels if index < self.num_down else channels
            peak = max(peak, (inputs + 4 * channels) * side * side)
        skips = config.blocks_per_level * sum(
            level.downsample.in_channels * (tile / 2**i) ** 2
            for i, level in enumerate(self.encoder)
        )
        # Attention maps (heads x tokens x tokens) of every level that has a transformer.
        sides = [tile / 2**i for i, level in enumerate(self.encoder) if level.attention]
        sides.append(tile / self.size_multiple)
        sides += [
            tile * 2.0 ** (index + 1 - self.num_down)
            for index, level in enumerate(self.decoder)
            if level.attention
        ]
        attention = max(config.attn_heads * side**4 for side in sides)
        return peak + skips + attention

    def interpolated_input(self, lq: torch.Tensor, size: tuple[int, int]) -> None:
        """None: AuraSR has no bicubic residual, its output is the network's alone."""
        return None

    # ------------------------------------------------------------------ styles

    def sample_z(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise z (AuraSR's ``noise``): (batch_size, z_dim), drawn from ``generator``."""
        device = generator.device if generator is not None else self.stem.weight.device
        return torch.randn(batch_size, self.config.z_dim, generator=generator, device=device)

    def styles(
        self,
        batch_size: int,
        *,
        text_global: torch.Tensor | None = None,
        z: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        truncation_psi: float = 1.0,
    ) -> torch.Tensor:
        """Styles ws: (B, 1, style_dim), the mapping network's output for z.

        ``truncation_psi`` must be 1: AuraSR checkpoints carry no mean style to truncate toward.
        """
        if text_global is not None:
            raise ValueError("AuraSR is unconditional: text_global must be None")
        if truncation_psi != 1.0:
            raise ValueError(
                f"AuraSR checkpoints carry no mean style, so truncation_psi must be 1, got "
                f"{truncation_psi}"
            )
        if z is None:
            z = self.sample_z(batch_size, generator)
        if z.shape != (batch_size, self.config.z_dim):
            raise ValueError(f"z must be {(batch_size, self.config.z_dim)}, got {tuple(z.shape)}")
        # float32 whatever the model's dtype: the styles set every layer's scale.
        w = F.normalize(z.to(self.stem.weight.device, torch.float32), dim=1)
        for layer in self.mapping:
            w = F.leaky_relu(layer(w), 0.2)
        return w[:, None]

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        lq: torch.Tensor,
        text: TextEmbeddings | None = None,
        *,
        z: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        ws: torch.Tensor | None = None,
        input_noise: torch.Tensor | None = None,
        add_input: bool = True,
    ) -> UpsamplerOutput:
        """Upscale ``lq``: (B, 3, H, W) in [0, 1] -> ``hq``: (B, 3, scale*H, scale*W), unclamped.

        Args:
            text: must be None (AuraSR is unconditional).
            z: (B, z_dim) noise, AuraSR's ``noise`` argument; drawn from ``generator`` when
                neither it nor ``ws`` is given.
            ws: precomputed styles (B, 1, style_dim) from :meth:`styles` (one image's style
                shared by all its tiles); overrides z.
            input_noise: (B, 3, H, W) standard normal noise; ``input_noise_std`` times it is
                added to ``lq`` before clamping to [0, 1], as the reference does with noise it
                draws itself. None adds nothing (the Upscaler adds it to the whole image).
            add_input: no effect: AuraSR adds no interpolated input (see
                :meth:`interpolated_input`); accepted for the Upscaler's contract.
        """
        if text is not None:
            raise ValueError("AuraSR is unconditional; text must be None")
        if lq.ndim != 4 or lq.shape[1] != 3:
            raise ValueError(f"lq must be (B, 3, H, W), got shape {tuple(lq.shape)}")
        batch, _, height, width = lq.shape
        if height % self.size_multiple or width % self.size_multiple:
            raise ValueError(
                f"input sides must be multiples of {self.size_multiple} for this model, got "
                f"{height}x{width}; pad the input (the Upscaler's tiling does this for you)"
            )
        if input_noise is not None:
            lq = lq + self.config.input_noise_std * input_noise.to(lq)
        x = lq.clamp(0.0, 1.0)
        if ws is None:
            ws = self.styles(batch, z=z, generator=generator)
        elif ws.shape[:2] != (batch, 1):
            raise ValueError(f"ws must be (B, 1, style_dim), got {tuple(ws.shape)}")
        # In float32: bf16 would round every 1 + modulation to about 0.4%.
        weight, bias = self.style_to_modulation.weight, self.style_to_modulation.bias
        modulation = F.linear(ws[:, 0].float(), weight.float(), bias.float())
        modulations = iter(modulation.split(self.modulation_dims, dim=-1))

        x = self.stem(x)
        skips = []
        for level in self.encoder:
            for block in level.blocks:
                x = block(x, modulations)
                skips.append(x)
            if level.attention is not None:
                x = level.attention(x)
            x = level.downsample(x)

        x = self.mid_block1(x, modulations)
        x = self.mid_attention(x)
        x = self.mid_block2(x, modulations)

        for level in self.decoder:
            x = level.upsample(x)
            for block in level.blocks:
                if skips:  # the reference's order: the latest skip first
                    x = torch.cat([x, skips.pop() * self.config.skip_connect_scale], dim=1)
                x = block(x, modulations)
            if level.attention is not None:
                x = level.attention(x)

        hq = self.to_rgb(self.final_block(x, modulations))
        return UpsamplerOutput(hq=hq)
