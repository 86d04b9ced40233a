"""A teacher's outputs cached on disk, for distilling a strong upsampler into a small one.

The teacher (Real-ESRGAN x4plus: about 0.5 s per 32x32 input on a 2-core CPU) costs far more
than the student it trains, so its outputs are computed once and reused by every run:

    build_teacher_cache("data/train", "cache/x4plus", teacher="RealESRGAN_x4plus.safetensors",
                        degradation="realesrgan", scale=4, crop_size=128, count=2048)
    dataset = TeacherCacheDataset("cache/x4plus", crop_size=96)
    dataset[(index, seed)]  # {"lq", "teacher", "hq", "caption"}

A cache folder holds ``cache.json`` (what it was made from, see :func:`build_teacher_cache`)
and shards ``shard-00000.safetensors``, ... of ``shard_size`` samples, each with uint8 tensors
``lq`` (N, 3, crop/scale, crop/scale), ``teacher`` and ``hq`` (N, 3, crop, crop).

Sample ``i`` is a pure function of the photos, ``seed`` and ``i``: its photo and crop come from
the key :class:`~upsampler.data.StepBatchSampler` gives position ``i`` (every photo once per
epoch), and its degradation, the teacher's style noise (if it has any) from a generator seeded
by ``(seed, i)``. So a shard does not depend on which shards were built before it, on the batch
size, nor on being interrupted: a resumed build writes the bytes an uninterrupted one would.
Shards are written atomically, so a shard file that exists is complete.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from upsampler.data.datasets import ImageDataset, StepBatchSampler
from upsampler.degradations.pipeline import DegradationPipeline
from upsampler.io.files import atomic_output
from upsampler.io.formats import TRAINING_MAX_PIXELS

__all__ = [
    "CACHE_FILE",
    "TeacherCacheDataset",
    "TeacherCacheError",
    "build_teacher_cache",
    "shard_name",
]

CACHE_FILE = "cache.json"
FORMAT = "upsampler-teacher-cache"
VERSION = 1
KEYS = ("lq", "teacher", "hq")
# cache.json entries that fix the samples: a resumed build must agree on every one.
COMPARED = ("scale", "crop_size", "count", "shard_size", "seed")


class TeacherCacheError(ValueError):
    """A teacher cache that cannot be built or read: mismatched arguments, missing or truncated
    shards, a crop it cannot give."""


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


# ------------------------------------------------------------------------------------ building


def build_teacher_cache(
    data_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    teacher: Any,
    degradation: str | Sequence[Mapping[str, Any]] | DegradationPipeline,
    scale: int,
    crop_size: int,
    count: int,
    shard_size: int = 256,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    max_pixels: int = TRAINING_MAX_PIXELS,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Cache ``count`` training triples (lq, teacher output, hq) in the folder ``output``.

    Args:
        data_path: photos, as :class:`~upsampler.data.ImageDataset` reads them (a folder or tar
            shards); each sample is a ``crop_size`` crop of one of them.
        teacher: a model from :func:`~upsampler.models.loading.load_model` (frozen here), or
            the name or path to load. Text-conditioned teachers are refused (no captions).
        degradation: a preset name (``realesrgan``, ``bicubic``, ``diffusion``), a list of stage
            tables, or a :class:`DegradationPipeline`; it makes lq from the hq crop.
        scale: the teacher's scale; ``crop_size`` must be a multiple of it.
        shard_size: samples per shard file (the unit of resuming).
        device: where the teacher runs ("auto", "cpu", "cuda", ...); degradations run on the
            CPU. The teacher runs in float32 on whole lq crops, ``batch_size`` at a time.
        max_pixels: photos with more pixels are skipped, as :class:`~upsampler.data.ImageDataset`
            skips them.
        progress: called with ``(samples done, count)`` at the start and after every batch.

    Returns:
        ``output``. Its ``cache.json`` records: format, version, scale, crop_size, count,
        shard_size, seed, teacher (name, architecture, parameters, weights_sha256),
        degradation (preset or null, stages), data (path, images) and shards (file, count);
        and, for information only, built_with (device, batch_size, upsampler, torch).

    Re-running with the same arguments into the same folder keeps its complete shards and
    builds the rest (``device`` and ``batch_size`` may change; on another device the new
    shards can differ from the old ones by float rounding).

    Raises:
        TeacherCacheError: bad sizes, a teacher of another scale or with text, ``output``
            holding a cache made with other arguments (naming each difference) or other files.
        DataError: no usable photo in ``data_path``.
        ModelUnavailableError, ModelWeightsError, CheckpointError: a teacher that cannot load.
    """
    for name, value in (("crop_size", crop_size), ("count", count), ("shard_size", shard_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TeacherCacheError(f"{name} must be a positive integer, got {value!r}")
    if batch_size < 1:
        raise TeacherCacheError(f"batch_size must be >= 1, got {batch_size}")
    if crop_size % scale:
        raise TeacherCacheError(f"crop_size must be a multiple of scale {scale}, got {crop_size}")
    output = Path(output)
    from upsampler.inference.devices import resolve_device

    torch_device = resolve_device(device)
    pipeline, preset = _pipeline(degradation, scale)
    model, teacher_name = _teacher(teacher)
    if model.scale != scale:
        raise TeacherCacheError(
            f"the teacher {teacher_name} is a {model.scale}x model, but scale is {scale}"
        )
    if model.text_conditioning:
        raise TeacherCacheError(
            f"the teacher {teacher_name} is text-conditioned; the cache has no captions to give "
            "it: use an unconditional teacher"
        )
    dataset = ImageDataset(data_path, crop_size=crop_size, flip=False, max_pixels=max_pixels)
    shard_counts = [min(shard_size, count - start) for start in range(0, count, shard_size)]
    config = {
        "format": FORMAT,
        "version": VERSION,
        "scale": scale,
        "crop_size": crop_size,
        "count": count,
        "shard_size": shard_size,
        "seed": seed,
        "teacher": {
            "name": teacher_name,
            "architecture": getattr(model, "architecture", None) or type(model).__name__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "weights_sha256": _weights_sha256(model),
        },
        "degradation": {"preset": preset, "stages": pipeline.to_config()},
        "data": {"path": str(Path(data_path).resolve()), "images": len(dataset)},
        "shards": [{"file": shard_name(i), "count": n} for i, n in enumerate(shard_counts)],
    }
    _start_folder(output, config, device=str(torch_device), batch_size=batch_size)
    model = torch.nn.Module.to(model, device=torch_device, dtype=torch.float32).eval()
    model.requires_grad_(False)
    sampler = StepBatchSampler(len(dataset), batch_size=1, seed=seed, steps=count)
    pending = [
        i
        for i, n in enumerate(shard_counts)
        if not _shard_ok(output / shard_name(i), n, crop_size, scale)
    ]
    done = count - sum(shard_counts[i] for i in pending)
    if progress is not None:
        progress(done, count)
    for shard in pending:
        start = shard * shard_size
        parts: dict[str, list[torch.Tensor]] = {key: [] for key in KEYS}
        for first in range(start, start + shard_counts[shard], batch_size):
            positions = range(first, min(first + batch_size, start + shard_counts[shard]))
            batch = _make_batch(positions, dataset, sampler, pipeline, model, torch_device, seed)
            for key in KEYS:
                parts[key].append(batch[key])
            done += len(positions)
            if progress is not None:
                progress(done, count)
        tensors = {key: torch.cat(parts[key]).contiguous() for key in KEYS}
        from safetensors.torch import save_file

        with atomic_output(output / shard_name(shard)) as temporary:
            save_file(tensors, str(temporary), metadata={"first_sample": str(start)})
    return output


def _pipeline(
    degradation: str | Sequence[Mapping[str, Any]] | DegradationPipeline, scale: int
) -> tuple[DegradationPipeline, str | None]:
    """The pipeline, and its preset name (None for a stage list)."""
    if isinstance(degradation, DegradationPipeline):
        if degradation.scale != scale:
            raise TeacherCacheError(
                f"the degradation pipeline is for scale {degradation.scale}, not {scale}"
            )
        return degradation, None
    if isinstance(degradation, str):
        names = DegradationPipeline.preset_names()
        if degradation not in names:
            raise TeacherCacheError(
                f"unknown degradation preset {degradation!r}; use one of {', '.join(names)} or "
                "a list of stages"
            )
        return DegradationPipeline.from_preset(degradation, scale=scale), degradation
    return DegradationPipeline.from_config(degradation, scale=scale), None


def _teacher(teacher: Any) -> tuple[torch.nn.Module, str]:
    """The model and the name recorded for it: a local path made absolute, a name as given."""
    if isinstance(teacher, str | os.PathLike):
        from upsampler.models.loading import load_model

        name = str(teacher)
        if Path(name).expanduser().exists():
            name = str(Path(name).expanduser().resolve())
        return load_model(teacher), name
    if not isinstance(teacher, torch.nn.Module) or not hasattr(teacher, "scale"):
        raise TeacherCacheError(
            f"teacher must be a model from load_model or its name, got {type(teacher).__name__}"
        )
    name = getattr(teacher, "source", "") or getattr(teacher, "architecture", "")
    return teacher, str(name or type(teacher).__name__)


def _weights_sha256(model: torch.nn.Module) -> str:
    """A fingerprint of the weights (names, dtypes, shapes and bytes), so that a teacher file
    replaced at the same path, or one moved elsewhere, is told apart from the same weights."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _start_folder(output: Path, config: dict, *, device: str, batch_size: int) -> None:
    """Write ``cache.json`` into a new or empty folder, or check the one there against it."""
    if output.exists() and not output.is_dir():
        raise TeacherCacheError(f"{output} exists and is not a folder")
    record = output / CACHE_FILE
    if record.is_file():
        existing = _read_record(output)
        differences = _differences(existing, config)
        if differences:
            raise TeacherCacheError(
                f"{output} holds a teacher cache made with other arguments: "
                f"{'; '.join(differences)}. Resume with the same arguments, or build into "
                "another folder"
            )
        # Shards of a build that was killed outright (atomic_output removes its own on any
        # exception). One build per folder at a time: these are nobody's.
        for stale in output.glob(".shard-*.part"):
            stale.unlink(missing_ok=True)
        return
    if output.is_dir():
        entries = sorted(p.name for p in output.iterdir() if not p.name.startswith("."))
        if entries:
            from upsampler.io.files import short_list

            raise TeacherCacheError(
                f"{output} is not empty ({short_list(entries)}) and holds no {CACHE_FILE}: "
                "build a teacher cache into a new or empty folder"
            )
    built_with = {"device": device, "batch_size": batch_size}
    import upsampler

    built_with.update(upsampler=upsampler.__version__, torch=torch.__version__)
    with atomic_output(record) as temporary:
        temporary.write_text(json.dumps({**config, "built_with": built_with}, indent=2) + "\n")


def _differences(existing: dict, config: dict) -> list[str]:
    """What differs between a folder's cache.json and the arguments, in words."""
    found = []
    for key in COMPARED:
        if existing.get(key) != config[key]:
            found.append(f"{key} {existing.get(key)!r} there, {config[key]!r} now")
    old, new = existing.get("teacher", {}), config["teacher"]
    if old.get("architecture") != new["architecture"]:
        found.append(f"teacher {old.get('architecture')!r} there, {new['architecture']!r} now")
    elif old.get("weights_sha256") != new["weights_sha256"]:
        found.append(
            f"teacher weights differ ({old.get('name')!r} there, {new['name']!r} now: not the "
            "same weights)"
        )
    old, new = existing.get("degradation", {}), config["degradation"]
    if old.get("stages") != json.loads(json.dumps(new["stages"])):
        found.append(
            f"degradation {old.get('preset') or 'stage list'!r} there, "
            f"{new['preset'] or 'stage list'!r} now (the stages differ)"
        )
    old, new = existing.get("data", {}), config["data"]
    if old.get("path") != new["path"]:
        found.append(f"data {old.get('path')!r} there, {new['path']!r} now")
    elif old.get("images") != new["images"]:
        found.append(
            f"the data folder held {old.get('images')} usable images, now {new['images']} "
            "(samples would come from other photos)"
        )
    return found


def _shard_ok(path: Path, count: int, crop_size: int, scale: int) -> bool:
    """Whether ``path`` is a complete shard of ``count`` samples (reads the header only)."""
    if not path.is_file():
        return False
    try:
        return _shard_shapes(path) == _expected_shapes(count, crop_size, scale)
    except TeacherCacheError:
        return False  # a damaged shard is built again


def _expected_shapes(count: int, crop_size: int, scale: int) -> dict[str, tuple[int, ...]]:
    small = crop_size // scale
    return {
        "lq": (count, 3, small, small),
        "teacher": (count, 3, crop_size, crop_size),
        "hq": (count, 3, crop_size, crop_size),
    }


def _shard_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as shard:
            shapes = {}
            for key in shard.keys():  # noqa: SIM118 (safe_open is not a dict)
                piece = shard.get_slice(key)
                if piece.get_dtype() != "U8":
                    raise TeacherCacheError(f"{path}: {key} is {piece.get_dtype()}, not uint8")
                shapes[key] = tuple(piece.get_shape())
            return shapes
    except TeacherCacheError:
        raise
    except Exception as error:  # safetensors raises its own error type for damaged files
        raise TeacherCacheError(
            f"{path} is not a readable shard ({error}): it is truncated or corrupt"
        ) from error


def _sample_generator(seed: int, position: int) -> torch.Generator:
    """The generator of sample ``position``: its degradation, then the teacher's noise."""
    state = np.random.SeedSequence([seed, position]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats -> uint8, rounded to nearest, on the CPU."""
    return (images.float().cpu() * 255.0).round().clamp(0.0, 255.0).to(torch.uint8)


@torch.inference_mode()
def _make_batch(
    positions: range,
    dataset: ImageDataset,
    sampler: StepBatchSampler,
    pipeline: DegradationPipeline,
    model: torch.nn.Module,
    device: torch.device,
    seed: int,
) -> dict[str, torch.Tensor]:
    """uint8 ``lq``, ``teacher`` and ``hq`` of the samples at ``positions``."""
    hqs, lqs, inputs, styles = [], [], [], []
    for position in positions:
        # One sample per call of the pipeline: a batch draws one resize factor for all its
        # images, which would tie a sample to its batch mates.
        hq = dataset[sampler.batch(position)[0]]["hq"][None]
        generator = _sample_generator(seed, position)
        lq = pipeline(hq, generator=generator)
        model_input = lq
        if model.uses_styles:
            styles.append(model.image_styles(None, generator=generator))
        if model.input_noise_std:
            # AuraSR's input noise, as the Upscaler draws it: once per image, after z.
            noise = torch.randn(lq.shape, generator=generator)
            model_input = (lq + model.input_noise_std * noise).clamp(0.0, 1.0)
        hqs.append(hq)
        lqs.append(lq)
        inputs.append(model_input)
    ws = torch.cat(styles) if styles else None
    output = _run_teacher(model, torch.cat(inputs).to(device), ws)
    return {
        "lq": _to_uint8(torch.cat(lqs)),
        "teacher": _to_uint8(output.clamp(0.0, 1.0)),
        "hq": _to_uint8(torch.cat(hqs)),
    }


def _run_teacher(model: torch.nn.Module, lq: torch.Tensor, ws: torch.Tensor | None) -> torch.Tensor:
    """The teacher on whole crops lq (B, 3, h, w), padded (replicating the edge) to its size
    rule and cropped back: (B, 3, scale*h, scale*w)."""
    height, width = lq.shape[-2:]
    multiple, minimum = model.size_multiple, model.min_size
    padded_height = max(minimum, -(-height // multiple) * multiple)
    padded_width = max(minimum, -(-width // multiple) * multiple)
    padded = F.pad(lq, (0, padded_width - width, 0, padded_height - height), mode="replicate")
    hq = model(padded, None, ws=ws).hq
    return hq[..., : height * model.scale, : width * model.scale].float()


# ------------------------------------------------------------------------------------ reading


def _read_record(path: Path) -> dict:
    record = path / CACHE_FILE
    if not path.is_dir():
        raise TeacherCacheError(f"teacher cache not found: {path} is not a folder")
    if not record.is_file():
        raise TeacherCacheError(
            f"{path} is not a teacher cache: it has no {CACHE_FILE} (build one with "
            "`upsampler teacher-cache`)"
        )
    try:
        config = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise TeacherCacheError(f"{record} is not readable: {error}") from error
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise TeacherCacheError(f"{record} is not a teacher cache's record (no format {FORMAT!r})")
    if config.get("version") != VERSION:
        raise TeacherCacheError(
            f"{record} is version {config.get('version')!r} of the cache format; this upsampler "
            f"reads version {VERSION}"
        )
    return config


class TeacherCacheDataset(torch.utils.data.Dataset):
    """The samples of a teacher cache, randomly cropped and flipped.

    ``dataset[(index, seed)]`` -> ``{"lq": (3, crop/scale, crop/scale), "teacher": (3, crop,
    crop), "hq": (3, crop, crop)}``, float32 in [0, 1], and ``"caption": ""``. The seed fixes
    the crop and the flips (``np.random.default_rng(seed)``), so a key always gives the same
    sample, as with :class:`~upsampler.data.ImageDataset`: keys come from
    :class:`~upsampler.data.StepBatchSampler`, and :func:`~upsampler.data.collate` batches them.

    The crop is aligned: it starts at a multiple of ``scale`` in hq pixels, and the lq crop at
    ``top // scale, left // scale``, so the three stay in register. Flips apply to all three.

    Shards are read lazily, one sample at a time (memory-mapped); at most ``open_shards`` stay
    open, the least recently used closed first, so memory stays bounded for any cache size.

    Args:
        path: the cache folder.
        crop_size: side of the hq crop, a multiple of the cache's scale, at most its crop_size
            (default: the cached size, no crop).
        flip, flip_vertical: random horizontal / vertical flips.
        samples: use only the first ``samples`` samples (0: all). Only the shards that hold
            them must exist, so training can start on a cache that is still being built; the
            samples are the same whatever the final count (each is a function of its number).

    Raises:
        TeacherCacheError: no cache there, a missing, truncated or mis-shaped shard (named), or
            a crop_size it cannot give.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        crop_size: int | None = None,
        flip: bool = True,
        flip_vertical: bool = False,
        open_shards: int = 8,
        samples: int = 0,
    ):
        self.root = Path(path)
        self.config = _read_record(self.root)
        self.scale = int(self.config["scale"])
        self.cached_size = int(self.config["crop_size"])
        crop_size = self.cached_size if crop_size is None else crop_size
        if crop_size < self.scale or crop_size % self.scale:
            raise TeacherCacheError(
                f"crop_size must be a positive multiple of the cache's scale {self.scale}, got "
                f"{crop_size}"
            )
        if crop_size > self.cached_size:
            raise TeacherCacheError(
                f"crop_size {crop_size} is larger than the cached crops of {self.root} "
                f"({self.cached_size} px)"
            )
        self.crop_size = crop_size
        self.flip = flip
        self.flip_vertical = flip_vertical
        self.open_shards = max(1, open_shards)
        total = sum(int(entry["count"]) for entry in self.config["shards"])
        if not 0 <= samples <= total:
            raise TeacherCacheError(
                f"samples must be between 0 (all) and the cache's {total}, got {samples}"
            )
        wanted = samples or total
        self.files: list[Path] = []
        counts = []
        for entry in self.config["shards"]:
            if sum(counts) >= wanted:
                break
            file, count = self.root / entry["file"], int(entry["count"])
            if not file.is_file():
                raise TeacherCacheError(
                    f"{self.root} is incomplete: {entry['file']} is missing (finish it by running "
                    "the same `upsampler teacher-cache` command again)"
                )
            expected = _expected_shapes(count, self.cached_size, self.scale)
            shapes = _shard_shapes(file)
            if shapes != expected:
                raise TeacherCacheError(
                    f"{file} holds {shapes}, but {CACHE_FILE} expects {expected}; build the "
                    "cache again"
                )
            self.files.append(file)
            counts.append(count)
        if not counts:
            raise TeacherCacheError(f"{self.root} is an empty teacher cache (no shards)")
        self.ends = np.cumsum(counts).tolist()  # sample index < ends[s] lies in shard s
        self.ends[-1] = min(self.ends[-1], wanted)
        self._handles: OrderedDict[int, Any] = OrderedDict()

    def __len__(self) -> int:
        return self.ends[-1]

    def __getstate__(self) -> dict:
        # Loader workers open their own handles: safe_open handles do not pickle.
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()
        return state

    def _shard(self, shard: int) -> Any:
        handle = self._handles.get(shard)
        if handle is None:
            from safetensors import safe_open

            handle = safe_open(str(self.files[shard]), framework="pt")
            self._handles[shard] = handle
            while len(self._handles) > self.open_shards:
                self._handles.popitem(last=False)
        self._handles.move_to_end(shard)
        return handle

    def cached(self, index: int) -> dict[str, torch.Tensor]:
        """Sample ``index`` as stored: uint8 ``lq``, ``teacher``, ``hq`` (3, h, w), uncropped."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for a cache of {len(self)}")
        shard = bisect.bisect_right(self.ends, index)
        offset = index - (self.ends[shard - 1] if shard else 0)
        handle = self._shard(shard)
        try:
            return {key: handle.get_slice(key)[offset : offset + 1][0] for key in KEYS}
        except Exception as error:  # a shard damaged after the dataset was made
            raise TeacherCacheError(
                f"{self.files[shard]}: cannot read sample {offset}: {error}"
            ) from error

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        sample = self.cached(index)
        rng = np.random.default_rng(seed)
        steps = (self.cached_size - self.crop_size) // self.scale + 1
        # Positions on the lq grid, so hq and teacher crops start at multiples of scale.
        left = int(rng.integers(0, steps))
        top = int(rng.integers(0, steps))
        small = self.crop_size // self.scale
        lq = sample["lq"][:, top : top + small, left : left + small]
        hq_top, hq_left = top * self.scale, left * self.scale
        window = (slice(None), slice(hq_top, hq_top + self.crop_size))
        window += (slice(hq_left, hq_left + self.crop_size),)
        out = {"lq": lq, "teacher": sample["teacher"][window], "hq": sample["hq"][window]}
        out = {k: v.float().div(255.0) for k, v in out.items()}
        if self.flip and rng.random() < 0.5:
            out = {k: v.flip(-1) for k, v in out.items()}
        if self.flip_vertical and rng.random() < 0.5:
            out = {k: v.flip(-2) for k, v in out.items()}
        return {**{k: v.contiguous() for k, v in out.items()}, "caption": ""}


class TeacherCacheMix(torch.utils.data.Dataset):
    """Several teacher caches read as one: e.g. heavily degraded inputs beside clean ones, so
    that a student learns both. Samples are numbered cache after cache; the share of each
    cache in training is its share of the samples (build or limit them accordingly).

    Args:
        caches: :class:`TeacherCacheDataset` s of one scale (their crop options as they are).

    Raises:
        TeacherCacheError: no caches, or caches of different scales.
    """

    def __init__(self, caches: Sequence[TeacherCacheDataset]):
        if not caches:
            raise TeacherCacheError("no teacher caches to mix")
        scales = {cache.scale for cache in caches}
        if len(scales) > 1:
            names = ", ".join(f"{cache.root} ({cache.scale}x)" for cache in caches)
            raise TeacherCacheError(f"teacher caches of different scales cannot mix: {names}")
        self.caches = list(caches)
        self.scale = caches[0].scale
        self.ends = np.cumsum([len(cache) for cache in caches]).tolist()

    def __len__(self) -> int:
        return self.ends[-1]

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} of a mix of {len(self)}")
        which = bisect.bisect_right(self.ends, index)
        start = self.ends[which - 1] if which else 0
        return self.caches[which][(index - start, seed)]
