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
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from upsampler.evaluation.metrics import lpips_distance, psnr, ssim

__all__ = [
    "EvaluationReport",
    "ImageScore",
    "MethodScores",
    "SRMethod",
    "degradation_seed",
    "evaluate",
    "format_table",
    "interpolation_method",
    "list_images",
    "load_hq",
    "spandrel_method",
    "upscaler_method",
]


@dataclass(frozen=True)
class SRMethod:
    """A named super-resolution method.

    upscale: lq (1, 3, h, w) float in [0, 1] on the CPU -> (1, 3, h * scale, w * scale) in
    [0, 1] (any device; it is moved back).
    """

    name: str
    upscale: Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- methods


def _to_pil(lq: torch.Tensor) -> Image.Image:
    array = (lq[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


def _from_pil(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()


def interpolation_method(kind: Literal["bicubic", "lanczos"], scale: int) -> SRMethod:
    """Pillow's bicubic or Lanczos resize of the 8-bit input: the classic baselines."""
    resample = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
    if kind not in resample:
        raise ValueError(f"unknown interpolation {kind!r}; expected one of {sorted(resample)}")

    def upscale(lq: torch.Tensor) -> torch.Tensor:
        height, width = lq.shape[-2:]
        return _from_pil(_to_pil(lq).resize((width * scale, height * scale), resample[kind]))

    return SRMethod(name=kind, upscale=upscale)


def upscaler_method(
    name_or_path: str | os.PathLike[str],
    *,
    scale: int,
    seed: int = 0,
    device: str | torch.device = "auto",
    name: str | None = None,
    revision: str | None = None,
) -> SRMethod:
    """Any model the loader accepts (built-in name, folder, checkpoint file, Hub id with its
    ``revision``) through :class:`upsampler.Upscaler`, tiled as ``upsampler upscale`` runs it.

    ``seed`` is the z seed of every image. A ``scale`` other than the model's is reached as
    ``upsampler upscale --scale`` reaches it: the model runs as many times as needed, then an
    antialiased bicubic resize gives the exact size (8x from a 4x model: two passes, then a
    2x reduction); the method's name then says so, e.g. ``nano-4x (2 passes, resized)``.
    ``ModelUnavailableError`` when the model cannot be loaded.
    """
    from upsampler.inference.upscaler import Upscaler

    upscaler = Upscaler.from_pretrained(name_or_path, device=device, revision=revision)
    outscale = None if scale == upscaler.scale else scale

    def upscale(lq: torch.Tensor) -> torch.Tensor:
        return upscaler.upscale(lq, seed=seed, outscale=outscale)

    if name is None:
        path = Path(name_or_path).expanduser()
        name = path.name if path.exists() else str(name_or_path)
        if outscale is not None:
            passes = upscaler.passes(outscale)
            name += f" ({passes} pass{'es' if passes > 1 else ''}, resized)"
    return SRMethod(name=name, upscale=upscale)


def spandrel_method(
    path: str | os.PathLike[str],
    *,
    scale: int,
    device: str | torch.device = "cpu",
    name: str | None = None,
) -> SRMethod:
    """A community checkpoint file (spandrel: ESRGAN/Real-ESRGAN, SwinIR, ...) run on the whole
    image at once, as its own project runs it (``eval -m FILE`` runs it through our tiling).

    Loads only safetensors or pickles with ``weights_only=True`` (see
    :func:`upsampler.models.spandrel_model.read_state_dict`). ``ValueError`` when the model's
    scale is not ``scale`` or the file is not a super-resolution model.
    """
    from upsampler.models.spandrel_model import load_spandrel_file

    path = Path(path).expanduser()
    model = load_spandrel_file(path)
    if model.scale != scale:
        raise ValueError(f"{path} is a {model.scale}x model, but --scale is {scale}")
    model_device = torch.device(device)
    model.to(model_device)

    def upscale(lq: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(lq.to(model_device)).hq.clamp(0, 1)

    return SRMethod(name=name or path.name, upscale=upscale)


# --------------------------------------------------------------------------- data


def list_images(data_dir: str | os.PathLike[str], limit: int | None = None) -> list[Path]:
    """Image files under ``data_dir`` (recursive, sorted, hidden files skipped), at most ``limit``."""
    from upsampler.io.images import IMAGE_SUFFIXES

    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist or is not a folder")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    paths = sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and path.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )
    if not paths:
        raise FileNotFoundError(
            f"no images in {root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return paths[:limit] if limit is not None else paths


def load_hq(path: str | os.PathLike[str], scale: int) -> torch.Tensor:
    """An image file as (1, 3, H, W) float32 in [0, 1], H and W cropped to multiples of ``scale``.

    Grey images are repeated to RGB; alpha is dropped. ``ImageReadError`` for a bad file.
    """
    from upsampler.io.images import read_image

    pixels = read_image(path).pixels  # (H, W, C) float32, upright
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


# --------------------------------------------------------------------------- results


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


@dataclass(frozen=True)
class ImageScore:
    """One method on one image. psnr in dB (inf for a perfect match), ssim in [-1, 1],
    lpips >= 0 (lower is better), seconds for the method's call."""

    image: str
    psnr: float
    ssim: float
    lpips: float
    seconds: float


@dataclass(frozen=True)
class MethodScores:
    """All images of one method, with their means."""

    name: str
    images: tuple[ImageScore, ...]

    @property
    def psnr(self) -> float:
        return _mean([score.psnr for score in self.images])

    @property
    def ssim(self) -> float:
        return _mean([score.ssim for score in self.images])

    @property
    def lpips(self) -> float:
        return _mean([score.lpips for score in self.images])

    @property
    def seconds_per_image(self) -> float:
        return _mean([score.seconds for score in self.images])


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class EvaluationReport:
    """The settings of one eval run and every method's scores."""

    data_dir: str
    degradation: str
    scale: int
    seed: int
    crop_border: int
    y_channel: bool
    lpips_net: str
    images: tuple[str, ...]
    methods: tuple[MethodScores, ...]
    skipped: tuple[tuple[str, str], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: settings, per-method means and per-image values (inf/nan -> null)."""
        return {
            "data_dir": self.data_dir,
            "degradation": self.degradation,
            "scale": self.scale,
            "seed": self.seed,
            "crop_border": self.crop_border,
            "channel": "y" if self.y_channel else "rgb",
            "lpips_net": self.lpips_net,
            "num_images": len(self.images),
            "skipped": [{"image": image, "reason": reason} for image, reason in self.skipped],
            "methods": {
                method.name: {
                    "psnr": _json_number(method.psnr),
                    "ssim": _json_number(method.ssim),
                    "lpips": _json_number(method.lpips),
                    "seconds_per_image": _json_number(method.seconds_per_image),
                    "images": [
                        {
                            "image": score.image,
                            "psnr": _json_number(score.psnr),
                            "ssim": _json_number(score.ssim),
                            "lpips": _json_number(score.lpips),
                            "seconds": _json_number(score.seconds),
                        }
                        for score in method.images
                    ],
                }
                for method in self.methods
            },
        }


def format_table(report: EvaluationReport, *, markdown: bool = False) -> str:
    """The means as a text table (or a Markdown one, e.g. for a README)."""
    channel = "Y" if report.y_channel else "RGB"
    header = [
        "method",
        f"PSNR-{channel} (dB)",
        f"SSIM-{channel}",
        f"LPIPS-{report.lpips_net}",
        "s/image",
    ]
    rows = [
        [
            method.name,
            f"{method.psnr:.2f}",
            f"{method.ssim:.4f}",
            f"{method.lpips:.4f}",
            f"{method.seconds_per_image:.3f}",
        ]
        for method in report.methods
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


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
) -> EvaluationReport:
    """Score ``methods`` on the images in ``data_dir`` degraded with preset ``degradation``.

    ``crop_border`` defaults to ``scale``. LPIPS runs on ``device`` ("auto": the GPU if there
    is one) with real weights (``LPIPSWeightsNotFoundError`` before any work when they are
    not prepared). Unreadable or too-small images are skipped and listed in
    ``report.skipped``; a method whose output has the wrong size raises ``ValueError``.
    ``on_image(index, total, name)`` is called after each image, skipped ones included.
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
            hq = load_hq(path, scale)
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
