"""One request of the web page, without Gradio: check the pixel limit of every upload, upscale
each with the :class:`Upscaler`, write the downloads (the input's format or PNG, a zip for a
batch) and the two images of the before/after comparison.

The models a page offers sit on a :class:`ModelShelf`: the built-in names, plus the models given
to ``upsampler serve --model`` (a folder, a checkpoint file or a Hub id: anything
:func:`~upsampler.models.loading.load_model` accepts), which are loaded when the shelf is made so
that a bad one fails at start-up, not in the middle of someone's request.
"""

from __future__ import annotations

import re
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from upsampler.inference.upscaler import UpscaleProgress, Upscaler
from upsampler.io.formats import WRITE_FORMATS
from upsampler.io.images import (
    ImageData,
    ImageReadError,
    read_image,
    read_image_size,
    to_pil,
    write_image,
)
from upsampler.models.loading import load_model
from upsampler.models.registry import BUILTIN_MODELS, is_available
from upsampler.text.base import TextEmbeddings, TextEncoder

# The output scales the page offers: a 4x model makes 2x and 3x with a final resize, 8x with a
# second pass (see Upscaler.upscale's outscale).
SCALES = (2, 3, 4, 8)
OUTPUT_FORMATS = ("same", "png")
# The longest side of the comparison's images: the browser shows them smaller anyway, and an 8x
# output of a large photo would make the page move hundreds of megabytes to draw a slider.
PREVIEW_SIDE = 2048


@dataclass(frozen=True)
class ModelChoice:
    """What the page needs to know of a model before loading it: its scale and whether it
    takes a prompt (which shows the prompt box and the text controls)."""

    name: str
    scale: int
    text_conditioning: bool


@dataclass(frozen=True)
class UpscaleRequest:
    """The page's settings for one request. ``tile`` None: chosen from free memory;
    ``text_strength``: 1 the prompt's embedding, 0 the empty prompt's, between them a mix (as
    in classifier-free guidance; text-conditioned models only, like ``prompt``)."""

    model: str
    outscale: int = 4
    seed: int = 0
    prompt: str = ""
    truncation_psi: float = 1.0
    text_strength: float = 1.0
    tile: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    output_format: str = "same"


@dataclass(frozen=True)
class UpscaledImage:
    """One upload's result. Sizes are (width, height); ``mode`` as :attr:`ImageData.mode`."""

    name: str
    output: Path
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    mode: str
    seconds: float


class ModelShelf:
    """The page's models, and their Upscalers by (model, device, dtype), loaded on first use.

    An Upscaler moves its model to its device and dtype in place, so each combination gets its
    own copy; the ``keep`` most recently used stay loaded.

    Raises (on creation): what :func:`load_model` raises for a ``sources`` entry.
    """

    def __init__(
        self,
        sources: Sequence[str] = (),
        *,
        text_encoder: TextEncoder | None = None,
        builtins: bool = True,
        keep: int = 2,
    ):
        self.text_encoder = text_encoder
        self.keep = keep
        self.choices: dict[str, ModelChoice] = {}
        self._loaded: OrderedDict[tuple[str, str, str], Upscaler] = OrderedDict()
        self._lock = threading.Lock()
        for source in sources:
            model = load_model(source)
            self.choices[source] = ModelChoice(source, model.scale, model.text_conditioning)
            if model.text_conditioning and text_encoder is None:
                raise ValueError(
                    f"model {source!r} is text-conditioned: give a text encoder "
                    "(--text-encoder BACKEND:NAME)"
                )
            self._remember((source, "auto", "auto"), self._upscaler(model, "auto", "auto"))
        if builtins:
            for name, builtin in BUILTIN_MODELS.items():
                if is_available(name) and name not in self.choices:
                    self.choices[name] = ModelChoice(name, builtin.scale, builtin.text_conditioning)
        if not self.choices:
            raise ValueError("no models to offer: give --model")

    @property
    def default(self) -> str:
        return next(iter(self.choices))

    def get(self, name: str, device: str = "auto", dtype: str = "auto") -> Upscaler:
        if name not in self.choices:
            raise ValueError(f"unknown model {name!r}; this page offers {', '.join(self.choices)}")
        key = (name, device, dtype)
        with self._lock:
            if key not in self._loaded:
                self._remember(key, self._upscaler(load_model(name), device, dtype))
            self._loaded.move_to_end(key)
            return self._loaded[key]

    def _upscaler(self, model, device: str, dtype: str) -> Upscaler:
        return Upscaler(model, device=device, dtype=dtype, text_encoder=self.text_encoder)

    def _remember(self, key: tuple[str, str, str], upscaler: Upscaler) -> None:
        self._loaded[key] = upscaler
        while len(self._loaded) > self.keep:
            self._loaded.popitem(last=False)


def check_sizes(paths: Sequence[Path], max_pixels: int) -> list[tuple[int, int]]:
    """The (width, height) of every upload, read from the headers before any is upscaled.

    Raises:
        ValueError: an upload is over ``max_pixels``, or not an image; the message names the
            file as the user called it, not the server's temporary path.
    """
    sizes = []
    for path in paths:
        with _named_errors(path):
            sizes.append(read_image_size(path, max_pixels=max_pixels))
    return sizes


def upscale_files(
    shelf: ModelShelf,
    paths: Sequence[Path],
    request: UpscaleRequest,
    out_dir: Path,
    *,
    max_pixels: int,
    progress: Callable[[float, str], None] | None = None,
) -> list[UpscaledImage]:
    """Upscale every file of ``paths`` into ``out_dir``; ``progress(fraction, description)``
    follows images and tiles.

    Raises:
        ValueError: an input over ``max_pixels`` or unreadable (before anything is upscaled),
            a setting the model refuses (a tile size, fp16 on the CPU, ...).
    """
    if not paths:
        raise ValueError("no image given: drop or paste one first")
    if request.outscale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {request.outscale}")
    if request.output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be one of {OUTPUT_FORMATS}")
    check_sizes(paths, max_pixels)
    upscaler = shelf.get(request.model, request.device, request.dtype)
    text = _text(upscaler, request)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[UpscaledImage] = []
    names: set[str] = set()
    for index, path in enumerate(paths):
        with _named_errors(path):
            data = read_image(path, max_pixels=max_pixels)

        def report(event: UpscaleProgress, index: int = index) -> None:
            if progress is None:
                return
            within = (event.pass_index + event.tiles_done / event.tiles) / event.passes
            done = (index + within) / len(paths)
            progress(done, f"image {index + 1}/{len(paths)}: tile {event.tiles_done}/{event.tiles}")

        started = time.perf_counter()
        pixels = upscaler.upscale(
            data.pixels,
            text,
            seed=request.seed,
            tile=request.tile,
            outscale=request.outscale,
            truncation_psi=request.truncation_psi,
            progress=report,
        )
        output_data = data.with_pixels(pixels)
        format = _output_format(data, request.output_format)
        target = out_dir / _unique(f"{Path(path).stem}_{request.outscale}x", format, names)
        write_image(target, output_data, format=format)
        results.append(
            UpscaledImage(
                name=Path(path).name,
                output=target,
                input_size=(data.width, data.height),
                output_size=(output_data.width, output_data.height),
                mode=output_data.mode,
                seconds=time.perf_counter() - started,
            )
        )
    return results


def zip_outputs(results: Sequence[UpscaledImage], target: Path) -> Path:
    """One zip of a batch's outputs (stored: they are compressed images already)."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for result in results:
            archive.write(result.output, arcname=result.output.name)
    return target


def comparison(
    source: Path, result: UpscaledImage, out_dir: Path, max_pixels: int
) -> tuple[Path, Path]:
    """PNGs of the input (resized to the output's size, nearest neighbour: its pixels as they
    were) and of the output, at most :data:`PREVIEW_SIDE` on their longest side, for the
    before/after slider."""
    width, height = result.output_size
    shrink = min(1.0, PREVIEW_SIDE / max(width, height))
    size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
    before = _display(read_image(source, max_pixels=max_pixels)).resize(size, Image.NEAREST)
    after = _display(read_image(result.output, max_pixels=width * height))
    if after.size != size:
        after = after.resize(size, Image.LANCZOS)
    paths = (
        out_dir / f".before-{result.output.stem}.png",
        out_dir / f".after-{result.output.stem}.png",
    )
    before.save(paths[0])
    after.save(paths[1])
    return paths


def summary(results: Sequence[UpscaledImage], model: str) -> str:
    """The line the page shows under the comparison: sizes, model and time."""
    seconds = sum(result.seconds for result in results)
    first = results[0]
    size = f"{first.output_size[0]}x{first.output_size[1]}"
    source = f"{first.input_size[0]}x{first.input_size[1]}"
    if len(results) == 1:
        return f"{size} from {source} ({first.mode}) with {model} in {seconds:.2f} s"
    return (
        f"{len(results)} images with {model} in {seconds:.2f} s; the first: {size} from {source} "
        f"({first.mode})"
    )


# --------------------------------------------------------------------------- helpers


class _named_errors:
    """Re-raise a read error with the upload's file name in place of its temporary path."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if isinstance(error, ImageReadError):
            message = str(error).replace(str(self.path), self.path.name)
            # The page's limit is set with serve's --max-pixels.
            message = message.replace(
                "raise max_pixels (--max-pixels)", "raise serve's --max-pixels"
            )
            raise ValueError(message) from error
        return False


def _text(upscaler: Upscaler, request: UpscaleRequest) -> TextEmbeddings | None:
    """The prompt's embeddings, mixed with the empty prompt's by ``text_strength``; None for
    unconditional models (which ignore the prompt box: it is hidden for them)."""
    if not upscaler.text_conditioning:
        return None
    if upscaler.text_encoder is None:
        raise ValueError("this model is text-conditioned and the page has no text encoder")
    if not 0.0 <= request.text_strength <= 1.0:
        raise ValueError(f"text strength must be in [0, 1], got {request.text_strength}")
    strength, encoder = request.text_strength, upscaler.text_encoder
    if strength == 0.0:
        return encoder.encode([""])
    if strength == 1.0:
        return encoder.encode([request.prompt])
    both = encoder.encode(["", request.prompt])  # one batch: equal token lengths
    null, prompt = both.index([0]), both.index([1])
    # The prompt's tokens, each moved toward the empty prompt's (its padding where it is
    # shorter): what the model attends to stays the prompt's tokens.
    return TextEmbeddings(
        tokens=torch.lerp(null.tokens, prompt.tokens, strength),
        pooled=torch.lerp(null.pooled, prompt.pooled, strength),
        mask=prompt.mask,
    )


def _output_format(data: ImageData, choice: str) -> str:
    """The input's format where it is written (GIF is not: PNG, which loses nothing), else PNG."""
    if choice == "same" and data.format in WRITE_FORMATS:
        return data.format
    return "PNG"


def _unique(stem: str, format: str, taken: set[str]) -> str:
    """A file name not yet used in this batch (two pasted images are both "image.png")."""
    stem = re.sub(r"[^\w.-]+", "_", stem) or "image"
    name, count = f"{stem}{WRITE_FORMATS[format]}", 1
    while name in taken:
        count += 1
        name = f"{stem}-{count}{WRITE_FORMATS[format]}"
    taken.add(name)
    return name


def _display(data: ImageData) -> Image.Image:
    """An 8-bit RGB or RGBA Pillow image for the browser (16-bit and grey included)."""
    image = to_pil(data)
    return image.convert("RGBA" if data.has_alpha else "RGB")
