"""AuraSR's published layout: detect it, translate its config and state dict, convert it.

fal publishes AuraSR (``fal/AuraSR``, ``fal/AuraSR-v2``) as a folder with ``config.json`` (the
keyword arguments of ``aura_sr.UnetUpsampler``) and ``model.safetensors`` (its state dict). Both
versions share this config.json, reproduced in :data:`AURASR_PUBLISHED_CONFIG`.

This module is the one place that knows AuraSR's names:

* :func:`config_from_aurasr` maps its config keys to :class:`AuraSRUpsampler` arguments,
  rejecting keys it does not know and settings we cannot honour (text conditioning).
* :data:`AURASR_KEY_RULES` maps its state-dict names to ours, by renaming only: every tensor
  keeps its shape, so a checkpoint converts exactly. The one key dropped, ``attend.scale``, is a
  parameter the reference creates and never uses.

Weights load only from safetensors; AuraSR's pickled ``model.ckpt`` is refused.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from upsampler.models.aurasr import DEFAULT_SKIP_CONNECT_SCALE, AuraSRUpsampler
from upsampler.models.weights_check import tensor_mismatch

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

# fal/AuraSR's config.json (AuraSR-v2 has the same). Source: the aura-sr README on GitHub
# (fal-ai/aura-sr) and the configs that tools loading these weights embed (taproot's
# PretrainedAuraSR, spandrel's AuraSR detection, which also reads the other values off the
# weights): every key it omits takes UnetUpsampler's default in aura_sr.py (0.0.4).
AURASR_PUBLISHED_CONFIG: dict = {
    "style_network": {"dim_in": 128, "dim_out": 512, "depth": 4},
    "dim": 64,
    "image_size": 256,
    "input_image_size": 64,
    "unconditional": True,
    "skip_connect_scale": 0.4,
}

# aura_sr.UnetUpsampler's defaults for the keys a config.json may omit. Some are accepted and
# ignored, since they do not change the reference's output: resnet_block_groups, out_dim and
# resize_mode are stored but never used by its forward; flash_attn picks a kernel for the same
# attention.
_REFERENCE_DEFAULTS: dict = {
    "init_dim": None,
    "out_dim": None,
    "up_dim_mults": (1, 2, 4, 8, 16),
    "down_dim_mults": (4, 8, 16),
    "channels": 3,
    "resnet_block_groups": 8,
    "full_attn": (False, False, False, True, True),
    "flash_attn": True,
    "self_attn_dim_head": 64,
    "self_attn_heads": 8,
    "attn_depths": (2, 2, 2, 2, 4),
    "mid_attn_depth": 4,
    "num_conv_kernels": 4,
    "resize_mode": "bilinear",
    "unconditional": True,
    "skip_connect_scale": None,
}
# StyleGanNetwork's defaults (the published config sets depth 4).
_STYLE_DEFAULTS = {"dim_in": 128, "dim_out": 512, "depth": 8, "lr_mul": 0.1, "dim_text_latent": 0}

_Replacement = str | Callable[[re.Match], str]

# AuraSR state-dict name (regular expression) -> ours. Applied in order; the first match wins.
AURASR_KEY_RULES: tuple[tuple[str, _Replacement | None], ...] = (
    # Unused parameter of the reference's Attend module (it always uses 1/sqrt(dim_head)).
    (r"\.attend\.scale$", None),
    # Mapping network: net = [linear, leaky_relu] * depth -> mapping.{layer}.
    (r"^style_network\.net\.(\d+)\.", lambda m: f"mapping.{int(m[1]) // 2}."),
    (r"^style_to_conv_modulations\.", "style_to_modulation."),
    (r"^init_conv\.", "stem."),
    # downs.{level} = [blocks, [attention, downsample]].
    (r"^downs\.(\d+)\.0\.(\d+)\.", r"encoder.\1.blocks.\2."),
    (r"^downs\.(\d+)\.1\.0\.", r"encoder.\1.attention."),
    (r"^downs\.(\d+)\.1\.1\.", r"encoder.\1.downsample."),
    # ups.{level} = [blocks, [upsample, attention]].
    (r"^ups\.(\d+)\.0\.(\d+)\.", r"decoder.\1.blocks.\2."),
    (r"^ups\.(\d+)\.1\.0\.conv\.", r"decoder.\1.upsample.conv."),
    (r"^ups\.(\d+)\.1\.1\.", r"decoder.\1.attention."),
    (r"^mid_attn\.", "mid_attention."),
    (r"^final_res_block\.", "final_block."),
    (r"^final_to_rgb\.", "to_rgb."),
    # Inside residual blocks: block{n}.proj.weights -> conv{n}.weight, res_conv -> skip.
    (r"\.block([12])\.proj\.weights$", r".conv\1.weight"),
    (r"\.res_conv\.", ".skip."),
    # Inside transformers: layers.{i} = [attention, feed-forward (norm, conv, gelu, conv)].
    (r"\.layers\.(\d+)\.0\.norm\.g$", r".layers.\1.attention.norm.weight"),
    (r"\.layers\.(\d+)\.0\.to_qkv\.", r".layers.\1.attention.qkv."),
    (r"\.layers\.(\d+)\.0\.to_out\.", r".layers.\1.attention.out."),
    (r"\.layers\.(\d+)\.1\.0\.g$", r".layers.\1.feed_forward.norm.weight"),
    (r"\.layers\.(\d+)\.1\.1\.", r".layers.\1.feed_forward.expand."),
    (r"\.layers\.(\d+)\.1\.3\.", r".layers.\1.feed_forward.project."),
)
_COMPILED_RULES = tuple((re.compile(pattern), new) for pattern, new in AURASR_KEY_RULES)


class AuraSRFormatError(ValueError):
    """A file of an AuraSR layout is missing, unreadable, or does not describe AuraSR weights."""


def convert_aurasr_key(key: str) -> str | None:
    """Our name for AuraSR state-dict name ``key`` (None: dropped). Rules apply in sequence, so
    a block's prefix and its inner name are both renamed."""
    for pattern, new in _COMPILED_RULES:
        if pattern.search(key) is None:
            continue
        if new is None:
            return None
        key = pattern.sub(new, key)
    return key


def convert_aurasr_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """AuraSR's state dict with our names (tensors shared, not copied)."""
    converted = {}
    for key, tensor in state_dict.items():
        new_key = convert_aurasr_key(key)
        if new_key is not None:
            converted[new_key] = tensor
    return converted


def is_aurasr_config(config: dict) -> bool:
    """Whether a parsed config.json is AuraSR's (not one written by our save_pretrained)."""
    return "_class_name" not in config and "style_network" in config and "dim" in config


def config_from_aurasr(config: dict) -> dict:
    """:class:`AuraSRUpsampler` arguments for AuraSR's config.json contents.

    Raises:
        AuraSRFormatError: an unknown key, or a setting this class cannot reproduce.
    """
    known = {"dim", "image_size", "input_image_size", "style_network", *_REFERENCE_DEFAULTS}
    if unknown := sorted(set(config) - known):
        raise AuraSRFormatError(f"unknown AuraSR config keys {unknown}")
    if "dim" not in config or not isinstance(config.get("style_network", {}), dict):
        raise AuraSRFormatError("an AuraSR config needs 'dim' and a 'style_network' table")
    settings = {**_REFERENCE_DEFAULTS, **config}
    style = {**_STYLE_DEFAULTS, **config.get("style_network", {})}
    if unknown := sorted(set(style) - set(_STYLE_DEFAULTS)):
        raise AuraSRFormatError(f"unknown AuraSR style_network keys {unknown}")
    if style["dim_text_latent"] or not settings["unconditional"]:
        raise AuraSRFormatError("text-conditioned AuraSR models are not supported")
    if settings["channels"] != 3:
        raise AuraSRFormatError(f"only RGB AuraSR models are supported, got {settings['channels']}")
    dim = settings["dim"]
    if settings["init_dim"] not in (None, dim):
        # The reference's last decoder level is init_dim wide and its final block dim wide.
        raise AuraSRFormatError(f"init_dim must equal dim ({dim}), got {settings['init_dim']}")
    skip_scale = settings["skip_connect_scale"]
    kwargs = dict(
        dim=dim,
        up_dim_mults=list(settings["up_dim_mults"]),
        down_dim_mults=list(settings["down_dim_mults"]),
        full_attn=[bool(flag) for flag in settings["full_attn"]],
        attn_depths=list(settings["attn_depths"]),
        mid_attn_depth=settings["mid_attn_depth"],
        attn_heads=settings["self_attn_heads"],
        attn_dim_head=settings["self_attn_dim_head"],
        num_conv_kernels=settings["num_conv_kernels"],
        blocks_per_level=6,  # fixed in the reference
        z_dim=style["dim_in"],
        style_dim=style["dim_out"],
        mapping_layers=style["depth"],
        mapping_lr_mul=style["lr_mul"],
        skip_connect_scale=DEFAULT_SKIP_CONNECT_SCALE if skip_scale is None else skip_scale,
    )
    scale = 2 ** (len(kwargs["up_dim_mults"]) - len(kwargs["down_dim_mults"]))
    sizes = (config.get("input_image_size"), config.get("image_size"))
    if None not in sizes and sizes[1] != scale * sizes[0]:
        raise AuraSRFormatError(
            f"config says {sizes[0]} px -> {sizes[1]} px, but its architecture upscales {scale}x"
        )
    return kwargs


def aurasr_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """(config.json, weights file) of an AuraSR folder, or of its weights file. Only config.json
    is checked here; :func:`load_aurasr` checks the weights once it knows the config is AuraSR's.

    Raises:
        FileNotFoundError: no such folder or file, or no config.json beside it.
    """
    path = Path(path).expanduser()
    folder = path.parent if path.is_file() else path
    weights = path if path.is_file() else folder / WEIGHTS_NAME
    config = folder / CONFIG_NAME
    if not folder.is_dir():
        raise FileNotFoundError(f"no AuraSR folder or weights file {path}")
    if not config.is_file():
        raise FileNotFoundError(f"{folder} has no {CONFIG_NAME} (AuraSR's sits beside its weights)")
    return config, weights


def _check_weights(weights: Path) -> None:
    if not weights.is_file() or weights.suffix != ".safetensors":
        pickled = any(weights.parent.glob("*.ckpt"))
        note = " (its model.ckpt is a pickle, which is never loaded)" if pickled else ""
        raise FileNotFoundError(f"{weights.parent} has no {WEIGHTS_NAME}{note}")


def read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AuraSRFormatError(f"{path} is not a readable JSON file: {error}") from error
    if not isinstance(config, dict):
        raise AuraSRFormatError(f"{path} does not hold a JSON object")
    return config


def is_aurasr_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an AuraSR folder (or its weights file): its config.json is AuraSR's.

    A folder with no readable config.json is not one.
    """
    path = Path(path).expanduser()
    config = (path.parent if path.is_file() else path) / CONFIG_NAME
    try:
        return is_aurasr_config(read_config(config))
    except AuraSRFormatError:
        return False


def load_aurasr(path: str | os.PathLike) -> AuraSRUpsampler:
    """An :class:`AuraSRUpsampler` with the weights of an AuraSR folder (or its weights file),
    converted in memory; in the checkpoint's dtype, in eval mode.

    Raises:
        FileNotFoundError: config.json or model.safetensors is missing.
        AuraSRFormatError: a file is unreadable, or config and weights do not match.
    """
    config_path, weights_path = aurasr_files(path)
    config = read_config(config_path)
    if not is_aurasr_config(config):
        raise AuraSRFormatError(f"{config_path} is not an AuraSR config (no 'style_network')")
    kwargs = config_from_aurasr(config)
    _check_weights(weights_path)
    try:
        state_dict = load_file(weights_path)
    except Exception as error:  # safetensors raises its own error types for corrupt files
        raise AuraSRFormatError(
            f"{weights_path} is not a readable safetensors file ({error}): it is truncated or "
            "corrupt; download it again"
        ) from error
    try:
        # Build without allocating (the real tensors are assigned), then check every name and shape.
        with torch.device("meta"):
            model = AuraSRUpsampler(**kwargs)
    except ValueError as error:
        raise AuraSRFormatError(f"{config_path}: {error}") from error
    converted = convert_aurasr_state_dict(state_dict)
    # Keys the file has are named as in the file; missing ones can only be named as ours.
    original = {convert_aurasr_key(key): key for key in state_dict}
    details = tensor_mismatch(
        {key: tuple(value.shape) for key, value in model.state_dict().items()},
        {key: tuple(value.shape) for key, value in converted.items()},
        missing_label="missing keys (as converted)",
        name=lambda key: original.get(key, key),
    )
    if details:
        raise AuraSRFormatError(
            f"{weights_path} does not match the architecture in {config_path}: {details}. The file is incomplete, or the config.json beside it is another "
            "model's; download both files again from the same release"
        )
    model.load_state_dict(converted, strict=True, assign=True)
    return model.eval()


def convert_aurasr(
    source: str | os.PathLike, output: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Write an AuraSR folder's weights as our ``save_pretrained`` folder ``output``.

    Files are written to a hidden folder inside ``output`` and renamed into place, the weights
    before config.json, with ordinary file modes, so ``output`` never holds a partial model;
    nothing is written outside it (:mod:`upsampler.io.files`).

    Raises:
        FileNotFoundError, AuraSRFormatError: see :func:`load_aurasr`.
        FileExistsError: ``output`` is not empty and ``overwrite`` is off (with it, only the
            model files are replaced).
        ValueError: ``output`` is, is inside or contains the source folder, or is a file.
    """
    from upsampler.io.files import check_output_folder, write_model_folder

    source_folder = aurasr_files(source)[0].parent
    # The rule every writer of a model folder follows (upsampler export too).
    output = check_output_folder(
        output, sources={"the AuraSR folder": source_folder}, overwrite=overwrite
    )
    model = load_aurasr(source)
    return write_model_folder(output, model.save_pretrained)
