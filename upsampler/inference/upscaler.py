"""The Upscaler: any super-resolution model run tile by tile over images of any size.

It runs every model the loader (:mod:`upsampler.models.loading`) gives: our
:class:`GigaGANUpsampler`, AuraSR's generator, and community checkpoints through spandrel,
calling only the model contract (:class:`upsampler.models.contract.UpsamplerModel`): scale,
size rule, dtypes, text, per-image styles, ``forward(..., add_input=False)`` and
``interpolated_input`` (GigaGAN's bicubic residual, which the engine adds in float32 whatever
the model's dtype), and the activation estimate that sizes tiles.

    from upsampler import Upscaler

    upscaler = Upscaler.from_pretrained("/path/to/model")           # or Upscaler(model)
    hq_image = upscaler.upscale(pil_image)                          # PIL in, PIL out, 4x
    hq_arrays = upscaler.upscale([array_a, array_b], outscale=8)    # NumPy in, NumPy out

Every image gets one z (from ``seed``), shared by all of its tiles, so its style does not change
from tile to tile; the same seed gives the same output whatever the tile batch size. The frames
of a clip share one z too (:meth:`Upscaler.clip`, :meth:`Upscaler.upscale_video`, docs/video.md),
so the detail the model invents does not flicker from frame to frame. The image
stays on the CPU: only batches of tiles move to the device, and their outputs come straight
back to be blended (:mod:`upsampler.inference.tiling`). A CUDA out-of-memory error halves the
tile batch, then the tile, and tries again. A tile batch with NaN/Inf in its output is run
again in float32 when the model runs in bf16/fp16, and raises :class:`NonFiniteOutputError`
if it is still not finite: a broken model never writes a black image.

The library never prints: pass ``progress=`` to hear about tiles.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from upsampler.inference import memory
from upsampler.inference.devices import resolve_device, resolve_dtype, usable_dtypes
from upsampler.inference.memory import DEFAULT_OVERLAP
from upsampler.inference.tiling import TilePlan, plan_tiles, tiled_apply
from upsampler.io.images import from_pil, to_pil
from upsampler.io.tensors import (
    array_to_pixels,
    merge_channels,
    pixels_to_array,
    split_channels,
)
from upsampler.models.contract import UpsamplerModel
from upsampler.models.folding import folded_styles, unfolded
from upsampler.models.loading import load_model
from upsampler.models.weights_check import first_few
from upsampler.text.base import TextEmbeddings, TextEncoder, encode_texts

BACKENDS = ("torch", "onnxruntime")
# Alpha below this counts as fully transparent when colour is un-premultiplied (a quarter of
# 8-bit alpha's smallest step).
MIN_ALPHA = 1 / 1024

ImageInput = Image.Image | np.ndarray | torch.Tensor


@dataclass(frozen=True)
class _Style:
    """One image's (or clip's) styles: ``ws`` (1, ...) or None, its text, the seed they came
    from, and the seed generator's state after z (where AuraSR's input noise is drawn)."""

    ws: torch.Tensor | None
    text: TextEmbeddings | None
    seed: int
    truncation_psi: float
    after_z: torch.Tensor


class NonFiniteOutputError(ValueError):
    """The model's output held NaN or Inf values, even in float32: nothing was written for it."""


@dataclass(frozen=True)
class UpscaleProgress:
    """Where :meth:`Upscaler.upscale` is: image ``image`` of ``images`` (0-based), model pass
    ``pass_index`` of ``passes`` (2 when a 4x model makes 16x), ``tiles_done`` of ``tiles``."""

    image: int
    images: int
    pass_index: int
    passes: int
    tiles_done: int
    tiles: int


class Upscaler:
    """Tiled, memory-bounded inference with any model of the engine's contract.

    Args:
        model: an :class:`~upsampler.models.contract.UpsamplerModel` (GigaGAN, AuraSR, or a
            community checkpoint from :func:`~upsampler.models.loading.load_model`); it is
            moved to ``device`` and ``dtype`` in place and set to eval.
        device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:1", "mps".
        dtype: "auto" (bf16/fp16 on GPUs, fp32 on the CPU, stepping down to what the model
            supports), "fp32", "fp16", "bf16" or a torch dtype. The network runs in it; the
            bicubic residual, the blending and the output stay in fp32. fp16 on the CPU, or a
            precision the model does not support, is an error.
        text_encoder: turns prompts into embeddings for a text-conditioned model; without one,
            pass :class:`TextEmbeddings` as ``prompt``.
        channels_last: run tiles in channels-last memory format. None (the default) uses it
            on the CPU, where oneDNN's convolutions run about 1.3x faster in it, and not on
            other devices.
        compile: wrap the model in ``torch.compile`` (first call slow, later ones faster).
        fold_styles: run each image's modulated convolutions as plain convolutions, with the
            kernels of its styles computed once per image instead of once per tile and layer
            (:mod:`upsampler.models.folding`; the same output to float rounding). False keeps
            the per-sample path the model trains with.
        backend: "torch" (default), or "onnxruntime": each image's folded model is exported to
            an ONNX graph once and run by ONNX Runtime on the CPU, in float32
            (:mod:`upsampler.inference.onnx`; needs ``upsampler[onnx]``). A model loaded from an
            ``.onnx`` file always runs in ONNX Runtime.
    """

    def __init__(
        self,
        model: UpsamplerModel,
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        text_encoder: TextEncoder | None = None,
        channels_last: bool | None = None,
        compile: bool = False,
        fold_styles: bool = True,
        backend: str = "torch",
    ):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend == "onnxruntime":
            from upsampler.inference.onnx import OnnxRuntimeBackend, OnnxUpsampler

            if str(device) not in ("auto", "cpu"):
                raise ValueError(f"the onnxruntime backend runs on the CPU, not on {device}")
            device = "cpu"
            if not fold_styles:
                raise ValueError("the onnxruntime backend exports folded styles: fold_styles=True")
            if not isinstance(model, OnnxUpsampler):
                model = OnnxRuntimeBackend(model)
        self.backend = backend
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device, model)
        # nn.Module.to, not ModelMixin.to: the latter logs a warning about fp32 modules (this
        # model has none), and the library never prints.
        self.model = nn.Module.to(model, device=self.device, dtype=self.dtype).eval()
        if channels_last is None:
            channels_last = self.device.type == "cpu"
        if channels_last:
            # Module.to(memory_format=...) rejects the 5-D kernel banks: convert 4-D weights only.
            for parameter in self.model.parameters():
                if parameter.ndim == 4:
                    parameter.data = parameter.data.contiguous(memory_format=torch.channels_last)
        self.channels_last = channels_last
        self.fold_styles = fold_styles
        self.text_encoder = text_encoder
        self._forward = torch.compile(self.model) if compile else self.model

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        text_encoder: TextEncoder | None = None,
        channels_last: bool | None = None,
        compile: bool = False,
        fold_styles: bool = True,
        backend: str = "torch",
        revision: str | None = None,
    ) -> Upscaler:
        """Load a built-in model name, a ``save_pretrained`` folder, an AuraSR folder
        (``config.json`` + ``model.safetensors``, see docs/aurasr.md), a community checkpoint
        file (spandrel: ESRGAN, Real-ESRGAN, SwinIR, HAT, SPAN, ...), or a Hub id (a repository
        or one file in it; ``revision`` is its branch, tag or commit). See docs/models.md.

        Raises:
            ModelUnavailableError, ModelWeightsError, CheckpointError, FileNotFoundError,
                ValueError: see :func:`upsampler.models.loading.load_model`.
        """
        return cls(
            load_model(name_or_path, revision=revision),
            device=device,
            dtype=dtype,
            text_encoder=text_encoder,
            channels_last=channels_last,
            compile=compile,
            fold_styles=fold_styles,
            backend=backend,
        )

    # ------------------------------------------------------------------ contract

    @property
    def scale(self) -> int:
        return self.model.scale

    @property
    def size_multiple(self) -> int:
        return self.model.size_multiple

    @property
    def text_conditioning(self) -> bool:
        return self.model.text_conditioning

    @property
    def supported_dtypes(self) -> tuple[torch.dtype, ...]:
        return usable_dtypes(self.device, self.model)

    # ------------------------------------------------------------------ memory

    def estimate_tile_bytes(self, tile: int, batch_size: int = 1) -> int:
        """A rough upper bound of the device memory one forward of ``batch_size`` tiles takes."""
        return memory.estimate_tile_bytes(self.model, self.dtype, tile, batch_size)

    def available_bytes(self) -> int:
        """Memory the tiles may use: 60% of free GPU memory, or 25% of available RAM."""
        return memory.available_bytes(self.device)

    def auto_tile(
        self,
        height: int | None = None,
        width: int | None = None,
        *,
        batch_size: int = 1,
        overlap: int = DEFAULT_OVERLAP,
    ) -> int:
        """The tile side for an image of ``height x width`` (input pixels): the largest
        candidate up to the device's preferred size that fits :meth:`available_bytes`, then the
        one that covers the image with the fewest pixels (:func:`memory.auto_tile`)."""
        budget = self.available_bytes()
        return memory.auto_tile(
            size_multiple=self.size_multiple,
            device_type=self.device.type,
            fits=lambda tile: self.estimate_tile_bytes(tile, batch_size) <= budget,
            height=height,
            width=width,
            overlap=overlap,
            constant_work_per_pixel=getattr(self.model, "work_per_pixel_is_constant", False),
        )

    # ------------------------------------------------------------------ upscale

    def upscale(
        self,
        images: ImageInput | Sequence[ImageInput],
        prompt: str | Sequence[str] | TextEmbeddings | None = None,
        *,
        seed: int = 0,
        tile: int | None = None,
        tile_overlap: int | None = None,
        batch_size: int | None = None,
        outscale: float | None = None,
        truncation_psi: float = 1.0,
        progress: Callable[[UpscaleProgress], None] | None = None,
    ) -> Any:
        """Upscale one image or a list; each comes back as the same kind, ``outscale`` times larger.

        Args:
            images: PIL images (any mode: alpha, grey, palette, 16-bit grey...); NumPy arrays
                (H, W) or (H, W, C), C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA, uint8, uint16
                or float in [0, 1]; float tensors (3, H, W) or (B, 3, H, W) in [0, 1]. Alpha is
                upscaled with bicubic interpolation, not the model (the model would invent
                texture in masks); the colour goes through the model premultiplied by alpha, so
                what hides under transparent pixels cannot bleed into visible ones (where the
                output is transparent its colour is 0); greyscale runs through the model as RGB
                and returns as luma.
            prompt: for text-conditioned models: one prompt for all, one per image, or
                precomputed TextEmbeddings (1 or one per image); None means the empty prompt.
                Must be None for unconditional models.
            seed: the seed of every image's z (so an image's output does not depend on the
                others in the list).
            tile: tile side in input pixels, a multiple of ``size_multiple``; by default the
                largest that fits in memory, up to a speed-optimal size per device.
            tile_overlap: input pixels shared by neighbouring tiles (blended, seam-free), at
                most half a tile; by default 16 (capped at half the tile).
            batch_size: tiles per forward pass; by default 1 on the CPU (fastest there) and 4
                on GPUs. The output does not depend on it (up to float rounding, ~1e-5).
            outscale: the final factor (default ``scale``). The model is applied as many times
                as needed to reach at least it (a 4x model twice for 8x or 16x; the second pass
                costs 16 times the first), then a bicubic, antialiased resize gives exactly
                ``round(H * outscale) x round(W * outscale)``.
            truncation_psi: 1 keeps the model's full variety, 0 its mean style.
            progress: called after every batch of tiles with an :class:`UpscaleProgress`.

        Returns:
            The same kind as ``images`` (a list for a list); outputs are clamped to [0, 1];
            tensors come back on their own device and dtype.

        Raises:
            NonFiniteOutputError: the model's output held NaN/Inf even in float32 (its weights
                are broken); nothing is returned for any of ``images``.
        """
        single = not isinstance(images, list | tuple)
        items = [images] if single else list(images)
        if not items:
            raise ValueError("no images given")
        jobs, rebuilders = [], []
        for item in items:
            item_jobs, rebuild = _prepare(item)
            jobs.extend(item_jobs)
            rebuilders.append((len(item_jobs), rebuild))
        text = self._text_embeddings(prompt, len(jobs))
        passes, factor, batch_size, tile_overlap = self._options(
            outscale, tile, tile_overlap, batch_size
        )

        results = []
        with torch.inference_mode():
            for index, (rgb, alpha) in enumerate(jobs):
                image_text = None if text is None else text.index([index if len(text) > 1 else 0])

                def report(done: int, total: int, pass_index: int, index: int = index) -> None:
                    if progress is not None:
                        progress(UpscaleProgress(index, len(jobs), pass_index, passes, done, total))

                with self._image_style(image_text, seed, truncation_psi) as style:
                    results.append(
                        self._upscale_job(
                            rgb,
                            alpha,
                            style,
                            passes=passes,
                            factor=factor,
                            tile=tile,
                            overlap=tile_overlap,
                            batch_size=batch_size,
                            on_tiles=report,
                        )
                    )

        outputs, start = [], 0
        for count, rebuild in rebuilders:
            outputs.append(rebuild(results[start : start + count]))
            start += count
        return outputs[0] if single else outputs

    @contextlib.contextmanager
    def clip(
        self,
        prompt: str | TextEmbeddings | None = None,
        *,
        seed: int = 0,
        tile: int | None = None,
        tile_overlap: int | None = None,
        batch_size: int | None = None,
        outscale: float | None = None,
        truncation_psi: float = 1.0,
        progress: Callable[[UpscaleProgress], None] | None = None,
    ) -> Iterator[Callable[[np.ndarray], np.ndarray]]:
        """One style for many frames: yields ``upscale_frame(array) -> array``.

        The frames of a clip (a video, an animated image) share one ``z`` and one set of
        styles, drawn once from ``seed``, and the kernels folded from them are computed once
        for the whole clip: the texture the model invents does not re-roll from frame to frame
        (temporal stability), and no frame pays for the styles again. Each frame is upscaled
        exactly as :meth:`upscale` upscales a NumPy array (same arguments, same output for the
        first frame); ``progress`` reports its tiles with ``image`` 0 of 1.

            with upscaler.clip(seed=7) as upscale_frame:
                for frame in frames:               # (H, W, C) uint8/uint16/float arrays
                    write(upscale_frame(frame))
        """
        text = self._text_embeddings(prompt, 1)
        passes, factor, batch_size, tile_overlap = self._options(
            outscale, tile, tile_overlap, batch_size
        )

        def report(done: int, total: int, pass_index: int) -> None:
            if progress is not None:
                progress(UpscaleProgress(0, 1, pass_index, passes, done, total))

        with contextlib.ExitStack() as stack:
            with torch.inference_mode():  # the folded kernels are made as upscale() makes them
                style = stack.enter_context(self._image_style(text, seed, truncation_psi))

            def upscale_frame(frame: np.ndarray) -> np.ndarray:
                if frame.ndim not in (2, 3) or (
                    frame.ndim == 3 and frame.shape[2] not in (1, 2, 3, 4)
                ):
                    raise ValueError(f"frames must be (H, W) or (H, W, 1|2|3|4), got {frame.shape}")
                pixels = array_to_pixels(frame)
                rgb, alpha = split_channels(pixels)
                with torch.inference_mode():
                    rgb, alpha = self._upscale_job(
                        rgb,
                        alpha,
                        style,
                        passes=passes,
                        factor=factor,
                        tile=tile,
                        overlap=tile_overlap,
                        batch_size=batch_size,
                        on_tiles=report,
                    )
                return pixels_to_array(merge_channels(rgb, alpha, pixels.shape[2]), like=frame)

            yield upscale_frame

    def upscale_video(
        self,
        source: str | os.PathLike,
        target: str | os.PathLike,
        prompt: str | TextEmbeddings | None = None,
        **options: Any,
    ) -> Any:
        """Upscale a video file (or an animated GIF/WebP/PNG) into ``target``, streamed and
        resumable, with one style for the whole clip; audio, subtitles and metadata copied.

        See :func:`upsampler.inference.video.upscale_video` for the options (``seed``,
        ``outscale``, ``codec``, ``crf``, ``pix_fmt``, ``fps``, ``segment_seconds``,
        ``progress``, ...) and docs/video.md. Returns its :class:`VideoResult`.
        """
        from upsampler.inference.video import upscale_video

        return upscale_video(self, source, target, prompt=prompt, **options)

    def output_size(self, height: int, width: int, outscale: float | None) -> tuple[int, int]:
        """(height, width) of the output of an ``height x width`` input at ``outscale``."""
        factor = outscale if outscale is not None else self.scale
        return round(height * factor), round(width * factor)

    def _options(
        self,
        outscale: float | None,
        tile: int | None,
        tile_overlap: int | None,
        batch_size: int | None,
    ) -> tuple[int, float, int, int]:
        """Checked (passes, factor, batch_size, tile_overlap) for :meth:`upscale` and :meth:`clip`."""
        passes = self.passes(outscale)
        factor = outscale if outscale is not None else self.scale
        if batch_size is None:
            batch_size = 1 if self.device.type == "cpu" else 4
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if tile is not None and (tile < 1 or tile % self.size_multiple):
            raise ValueError(
                f"tile must be a positive multiple of {self.size_multiple} for this model, got {tile}"
            )
        if tile_overlap is None:
            tile_overlap = DEFAULT_OVERLAP if tile is None else min(DEFAULT_OVERLAP, tile // 2)
        elif tile_overlap < 0 or (tile is not None and tile_overlap > tile // 2):
            limit = "" if tile is None else f" (at most {tile // 2} for tile {tile})"
            raise ValueError(f"tile_overlap must be in [0, tile / 2]{limit}, got {tile_overlap}")
        return passes, factor, batch_size, tile_overlap

    @contextlib.contextmanager
    def _image_style(
        self, text: TextEmbeddings | None, seed: int, truncation_psi: float
    ) -> Iterator[_Style]:
        """The styles of one image (or one clip) from ``seed``, folded into the model's kernels
        for the duration when ``fold_styles`` is on."""
        generator = torch.Generator().manual_seed(seed)  # CPU: the same z on every device
        ws = self._styles(text, generator, truncation_psi)
        style = _Style(ws, text, seed, truncation_psi, generator.get_state())
        folding = (
            folded_styles(self.model, ws, text, channels_last=self.channels_last)
            if self.fold_styles
            else contextlib.nullcontext()
        )
        with folding:
            yield style

    def _upscale_job(
        self,
        rgb: torch.Tensor,
        alpha: torch.Tensor | None,
        style: _Style,
        *,
        passes: int,
        factor: float,
        tile: int | None,
        overlap: int,
        batch_size: int,
        on_tiles: Callable[[int, int, int], None],
    ) -> Job:
        """One image (rgb (1, 3, H, W), alpha (1, 1, H, W) or None) through every pass and the
        final resize, at the given style: (rgb, alpha) at ``factor`` times the size."""
        out_size = (round(rgb.shape[-2] * factor), round(rgb.shape[-1] * factor))
        if min(out_size) < 1:
            raise ValueError(f"outscale {factor} turns {tuple(rgb.shape[-2:])} into nothing")
        # Premultiplied: the colour under transparent pixels (often arbitrary, e.g. a matte
        # left by the editor) must not reach the model, which would spread it into the
        # visible edge as a fringe.
        hq = rgb if alpha is None else rgb * alpha
        for pass_index in range(passes):
            hq = self._upscale_rgb(
                hq.clamp(0.0, 1.0),
                style,
                tile=tile,
                overlap=overlap,
                batch_size=batch_size,
                on_tiles=lambda done, total, pass_index=pass_index: on_tiles(
                    done, total, pass_index
                ),
            )
        # Clamped before the resize, as between passes: the resize acts on the image the
        # passes made, so outscale 8 is outscale 16 reduced by half. (Resizing the unclamped
        # output let overshoot leak into neighbours: 4/255 on a tiny model.)
        hq = hq.clamp(0.0, 1.0)
        if tuple(hq.shape[-2:]) != out_size:
            hq = _resize(hq, out_size).clamp(0.0, 1.0)
        if alpha is not None:
            alpha = _resize(alpha, out_size).clamp(0.0, 1.0)
            hq = _unpremultiply(hq, alpha)
        return hq, alpha

    def passes(self, outscale: float | None) -> int:
        """How many times :meth:`upscale` runs the model to reach ``outscale`` (default: scale)."""
        if outscale is None:
            return 1
        if not outscale > 0 or not math.isfinite(outscale):
            raise ValueError(f"outscale must be a positive number, got {outscale}")
        if self.scale == 1:  # a restoration model (denoise, deblock): once, then the resize
            return 1
        return max(1, math.ceil(math.log(outscale) / math.log(self.scale) - 1e-9))

    def _text_embeddings(
        self, prompt: str | Sequence[str] | TextEmbeddings | None, count: int
    ) -> TextEmbeddings | None:
        if not self.text_conditioning:
            if prompt is not None:
                raise ValueError(
                    "this model is unconditional (no text branch); prompt must be None"
                )
            return None
        if not isinstance(prompt, TextEmbeddings) and self.text_encoder is None:
            raise ValueError(
                "this model is text-conditioned: pass prompt=TextEmbeddings(...) or give the "
                "Upscaler a text encoder (text_encoder=upsampler.text.load_text_encoder(...))"
            )
        text = encode_texts("" if prompt is None else prompt, self.text_encoder)
        if len(text) not in (1, count):
            raise ValueError(f"got {len(text)} prompts for {count} images; give 1 or {count}")
        return text.to("cpu")

    def _styles(
        self, text: TextEmbeddings | None, generator: torch.Generator, truncation_psi: float
    ) -> torch.Tensor | None:
        """ws (1, ...): the one z of this image, shared by all its tiles; None for models
        without styles. Made in the model's current dtype."""
        if not self.model.uses_styles:
            return None
        return self.model.image_styles(text, generator=generator, truncation_psi=truncation_psi)

    def _upscale_rgb(
        self,
        lq: torch.Tensor,
        style: _Style,
        *,
        tile: int | None,
        overlap: int,
        batch_size: int,
        on_tiles: Callable[[int, int], None],
    ) -> torch.Tensor:
        """One model pass over (1, 3, H, W) on the CPU -> (1, 3, scale*H, scale*W) float32 CPU.

        The network runs in ``dtype``; its interpolated-input residual (GigaGAN's bicubic base)
        is added here in float32, from the float32 tile, so 16-bit inputs keep their precision
        in bf16/fp16. A tile batch whose output is not finite is run again in float32; if it is
        still not finite, :class:`NonFiniteOutputError`.
        """
        ws, text, seed, truncation_psi = style.ws, style.text, style.seed, style.truncation_psi
        noise_std = self.model.input_noise_std
        if noise_std:
            # AuraSR perturbs its input with Gaussian noise (a training augmentation its
            # reference keeps at inference). Drawn once for the whole image, after z, from the
            # image's seed: overlapping tiles see the same pixels, and the seed fixes the output
            # (every frame of a clip gets the same noise, as it gets the same z).
            generator = torch.Generator()
            generator.set_state(style.after_z)
            noise = torch.randn(lq.shape, generator=generator)
            lq = (lq + noise_std * noise).clamp(0.0, 1.0)
        device_text = None if text is None else text.to(self.device)  # the model casts it
        ws_fp32 = None  # the styles made in float32, on the first retry
        if tile is None:
            tile = self.auto_tile(
                lq.shape[-2], lq.shape[-1], batch_size=batch_size, overlap=overlap
            )
            overlap = min(overlap, tile // 2)
        plan, tiles_done = None, 0

        def forward(tiles: torch.Tensor) -> torch.Tensor:
            nonlocal ws_fp32, tiles_done
            count = tiles.shape[0]
            lq_fp32 = tiles.to(self.device, non_blocking=True)
            tile_text = None if device_text is None else device_text.index([0] * count)
            detail = self._network(self._forward, lq_fp32, tile_text, ws, self.dtype)
            finite = torch.isfinite(detail).flatten(1).all(dim=1)
            retried = False
            if not finite.all() and self.dtype != torch.float32:
                # Old GPUs without bf16 overflow in fp16; fp32 is the same model without the
                # overflow. The retry costs one more forward of this batch only.
                retried = True
                with self._in_fp32(), unfolded(self.model):
                    if ws_fp32 is None:
                        # A fresh generator from the seed draws the same z first.
                        ws_fp32 = self._styles(
                            text, torch.Generator().manual_seed(seed), truncation_psi
                        )
                    detail = self._network(self.model, lq_fp32, tile_text, ws_fp32, torch.float32)
                finite = torch.isfinite(detail).flatten(1).all(dim=1)
            if not finite.all():
                first = tiles_done + int((~finite).nonzero()[0, 0])
                raise self._non_finite_error(plan, first, retried=retried)
            tiles_done += count
            base = self.model.interpolated_input(lq_fp32, detail.shape[-2:])
            hq = detail.float() if base is None else base + detail.float()
            return hq.cpu()

        def attempt(tile: int, batch_size: int) -> torch.Tensor:
            nonlocal plan, tiles_done
            plan = plan_tiles(
                lq.shape[-2],
                lq.shape[-1],
                tile=tile,
                overlap=min(overlap, tile // 2),
                size_multiple=self.size_multiple,
                scale=self.scale,
                # Two pixels at the lowest level: group norms fail on 1x1 maps of thin layers.
                min_side=min(self.model.min_size, tile),
            )
            tiles_done = 0
            return tiled_apply(lq, forward, plan, batch_size=batch_size, on_tiles=on_tiles)

        return memory.with_memory_backoff(
            attempt,
            tile=tile,
            batch_size=batch_size,
            size_multiple=self.size_multiple,
            device=self.device,
        )

    def _network(
        self,
        model: Callable[..., Any],
        lq: torch.Tensor,
        text: TextEmbeddings | None,
        ws: torch.Tensor | None,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """The network's part of hq (without the interpolated input) for float32 tiles ``lq``
        (N, 3, th, tw) on the device, run in ``dtype``: (N, 3, scale*th, scale*tw) in it."""
        lq = lq.to(dtype)
        if self.channels_last:
            lq = lq.contiguous(memory_format=torch.channels_last)
        if ws is not None:
            ws = ws.expand(lq.shape[0], *ws.shape[1:])
        return model(lq, text, ws=ws, add_input=False).hq

    @contextlib.contextmanager
    def _in_fp32(self) -> Iterator[None]:
        """The model cast to float32 in place for the duration, then back to ``dtype``.

        No second copy of the weights is kept: the fp32 weights exist only while a batch is
        retried, and the way back is exact (every bf16 or fp16 value is an fp32 value).
        """
        # Outside inference mode: parameters made inside it could never again take part in
        # autograd (training the same model object later would fail).
        with torch.inference_mode(False), torch.no_grad():
            nn.Module.to(self.model, dtype=torch.float32)
        try:
            yield
        finally:
            with torch.inference_mode(False), torch.no_grad():
                nn.Module.to(self.model, dtype=self.dtype)

    def _non_finite_error(
        self, plan: TilePlan, index: int, *, retried: bool
    ) -> NonFiniteOutputError:
        y, x = plan.origins()[index]
        where = (
            f"tile {index + 1} of {plan.num_tiles} (input rows {y}-{y + plan.tile_height - 1}, "
            f"columns {x}-{x + plan.tile_width - 1})"
        )
        precision = (
            f"even in fp32 (after {str(self.dtype).removeprefix('torch.')})"
            if retried
            else f"in {str(self.dtype).removeprefix('torch.')}"
        )
        broken = [
            name
            for name, tensor in self.model.state_dict().items()
            if tensor.is_floating_point() and not torch.isfinite(tensor).all()
        ]
        if broken:
            cause = (
                f"its weights hold NaN/Inf values ({first_few(broken)}), so the weights file "
                "is corrupt or comes from a training run that diverged; export it again from a "
                "good checkpoint, or use another model"
            )
        else:
            cause = (
                "its weights are finite but may still be corrupt (values far too large), or "
                "this image is far from what it was trained on; try another model"
            )
        return NonFiniteOutputError(
            f"the model produced NaN/Inf values for {where} {precision}: {cause}"
        )


def _unpremultiply(premultiplied: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Straight colour from premultiplied colour (B, 3, H, W) and alpha (B, 1, H, W), in [0, 1].

    Where alpha is below :data:`MIN_ALPHA` the pixel is transparent and its colour 0 (dividing
    there would only amplify noise). Elsewhere the quotient is clamped to [0, 1]: the model's
    detail and bicubic overshoot are not bounded by alpha. Any error in the colour is divided by
    alpha, and multiplied by it again when the image is composited, so what shows is unchanged.
    """
    colour = premultiplied / alpha.clamp(min=MIN_ALPHA)
    return torch.where(alpha >= MIN_ALPHA, colour, 0.0).clamp(0.0, 1.0)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of (B, C, H, W), antialiased when shrinking."""
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=shrinking)


# ---------------------------------------------------------------------- input kinds
# Each input becomes jobs (rgb (1, 3, H, W), alpha (1, 1, H, W) or None), float32 on the CPU,
# plus a function that rebuilds the caller's kind from the jobs' results.

Job = tuple[torch.Tensor, torch.Tensor | None]
Rebuild = Callable[[list[Job]], Any]


def _prepare(item: ImageInput) -> tuple[list[Job], Rebuild]:
    if isinstance(item, Image.Image):
        return _prepare_pil(item)
    if isinstance(item, np.ndarray):
        return _prepare_numpy(item)
    if isinstance(item, torch.Tensor):
        return _prepare_tensor(item)
    raise TypeError(
        f"images must be PIL images, NumPy arrays or tensors, got {type(item).__name__}"
    )


def _prepare_pil(image: Image.Image) -> tuple[list[Job], Rebuild]:
    data = from_pil(image)

    def rebuild(results: list[Job]) -> Image.Image:
        return to_pil(data.with_pixels(merge_channels(*results[0], data.channels)))

    return [split_channels(data.pixels)], rebuild


def _prepare_numpy(array: np.ndarray) -> tuple[list[Job], Rebuild]:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"arrays must be (H, W) or (H, W, 1|2|3|4), got {array.shape}")
    pixels = array_to_pixels(array)

    def rebuild(results: list[Job]) -> np.ndarray:
        return pixels_to_array(merge_channels(*results[0], pixels.shape[2]), like=array)

    return [split_channels(pixels)], rebuild


def _prepare_tensor(tensor: torch.Tensor) -> tuple[list[Job], Rebuild]:
    if tensor.ndim not in (3, 4) or tensor.shape[-3] != 3:
        raise ValueError(f"tensors must be (3, H, W) or (B, 3, H, W), got {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise ValueError(f"tensors must be float in [0, 1], got {tensor.dtype}")
    batch = tensor.reshape(-1, *tensor.shape[-3:]).detach().to("cpu", torch.float32)
    jobs: list[Job] = [(lq[None].clamp(0.0, 1.0), None) for lq in batch]

    def rebuild(results: list[Job]) -> torch.Tensor:
        hq = torch.cat([rgb for rgb, _ in results]).to(tensor.device, tensor.dtype)
        return hq[0] if tensor.ndim == 3 else hq

    return jobs, rebuild
