"""The eval loop: degrade held-out photos, upscale them with several methods, score each one.

    from upsampler.evaluation import evaluate, interpolation_method, upscaler_method

    methods = [
        interpolation_method("bicubic", scale=4),
        interpolation_method("lanczos", scale=4),
        upscaler_method("nano-4x", scale=4),
    ]
    report = evaluate("val/", methods, degradation="realesrgan", scale=4, seed=0)
    print(format_table(report))

Every image is cropped to a multiple of ``scale`` (bottom/right, as BasicSR's ``mod_crop``),
degraded ONCE with :class:`~upsampler.degradations.DegradationPipeline` and a generator seeded
from ``seed`` and the image's path (so the same file gets the same input on every run, whatever
else is in the folder), and every method sees that same 8-bit input. Outputs are rounded to
8-bit levels, as if saved to PNG, then scored against the cropped original: PSNR and SSIM on
BT.601 luma (or RGB) and LPIPS on RGB, all after cropping ``crop_border`` pixels (default:
``scale``) off every edge. Seconds per image time the method's call alone (after one untimed
warm-up call on a small crop), not reading, degrading or scoring.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from upsampler.evaluation.methods import SRMethod
from upsampler.evaluation.metrics import lpips_distance, psnr, ssim
from upsampler.evaluation.report import EvaluationReport, ImageScore, MethodScores
from upsampler.io.formats import DEFAULT_MAX_PIXELS

__all__ = ["degradation_seed", "evaluate", "list_images", "load_hq"]


# --------------------------------------------------------------------------- data


def list_images(data_dir: str | os.PathLike[str], limit: int | None = None) -> list[Path]:
    """Image files under ``data_dir`` (recursive, sorted, hidden files skipped, as
    :func:`upsampler.io.files.find_images` finds them), at most ``limit``."""
    from upsampler.io.files import find_images
    from upsampler.io.formats import IMAGE_SUFFIXES

    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist or is not a folder")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    paths = find_images(root, recursive=True)
    if not paths:
        raise FileNotFoundError(
            f"no images in {root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return paths[:limit] if limit is not None else paths


def load_hq(
    path: str | os.PathLike[str], scale: int, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> torch.Tensor:
    """An image file as (1, 3, H, W) float32 in [0, 1], H and W cropped to multiples of ``scale``.

    Grey images are repeated to RGB; alpha is dropped. ``ImageReadError`` for a bad file,
    ``ImageTooLargeError`` over ``max_pixels``.
    """
    from upsampler.io.images import read_image

    pixels = read_image(path, max_pixels=max_pixels).pixels  # (H, W, C) float32, upright
    rgb = pixels[..., :1].repeat(3, axis=2) if pixels.shape[2] in (1, 2) else pixels[..., :3]
    height = rgb.shape[0] - rgb.shape[0] % scale
    width = rgb.shape[1] - rgb.shape[1] % scale
    if height == 0 or width == 0:
        raise ValueError(f"{path}: {rgb.shape[0]}x{rgb.shape[1]} is smaller than scale {scale}")
    rgb = np.ascontiguousarray(rgb[:height, :width])
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous()


def degradation_seed(seed: int, relative_path: str) -> int:
    """The generator seed of one image, from ``seed`` and its path: stable across runs.

    Hashed rather than packed into separate bits, because torch's CPU generator keeps only the
    low 32 bits of a seed (``seed << 32 | crc`` would ignore ``seed``).
    """
    digest = hashlib.sha256(f"{seed}\0{relative_path}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


# --------------------------------------------------------------------------- the loop


def _quantize(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(0.0, 1.0) * 255.0).round() / 255.0


def _timed(method: SRMethod, lq: torch.Tensor) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    hq = method.upscale(lq)
    if isinstance(hq, torch.Tensor) and hq.device.type == "cuda":
        torch.cuda.synchronize(hq.device)
    return hq, time.perf_counter() - start


def evaluate(
    data_dir: str | os.PathLike[str],
    methods: Sequence[SRMethod],
    *,
    degradation: str = "bicubic",
    scale: int = 4,
    seed: int = 0,
    limit: int | None = None,
    crop_border: int | None = None,
    y_channel: bool = True,
    lpips_net: str = "alex",
    lpips_weights_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "auto",
    on_image: Callable[[int, int, str], None] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> EvaluationReport:
    """Score ``methods`` on the images in ``data_dir`` degraded with preset ``degradation``.

    ``crop_border`` defaults to ``scale``. LPIPS runs on ``device`` ("auto": the GPU if there
    is one) with real weights (``LPIPSWeightsNotFoundError`` before any work when they are
    not prepared). Unreadable or too-small images are skipped and listed in
    ``report.skipped``; a method whose output has the wrong size raises ``ValueError``.
    ``on_image(index, total, name)`` is called after each image, skipped ones included.
    Images over ``max_pixels`` are skipped like unreadable ones.
    """
    from upsampler.degradations import DegradationPipeline
    from upsampler.inference.devices import resolve_device
    from upsampler.losses.lpips import load_lpips

    if not methods:
        raise ValueError("no methods to evaluate")
    names = [method.name for method in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    crop_border = scale if crop_border is None else crop_border
    device = resolve_device(device)
    pipeline = DegradationPipeline.from_preset(degradation, scale=scale)
    paths = list_images(data_dir, limit)
    lpips_model = load_lpips(lpips_net, weights_dir=lpips_weights_dir, device=device)
    root = Path(data_dir).expanduser()
    # After cropping, an image must keep room for LPIPS-alex (31 px; SSIM needs only 11).
    min_side = 2 * crop_border + 32

    scores: dict[str, list[ImageScore]] = {method.name: [] for method in methods}
    evaluated: list[str] = []
    skipped: list[tuple[str, str]] = []
    warmed_up: set[str] = set()
    for index, path in enumerate(paths):
        name = path.relative_to(root).as_posix()
        try:
            hq = load_hq(path, scale, max_pixels=max_pixels)
            if min(hq.shape[-2:]) < min_side:
                raise ValueError(
                    f"{hq.shape[-2]}x{hq.shape[-1]} after cropping to a multiple of {scale} is "
                    f"under the {min_side} px the metrics need"
                )
        except (OSError, ValueError) as error:  # ImageReadError is a ValueError
            skipped.append((name, str(error)))
            if on_image is not None:
                on_image(index, len(paths), name)
            continue
        generator = torch.Generator().manual_seed(degradation_seed(seed, name))
        lq = pipeline(hq, generator=generator)
        for method in methods:
            if method.name not in warmed_up:  # first-call costs (allocations, kernels) untimed
                method.upscale(lq[..., :16, :16].contiguous())
                warmed_up.add(method.name)
            output, seconds = _timed(method, lq)
            if not isinstance(output, torch.Tensor) or tuple(output.shape) != tuple(hq.shape):
                shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)
                raise ValueError(
                    f"{method.name} turned a {tuple(lq.shape)} input into {shape}, expected "
                    f"{tuple(hq.shape)} ({scale}x)"
                )
            output = _quantize(output.detach().float().cpu())
            image_psnr = psnr(output, hq, crop_border=crop_border, y_channel=y_channel)
            image_ssim = ssim(output, hq, crop_border=crop_border, y_channel=y_channel)
            cropped = (slice(None), slice(None))
            if crop_border:
                cropped += (slice(crop_border, -crop_border),) * 2
            image_lpips = lpips_distance(
                output[cropped].to(device), hq[cropped].to(device), model=lpips_model
            )
            scores[method.name].append(
                ImageScore(
                    image=name,
                    psnr=image_psnr.item(),
                    ssim=image_ssim.item(),
                    lpips=image_lpips.item(),
                    seconds=seconds,
                )
            )
        evaluated.append(name)
        if on_image is not None:
            on_image(index, len(paths), name)
    if not evaluated:
        reasons = "; ".join(f"{image}: {reason}" for image, reason in skipped)
        raise ValueError(f"no image in {root} could be evaluated ({reasons})")
    return EvaluationReport(
        data_dir=str(root),
        degradation=degradation,
        scale=scale,
        seed=seed,
        crop_border=crop_border,
        y_channel=y_channel,
        lpips_net=lpips_net,
        images=tuple(evaluated),
        methods=tuple(MethodScores(method.name, tuple(scores[method.name])) for method in methods),
        skipped=tuple(skipped),
    )
