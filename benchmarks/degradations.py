"""Degraded training pairs per second: the batched pipeline vs a per-image PIL/NumPy loop.

    .venv/bin/python benchmarks/degradations.py [--batch 16] [--size 256] [--repeats 5] [--threads N]

Both implement the ``realesrgan`` preset (Real-ESRGAN x4plus's second-order degradations) on
the same batch of crops: ``upsampler.degradations.DegradationPipeline`` batched with torch on
the CPU (and on CUDA when available), and the straightforward way, one image at a time, with
NumPy for kernels, filtering (FFT), noise and Poisson counts and PIL for resizing and a real
JPEG encoder, as Real-ESRGAN's data loaders do with OpenCV. The reference differs in details
that do not change its cost (PIL's resizes are antialiased, JPEG quality is an integer).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from upsampler.degradations import DegradationPipeline
from upsampler.degradations.kernels import KERNEL_TYPES

# ---------------------------------------------------------------------------------------------
# Per-image reference: the realesrgan preset written plainly with NumPy and PIL.
# ---------------------------------------------------------------------------------------------

KERNEL_PROBABILITIES = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
PIL_MODES = {
    "area": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


def bessel_j1(x: np.ndarray) -> np.ndarray:
    """J1 by Bessel's integral, J1(x) = 1/pi * int_0^pi cos(t - x sin t) dt (no SciPy)."""
    t = np.linspace(0.0, math.pi, 257)
    values = np.cos(t[None, :] - x.reshape(-1, 1) * np.sin(t[None, :]))
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # NumPy 2 renamed it
    return trapezoid(values, t, axis=1).reshape(x.shape) / math.pi


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    axis = np.arange(size) - size // 2
    return np.meshgrid(axis, axis)


def sinc_kernel(cutoff: float, size: int, pad_to: int) -> np.ndarray:
    x, y = _grid(size)
    radius = np.sqrt(x**2 + y**2)
    safe = np.where(radius == 0, 1.0, radius)
    kernel = cutoff * bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    kernel[radius == 0] = cutoff**2 / (4 * math.pi)
    kernel /= kernel.sum()
    pad = (pad_to - size) // 2
    return np.pad(kernel, pad)


def _beta(rng: np.random.Generator, low: float, high: float) -> float:
    if rng.uniform() < 0.5:
        return rng.uniform(low, 1.0)
    return rng.uniform(1.0, high)


def blur_kernel(rng: np.random.Generator, sigma: tuple[float, float]) -> np.ndarray:
    """BasicSR's ``random_mixed_kernels`` with Real-ESRGAN's sinc option, padded to 21x21."""
    size = int(rng.choice(np.arange(7, 22, 2)))
    if rng.uniform() < 0.1:
        cutoff = rng.uniform(math.pi / 3 if size < 13 else math.pi / 5, math.pi)
        return sinc_kernel(cutoff, size, 21)
    kind = KERNEL_TYPES[rng.choice(len(KERNEL_TYPES), p=KERNEL_PROBABILITIES)]
    sigma_x = rng.uniform(*sigma)
    if kind in ("iso", "generalized_iso", "plateau_iso"):
        sigma_y, theta = sigma_x, 0.0
    else:
        sigma_y, theta = rng.uniform(*sigma), rng.uniform(-math.pi, math.pi)
    x, y = _grid(size)
    along = math.cos(theta) * x + math.sin(theta) * y
    across = -math.sin(theta) * x + math.cos(theta) * y
    q = (along / sigma_x) ** 2 + (across / sigma_y) ** 2
    if kind.startswith("generalized"):
        kernel = np.exp(-0.5 * q ** _beta(rng, 0.5, 4.0))
    elif kind.startswith("plateau"):
        kernel = 1.0 / (q ** _beta(rng, 1.0, 2.0) + 1.0)
    else:
        kernel = np.exp(-0.5 * q)
    kernel /= kernel.sum()
    return np.pad(kernel, (21 - size) // 2)


def filter_image(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """(H, W, 3) image correlated with a (k, k) kernel, reflect padding, via the FFT."""
    height, width = image.shape[:2]
    pad = kernel.shape[0] // 2
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    shape = padded.shape[:2]
    spectrum = (
        np.fft.rfft2(padded, axes=(0, 1)) * np.fft.rfft2(kernel[::-1, ::-1], s=shape)[..., None]
    )
    filtered = np.fft.irfft2(spectrum, s=shape, axes=(0, 1))
    return filtered[2 * pad : 2 * pad + height, 2 * pad : 2 * pad + width]


def resize_image(image: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Resize a float (H, W, 3) image to size = (height, width), one PIL float image per channel."""
    height, width = size
    channels = [
        np.asarray(
            Image.fromarray(image[..., c].astype(np.float32), mode="F").resize(
                (width, height), PIL_MODES[mode]
            )
        )
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=-1), 0, 1)


def add_noise(
    rng: np.random.Generator,
    image: np.ndarray,
    sigma: tuple[float, float],
    poisson: tuple[float, float],
) -> np.ndarray:
    gray = rng.uniform() < 0.4
    if rng.uniform() < 0.5:
        level = rng.uniform(*sigma) / 255.0
        shape = image.shape[:2] + ((1,) if gray else (3,))
        noise = rng.normal(0.0, level, shape)
    else:
        scale = rng.uniform(*poisson)
        source = image @ np.array([0.2989, 0.587, 0.114]) if gray else image
        source = np.clip(np.round(source * 255), 0, 255) / 255
        vals = 2 ** np.ceil(np.log2(len(np.unique(source))))
        noise = (rng.poisson(source * vals) / vals - source) * scale
        noise = noise[..., None] if gray else noise
    return np.clip(image + noise, 0, 1)


def jpeg(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    quality = int(rng.uniform(30, 95))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.round(image * 255), 0, 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=quality
    )
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float64) / 255.0


def degrade_one(rng: np.random.Generator, hq: np.ndarray, scale: int = 4) -> np.ndarray:
    """One (H, W, 3) float image through the realesrgan preset, the per-image way."""
    height, width = hq.shape[:2]
    target = (height // scale, width // scale)
    modes = list(PIL_MODES)
    # first order
    image = np.clip(filter_image(hq, blur_kernel(rng, (0.2, 3.0))), 0, 1)
    direction = rng.choice(3, p=(0.2, 0.7, 0.1))
    factor = (rng.uniform(1, 1.5), rng.uniform(0.15, 1), 1.0)[direction]
    size = (max(1, int(height * factor)), max(1, int(width * factor)))
    image = resize_image(image, size, modes[rng.integers(3)])
    image = add_noise(rng, image, (1, 30), (0.05, 3))
    image = jpeg(rng, image)
    # second order
    if rng.uniform() < 0.8:
        image = np.clip(filter_image(image, blur_kernel(rng, (0.2, 1.5))), 0, 1)
    direction = rng.choice(3, p=(0.3, 0.4, 0.3))
    factor = (rng.uniform(1, 1.2), rng.uniform(0.3, 1), 1.0)[direction]
    size = (max(1, int(target[0] * factor)), max(1, int(target[1] * factor)))
    image = resize_image(image, size, modes[rng.integers(3)])
    image = add_noise(rng, image, (1, 25), (0.05, 2.5))
    # final: [resize + sinc] and JPEG in random order
    sinc = (
        sinc_kernel(rng.uniform(math.pi / 3, math.pi), int(rng.choice(np.arange(7, 22, 2))), 21)
        if rng.uniform() < 0.8
        else None
    )

    def resize_and_sinc(current: np.ndarray) -> np.ndarray:
        current = resize_image(current, target, modes[rng.integers(3)])
        return current if sinc is None else np.clip(filter_image(current, sinc), 0, 1)

    if rng.uniform() < 0.5:
        image = jpeg(rng, resize_and_sinc(image))
    else:
        image = resize_and_sinc(jpeg(rng, image))
    return np.clip(np.round(image * 255), 0, 255) / 255


# ---------------------------------------------------------------------------------------------


def make_crops(batch: int, size: int, seed: int) -> torch.Tensor:
    """Photo-like crops: smooth colour gradients, edges and fine texture, (B, 3, size, size)."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, size).view(1, 1, -1, 1)
    x = torch.linspace(0, 1, size).view(1, 1, 1, -1)
    phases = torch.rand(batch, 3, 1, 1, generator=generator) * 6.28
    base = 0.5 + 0.3 * torch.sin(14 * x + 9 * y + phases) * torch.cos(5 * y - phases)
    edges = 0.2 * ((x + y + phases / 10) % 0.3 > 0.15).float()
    texture = 0.1 * torch.rand(batch, 3, size, size, generator=generator)
    return (base + edges + texture).clamp(0, 1)


def torch_runner(hq: torch.Tensor, device: str) -> Callable[[], None]:
    """One batch through the batched pipeline on ``device`` (synchronised on CUDA)."""
    pipeline = DegradationPipeline.from_preset("realesrgan", scale=4)
    hq = hq.to(device)
    generator = torch.Generator(device).manual_seed(0)

    def run() -> None:
        pipeline(hq, generator=generator)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return run


def reference_runner(hq: torch.Tensor) -> Callable[[], None]:
    """One batch through the per-image NumPy/PIL loop."""
    images = [image.permute(1, 2, 0).double().numpy() for image in hq]
    rng = np.random.default_rng(0)

    def run() -> None:
        for image in images:
            degrade_one(rng, image)

    return run


def measure(runners: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds per batch of each runner, after a warm-up; the runners take turns, so
    a burst of load from elsewhere on the machine hits them alike."""
    for run in runners.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10, help="timed batches per implementation")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    hq = make_crops(args.batch, args.size, args.seed)
    runners = {
        "per-image PIL/NumPy loop|cpu": reference_runner(hq),
        "upsampler batched (torch)|cpu": torch_runner(hq, "cpu"),
    }
    if torch.cuda.is_available():
        runners["upsampler batched (torch)|cuda"] = torch_runner(hq, "cuda")
    load_before = os.getloadavg()[0]
    seconds = measure(runners, args.repeats)
    load_after = os.getloadavg()[0]
    rows = [(*name.split("|"), value) for name, value in seconds.items()]

    low = args.size // 4
    print(
        f"realesrgan preset, batch of {args.batch} crops {args.size}x{args.size} -> {low}x{low}, "
        f"median of {args.repeats} batches each; torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch CPU threads, {os.cpu_count()} CPUs, "
        f"load average {load_before:.1f} -> {load_after:.1f}"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    )
    reference = rows[0][2]
    print(
        f"| {'implementation':<26} | {'device':<6} | {'pairs/s':>8} | {'ms/batch':>9} | {'speed-up':>8} |"
    )
    print(f"|{'-' * 28}|{'-' * 8}|{'-' * 10}|{'-' * 11}|{'-' * 10}|")
    for name, device, value in rows:
        print(
            f"| {name:<26} | {device:<6} | {args.batch / value:>8.1f} | {value * 1000:>9.1f} |"
            f" {reference / value:>7.1f}x |"
        )


if __name__ == "__main__":
    main()
