"""Random numbers drawn from an explicit ``torch.Generator``, never the global RNG.

Numbers are drawn on the generator's device (a CUDA generator cannot fill a CPU tensor and
the other way round) and then moved to the device the images live on. With the generator
on the images' device, as the pipeline recommends, the move is a no-op.
"""

from __future__ import annotations

import torch


def uniform(
    generator: torch.Generator,
    shape: tuple[int, ...],
    low: float | torch.Tensor,
    high: float | torch.Tensor,
    *,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Uniform numbers in ``[low, high)`` of ``shape`` on ``device``."""
    numbers = torch.rand(shape, generator=generator, device=generator.device, dtype=dtype)
    numbers = numbers.to(device)
    return low + (high - low) * numbers


def normal(
    generator: torch.Generator,
    shape: tuple[int, ...],
    *,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal numbers of ``shape`` on ``device``."""
    numbers = torch.randn(shape, generator=generator, device=generator.device, dtype=dtype)
    return numbers.to(device)


def poisson(generator: torch.Generator, rates: torch.Tensor) -> torch.Tensor:
    """Poisson counts with the given ``rates`` (any shape), on the rates' device."""
    counts = torch.poisson(rates.to(generator.device), generator=generator)
    return counts.to(rates.device)


def choice(
    generator: torch.Generator,
    batch: int,
    probabilities: tuple[float, ...],
    *,
    device: torch.device,
) -> torch.Tensor:
    """``batch`` indices into ``probabilities``, drawn with those probabilities: (B,) int64.

    Inverse-CDF sampling from one uniform number per draw, so the generator advances by the
    same amount whatever the probabilities are.
    """
    cumulative = torch.tensor(probabilities, dtype=torch.float64).cumsum(0)
    cumulative = (cumulative / cumulative[-1]).to(device=device, dtype=torch.float32)
    numbers = uniform(generator, (batch,), 0.0, 1.0, device=device)
    indices = torch.searchsorted(cumulative, numbers, right=True)
    return indices.clamp_(max=len(probabilities) - 1)


def bernoulli(
    generator: torch.Generator, batch: int, probability: float, *, device: torch.device
) -> torch.Tensor:
    """(B,) bool, each True with ``probability``."""
    return uniform(generator, (batch,), 0.0, 1.0, device=device) < probability
