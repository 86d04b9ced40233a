"""RRDBNet, the generator of ESRGAN and Real-ESRGAN x4plus, for benchmarking against.

Wang et al., "ESRGAN: Enhanced Super-Resolution Generative Adversarial Networks" (ECCV 2018
workshops), Sec. 3.1, and "Real-ESRGAN" (ICCV 2021 workshops), whose x4plus model uses
23 blocks, 64 features and a growth of 32 (16.7M parameters). Written from the papers'
description; random weights are enough for timing.

The network: a 3x3 stem, a trunk of Residual-in-Residual Dense Blocks (RRDB) with a 3x3 conv
and a long skip around it, then two (nearest 2x upsample, 3x3 conv) stages for 4x, and two
3x3 convs to RGB. Every activation is LeakyReLU(0.2); there is no normalisation (the paper
removes batch norm, Sec. 3.1). Residuals are scaled by 0.2 before they are added (residual
scaling, Sec. 3.1), which keeps a deep trunk stable.

lq: (B, 3, H, W) in [0, 1] -> hq: (B, 3, 4H, 4W), roughly in [0, 1] (not clamped).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

RESIDUAL_SCALE = 0.2


class DenseBlock(nn.Module):
    """Five 3x3 convs, each seeing the block input and every earlier output (dense links).

    x: (b, c, h, w) -> (b, c, h, w)
    """

    def __init__(self, features: int, growth: int):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(features + index * growth, growth if index < 4 else features, 3, padding=1)
            for index in range(5)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [x]
        for index, conv in enumerate(self.convs):
            out = conv(torch.cat(outputs, dim=1))
            if index < 4:
                outputs.append(F.leaky_relu(out, 0.2))
        return x + RESIDUAL_SCALE * out


class RRDB(nn.Module):
    """Residual in residual: three dense blocks in a chain, with a scaled skip around them."""

    def __init__(self, features: int, growth: int):
        super().__init__()
        self.blocks = nn.Sequential(*(DenseBlock(features, growth) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RESIDUAL_SCALE * self.blocks(x)


class RRDBNet(nn.Module):
    """The ESRGAN / Real-ESRGAN x4plus generator.

    Args:
        scale: 2 or 4 (x4plus is 4); one (nearest upsample, conv) stage per factor of 2.
        features: trunk width (64).
        num_blocks: RRDBs in the trunk (23).
        growth: channels each dense conv adds (32).
    """

    def __init__(
        self, *, scale: int = 4, features: int = 64, num_blocks: int = 23, growth: int = 32
    ):
        super().__init__()
        if scale not in (2, 4):
            raise ValueError(f"scale must be 2 or 4, got {scale}")
        self.scale = scale
        self.size_multiple = 1
        self.stem = nn.Conv2d(3, features, 3, padding=1)
        self.trunk = nn.Sequential(*(RRDB(features, growth) for _ in range(num_blocks)))
        self.trunk_conv = nn.Conv2d(features, features, 3, padding=1)
        self.upsample_convs = nn.ModuleList(
            nn.Conv2d(features, features, 3, padding=1) for _ in range(scale // 2)
        )
        self.hr_conv = nn.Conv2d(features, features, 3, padding=1)
        self.to_rgb = nn.Conv2d(features, 3, 3, padding=1)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        if lq.ndim != 4 or lq.shape[1] != 3:
            raise ValueError(f"lq must be (B, 3, H, W), got shape {tuple(lq.shape)}")
        features = self.stem(lq)
        x = features + self.trunk_conv(self.trunk(features))
        for conv in self.upsample_convs:
            x = F.leaky_relu(conv(F.interpolate(x, scale_factor=2.0, mode="nearest")), 0.2)
        return self.to_rgb(F.leaky_relu(self.hr_conv(x), 0.2))
