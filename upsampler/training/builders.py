"""What a training run is made of, built from a :class:`Recipe`: data, models, teacher, losses,
optimisers. The :class:`~upsampler.training.trainer.Trainer` calls these and keeps only the loop.

Every builder fails with a :class:`RecipeError` (or the data's ``DataError``) that names the
recipe table at fault, before anything long starts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from upsampler.degradations import DegradationPipeline
from upsampler.models.discriminator import GigaGANDiscriminator
from upsampler.models.generator import GigaGANUpsampler
from upsampler.training.recipe import Recipe, RecipeError


def build_dataset(recipe: Recipe) -> torch.utils.data.Dataset:
    """The photos of ``[data]``, or with ``teacher.cache`` the cached (input, teacher output,
    ground truth) triples; each sample is a dict keyed by ``(index, seed)``."""
    data = recipe.data
    if recipe.teacher.cache:
        from upsampler.data.teacher_cache import TeacherCacheDataset, TeacherCacheMix

        caches = [
            TeacherCacheDataset(
                Path(path).expanduser(),
                crop_size=data.crop_size,
                flip=data.flip,
                flip_vertical=data.flip_vertical,
                samples=count,
            )
            for path, count in zip(recipe.teacher.caches, recipe.teacher.sample_counts, strict=True)
        ]
        return caches[0] if len(caches) == 1 else TeacherCacheMix(caches)
    from upsampler.data import ImageDataset

    return ImageDataset(
        data.path,
        crop_size=data.crop_size,
        min_size=data.min_size,
        captions=data.captions,
        flip=data.flip,
        flip_vertical=data.flip_vertical,
    )


def build_generator(recipe: Recipe) -> GigaGANUpsampler:
    """The generator of ``[model]``: a preset (``preset = "nano"``) with overrides, or explicit arguments."""
    options = dict(recipe.model)
    preset = options.pop("preset", None)
    try:
        if preset is not None:
            config = GigaGANUpsampler.preset_config(
                preset,
                scale=options.pop("scale", 4),
                text_conditioning=options.pop("text_conditioning", False),
            )
            config.update(options)
            return GigaGANUpsampler(**config)
        return GigaGANUpsampler(**options)
    except (TypeError, ValueError) as error:  # say which table it came from
        raise RecipeError(f"[model]: {error}") from error


def build_discriminator(recipe: Recipe, generator: GigaGANUpsampler) -> GigaGANDiscriminator:
    options = dict(recipe.discriminator)
    options.setdefault("text_conditioning", generator.config.text_conditioning)
    options.setdefault("text_embed_dim", generator.config.text_embed_dim)
    try:
        return GigaGANDiscriminator(**options)
    except (TypeError, ValueError) as error:
        raise RecipeError(f"[discriminator]: {error}") from error


def init_generator(generator: GigaGANUpsampler, source: str) -> None:
    """Load ``train.init_from`` into ``generator``: a built-in name, a save_pretrained folder, a
    checkpoint folder of a run, or a Hub id of such a folder (found by the one model loader,
    :func:`upsampler.models.loading.locate`).

    The weights are read here, not through ``from_pretrained``, so that weights which do not
    fit get a message naming the keys and the config settings that differ, instead of
    diffusers' advice about arguments the recipe does not have.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from upsampler.models.loading import locate
    from upsampler.models.registry import ModelUnavailableError
    from upsampler.models.weights_check import tensor_mismatch

    try:
        path = locate(source)
    except ModelUnavailableError as error:
        raise RecipeError(f"train.init_from: {error}") from error
    if path.is_file():
        raise RecipeError(
            f"train.init_from: {source} is a single checkpoint file; init_from takes the "
            "weights of a model with this recipe's [model] (a folder with config.json), not "
            "another architecture (to learn from another model, make it the [teacher])"
        )
    if (path / "generator_ema" / "config.json").is_file():  # a checkpoint of a run
        path = path / "generator_ema"
    if not (path / "config.json").is_file():
        raise RecipeError(
            f"train.init_from: {source} is neither a built-in model, a save_pretrained folder "
            "(config.json + safetensors), a checkpoint folder of a run, nor a Hub id of one"
        )
    weights = path / "diffusion_pytorch_model.safetensors"
    if not weights.is_file():
        raise RecipeError(
            f"train.init_from: {path} has a config.json but no {weights.name}; point it at a "
            "folder written by save_pretrained or `upsampler export`, or at a run checkpoint"
        )
    try:
        loaded = load_file(weights)
    except (SafetensorError, OSError) as error:
        raise RecipeError(
            f"train.init_from: {weights} is not a readable safetensors file ({error})"
        ) from error
    problems = tensor_mismatch(
        {key: tuple(value.shape) for key, value in generator.state_dict().items()},
        {key: tuple(value.shape) for key, value in loaded.items()},
        expected_by="this recipe",
    )
    if problems:
        raise RecipeError(
            f"train.init_from: the weights in {weights} do not fit this recipe's [model]: "
            f"{problems}{_config_differences(generator, path)}; start from weights trained "
            "with the same [model] settings, or set [model] to match them"
        )
    generator.load_state_dict(loaded)


def _config_differences(generator: GigaGANUpsampler, path: Path) -> str:
    """ "; its config.json has encoder_channels=[8, 8] where the recipe has [8, 16]", or ""."""
    try:
        theirs = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return f"; {path / 'config.json'} is not readable JSON"
    ours = generator.config
    differing = [
        f"{key}={theirs[key]} where the recipe has {ours[key]}"
        for key in ours
        if not key.startswith("_") and key in theirs and theirs[key] != ours[key]
    ]
    return f"; its config.json has {', '.join(differing)}" if differing else ""


def build_teacher(recipe: Recipe, device: torch.device) -> torch.nn.Module | None:
    """The frozen teacher of ``teacher.model`` (None without one, or with a cache, which holds
    its outputs already), on ``device``, in eval mode, of the student's scale."""
    teacher_name = recipe.teacher.model
    if not teacher_name:
        return None
    from upsampler.models.loading import load_model
    from upsampler.models.registry import ModelUnavailableError

    try:
        teacher = load_model(teacher_name)
    except (ModelUnavailableError, ValueError, OSError) as error:
        raise RecipeError(f"teacher.model: {error}") from error
    if teacher.scale != recipe.scale:
        raise RecipeError(
            f"teacher.model {teacher_name} is a {teacher.scale}x model, the student "
            f"(model.scale) is {recipe.scale}x"
        )
    if teacher.text_conditioning:
        raise RecipeError(f"teacher.model {teacher_name} needs text; use an unconditional teacher")
    return (
        torch.nn.Module.to(teacher, device=device, dtype=torch.float32).eval().requires_grad_(False)
    )


def build_degradation(recipe: Recipe) -> DegradationPipeline:
    config = recipe.degradation
    try:
        if config.stages:
            return DegradationPipeline.from_config(config.stages, scale=recipe.scale)
        return DegradationPipeline.from_preset(config.preset, scale=recipe.scale)
    except ValueError as error:
        raise RecipeError(f"[degradation]: {error}") from error


def build_lpips(recipe: Recipe, device: torch.device):
    """LPIPS when the ground-truth or the teacher loss uses it, else None."""
    if recipe.loss.lpips <= 0 and not (recipe.teacher.enabled and recipe.teacher.lpips > 0):
        return None
    from upsampler.losses.lpips import load_lpips

    try:
        return load_lpips(recipe.loss.lpips_net, device=device)
    except ValueError as error:  # a weights file that cannot be read (a missing one is an OSError)
        raise RecipeError(f"LPIPS-{recipe.loss.lpips_net}: {error}") from error


def build_clip(recipe: Recipe, device: torch.device):
    loss = recipe.loss
    if loss.clip <= 0:
        return None
    from upsampler.losses.clip import ClipLoss

    return ClipLoss(loss.clip_model, loss.clip_weights).to(device)


def build_text_encoder(recipe: Recipe, generator: GigaGANUpsampler, device: torch.device):
    if not generator.text_conditioning:
        return None
    from upsampler.text import load_text_encoder

    text = recipe.text
    return load_text_encoder(
        text.backend,
        text.name,
        text.pretrained or None,
        device=device,
        random_weights=text.random_weights,
    )


@dataclass
class Optimisers:
    generator: torch.optim.Optimizer
    discriminator: torch.optim.Optimizer
    generator_schedule: torch.optim.lr_scheduler.LRScheduler
    discriminator_schedule: torch.optim.lr_scheduler.LRScheduler


def build_optimisers(
    recipe: Recipe, generator: torch.nn.Module, discriminator: torch.nn.Module
) -> Optimisers:
    """Adam for both networks, with the lr schedule of ``[optim]``."""
    optim = recipe.optim
    betas = tuple(optim.betas)

    def lr(base: float, model: torch.nn.Module) -> float:
        # Width-aware scaling: wider models take proportionally smaller steps.
        return base * optim.width_base / _model_width(model) if optim.width_base else base

    # Lazy R1 (StyleGAN2 App. B): R1 runs every r1_interval steps, so Adam's lr and betas are
    # rescaled by interval / (interval + 1) to keep the same effective optimisation.
    ratio = recipe.loss.r1_interval / (recipe.loss.r1_interval + 1)
    optimizer_g = torch.optim.Adam(
        generator.parameters(),
        lr=lr(optim.generator_lr, generator),
        betas=betas,
        weight_decay=optim.weight_decay,
    )
    optimizer_d = torch.optim.Adam(
        discriminator.parameters(),
        lr=lr(optim.discriminator_lr, discriminator) * ratio,
        betas=(betas[0] ** ratio, betas[1] ** ratio),
        weight_decay=optim.weight_decay,
    )

    def factor(step: int) -> float:
        if step < optim.lr_warmup_steps:
            return (step + 1) / optim.lr_warmup_steps
        if optim.schedule == "cosine":
            span = max(1, recipe.train.steps - optim.lr_warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - optim.lr_warmup_steps) / span)))
        return 1.0

    return Optimisers(
        optimizer_g,
        optimizer_d,
        torch.optim.lr_scheduler.LambdaLR(optimizer_g, factor),
        torch.optim.lr_scheduler.LambdaLR(optimizer_d, factor),
    )


def _model_width(model: torch.nn.Module) -> int:
    config = model.config
    return max(config.get("encoder_channels") or config.get("channels"))
