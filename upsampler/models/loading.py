"""One loader for every model the engine runs: built-in names, folders, files and Hub ids.

    model = load_model("nano-4x")                             # built-in, shipped in the package
    model = load_model("runs/my-4x-release")                  # our save_pretrained folder
    model = load_model("models/AuraSR-v2")                    # AuraSR's config.json + safetensors
    model = load_model("4x-UltraSharp.safetensors")           # a community checkpoint (spandrel)
    model = load_model("fal/AuraSR-v2")                       # a Hub repository
    model = load_model("owner/repo/4x-Model.pth", revision="main")  # one file in a Hub repo

Every result implements :class:`~upsampler.models.contract.UpsamplerModel`. What a name means
is decided in this order: a built-in name; an existing local path (a folder with our
``config.json``, an AuraSR folder or weights file, a checkpoint file); a Hub id
(:mod:`upsampler.models.hub`). Weights load only from safetensors, or from pickles with
``torch.load(weights_only=True)``; nothing is ever replaced by random values: missing or
mismatched tensors are an error that names them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFETENSORS_WEIGHTS_NAME
from safetensors import safe_open

from upsampler.models.aurasr import AuraSRUpsampler
from upsampler.models.aurasr_checkpoint import is_aurasr_folder, load_aurasr
from upsampler.models.contract import UpsamplerModel
from upsampler.models.generator import GigaGANUpsampler
from upsampler.models.registry import (
    BUILTIN_MODELS,
    ModelUnavailableError,
    ModelWeightsError,
    builtin_path,
)
from upsampler.models.spandrel_model import CHECKPOINT_SUFFIXES, load_spandrel_file
from upsampler.models.weights_check import tensor_mismatch


def load_model(name_or_path: str | os.PathLike, *, revision: str | None = None) -> UpsamplerModel:
    """The model named by ``name_or_path`` (see the module docstring), on the CPU in fp32
    (or in the dtype its file stores), in eval mode.

    Args:
        revision: a Hub branch, tag or commit, for Hub ids only.

    Raises:
        ModelUnavailableError: an unknown name, a missing path, a Hub id that is not cached
            while offline (and the other Hub failures), a folder that is no model.
        ModelWeightsError: weights that are unreadable or do not match their config.
        CheckpointError: a checkpoint file that is corrupt, needs pickle code, or is of an
            architecture spandrel does not know.
        FileNotFoundError, ValueError: an AuraSR folder with a missing or malformed file.
    """
    name = str(name_or_path)
    path = locate(name, revision=revision)
    if name in BUILTIN_MODELS:
        check_weights(path, GigaGANUpsampler)
        return GigaGANUpsampler.from_pretrained(path, use_safetensors=True).eval()
    try:
        return _load_local(path)
    except ModelUnavailableError as error:
        if path == Path(name).expanduser():
            raise
        raise ModelUnavailableError(f"Hub id {name!r}: {error}") from error


def locate(name_or_path: str | os.PathLike, *, revision: str | None = None) -> Path:
    """The local folder or file behind ``name_or_path``: a built-in model's folder in the
    package, an existing path as it is, a Hub id's snapshot folder or file (downloaded, or
    from the cache). Nothing is loaded; training's ``init_from`` reads the weights itself.

    Raises:
        ModelUnavailableError: as :func:`load_model`, for names that lead nowhere.
    """
    name = str(name_or_path)
    if name in BUILTIN_MODELS:
        if revision is not None:
            raise ModelUnavailableError(f"--revision applies to Hub ids, not to built-in {name!r}")
        return builtin_path(name)
    path = Path(name).expanduser()
    if path.exists():
        if revision is not None:
            raise ModelUnavailableError(f"--revision applies to Hub ids, not to the local {path}")
        return path
    from upsampler.models import hub

    parsed = hub.parse_hub_id(name)
    if parsed is None or name.startswith((".", "~", "/")):
        raise ModelUnavailableError(
            f"no model folder or file {name!r}, and it is neither a built-in name "
            f"({', '.join(BUILTIN_MODELS)}) nor a Hub id (owner/repo, or "
            "owner/repo/FILE.safetensors)"
        )
    return hub.download(name, revision=revision)


def _load_local(path: Path) -> UpsamplerModel:
    """A local folder (ours or AuraSR's) or file (AuraSR weights or a community checkpoint)."""
    if is_aurasr_folder(path):
        return load_aurasr(path).eval()
    if path.is_file() and path.suffix.lower() == ".onnx":
        from upsampler.inference.onnx import OnnxUpsampler

        return OnnxUpsampler.from_file(path)
    if path.is_file():
        if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
            raise ModelUnavailableError(
                f"{path} is not a model file (expected {', '.join(CHECKPOINT_SUFFIXES)}, or "
                ".onnx from `upsampler export-onnx`) nor a model folder"
            )
        return load_spandrel_file(path)
    if not (path / "config.json").is_file():
        checkpoints = sorted(
            p.name for p in path.iterdir() if p.suffix.lower() in CHECKPOINT_SUFFIXES
        )
        hint = (
            f"; to load a checkpoint file in it, name the file ({', '.join(checkpoints[:3])})"
            if checkpoints
            else " (write one with save_pretrained or `upsampler export`)"
        )
        raise ModelUnavailableError(f"{path} is not a model folder: it has no config.json{hint}")
    if not any(path.glob("*.safetensors")):
        raise ModelUnavailableError(
            f"{path} has a config.json but no .safetensors weights; models load only from "
            "safetensors"
        )
    model_class = _model_class(path)
    check_weights(path, model_class)
    return model_class.from_pretrained(path, use_safetensors=True).eval()


def describe(model: UpsamplerModel) -> dict[str, object]:
    """What ``upsampler info`` prints: architecture, scale, parameters, size rule, dtypes, text."""
    architecture = getattr(model, "architecture", None) or type(model).__name__
    # Graphs run outside torch hold their weights themselves (None: not countable here).
    count = getattr(model, "num_parameters", None)
    parameters = count() if callable(count) else sum(p.numel() for p in model.parameters())
    dtypes = [
        str(d).removeprefix("torch.")
        for d in (torch.float32, torch.bfloat16, torch.float16)
        if model.supports_dtype(d)
    ]
    return {
        "architecture": architecture,
        "scale": model.scale,
        "parameters": parameters,
        "size_multiple": model.size_multiple,
        "min_size": model.min_size,
        "dtypes": dtypes,
        "text_conditioning": model.text_conditioning,
        "style_noise": model.uses_styles,
    }


# config.json "_class_name" (written by save_pretrained) -> the class that loads the folder.
MODEL_CLASSES: dict[str, type[ModelMixin]] = {
    "GigaGANUpsampler": GigaGANUpsampler,
    "AuraSRUpsampler": AuraSRUpsampler,
}


def _model_class(folder: Path) -> type[ModelMixin]:
    """The class named by a save_pretrained folder's config.json."""
    try:
        name = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError) as error:
        raise ModelUnavailableError(
            f"{folder}/config.json is not a readable config: {error}"
        ) from error
    if name not in MODEL_CLASSES:
        raise ModelUnavailableError(
            f"{folder} holds a {name!r}, not an upsampler ({', '.join(MODEL_CLASSES)})"
        )
    return MODEL_CLASSES[name]


def check_weights(folder: Path, model_class: type[ModelMixin]) -> None:
    """Check that the safetensors of ``save_pretrained`` folder ``folder`` hold exactly the
    tensors (names and shapes) that its config.json builds, reading only the files' headers.

    Left to diffusers, missing tensors are filled with random values (with a log line, not an
    error), shapes that differ give advice about ``ignore_mismatched_sizes``, and a truncated
    file gives "Unable to load weights": none says what is wrong with which file.

    Raises:
        ModelWeightsError: no weights file of the name save_pretrained writes, an unreadable
            file, a config.json this class cannot build, or tensors that do not match it.
    """
    files = _weight_files(folder)
    found: dict[str, tuple[int, ...]] = {}
    for file in files:
        try:
            with safe_open(file, framework="pt") as weights:
                for key in weights.keys():  # noqa: SIM118 (safe_open is not a dict)
                    found[key] = tuple(weights.get_slice(key).get_shape())
        except Exception as error:  # safetensors raises its own error type for corrupt files
            raise ModelWeightsError(
                f"{file} is not a readable safetensors file ({error}): it is truncated or "
                "corrupt; copy it again, or write it again with save_pretrained or "
                "`upsampler export`"
            ) from error
    try:
        with torch.device("meta"):  # shapes only: nothing allocated
            model = model_class.from_config(model_class.load_config(folder))
    except Exception as error:
        raise ModelWeightsError(
            f"{folder / 'config.json'} does not describe a {model_class.__name__} that can be "
            f"built: {error}"
        ) from error
    expected = {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
    problems = tensor_mismatch(expected, found)
    if not problems:
        return
    where = files[0] if len(files) == 1 else f"the {len(files)} shards in {folder}"
    raise ModelWeightsError(
        f"the weights in {where} do not match {folder / 'config.json'}: {problems}. The file is incomplete or was saved from another model; write the folder "
        "again with save_pretrained or `upsampler export`"
    )


def _weight_files(folder: Path) -> list[Path]:
    """The safetensors file(s) from_pretrained reads in ``folder``: one file, or the shards its
    index names."""
    index = folder / SAFE_WEIGHTS_INDEX_NAME
    if index.is_file():
        try:
            shards = sorted(
                set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ModelWeightsError(f"{index} is not a readable shard index: {error}") from error
        return [folder / shard for shard in shards]
    single = folder / SAFETENSORS_WEIGHTS_NAME
    if not single.is_file():
        others = ", ".join(sorted(p.name for p in folder.glob("*.safetensors"))) or "none"
        raise ModelWeightsError(
            f"{folder} has no {SAFETENSORS_WEIGHTS_NAME}, the weights file save_pretrained "
            f"writes (other .safetensors files: {others}); rename the file if it holds this "
            "model's weights"
        )
    return [single]
