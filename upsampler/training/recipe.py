"""Training recipes: TOML files loaded into frozen, validated dataclasses.

A recipe has one table per concern. ``[model]`` and ``[discriminator]`` go straight into the
model constructors (``preset = "nano"`` picks a generator preset, other keys override it), so
a recipe can set anything a model can. Unknown keys and wrong types fail before training
starts, with the dotted name of the offending key.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class RecipeError(ValueError):
    """A recipe that cannot be trained: unknown key, wrong type, bad value or missing data."""


#: The experiment trackers ``train.log_with`` can name (accelerate's), each with the package
#: ``pip install`` needs for it.
TRACKERS: dict[str, str] = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "comet_ml": "comet_ml",
    "aim": "aim",
    "clearml": "clearml",
    "dvclive": "dvclive",
    "swanlab": "swanlab",
    "trackio": "trackio",
}


@dataclass(frozen=True)
class DataConfig:
    #: folder of training images (searched recursively), or a folder / list of .tar shards
    path: str = ""
    #: training crops are crop_size x crop_size high-resolution pixels
    crop_size: int = 256
    #: images with a side shorter than this are skipped (default: crop_size)
    min_size: int = 0
    #: "none", "sidecar" (photo.jpg + photo.txt), or a .jsonl / .csv manifest of file,caption
    captions: str = "none"
    #: probability of replacing a caption by "" so one model also works without a prompt
    caption_dropout: float = 0.1
    #: random horizontal flips (and vertical ones when flip_vertical)
    flip: bool = True
    flip_vertical: bool = False
    batch_size: int = 8
    num_workers: int = 0


@dataclass(frozen=True)
class DegradationConfig:
    #: a preset of upsampler.degradations ("realesrgan", "bicubic", "diffusion") ...
    preset: str = "realesrgan"
    #: ... or an explicit list of stage tables, which replaces the preset
    stages: list[dict] = field(default_factory=list)
    #: size of the pool that mixes degraded pairs across batches (0 = off), as in Real-ESRGAN
    pool_size: int = 0
    #: unsharp-mask the high-resolution targets (Real-ESRGAN's "USM" targets)
    sharpen_target: bool = False
    #: fraction of crops given the plain bicubic downscale instead, so a model trained on
    #: heavy degradations stays faithful (and keeps fine texture) on clean inputs
    clean_probability: float = 0.0


@dataclass(frozen=True)
class LossConfig:
    #: L1 (or Charbonnier) between the output and the target
    reconstruction: float = 1.0
    reconstruction_type: Literal["l1", "charbonnier"] = "l1"
    #: the same reconstruction on every lower pyramid level (against downscaled targets)
    pyramid: float = 0.5
    #: LPIPS (real trunk weights: torchvision's cache or `upsampler prepare-lpips`); 0: off
    lpips: float = 1.0
    lpips_net: Literal["alex", "vgg"] = "vgg"
    #: LPIPS and CLIP during the reconstruction warm-up too; false makes the warm-up pure
    #: L1 (a PSNR-oriented model at its end, like RealESRNet before Real-ESRGAN)
    perceptual_in_warmup: bool = True
    #: non-saturating GAN loss, used after train.warmup_steps
    adversarial: float = 0.1
    #: lazy R1 penalty on real images, every r1_interval discriminator steps (StyleGAN2)
    r1_gamma: float = 1.0
    r1_interval: int = 16
    #: matching-aware loss for text models: real image + mismatched text counts as fake
    matching_aware: float = 1.0
    #: CLIP image-text similarity of the output (needs clip_model / clip_weights)
    clip: float = 0.0
    clip_model: str = "ViT-B-32"
    clip_weights: str = ""


@dataclass(frozen=True)
class OptimConfig:
    generator_lr: float = 2e-4
    discriminator_lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.0, 0.99])
    weight_decay: float = 0.0
    #: learning-rate schedule after lr_warmup_steps of linear warm-up
    schedule: Literal["constant", "cosine"] = "constant"
    lr_warmup_steps: int = 0
    #: width-aware scaling: lr *= width_base / model width (0 = off), as for wide GANs
    width_base: int = 0
    grad_clip: float = 0.0
    ema_decay: float = 0.999
    #: EMA copies the weights until this step, then averages
    ema_start: int = 0


@dataclass(frozen=True)
class TrainConfig:
    output_dir: str = "runs/upsampler"
    steps: int = 1000
    #: reconstruction-only steps before the GAN phase (Real-ESRGAN trains RealESRNet first)
    warmup_steps: int = 0
    #: start the generator (and its EMA) from trained weights instead of a random
    #: initialisation: a built-in model name, a save_pretrained folder or a run checkpoint;
    #: e.g. a GAN fine-tune of a PSNR model, as Real-ESRGAN starts from RealESRNet
    init_from: str = ""
    seed: int = 0
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_accumulation: int = 1
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 500
    #: checkpoints kept on disk (oldest removed first); the final one is always kept
    keep_checkpoints: int = 3
    #: "auto" lets accelerate choose; "cpu" forces the CPU
    device: Literal["auto", "cpu"] = "auto"
    #: experiment trackers that get the metrics too, through accelerate: "none", one name
    #: ("tensorboard", "wandb", ...: see TRACKERS) or a list; metrics.jsonl is always written
    log_with: str | list[str] = "none"

    @property
    def trackers(self) -> list[str]:
        """The trackers of ``log_with``, without repeats (empty for "none")."""
        names = [self.log_with] if isinstance(self.log_with, str) else list(self.log_with)
        return list(dict.fromkeys(name for name in names if name not in ("", "none")))


@dataclass(frozen=True)
class TextConfig:
    #: "" for unconditional models; otherwise "open_clip" or "transformers"
    backend: str = ""
    name: str = ""
    pretrained: str = ""
    #: safetensors file of precomputed embeddings per caption, read at start and extended at
    #: every checkpoint ("" = cache in memory only); reuse it across runs of the same encoder
    cache: str = ""
    #: random encoder weights: for tests only, never for a model you want to use
    random_weights: bool = False


@dataclass(frozen=True)
class TeacherConfig:
    """Distillation: a strong model's outputs as extra targets (docs/distillation.md)."""

    # Any model the loader accepts (built-in, folder, checkpoint file, Hub id), run frozen on
    # exactly the degraded input the student sees. Empty: no teacher.
    model: str = ""
    # A teacher cache (`upsampler teacher-cache`): (degraded input, teacher output, ground
    # truth) read from disk instead of degrading photos and running the teacher every step;
    # or a list of caches read as one (e.g. degraded inputs beside clean ones).
    cache: str | list[str] = ""
    # With a cache: train on the first `samples` samples of each cache only (0: all of them),
    # or a list of one count per cache. Only their shards must exist, so a run can start while
    # a cache is still being built.
    samples: int | list[int] = 0
    # Weights of the losses against the teacher's output (reconstruction uses
    # loss.reconstruction_type; 0 turns a term off).
    reconstruction: float = 1.0
    pyramid: float = 0.0
    lpips: float = 1.0
    # GAN phase: the teacher's outputs as extra real samples for the discriminator, with this
    # weight beside the photos' (0: photos only). R1 stays on the photos.
    real: float = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.model or self.cache)

    @property
    def caches(self) -> list[str]:
        """The cache folders, one or several (none without a cache)."""
        if isinstance(self.cache, str):
            return [self.cache] if self.cache else []
        return list(self.cache)

    @property
    def sample_counts(self) -> list[int]:
        """How many samples of each cache to train on (0: all of it), one per cache."""
        if isinstance(self.samples, list):
            return list(self.samples)
        return [self.samples] * max(len(self.caches), 1)


@dataclass(frozen=True)
class Recipe:
    #: generator constructor arguments; "preset" picks one of GigaGANUpsampler's presets
    model: dict = field(default_factory=lambda: {"preset": "nano", "scale": 4})
    #: discriminator constructor arguments
    discriminator: dict = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    text: TextConfig = field(default_factory=TextConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)

    @property
    def scale(self) -> int:
        return int(self.model.get("scale", 4))

    @property
    def text_conditioning(self) -> bool:
        return bool(self.model.get("text_conditioning", False))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def dumps(self) -> str:
        """The resolved recipe as TOML (saved with every run)."""
        import tomli_w

        return tomli_w.dumps(self.to_dict())


#: list item types as messages name them, with an example list of each
_LIST_ITEMS = {
    int: ("integers", [64, 128]),
    float: ("numbers", [0.0, 0.99]),
    str: ("strings", ["a", "b"]),
    dict: ("tables", None),
}


def _describe(value: Any) -> str:
    """``value`` as a message names it: "the string '64,128'", "the integer 2", "a table"."""
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value}"
    if isinstance(value, dict):
        return "a table"
    return f"{type(value).__name__} {value!r}"


def _check_type(value: Any, annotation: Any, where: str, example: Any = None) -> Any:
    """``value`` checked against ``annotation`` (ints become floats where floats belong);
    ``example`` is shown when a list is expected (default: a list of the item type)."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        if value not in typing.get_args(annotation):
            choices = ", ".join(repr(a) for a in typing.get_args(annotation))
            raise RecipeError(f"{where} must be one of {choices}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _check_type(value, option, where)
            except RecipeError:
                continue
        raise RecipeError(f"{where} has the wrong type: {value!r}")
    if origin in (list, tuple, collections.abc.Sequence) or annotation in (list, tuple):
        (item, *_) = typing.get_args(annotation) or (Any,)
        if not isinstance(value, list | tuple):
            # A string is the usual slip: --set model.encoder_channels=64,128 or "2" in TOML.
            items, default_example = _LIST_ITEMS.get(item, ("values", None))
            example = list(example) if example else default_example
            like = f" like {json.dumps(example)}" if example else ""
            raise RecipeError(f"{where} must be a list of {items}{like}, got {_describe(value)}")
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if annotation is Any:
        return value
    if annotation is dict or origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where} must be a table, got {_describe(value)}")
        return dict(value)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RecipeError(f"{where} must be a number, got {_describe(value)}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{where} must be an integer, got {_describe(value)}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where} must be true or false, got {_describe(value)}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise RecipeError(f"{where} must be a string, got {_describe(value)}")
        return value
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, where)
    raise TypeError(
        f"unsupported annotation {annotation} at {where}"
    )  # a bug of ours, not the user's


def _build(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise RecipeError(f"[{where}] must be a table, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise RecipeError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(prefix + k for k in unknown)}; "
            f"valid keys{' of [' + where + ']' if where else ''}: {', '.join(sorted(names))}"
        )
    kwargs = {
        name: _check_type(value, hints[name], f"{where}.{name}" if where else name)
        for name, value in values.items()
    }
    return cls(**kwargs)


def check_arguments(function: Any, values: dict, table: str) -> dict:
    """Check a table that goes straight into ``function`` (a model constructor) against its
    signature, so an unknown key or a wrong type fails here, naming ``table.key``, instead of
    somewhere inside the model (a string where a list belongs fails with "not all arguments
    converted during string formatting" there)."""
    parameters = inspect.signature(function).parameters
    hints = typing.get_type_hints(function)
    names = sorted(name for name in parameters if name != "self")
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise RecipeError(
            f"unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(f'{table}.{k}' for k in unknown)}; valid keys of [{table}]: {', '.join(names)}"
        )
    checked = {}
    for name, value in values.items():
        try:
            default = parameters[name].default
            example = default if isinstance(default, list | tuple) else None
            checked[name] = _check_type(value, hints.get(name, Any), f"{table}.{name}", example)
        except TypeError:  # an annotation the recipe checker does not know: the model checks it
            checked[name] = value
    return checked


def _check_model_tables(recipe: Recipe) -> None:
    # Imported here: the models pull in torch and diffusers, which a recipe alone does not need.
    from upsampler.models.discriminator import GigaGANDiscriminator
    from upsampler.models.generator import GigaGANUpsampler

    model = dict(recipe.model)
    if "preset" in model:
        _check_type(model.pop("preset"), str, "model.preset")
    check_arguments(GigaGANUpsampler.__init__, model, "model")
    check_arguments(GigaGANDiscriminator.__init__, recipe.discriminator, "discriminator")


def _validate(recipe: Recipe) -> Recipe:
    _check_model_tables(recipe)
    data, train, loss = recipe.data, recipe.train, recipe.loss
    if recipe.scale not in (2, 4, 8):
        raise RecipeError(f"model.scale must be 2, 4 or 8, got {recipe.scale}")
    if data.crop_size <= 0 or data.crop_size % recipe.scale:
        raise RecipeError(
            f"data.crop_size ({data.crop_size}) must be a positive multiple of model.scale ({recipe.scale})"
        )
    for name in ("batch_size",):
        if getattr(data, name) < 1:
            raise RecipeError(f"data.{name} must be >= 1, got {getattr(data, name)}")
    if not 0.0 <= data.caption_dropout <= 1.0:
        raise RecipeError(f"data.caption_dropout must be in [0, 1], got {data.caption_dropout}")
    if not 0.0 <= recipe.degradation.clean_probability <= 1.0:
        raise RecipeError(
            "degradation.clean_probability must be in [0, 1], "
            f"got {recipe.degradation.clean_probability}"
        )
    if train.steps < 1 or train.warmup_steps < 0 or train.warmup_steps > train.steps:
        raise RecipeError(
            f"need 1 <= train.steps and 0 <= train.warmup_steps <= train.steps, got {train.steps}, {train.warmup_steps}"
        )
    if train.gradient_accumulation < 1:
        raise RecipeError(
            f"train.gradient_accumulation must be >= 1, got {train.gradient_accumulation}"
        )
    for name in ("log_every", "sample_every", "checkpoint_every"):
        if getattr(train, name) < 1:
            raise RecipeError(f"train.{name} must be >= 1, got {getattr(train, name)}")
    unknown = [name for name in train.trackers if name not in TRACKERS]
    if unknown:
        choices = ", ".join(repr(name) for name in TRACKERS)
        raise RecipeError(
            f"train.log_with: unknown tracker {unknown[0]!r}; choose 'none', one of {choices}, "
            "or a list of them"
        )
    if loss.r1_interval < 1:
        raise RecipeError(f"loss.r1_interval must be >= 1, got {loss.r1_interval}")
    if len(recipe.optim.betas) != 2:
        raise RecipeError(f"optim.betas must have two values, got {recipe.optim.betas}")
    if not 0.0 <= recipe.optim.ema_decay < 1.0:
        raise RecipeError(f"optim.ema_decay must be in [0, 1), got {recipe.optim.ema_decay}")
    if recipe.text_conditioning and not recipe.text.backend:
        raise RecipeError(
            'a text-conditioned model needs [text] backend = "open_clip" or "transformers"'
        )
    if recipe.text.backend not in ("", "open_clip", "transformers"):
        raise RecipeError(
            f'text.backend must be "", "open_clip" or "transformers", got {recipe.text.backend!r}'
        )
    if recipe.text_conditioning and data.captions == "none":
        raise RecipeError(
            'a text-conditioned model needs captions: set data.captions = "sidecar" or a manifest path'
        )
    if loss.clip > 0 and not loss.clip_weights:
        raise RecipeError("loss.clip > 0 needs loss.clip_weights (a local CLIP checkpoint)")
    _validate_teacher(recipe)
    return recipe


def _validate_teacher(recipe: Recipe) -> None:
    teacher, degradation = recipe.teacher, recipe.degradation
    counts = teacher.sample_counts
    if any(count < 0 for count in counts) or (any(counts) and not teacher.cache):
        raise RecipeError(f"teacher.samples ({teacher.samples}) needs teacher.cache and >= 0")
    if len(counts) != len(teacher.caches) and teacher.cache:
        raise RecipeError(
            f"teacher.samples gives {len(counts)} counts for {len(teacher.caches)} caches: "
            "give one per cache, or one number for all"
        )
    for name in ("reconstruction", "pyramid", "lpips", "real"):
        if getattr(teacher, name) < 0:
            raise RecipeError(f"teacher.{name} must be >= 0, got {getattr(teacher, name)}")
    if teacher.model and teacher.cache:
        raise RecipeError(
            "give teacher.model (run the teacher every step) or teacher.cache (read its outputs "
            "from `upsampler teacher-cache`), not both: the cache records its teacher"
        )
    if teacher.cache:
        # The cache holds degraded inputs made when it was built: nothing degrades them again.
        fixed = [
            f"degradation.{name}"
            for name, off in (
                ("pool_size", degradation.pool_size == 0),
                ("clean_probability", degradation.clean_probability == 0),
                ("sharpen_target", not degradation.sharpen_target),
            )
            if not off
        ]
        if fixed:
            raise RecipeError(
                f"teacher.cache is set, so the degraded inputs come from the cache: "
                f"{', '.join(fixed)} cannot apply; remove {'them' if len(fixed) > 1 else 'it'}"
            )
        if recipe.text_conditioning:
            raise RecipeError("teacher.cache holds no captions: distil unconditional models only")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.generator_lr=1e-4"`` -> (["optim", "generator_lr"], 0.0001); values are TOML literals.

    A value that is not a valid TOML literal is taken as a string, so ``data.path=photos`` works.
    """
    if "=" not in text:
        raise RecipeError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    keys = [k.strip() for k in key.strip().split(".")]
    if not all(keys):
        raise RecipeError(f"--set has an empty key in {text!r}")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return keys, value


def recipe_from_dict(values: dict, overrides: list[str] = ()) -> Recipe:
    """Validate a parsed recipe (plus ``key=value`` overrides) into a :class:`Recipe`."""
    values = _deep_copy(values)
    for override in overrides:
        keys, value = parse_override(override)
        table = values
        for key in keys[:-1]:
            table = table.setdefault(key, {})
            if not isinstance(table, dict):
                raise RecipeError(f"--set {override}: {key} is not a table")
        table[keys[-1]] = value
    return _validate(_build(Recipe, values, ""))


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    """Read a TOML recipe; relative paths in it are taken relative to the current directory."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}")
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"{path} is not valid TOML: {error}") from error
    return recipe_from_dict(values, overrides)


def _deep_copy(values: Any) -> Any:
    if isinstance(values, dict):
        return {k: _deep_copy(v) for k, v in values.items()}
    if isinstance(values, list):
        return [_deep_copy(v) for v in values]
    return values
