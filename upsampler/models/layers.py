"""Building blocks shared by the generator and the discriminator.

Notation in shape comments:
    b - batch, c - channels (in), o - channels (out), n - kernels in a bank,
    k - kernel size, h/w - height/width, t - text tokens, d - width of a token / style
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from upsampler.models.folding import StyleConv

# LeakyReLU(0.2) scaled to keep unit variance, as in StyleGAN2.
ACTIVATION_GAIN = math.sqrt(2.0)

# Initial gain of the style -> modulation and style -> kernel-selection weights. At StyleGAN2's
# gain of 1 a unit-variance style moves every channel scale by about +-1, so an untrained
# upsampler's output (its colours included) depends strongly on z, and reconstruction training
# spends thousands of steps undoing that. At 0.1 a new network is nearly deterministic; the
# adversarial phase grows the dependence on z where it helps.
STYLE_INIT_GAIN = 0.1
# 1/sqrt(2): keeps the variance of a residual sum equal to that of each branch.
_HALF = 1.0 / math.sqrt(2.0)


def leaky_relu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * ACTIVATION_GAIN


class EqualLinear(nn.Module):
    """Linear layer with the equalised learning rate of StyleGAN (weights scaled at run time)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        init_gain: float = 1.0,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * (init_gain / lr_mul))
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class MappingNetwork(nn.Module):
    """z (and the global text token) -> style vector w, as in StyleGAN's mapping network.

    z: (b, z_dim), text_global: (b, text_dim) or None -> w: (b, style_dim)
    """

    def __init__(self, *, z_dim: int, style_dim: int, num_layers: int, text_dim: int | None):
        super().__init__()
        in_dim = z_dim + (text_dim or 0)
        layers = []
        for i in range(num_layers):
            # lr_mul 0.01 slows the mapping network down, as StyleGAN2 does, so styles drift slowly.
            layers.append(EqualLinear(in_dim if i == 0 else style_dim, style_dim, lr_mul=0.01))
        self.layers = nn.ModuleList(layers)
        self.text_dim = text_dim

    def forward(self, z: torch.Tensor, text_global: torch.Tensor | None = None) -> torch.Tensor:
        # Pixel norm: z and the text token enter on the unit sphere whatever their scale.
        x = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        if self.text_dim is not None:
            if text_global is None:
                raise ValueError(
                    "this mapping network is text-conditioned; text_global is required"
                )
            t = text_global * torch.rsqrt(text_global.pow(2).mean(dim=1, keepdim=True) + 1e-8)
            x = torch.cat([x, t], dim=1)
        for layer in self.layers:
            x = leaky_relu(layer(x))
        return x


class AdaptiveModulatedConv2d(StyleConv):
    """A StyleGAN2 modulated convolution whose kernel is chosen per sample from a bank.

    GigaGAN (Kang et al. 2023, Sec. 3.2, "sample-adaptive kernel selection"): instead of one
    kernel, each layer owns a bank of ``num_kernels`` kernels; the style w gives softmax weights
    over the bank, and the per-sample kernel is their weighted sum. This widens the layer's
    capacity without the cost of a wider convolution. The mixed kernel is then modulated by a
    per-channel scale from w and demodulated (StyleGAN2, Sec. 2.2).

    x: (b, c, h, w), w: (b, d) -> (b, o, h, w)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int,
        style_dim: int,
        num_kernels: int,
        demodulate: bool = True,
    ):
        super().__init__(kernel_size)
        if num_kernels < 1:
            raise ValueError(f"num_kernels must be >= 1, got {num_kernels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.num_kernels = num_kernels
        self.demodulate = demodulate
        self.weight = nn.Parameter(
            torch.randn(num_kernels, out_channels, in_channels, kernel_size, kernel_size)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        # bias 1: an untrained layer starts as an ordinary convolution.
        self.modulation = EqualLinear(
            style_dim, in_channels, bias_init=1.0, init_gain=STYLE_INIT_GAIN
        )
        self.selection = (
            EqualLinear(style_dim, num_kernels, init_gain=STYLE_INIT_GAIN)
            if num_kernels > 1
            else None
        )

    def sample_kernels(self, w: torch.Tensor) -> torch.Tensor:
        """Each sample's kernel from its style w (b, d): (b, o, i, k, k)."""
        style = self.modulation(w)  # (b, c)
        if self.selection is not None:
            selection = self.selection(w).softmax(dim=-1)  # (b, n)
            weight = torch.einsum("bn,noikl->boikl", selection, self.weight)
        else:
            weight = self.weight.expand(w.shape[0], -1, -1, -1, -1)
        weight = weight * self.weight_gain * style[:, None, :, None, None]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
        return weight


class ModulatedResBlock(nn.Module):
    """Two adaptive modulated 3x3 convolutions with a residual connection; consumes two styles.

    x: (b, c, h, w), ws: (b, 2, d) -> (b, o, h, w)
    """

    num_styles = 2

    def __init__(self, in_channels: int, out_channels: int, *, style_dim: int, num_kernels: int):
        super().__init__()
        self.conv1 = AdaptiveModulatedConv2d(
            in_channels, out_channels, kernel_size=3, style_dim=style_dim, num_kernels=num_kernels
        )
        self.conv2 = AdaptiveModulatedConv2d(
            out_channels, out_channels, kernel_size=3, style_dim=style_dim, num_kernels=num_kernels
        )
        self.skip = (
            nn.Conv2d(in_channels, out_channels, 1, bias=False)
            if in_channels != out_channels
            else None
        )

    def finish_folding(self) -> None:
        # leaky_relu(y) * g == leaky_relu(g * y) for g > 0: conv1's activation gain moves into
        # its kernel, and conv2's cancels the 1/sqrt(2) of the sum (see forward).
        self.conv1.fold_gain(ACTIVATION_GAIN)

    def forward_upsampled(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` of ``x`` upsampled 2x (nearest), with folded kernels, without making the
        upsampled input: a 3x3 convolution of a nearest-upsampled map is a transposed
        convolution of the map itself (stride 2, 4x4 kernel: for each of the four output phases
        a 2x2 kernel), so conv1 runs at the input resolution with 4/9 of the work and writes
        the upsampled output directly, and the 1x1 skip, which commutes with the upsampling,
        runs there too. The same output as ``forward(upsample(x))`` to float rounding."""
        weight, bias = self._transposed_kernel()
        batch, _, height, width = x.shape
        channels = self.conv2.in_channels
        h = F.conv_transpose2d(x, weight, bias, stride=2, padding=1)
        h = F.leaky_relu(h, 0.2, inplace=True)
        h = F.leaky_relu(self.conv2(h), 0.2, inplace=True)
        residual = x if self.skip is None else self.skip(x)
        # The nearest-upsampled residual, added to each 2x2 block of h by broadcasting, without
        # making the upsampled map (h in channels-last). Out of place: the ONNX exporter's
        # tracer loses in-place writes through such a view.
        blocks = h.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        blocks = blocks.view(batch, height, 2, width, 2, channels)
        out = torch.add(blocks, residual.permute(0, 2, 3, 1)[:, :, None, :, None, :], alpha=_HALF)
        return out.view(batch, 2 * height, 2 * width, channels).permute(0, 3, 1, 2)

    def _transposed_kernel(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """conv1's folded 3x3 kernel as the (i, o, 4, 4) kernel of :meth:`forward_upsampled`'s
        transposed convolution, made once per folding."""
        folded = self.conv1.folded_weight
        if folded is None:
            raise RuntimeError("forward_upsampled needs folded kernels")
        if getattr(self, "_transposed_source", None) is not folded:
            # Output row 2i takes input rows i - 1 (tap 0) and i (taps 1 + 2); row 2i + 1 takes
            # rows i (taps 0 + 1) and i + 1 (tap 2). With stride 2 and padding 1, transposed
            # kernel row k reaches output row 2i from input row i - (k - 1) / 2 (k odd) and
            # row 2i + 1 from input row i - (k - 2) / 2 (k even): rows 3, 1 | 2, 0 below.
            taps = folded.new_tensor([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]])
            kernel = torch.einsum("ak,oikl,bl->ioab", taps, folded, taps)
            self._transposed = (
                kernel.contiguous(memory_format=torch.channels_last),
                self.conv1.folded_bias,
            )
            self._transposed_source = folded
        return self._transposed

    def forward(self, x: torch.Tensor, ws: torch.Tensor | None) -> torch.Tensor:
        residual = x if self.skip is None else self.skip(x)
        if self.conv1.is_folded:
            # The same sum as below with the constant gains folded into the kernels: two
            # passes over the activations fewer per convolution.
            x = F.leaky_relu(self.conv1(x), 0.2, inplace=True)
            x = F.leaky_relu(self.conv2(x), 0.2, inplace=True)
            return x.add_(residual, alpha=_HALF)
        x = leaky_relu(self.conv1(x, ws[:, 0]))
        x = leaky_relu(self.conv2(x, ws[:, 1]))
        # 1/sqrt(2) keeps the variance of the sum equal to that of each branch.
        return (x + residual) / math.sqrt(2.0)


class ToRGB(nn.Module):
    """Modulated 1x1 convolution (no demodulation) to an RGB residual, as in StyleGAN2's skip generator."""

    num_styles = 1
    #: initial weight scale: an untrained generator then outputs (nearly) the interpolated input,
    #: so training starts from bicubic quality instead of from noise of unit size
    init_scale = 0.05

    def __init__(self, in_channels: int, *, style_dim: int):
        super().__init__()
        self.conv = AdaptiveModulatedConv2d(
            in_channels, 3, kernel_size=1, style_dim=style_dim, num_kernels=1, demodulate=False
        )
        with torch.no_grad():
            self.conv.weight.mul_(self.init_scale)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w)


class AttentionBlock(nn.Module):
    """Self-attention, then (optionally) cross-attention to text tokens, then a feed-forward layer.

    GigaGAN interleaves attention with convolutions at low resolutions only, where the
    sequence is short (Sec. 3.2). Pre-norm residual layers, as in transformers.

    x: (b, c, h, w), text_tokens: (b, t, d) or None, text_mask: (b, t) bool -> (b, c, h, w)
    """

    def __init__(self, channels: int, *, num_heads: int, text_dim: int | None):
        super().__init__()
        if channels % num_heads:
            raise ValueError(
                f"attention channels ({channels}) must be divisible by heads ({num_heads})"
            )
        self.num_heads = num_heads
        self.norm_self = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out_self = nn.Conv2d(channels, channels, 1)
        if text_dim is not None:
            self.norm_cross = nn.GroupNorm(_groups(channels), channels)
            self.q_cross = nn.Conv2d(channels, channels, 1)
            self.kv_cross = nn.Linear(text_dim, 2 * channels)
            self.out_cross = nn.Conv2d(channels, channels, 1)
        self.norm_ff = nn.GroupNorm(_groups(channels), channels)
        self.ff = nn.Sequential(
            nn.Conv2d(channels, 4 * channels, 1), nn.GELU(), nn.Conv2d(4 * channels, channels, 1)
        )
        self.text_dim = text_dim

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        # (b, n, c) -> (b, heads, n, c/heads)
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _merge(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        # (b, heads, hw, c/heads) -> (b, c, h, w)
        b, heads, n, c = x.shape
        return (
            x.transpose(1, 2)
            .reshape(b, n, heads * c)
            .transpose(1, 2)
            .reshape(b, heads * c, height, width)
        )

    def forward(
        self,
        x: torch.Tensor,
        text_tokens: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _, _, height, width = x.shape
        q, k, v = self.qkv(self.norm_self(x)).flatten(2).transpose(1, 2).chunk(3, dim=-1)
        attended = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v))
        x = x + self.out_self(self._merge(attended, height, width))

        if self.text_dim is not None:
            if text_tokens is None:
                raise ValueError(
                    "this attention block is text-conditioned; text tokens are required"
                )
            q = self.q_cross(self.norm_cross(x)).flatten(2).transpose(1, 2)
            k, v = self.kv_cross(text_tokens).chunk(2, dim=-1)
            mask = None if text_mask is None else text_mask[:, None, None, :]
            attended = F.scaled_dot_product_attention(
                self._heads(q),
                self._heads(k.to(q.dtype)),
                self._heads(v.to(q.dtype)),
                attn_mask=mask,
            )
            x = x + self.out_cross(self._merge(attended, height, width))

        return x + self.ff(self.norm_ff(x))


class TextTransformer(nn.Module):
    """Refines frozen text-encoder tokens into local tokens and one global token (GigaGAN Sec. 3.1).

    A learned transformer on top of the frozen encoder lets the generator learn which parts of
    the text matter for the detail it adds. The pooled embedding of the frozen encoder enters as
    an extra first token; its output becomes the global token for the mapping network.

    tokens: (b, t, e), pooled: (b, e), mask: (b, t) bool -> local (b, t, d), global (b, d)
    """

    def __init__(self, *, embed_dim: int, dim: int, num_layers: int, num_heads: int):
        super().__init__()
        self.project = nn.Linear(embed_dim, dim)
        self.project_pooled = nn.Linear(embed_dim, dim)
        layer = nn.TransformerEncoderLayer(
            dim,
            num_heads,
            dim_feedforward=4 * dim,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.embed_dim = embed_dim

    def forward(
        self, tokens: torch.Tensor, pooled: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if tokens.shape[-1] != self.embed_dim:
            raise ValueError(
                f"text embeddings have width {tokens.shape[-1]}, but this model expects "
                f"text_embed_dim={self.embed_dim} (was it trained with another text encoder?)"
            )
        x = torch.cat([self.project_pooled(pooled)[:, None], self.project(tokens)], dim=1)
        keep = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        x = self.norm(self.transformer(x, src_key_padding_mask=~keep))
        return x[:, 1:], x[:, 0]


def _groups(channels: int) -> int:
    """The largest group count <= 32 that divides ``channels`` (for GroupNorm)."""
    for groups in range(min(32, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1
