"""diffusers post-processing: any pipeline's images, 4x or 8x larger, in one line.

    from diffusers import StableDiffusionPipeline
    from upsampler import Upscaler
    from upsampler.integrations.diffusers import UpscaledPipeline

    base = StableDiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")
    pipe = UpscaledPipeline(base, Upscaler.from_pretrained("nano-4x"))
    images = pipe("a lighthouse at dusk", num_images_per_prompt=2).images   # 2048x2048 PIL

Calling an :class:`UpscaledPipeline` runs the base pipeline, asks it for float tensors (not PIL,
so nothing is rounded to 8 bits before upscaling), upscales every image with the GigaGAN
upsampler and returns what the base pipeline would have returned, with larger images. A
text-conditioned upsampler gets the prompt that made each image, in diffusers' order: with
``num_images_per_prompt=n``, images come prompt-major (p0, p0, ..., p1, p1, ...), and so do
their prompts. An unconditional upsampler ignores prompts.

Images that already exist go through :func:`upscale_pipeline_output`; latents (a pipeline's
``output_type="latent"``) are decoded by :func:`decode_latents` first.

The wrapper is a :class:`~diffusers.DiffusionPipeline` with two components, ``base`` (the whole
base pipeline) and ``upsampler`` (a :class:`GigaGANUpsampler`, or any model of the engine's
contract: AuraSR, a community checkpoint), so ``save_pretrained`` writes (for our models)

    model_index.json   {"base": ["stable_diffusion", "StableDiffusionPipeline"],
                        "upsampler": ["upsampler.models.generator", "GigaGANUpsampler"], ...}
    base/              the base pipeline's own save_pretrained folder
    upsampler/         an ordinary GigaGANUpsampler.save_pretrained folder

and ``UpscaledPipeline.from_pretrained(folder)`` loads it back. diffusers records a class that
is not its own (nor transformers') by its module path, and on loading imports that module and
looks up the class there, so the upsampler's entry names ``upsampler.models.generator``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import numpy_to_pil
from PIL import Image

from upsampler.inference.devices import resolve_device, resolve_dtype, usable_dtypes
from upsampler.inference.upscaler import UpscaleProgress, Upscaler
from upsampler.io.tensors import rgb_tensor
from upsampler.models.contract import UpsamplerModel
from upsampler.models.loading import load_model
from upsampler.text.base import TextEmbeddings, TextEncoder

__all__ = [
    "OUTPUT_TYPES",
    "UpscaledPipeline",
    "decode_latents",
    "expand_prompts",
    "upscale_pipeline_output",
]

#: What ``output_type`` may be, as in diffusers. "latent" returns decoded, upscaled float tensors
#: (B, 3, H, W) in [0, 1]: there is no latent of the upscaled image.
OUTPUT_TYPES = ("pil", "np", "pt", "latent")

Prompt = str | Sequence[str] | TextEmbeddings | None


class UpscaledPipeline(DiffusionPipeline):
    """A diffusers pipeline followed by a GigaGAN upsampler.

    Args:
        base: any :class:`~diffusers.DiffusionPipeline` that returns images.
        upsampler: an :class:`Upscaler` (its tiling and text encoder are kept), a bare model
            (GigaGAN, AuraSR, a community checkpoint from
            :func:`~upsampler.models.loading.load_model`), or anything ``load_model`` accepts
            (a built-in name, folder, checkpoint file or Hub id). Its model is registered as
            the ``upsampler`` component; ``save_pretrained`` saves it when it is a model of
            ours (GigaGAN, AuraSR), and refuses a community checkpoint (keep its file).
        text_encoder: for a text-conditioned upsampler: turns prompts into the embeddings it
            was trained with (not the base pipeline's text encoder). Default: the Upscaler's.
            It is not saved by ``save_pretrained``; pass it again to ``from_pretrained``.
        upscale_device: where the upsampler runs. Default: where the base pipeline executes
            (its ``_execution_device``, so CPU offloading is followed).
        upscale_dtype: the upsampler's precision ("fp32", "bf16", "fp16" or a torch dtype).
            Default: the base pipeline's dtype when the upsampler supports it on that device
            (never fp16 on the CPU), else fp32.

    Offloading, attention slicing and other per-pipeline switches belong to the base pipeline:
    call them on ``pipe.base``.
    """

    def __init__(
        self,
        base: DiffusionPipeline,
        upsampler: UpsamplerModel | Upscaler | str | os.PathLike,
        text_encoder: TextEncoder | None = None,
        upscale_device: str | torch.device | None = None,
        upscale_dtype: str | torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(base, DiffusionPipeline):
            raise TypeError(
                f"base must be a diffusers DiffusionPipeline, got {type(base).__name__}"
            )
        upscaler = None
        if isinstance(upsampler, str | os.PathLike):
            upsampler = load_model(upsampler)
        if isinstance(upsampler, Upscaler):
            upscaler, upsampler = upsampler, upsampler.model
            text_encoder = text_encoder if text_encoder is not None else upscaler.text_encoder
        _check_model(upsampler, "upsampler")
        self.register_modules(base=base, upsampler=upsampler)
        self.text_encoder = text_encoder
        self._upscale_device = None if upscale_device is None else resolve_device(upscale_device)
        if upscale_dtype is not None and self._upscale_device is not None:
            # an impossible pair fails now
            resolve_dtype(upscale_dtype, self._upscale_device, upsampler)
        self._upscale_dtype = upscale_dtype
        self._upscaler = upscaler

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> UpscaledPipeline:
        """Load a folder written by :meth:`save_pretrained` (diffusers' loader, plus one fix).

        Takes diffusers' ``from_pretrained`` arguments and this class's constructor arguments
        (``text_encoder=``, which is not saved, ``upscale_device=``, ``upscale_dtype=``), and
        components to use instead of loading them (``base=``, ``upsampler=``). diffusers passes
        ``torch_dtype`` only to components that are torch modules, not to a nested pipeline;
        here the base pipeline is cast to it after loading.
        """
        pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        dtype = kwargs.get("torch_dtype", kwargs.get("dtype"))
        if isinstance(dtype, dict):  # diffusers' per-component form
            dtype = dtype.get("base", dtype.get("default"))
        if isinstance(dtype, torch.dtype) and "base" not in kwargs:
            pipe.base.to(dtype)
        return pipe

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """diffusers' ``save_pretrained``: ``base/``, ``upsampler/`` and ``model_index.json``.

        Raises:
            TypeError: the upsampler is a community checkpoint (spandrel), which has no folder
                format of ours: save the base pipeline alone and keep the checkpoint file.
        """
        if not isinstance(self.upsampler, ModelMixin):
            raise TypeError(
                f"the upsampler is a {type(self.upsampler).__name__} "
                f"({getattr(self.upsampler, 'architecture', 'community checkpoint')}), which "
                "save_pretrained cannot write: save pipe.base and keep the checkpoint file, "
                "then build UpscaledPipeline(base, FILE) again"
            )
        super().save_pretrained(save_directory, **kwargs)

    # ------------------------------------------------------------------ where things run

    @property
    def device(self) -> torch.device:
        """The base pipeline's device (the upsampler follows it at call time by default)."""
        return self.base.device

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    @property
    def _execution_device(self) -> torch.device:
        return self.base._execution_device

    def to(self, *args: Any, **kwargs: Any) -> UpscaledPipeline:
        """Move or cast the base pipeline (same arguments as diffusers' ``to``); the upsampler
        moves with it to where it will run (unless pinned by ``upscale_device``/``_dtype``)."""
        self.base.to(*args, **kwargs)
        _ = self.upscaler  # builds the Upscaler for the new device and dtype, moving the model
        return self

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """Configure the base pipeline's denoising progress bar (e.g. ``disable=True``)."""
        self.base.set_progress_bar_config(**kwargs)

    @property
    def upscaler(self) -> Upscaler:
        """The :class:`Upscaler` the next call uses, on the device and dtype it resolves to now."""
        device = self._upscale_device or self.base._execution_device
        if self._upscale_dtype is not None:
            dtype = resolve_dtype(self._upscale_dtype, device, self.upsampler)
        else:
            usable = usable_dtypes(device, self.upsampler)
            dtype = self.base.dtype if self.base.dtype in usable else torch.float32
        current = self._upscaler
        if (
            current is None
            or current.model is not self.upsampler
            or current.device != device
            or current.dtype != dtype
            or current.text_encoder is not self.text_encoder
        ):
            self._upscaler = Upscaler(
                self.upsampler,
                device=device,
                dtype=dtype,
                text_encoder=self.text_encoder,
                channels_last=current.channels_last if current is not None else False,
            )
        return self._upscaler

    # ------------------------------------------------------------------ call

    @torch.no_grad()
    def __call__(
        self,
        *args: Any,
        output_type: str | None = "pil",
        return_dict: bool = True,
        upscale_prompt: Prompt = None,
        upscale_seed: int = 0,
        upscale_outscale: float | None = None,
        upscale_tile: int | None = None,
        upscale_truncation_psi: float = 1.0,
        upscale_progress: Callable[[UpscaleProgress], None] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run the base pipeline, then upscale its images.

        Every argument the base pipeline takes (``prompt``, ``num_images_per_prompt``,
        ``generator``, ``num_inference_steps``, ``height``...) is passed on to it unchanged.

        Args:
            output_type: "pil" (list of PIL images), "np" ((B, H, W, 3) float32 in [0, 1]),
                "pt" ((B, 3, H, W) in [0, 1], on the device and in the dtype the base images
                came in), or "latent": the base pipeline makes latents, its VAE decodes them
                here, and the upscaled images come back as for "pt" (there is no latent of
                the upscaled image; the base pipeline's safety checker and watermark, which
                diffusers skips for latents too, do not run).
            return_dict: True returns the base pipeline's output class (e.g.
                ``StableDiffusionPipelineOutput``) with ``images`` upscaled and every other
                field kept; False the tuple diffusers returns, images first.
            upscale_prompt: what a text-conditioned upsampler reads instead of the base
                pipeline's ``prompt``: one text, one per prompt (expanded by
                ``num_images_per_prompt``), one per image, or TextEmbeddings. Needed when the
                base pipeline gets ``prompt_embeds`` rather than text. Without a prompt (an
                unconditional base pipeline) the upsampler reads the empty prompt.
            upscale_seed: the seed of each image's noise z (see :meth:`Upscaler.upscale`).
            upscale_outscale: final factor when it is not the model's scale (8 with a 4x model
                runs it twice).
            upscale_tile: tile side in input pixels (default: chosen for the device's memory).
            upscale_truncation_psi: 1 keeps the upsampler's full variety, 0 its mean style.
            upscale_progress: called after every batch of tiles.

        Raises:
            ValueError: unknown ``output_type``, a text-conditioned upsampler without a text
                encoder, or given ``prompt_embeds`` without ``upscale_prompt`` (all checked
                before the base pipeline runs); a prompt count that does not match the images.
        """
        output_type = "pil" if output_type is None else output_type
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        signature = inspect.signature(self.base.__call__)
        arguments = signature.bind_partial(*args, **kwargs).arguments
        per_prompt = arguments.get("num_images_per_prompt")
        if per_prompt is None:
            parameter = signature.parameters.get("num_images_per_prompt")
            default = None if parameter is None else parameter.default
            per_prompt = default if isinstance(default, int) else 1
        prompt = upscale_prompt if upscale_prompt is not None else arguments.get("prompt")
        if self.upsampler.text_conditioning:
            if prompt is None and arguments.get("prompt_embeds") is not None:
                raise ValueError(
                    "the base pipeline gets prompt_embeds, not text, and the upsampler is "
                    "text-conditioned: pass upscale_prompt= (the texts, or TextEmbeddings from "
                    "the upsampler's own text encoder)"
                )
            _check_text_encoder(
                prompt, self.text_encoder, "UpscaledPipeline(..., text_encoder=...)"
            )

        # Float images from the base pipeline, never PIL: no 8-bit rounding before upscaling.
        decode_here = output_type == "latent" and getattr(self.base, "vae", None) is not None
        base_kwargs = dict(kwargs)
        if _accepts(signature, "output_type"):
            base_kwargs["output_type"] = "latent" if decode_here else "pt"
        if _accepts(signature, "return_dict"):
            base_kwargs["return_dict"] = return_dict
        result = self.base(*args, **base_kwargs)

        images = _images_of(result)
        if decode_here:
            images = decode_latents(images, self.base)
        elif _looks_like_latents(images):
            raise ValueError(
                f"{type(self.base).__name__} returned latents {tuple(images.shape)} although "
                "the wrapper asked for images; call it with output_type='latent' so that its "
                "VAE decodes them"
            )
        upscaled = _upscale(
            self.upscaler,
            images,
            prompt,
            num_images_per_prompt=per_prompt,
            output_type=output_type,
            seed=upscale_seed,
            outscale=upscale_outscale,
            tile=upscale_tile,
            truncation_psi=upscale_truncation_psi,
            progress=upscale_progress,
        )
        return _with_images(result, upscaled)


def _check_model(model: object, name: str) -> None:
    if not (isinstance(model, torch.nn.Module) and isinstance(model, UpsamplerModel)):
        raise TypeError(
            f"{name} must be an Upscaler, an upsampler model or a name load_model accepts, got "
            f"{type(model).__name__}"
        )


# ---------------------------------------------------------------------- existing images


def upscale_pipeline_output(
    output: Any,
    upscaler: Upscaler | UpsamplerModel,
    prompt: Prompt = None,
    *,
    num_images_per_prompt: int = 1,
    output_type: str | None = None,
    pipeline: DiffusionPipeline | None = None,
    vae: torch.nn.Module | None = None,
    seed: int = 0,
    outscale: float | None = None,
    tile: int | None = None,
    truncation_psi: float = 1.0,
    progress: Callable[[UpscaleProgress], None] | None = None,
) -> Any:
    """Upscale images a pipeline already made.

    Args:
        output: a pipeline output object (anything with ``.images``), the tuple a pipeline
            returns with ``return_dict=False``, or the images themselves: a PIL image or list
            of them, a NumPy array (H, W, 3) / (B, H, W, 3), a tensor (3, H, W) /
            (B, 3, H, W) in [0, 1], or latents (B, C, h, w) from ``output_type="latent"``.
        upscaler: an :class:`Upscaler`, or a bare model (any
            :class:`~upsampler.models.contract.UpsamplerModel`) run where it is.
        prompt: what made the images, for a text-conditioned upsampler (ignored by an
            unconditional one): one text, one per prompt of the pipeline call (expanded by
            ``num_images_per_prompt``, prompt-major as diffusers orders images), one per image,
            or TextEmbeddings; None reads the empty prompt.
        output_type: "pil", "np", "pt" or "latent" (= "pt"); default the kind given (decoded
            latents come back as "pt").
        pipeline, vae: decode latents with ``pipeline.vae`` (and its image processor), or
            with ``vae``; latents without either are an error.
        seed, outscale, tile, truncation_psi, progress: as in :meth:`Upscaler.upscale`.

    Returns:
        The same container with upscaled images: an output object of the same class (other
        fields kept), a tuple, a list, an array, a tensor or a single image.
    """
    if not isinstance(upscaler, Upscaler):
        _check_model(upscaler, "upscaler")
        weight = next(upscaler.parameters())
        usable = usable_dtypes(weight.device, upscaler)
        dtype = weight.dtype if weight.dtype in usable else torch.float32
        upscaler = Upscaler(upscaler, device=weight.device, dtype=dtype)
    if output_type is not None and output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
    if upscaler.text_conditioning:
        _check_text_encoder(prompt, upscaler.text_encoder, "Upscaler(..., text_encoder=...)")

    images = _images_of(output)
    if _looks_like_latents(images):
        if pipeline is None and vae is None:
            raise ValueError(
                f"these images look like latents {tuple(images.shape)} (output_type='latent'): "
                "pass pipeline= (the pipeline that made them; its VAE decodes them) or vae=, or "
                "ask the pipeline for output_type='pt'"
            )
        images = decode_latents(images, pipeline, vae=vae)
    upscaled = _upscale(
        upscaler,
        images,
        prompt,
        num_images_per_prompt=num_images_per_prompt,
        output_type=output_type,
        seed=seed,
        outscale=outscale,
        tile=tile,
        truncation_psi=truncation_psi,
        progress=progress,
    )
    return _with_images(output, upscaled)


@torch.no_grad()
def decode_latents(
    latents: torch.Tensor,
    pipeline: DiffusionPipeline | None = None,
    *,
    vae: torch.nn.Module | None = None,
) -> torch.Tensor:
    """Decode a pipeline's latents (B, C, h, w) into images (B, 3, H, W) in [0, 1].

    Undoes the latent scaling the way diffusers' pipelines do: ``latents * std / scaling_factor
    + mean`` when the VAE's config has ``latents_mean``/``latents_std`` (SDXL-style), else
    ``latents / scaling_factor + shift_factor`` (``shift_factor`` as in SD3, 0 when absent). A
    float16 VAE whose config sets ``force_upcast`` decodes in float32, as SDXL does. The result
    goes through ``pipeline.image_processor`` when there is one, else ``x / 2 + 0.5`` clamped.

    Args:
        latents: what the pipeline returned with ``output_type="latent"``. Packed latents
            (B, tokens, C), as Flux returns, are not supported: ask for ``output_type="pt"``.
        pipeline: the pipeline that made them (its ``vae`` and ``image_processor`` are used).
        vae: the VAE to use instead of ``pipeline.vae``.

    Returns:
        (B, 3, H, W) in [0, 1], on the VAE's execution device, float32 if upcast else its dtype.
    """
    vae = vae if vae is not None else getattr(pipeline, "vae", None)
    if vae is None:
        raise ValueError("decoding latents needs a VAE: pass pipeline= (with a .vae) or vae=")
    if latents.ndim != 4:
        raise ValueError(
            f"latents must be (B, C, h, w), got {tuple(latents.shape)}; packed latents (as Flux "
            "returns them) are not supported: ask the pipeline for output_type='pt' instead"
        )
    config = vae.config
    upcast = vae.dtype == torch.float16 and bool(getattr(config, "force_upcast", False))
    decode_dtype = torch.float32 if upcast else vae.dtype
    device = pipeline._execution_device if pipeline is not None else vae.device

    latents = latents.to(device, torch.float32)
    scaling = config.scaling_factor
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is not None and std is not None:
        shape = (1, latents.shape[1], 1, 1)
        mean = torch.tensor(mean, dtype=torch.float32, device=device).view(shape)
        std = torch.tensor(std, dtype=torch.float32, device=device).view(shape)
        latents = latents * std / scaling + mean
    else:
        latents = latents / scaling + (getattr(config, "shift_factor", None) or 0.0)

    if upcast:
        vae.to(dtype=torch.float32)
    try:
        image = vae.decode(latents.to(decode_dtype), return_dict=False)[0]
    finally:
        if upcast:
            vae.to(dtype=torch.float16)
    processor = getattr(pipeline, "image_processor", None)
    if processor is not None and hasattr(processor, "postprocess"):
        return processor.postprocess(image, output_type="pt")
    return (image / 2 + 0.5).clamp(0, 1)


# ---------------------------------------------------------------------- prompts


def expand_prompts(
    prompt: Prompt, count: int, num_images_per_prompt: int = 1
) -> list[str] | TextEmbeddings:
    """One prompt per image, for ``count`` images, in the order diffusers makes them.

    diffusers repeats each prompt's images together (``repeat_interleave``): prompts [p0, p1]
    with ``num_images_per_prompt=2`` give images p0, p0, p1, p1. A list (or TextEmbeddings) of
    P entries is read as one per prompt when P * n == count, one per image when P == count,
    and shared when P == 1; None is the empty prompt for every image.
    """
    if num_images_per_prompt < 1:
        raise ValueError(f"num_images_per_prompt must be >= 1, got {num_images_per_prompt}")
    if prompt is None:
        return [""] * count
    if isinstance(prompt, str):
        return [prompt] * count
    items = prompt if isinstance(prompt, TextEmbeddings) else list(prompt)
    if not isinstance(items, TextEmbeddings) and not all(isinstance(p, str) for p in items):
        raise TypeError("prompts must be strings, a list of strings or TextEmbeddings")
    total = len(items)
    if total * num_images_per_prompt == count:
        indices = [i for i in range(total) for _ in range(num_images_per_prompt)]
    elif total == count:
        indices = list(range(count))
    elif total == 1:
        indices = [0] * count
    else:
        raise ValueError(
            f"got {total} prompts for {count} images ({num_images_per_prompt} per prompt); "
            f"give 1 prompt, one per prompt of the call, or {count} (one per image)"
        )
    if isinstance(items, TextEmbeddings):
        return items.index(indices)
    return [items[i] for i in indices]


def _check_text_encoder(prompt: Prompt, encoder: TextEncoder | None, where: str) -> None:
    if encoder is None and not isinstance(prompt, TextEmbeddings):
        raise ValueError(
            "the upsampler is text-conditioned but has no text encoder to read the prompts "
            f"(the empty prompt included): pass one with {where}, e.g. "
            "upsampler.text.load_text_encoder(...), the encoder it was trained with; or pass "
            "TextEmbeddings as the prompt"
        )


# ---------------------------------------------------------------------- images


def _upscale(
    upscaler: Upscaler,
    images: Any,
    prompt: Prompt,
    *,
    num_images_per_prompt: int,
    output_type: str | None,
    seed: int,
    outscale: float | None,
    tile: int | None,
    truncation_psi: float,
    progress: Callable[[UpscaleProgress], None] | None,
) -> Any:
    """Upscale any kind of image batch and return it as ``output_type`` (default: its kind)."""
    lq, kind, single = _as_image_list(images)
    text = None
    if upscaler.text_conditioning:
        text = expand_prompts(prompt, len(lq), num_images_per_prompt)
    hq = upscaler.upscale(
        lq,
        text,
        seed=seed,
        tile=tile,
        outscale=outscale,
        truncation_psi=truncation_psi,
        progress=progress,
    )
    like = images if isinstance(images, torch.Tensor) else None
    return _to_output_type(hq, output_type or kind, single=single, like=like)


def _accepts(signature: inspect.Signature, name: str) -> bool:
    return name in signature.parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
    )


def _images_of(output: Any) -> Any:
    """The images of a pipeline output object, of a ``return_dict=False`` tuple, or as given."""
    if _is_pipeline_tuple(output):
        return output[0]
    if hasattr(output, "images"):
        return output.images
    return output


def _is_pipeline_tuple(output: Any) -> bool:
    # (images, nsfw_content_detected, ...): its first item is a whole batch, not one image.
    return (
        isinstance(output, tuple)
        and len(output) > 0
        and (
            isinstance(output[0], list)
            or (isinstance(output[0], np.ndarray | torch.Tensor) and output[0].ndim == 4)
        )
    )


def _with_images(output: Any, images: Any) -> Any:
    """``output`` with its images replaced: same output class (other fields kept), or tuple."""
    if _is_pipeline_tuple(output):
        return (images, *output[1:])
    if hasattr(output, "images"):
        if dataclasses.is_dataclass(output):
            return dataclasses.replace(output, images=images)
        output.images = images
        return output
    return images


def _looks_like_latents(images: Any) -> bool:
    """A tensor whose channel axis (first or last) is not an image's (1 or 3 channels)."""
    if not isinstance(images, torch.Tensor) or images.ndim not in (3, 4):
        return False
    channels_first = images.shape[-3]
    return channels_first not in (1, 3) and images.shape[-1] not in (1, 3)


def _as_image_list(images: Any) -> tuple[list[torch.Tensor], str, bool]:
    """Any image batch -> ([(3, H, W) float32 CPU in [0, 1]], kind "pil"/"np"/"pt", single)."""
    if isinstance(images, Image.Image):
        return [rgb_tensor(images)], "pil", True
    if isinstance(images, torch.Tensor):
        if images.ndim == 3:
            return [rgb_tensor(images)], "pt", True
        if images.ndim == 4:
            return [rgb_tensor(image) for image in images], "pt", False
        raise ValueError(f"image tensors must be (3, H, W) or (B, 3, H, W), got {images.shape}")
    if isinstance(images, np.ndarray):
        if images.ndim in (2, 3):
            return [rgb_tensor(images)], "np", True
        if images.ndim == 4:
            return [rgb_tensor(image) for image in images], "np", False
        raise ValueError(f"image arrays must be (H, W, 3) or (B, H, W, 3), got {images.shape}")
    if isinstance(images, list | tuple):
        if not images:
            raise ValueError("no images given")
        parts = [_as_image_list(image) for image in images]
        kinds = {kind for _, kind, _ in parts}
        if len(kinds) > 1 or not all(single for _, _, single in parts):
            raise ValueError("a list of images must hold single images of one kind")
        return [part[0][0] for part in parts], kinds.pop(), False
    raise TypeError(
        "images must be PIL images, NumPy arrays or tensors (or a pipeline output holding "
        f"them), got {type(images).__name__}"
    )


def _to_output_type(
    hq: list[torch.Tensor], output_type: str, *, single: bool, like: torch.Tensor | None
) -> Any:
    """(3, H, W) float32 CPU images -> diffusers' kinds: pt/latent (B, 3, H, W) on ``like``'s
    device and dtype, np (B, H, W, 3) float32, pil a list (``numpy_to_pil``'s rounding).
    Images of different sizes stay a list; ``single`` returns the one image itself."""
    same_size = len({tuple(image.shape) for image in hq}) == 1
    if output_type in ("pt", "latent"):
        device = like.device if like is not None else torch.device("cpu")
        dtype = like.dtype if like is not None and like.is_floating_point() else torch.float32
        tensors = [image.to(device, dtype) for image in hq]
        if single:
            return tensors[0]
        return torch.stack(tensors) if same_size else tensors
    arrays = [image.permute(1, 2, 0).numpy().astype(np.float32) for image in hq]
    if output_type == "np":
        if single:
            return arrays[0]
        return np.stack(arrays) if same_size else arrays
    pil = [numpy_to_pil(array[None])[0] for array in arrays]
    return pil[0] if single else pil
