"""The methods an evaluation compares: a name and an ``upscale`` function each.

Pillow's bicubic and Lanczos (the baselines), any model the loader accepts through the
:class:`~upsampler.Upscaler` (tiled, as ``upsampler upscale`` runs it), and a community
checkpoint run whole, as its own project runs it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from PIL import Image

from upsampler.io.tensors import rgb_tensor, to_pil_rgb


@dataclass(frozen=True)
class SRMethod:
    """A named super-resolution method.

    upscale: lq (1, 3, h, w) float in [0, 1] on the CPU -> (1, 3, h * scale, w * scale) in
    [0, 1] (any device; it is moved back).
    """

    name: str
    upscale: Callable[[torch.Tensor], torch.Tensor]


def interpolation_method(kind: Literal["bicubic", "lanczos"], scale: int) -> SRMethod:
    """Pillow's bicubic or Lanczos resize of the 8-bit input: the classic baselines."""
    resample = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}
    if kind not in resample:
        raise ValueError(f"unknown interpolation {kind!r}; expected one of {sorted(resample)}")

    def upscale(lq: torch.Tensor) -> torch.Tensor:
        height, width = lq.shape[-2:]
        resized = to_pil_rgb(lq).resize((width * scale, height * scale), resample[kind])
        return rgb_tensor(resized)[None]

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
