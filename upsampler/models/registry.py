"""Built-in model names and the folders inside the package that hold their weights.

A built-in model is a folder ``upsampler/weights/<name>/`` written by
``GigaGANUpsampler.save_pretrained`` (``config.json`` + safetensors, and a model card), shipped
as package data so the name works offline. The table below is explicit on purpose: reading it
tells you every name and what it is, with no import-time scanning.

A name registered here whose folder is missing (a release not trained yet) raises
:class:`ModelUnavailableError` saying so and how to load a local folder instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


class ModelUnavailableError(RuntimeError):
    """The weights asked for are not on this machine (and were not, or could not be, downloaded)."""


class ModelWeightsError(ModelUnavailableError):
    """A model folder's weights cannot be used: an unreadable (truncated, corrupt) safetensors
    file, or tensors that are not the ones its config.json describes (missing, unexpected or of
    another shape). Loading never fills the gaps with random values."""


@dataclass(frozen=True)
class BuiltinModel:
    """name: what users type; preset: the generator preset; description: one line for listings."""

    name: str
    preset: str
    scale: int
    text_conditioning: bool
    description: str

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.name


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    model.name: model
    for model in (
        BuiltinModel(
            name="nano-4x",
            preset="student",
            scale=4,
            text_conditioning=False,
            description="CPU-friendly unconditional 4x upsampler for real photos, distilled from "
            "Real-ESRGAN x4plus",
        ),
        BuiltinModel(
            name="nano-4x-psnr",
            preset="student",
            scale=4,
            text_conditioning=False,
            description="the same network trained for fidelity on clean inputs (L1 only): no invented detail",
        ),
    )
}


def builtin_names() -> list[str]:
    return list(BUILTIN_MODELS)


def is_available(name: str) -> bool:
    """Whether built-in ``name`` has its weights installed."""
    model = BUILTIN_MODELS.get(name)
    return model is not None and (model.path / "config.json").is_file()


def builtin_path(name: str) -> Path:
    """The weights folder of built-in model ``name``.

    Raises:
        KeyError: ``name`` is not a built-in model.
        ModelUnavailableError: it is, but this release ships no weights for it.
    """
    if name not in BUILTIN_MODELS:
        raise KeyError(f"{name!r} is not a built-in model; built-in: {', '.join(BUILTIN_MODELS)}")
    model = BUILTIN_MODELS[name]
    if not (model.path / "config.json").is_file():
        raise ModelUnavailableError(
            f"this release of upsampler ships no weights for the built-in model {name!r} yet "
            f"(expected them in {model.path}). Load a local folder written by "
            "GigaGANUpsampler.save_pretrained instead: Upscaler.from_pretrained('/path/to/folder') "
            "or `upsampler upscale --model /path/to/folder ...`"
        )
    return model.path
