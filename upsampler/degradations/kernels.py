"""Blur and sinc kernels, built and sampled in batch.

Every kernel of a batch lives on one ``(size, size)`` grid (``size`` = the largest kernel the
stage may draw, 21 in Real-ESRGAN): a kernel of size ``k < size`` is zero outside its central
``k x k`` window, exactly as Real-ESRGAN pads its kernels to 21x21 before stacking them
(``realesrgan/data/realesrgan_dataset.py``). One grid for the batch is what lets
:func:`upsampler.degradations.stages.filter2d` apply a different kernel to every image in one
grouped operation.

The kernel formulas follow BasicSR's ``basicsr/data/degradations.py`` (used by Real-ESRGAN):

- Gaussian:             ``exp(-0.5 * q)``
- generalized Gaussian: ``exp(-0.5 * q ** beta)``
- plateau:              ``1 / (q ** beta + 1)``
- sinc (circular low-pass): ``cutoff * J1(cutoff * r) / (2 * pi * r)``

where ``q = [x, y] @ inverse(Sigma) @ [x, y]`` and ``Sigma = R(theta) diag(sx^2, sy^2) R(theta)^T``.
Every kernel is normalised to sum to 1.

Shapes: parameters are ``(B,)`` tensors; kernels are ``(B, size, size)`` float tensors.
The builders (``gaussian_kernels``...) are deterministic; the ``sample_*`` functions draw their
parameters from an explicit ``torch.Generator`` and may as well run on data-loader workers
(CPU generator) as on the training device.
"""

from __future__ import annotations

import math

import torch

from upsampler.degradations._sampling import bernoulli, choice, uniform
from upsampler.degradations.config import KERNEL_TYPES

__all__ = [
    "KERNEL_TYPES",
    "anisotropic_quadratic_form",
    "gaussian_kernels",
    "generalized_gaussian_kernels",
    "identity_kernels",
    "plateau_kernels",
    "sample_blur_kernels",
    "sample_sinc_kernels",
    "sinc_kernels",
]


def _grid(size: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel offsets from the centre of a ``(size, size)`` grid: x along columns, y along rows."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel grid size must be a positive odd number, got {size}")
    axis = torch.arange(size, device=device, dtype=dtype) - (size // 2)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return x, y


def _support_mask(kernel_sizes: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
    """(B, size, size) bool: True inside each kernel's central ``k x k`` window."""
    axis = (torch.arange(size, device=device) - size // 2).abs()
    radius = (kernel_sizes.to(device) // 2).view(-1, 1, 1)
    return (axis.view(1, -1, 1) <= radius) & (axis.view(1, 1, -1) <= radius)


def _normalise(kernels: torch.Tensor, kernel_sizes: torch.Tensor) -> torch.Tensor:
    kernels = kernels * _support_mask(kernel_sizes, kernels.shape[-1], kernels.device)
    return kernels / kernels.sum(dim=(-2, -1), keepdim=True)


def anisotropic_quadratic_form(
    sigma_x: torch.Tensor, sigma_y: torch.Tensor, theta: torch.Tensor, size: int
) -> torch.Tensor:
    """``q = v^T Sigma^-1 v`` on a ``(size, size)`` grid for each of B covariances: (B, size, size).

    ``Sigma = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T`` (BasicSR's ``sigma_matrix2``).
    """
    x, y = _grid(size, sigma_x.device, sigma_x.dtype)
    cos = torch.cos(theta).view(-1, 1, 1)
    sin = torch.sin(theta).view(-1, 1, 1)
    along = cos * x + sin * y  # coordinate along the rotated x axis
    across = -sin * x + cos * y
    return (along / sigma_x.view(-1, 1, 1)) ** 2 + (across / sigma_y.view(-1, 1, 1)) ** 2


def gaussian_kernels(
    sigma_x: torch.Tensor,
    sigma_y: torch.Tensor,
    theta: torch.Tensor,
    kernel_sizes: torch.Tensor,
    *,
    size: int,
) -> torch.Tensor:
    """Anisotropic Gaussian kernels (isotropic when ``sigma_x == sigma_y``): (B, size, size).

    sigma_x, sigma_y: (B,) standard deviations in pixels; theta: (B,) rotation in radians;
    kernel_sizes: (B,) odd ints <= size.
    """
    q = anisotropic_quadratic_form(sigma_x, sigma_y, theta, size)
    return _normalise(torch.exp(-0.5 * q), kernel_sizes)


def generalized_gaussian_kernels(
    sigma_x: torch.Tensor,
    sigma_y: torch.Tensor,
    theta: torch.Tensor,
    beta: torch.Tensor,
    kernel_sizes: torch.Tensor,
    *,
    size: int,
) -> torch.Tensor:
    """Generalized Gaussian kernels ``exp(-0.5 q^beta)`` (Real-ESRGAN Sec. 3.2): (B, size, size).

    beta: (B,) shape parameter; beta < 1 gives heavier tails, beta > 1 a flatter top.
    """
    q = anisotropic_quadratic_form(sigma_x, sigma_y, theta, size)
    return _normalise(torch.exp(-0.5 * q.pow(beta.view(-1, 1, 1))), kernel_sizes)


def plateau_kernels(
    sigma_x: torch.Tensor,
    sigma_y: torch.Tensor,
    theta: torch.Tensor,
    beta: torch.Tensor,
    kernel_sizes: torch.Tensor,
    *,
    size: int,
) -> torch.Tensor:
    """Plateau-shaped kernels ``1 / (q^beta + 1)`` (Real-ESRGAN Sec. 3.2): (B, size, size)."""
    q = anisotropic_quadratic_form(sigma_x, sigma_y, theta, size)
    return _normalise(1.0 / (q.pow(beta.view(-1, 1, 1)) + 1.0), kernel_sizes)


def sinc_kernels(cutoff: torch.Tensor, kernel_sizes: torch.Tensor, *, size: int) -> torch.Tensor:
    """Circular low-pass (2-D sinc) kernels with ``cutoff`` in radians per pixel: (B, size, size).

    The ideal low-pass filter truncated to ``k x k``; it rings, which is why Real-ESRGAN
    (Sec. 3.3) uses it to synthesise ringing and overshoot artefacts. BasicSR's
    ``circular_lowpass_kernel``, batched.
    """
    x, y = _grid(size, cutoff.device, cutoff.dtype)
    radius = torch.sqrt(x * x + y * y)
    omega = cutoff.view(-1, 1, 1)
    safe_radius = torch.where(radius == 0, torch.ones_like(radius), radius)
    kernels = omega * torch.special.bessel_j1(omega * safe_radius) / (2 * math.pi * safe_radius)
    # The limit at r = 0 (J1(z) ~ z / 2).
    centre = (omega**2 / (4 * math.pi)).expand_as(kernels)
    kernels = torch.where(radius == 0, centre, kernels)
    return _normalise(kernels, kernel_sizes)


def identity_kernels(
    batch: int, *, size: int, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Unit impulses (filtering with them is a no-op): (B, size, size)."""
    kernels = torch.zeros(batch, size, size, device=device, dtype=dtype)
    kernels[:, size // 2, size // 2] = 1.0
    return kernels


def _odd_sizes(kernel_size: tuple[int, int]) -> list[int]:
    low, high = kernel_size
    return list(range(low, high + 1, 2))


def _sample_kernel_sizes(
    generator: torch.Generator, batch: int, kernel_size: tuple[int, int], device: torch.device
) -> torch.Tensor:
    """(B,) odd sizes drawn uniformly from ``low, low + 2, ..., high`` (Real-ESRGAN's
    ``random.choice(kernel_range)``)."""
    sizes = torch.tensor(_odd_sizes(kernel_size), device=device)
    index = (uniform(generator, (batch,), 0.0, 1.0, device=device) * len(sizes)).long()
    return sizes[index.clamp_(max=len(sizes) - 1)]


def _sample_beta(
    generator: torch.Generator, batch: int, beta_range: tuple[float, float], device: torch.device
) -> torch.Tensor:
    """Shape parameters as BasicSR draws them: with a range around 1, below or above 1 with equal
    chance, then uniform on that side (so ``[0.5, 4]`` is not dominated by beta > 1)."""
    low, high = beta_range
    lower_side = bernoulli(generator, batch, 0.5, device=device)
    numbers = uniform(generator, (batch,), 0.0, 1.0, device=device)
    if not low <= 1.0 <= high:
        return low + (high - low) * numbers
    below = low + (1.0 - low) * numbers
    above = 1.0 + (high - 1.0) * numbers
    return torch.where(lower_side, below, above)


def sample_blur_kernels(
    batch: int,
    *,
    kernel_size: tuple[int, int],
    kernel_types: tuple[str, ...],
    kernel_probabilities: tuple[float, ...],
    sigma: tuple[float, float],
    generalized_beta: tuple[float, float],
    plateau_beta: tuple[float, float],
    sinc_probability: float,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Draw one random blur kernel per image, as Real-ESRGAN's dataset does: (B, S, S).

    ``S = kernel_size[1]``. Each image gets, with ``sinc_probability``, a sinc kernel (cutoff
    in [pi/3, pi] for kernels under 13 pixels, [pi/5, pi] otherwise, Real-ESRGAN's rule so
    small kernels are not cut mid-lobe), or else a kernel of a type drawn from
    ``kernel_types`` with ``kernel_probabilities``: sigma_x, sigma_y uniform in ``sigma``,
    rotation uniform in [-pi, pi] (isotropic types: sigma_y = sigma_x, no rotation), beta
    from ``generalized_beta`` or ``plateau_beta``.

    Every parameter is drawn for every image, whatever its type, so the generator advances
    by the same amount for any batch of the same size.
    """
    device = torch.device(device)
    unknown = set(kernel_types) - set(KERNEL_TYPES)
    if unknown:
        raise ValueError(f"unknown kernel types {sorted(unknown)}; expected some of {KERNEL_TYPES}")
    size = kernel_size[1]
    kernel_sizes = _sample_kernel_sizes(generator, batch, kernel_size, device)
    type_index = choice(generator, batch, kernel_probabilities, device=device)
    sigma_x = uniform(generator, (batch,), sigma[0], sigma[1], device=device)
    sigma_y = uniform(generator, (batch,), sigma[0], sigma[1], device=device)
    theta = uniform(generator, (batch,), -math.pi, math.pi, device=device)
    generalized = _sample_beta(generator, batch, generalized_beta, device)
    plateau = _sample_beta(generator, batch, plateau_beta, device)
    use_sinc = bernoulli(generator, batch, sinc_probability, device=device)
    cutoff_numbers = uniform(generator, (batch,), 0.0, 1.0, device=device)

    # Index into KERNEL_TYPES; its order (iso, aniso per family) is what the lines below rely on.
    chosen = torch.tensor([KERNEL_TYPES.index(name) for name in kernel_types], device=device)
    chosen = chosen[type_index]
    isotropic = torch.isin(chosen, torch.tensor([0, 2, 4], device=device))
    sigma_y = torch.where(isotropic, sigma_x, sigma_y)
    theta = torch.where(isotropic, torch.zeros_like(theta), theta)
    beta = torch.where(chosen >= 4, plateau, generalized)

    q = anisotropic_quadratic_form(sigma_x, sigma_y, theta, size)
    family = (chosen // 2).view(-1, 1, 1)  # 0 Gaussian, 1 generalized, 2 plateau
    q_beta = q.pow(beta.view(-1, 1, 1))
    kernels = torch.where(
        family == 0,
        torch.exp(-0.5 * q),
        torch.where(family == 1, torch.exp(-0.5 * q_beta), 1.0 / (q_beta + 1.0)),
    )
    kernels = _normalise(kernels, kernel_sizes)

    # Real-ESRGAN: "this sinc filter setting is for kernels ranging from [7, 21]".
    lowest_cutoff = torch.where(kernel_sizes < 13, math.pi / 3, math.pi / 5).to(cutoff_numbers)
    cutoff = lowest_cutoff + (math.pi - lowest_cutoff) * cutoff_numbers
    sinc = sinc_kernels(cutoff, kernel_sizes, size=size)
    return torch.where(use_sinc.view(-1, 1, 1), sinc, kernels)


def sample_sinc_kernels(
    batch: int,
    *,
    probability: float,
    kernel_size: tuple[int, int],
    cutoff: tuple[float, float],
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Real-ESRGAN's final sinc filter: with ``probability`` a sinc kernel of odd size in
    ``kernel_size`` and cutoff uniform in ``cutoff``, else a unit impulse: (B, S, S),
    ``S = kernel_size[1]``."""
    device = torch.device(device)
    size = kernel_size[1]
    kernel_sizes = _sample_kernel_sizes(generator, batch, kernel_size, device)
    cutoffs = uniform(generator, (batch,), cutoff[0], cutoff[1], device=device)
    apply = bernoulli(generator, batch, probability, device=device)
    sinc = sinc_kernels(cutoffs, kernel_sizes, size=size)
    identity = identity_kernels(batch, size=size, device=device, dtype=sinc.dtype)
    return torch.where(apply.view(-1, 1, 1), sinc, identity)
