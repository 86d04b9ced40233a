"""Training images: a folder (recursive) or WebDataset-style tar shards, with optional captions.

Every sample is addressed by ``(index, seed)``: the seed fixes the random crop and flips, so a
batch is a pure function of the training step (see :class:`StepBatchSampler`). That is what
makes ``--resume`` continue exactly and keeps data-parallel ranks on disjoint, reproducible
samples, with any number of loader workers.
"""

from __future__ import annotations

import csv
import json
import tarfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from upsampler.io.files import find_images
from upsampler.io.formats import IMAGE_SUFFIXES, TRAINING_MAX_PIXELS
from upsampler.io.images import ImageReadError, read_image_size, read_rgb


class DataError(ValueError):
    """The training data cannot be used: missing folder, no usable image, bad manifest."""


@dataclass(frozen=True)
class _Item:
    name: str  # shown in warnings: a path, or "shard.tar:member"
    caption: str
    path: Path | None = None  # a file in a folder ...
    shard: Path | None = None  # ... or a member of a tar shard, read at its data offset
    offset: int = 0
    size: int = 0
    problem: str | None = None  # found while scanning a shard; checked like a file's header


def _read_manifest(path: Path) -> dict[str, str]:
    """file -> caption from a JSONL ({"file": ..., "caption": ...}) or CSV (file,caption) manifest."""
    if not path.is_file():
        raise DataError(f"caption manifest not found: {path}")
    captions = {}
    if path.suffix == ".jsonl":
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                captions[row["file"]] = str(row["caption"])
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise DataError(
                    f'{path}:{number}: expected {{"file": ..., "caption": ...}} ({error})'
                ) from error
    elif path.suffix == ".csv":
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"file", "caption"} <= set(reader.fieldnames):
                raise DataError(f"{path}: a CSV manifest needs the columns file,caption")
            for row in reader:
                captions[row["file"]] = row["caption"]
    else:
        raise DataError(f"caption manifest must be .jsonl or .csv, got {path}")
    return captions


class ImageDataset(torch.utils.data.Dataset):
    """High-resolution training crops from a folder of images or from .tar shards.

    ``dataset[(index, seed)]`` -> ``{"hq": (3, crop, crop) float in [0, 1], "caption": str}``.

    Args:
        path: a folder searched recursively, a folder of ``.tar`` shards, or one ``.tar`` file.
        crop_size: side of the random square crop.
        min_size: images whose shorter side is below this are skipped (default: crop_size).
        captions: "none", "sidecar" (``photo.txt`` beside ``photo.jpg``; inside shards, the
            member with the same stem) or the path of a ``.jsonl`` / ``.csv`` manifest whose
            ``file`` entries are paths relative to ``path``.
        flip, flip_vertical: random flips.
        max_pixels: images with more pixels are skipped (the decompression-bomb guard of
            :func:`~upsampler.io.images.read_image`; 200 megapixels by default).

    A folder's images are found by :func:`~upsampler.io.files.find_images` (hidden files and
    folders skipped) and read by :func:`~upsampler.io.images.read_rgb`: upright, 8-bit RGB.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        crop_size: int,
        min_size: int = 0,
        captions: str = "none",
        flip: bool = True,
        flip_vertical: bool = False,
        max_pixels: int = TRAINING_MAX_PIXELS,
    ):
        self.root = Path(path)
        self.crop_size = crop_size
        self.min_size = max(min_size, crop_size)
        self.flip = flip
        self.flip_vertical = flip_vertical
        self.max_pixels = max_pixels
        if not self.root.exists():
            raise DataError(f"data path not found: {self.root}")
        manifest = None if captions in ("none", "sidecar") else _read_manifest(Path(captions))
        shards = [self.root] if self.root.suffix == ".tar" else sorted(self.root.rglob("*.tar"))
        if shards:
            candidates = list(self._scan_shards(shards, captions, manifest))
        else:
            candidates = list(self._scan_folder(captions, manifest))
        if not candidates:
            raise DataError(
                f"no images found in {self.root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        self.items: list[_Item] = []
        self.skipped: list[tuple[str, str]] = []
        for item in candidates:
            reason = self._check(item)
            if reason:
                self.skipped.append((item.name, reason))
            else:
                self.items.append(item)
        if self.skipped:
            listed = "; ".join(f"{name} ({reason})" for name, reason in self.skipped[:20])
            more = f" and {len(self.skipped) - 20} more" if len(self.skipped) > 20 else ""
            warnings.warn(
                f"skipped {len(self.skipped)} of {len(candidates)} images: {listed}{more}",
                stacklevel=2,
            )
        if not self.items:
            raise DataError(f"no usable image in {self.root}: all {len(candidates)} were skipped")

    def _scan_folder(self, captions: str, manifest: dict[str, str] | None) -> Iterator[_Item]:
        for file in find_images(self.root, recursive=True):
            relative = file.relative_to(self.root).as_posix()
            caption = ""
            if captions == "sidecar" and file.with_suffix(".txt").is_file():
                caption = file.with_suffix(".txt").read_text().strip()
            elif manifest is not None:
                caption = manifest.get(relative, "")
            yield _Item(name=str(file), caption=caption, path=file)

    def _scan_shards(
        self, shards: list[Path], captions: str, manifest: dict[str, str] | None
    ) -> Iterator[_Item]:
        for shard in shards:
            try:
                with tarfile.open(shard) as archive:
                    members = {m.name: m for m in archive.getmembers() if m.isfile()}
                    texts = {}
                    if captions == "sidecar":
                        for name in members:
                            if name.endswith(".txt"):
                                texts[name[: -len(".txt")]] = (
                                    archive.extractfile(members[name]).read().decode().strip()
                                )
            except (tarfile.TarError, OSError) as error:
                warnings.warn(f"skipped unreadable shard {shard}: {error}", stacklevel=3)
                continue
            with shard.open("rb") as handle:
                for name in sorted(members):
                    stem, suffix = name.rsplit(".", 1) if "." in name else (name, "")
                    if f".{suffix.lower()}" not in IMAGE_SUFFIXES:
                        continue
                    member = members[name]
                    handle.seek(member.offset_data)
                    problem = self._size_problem(f"{shard}:{name}", handle.read(member.size))
                    caption = (
                        texts.get(stem, "")
                        if captions == "sidecar"
                        else (manifest or {}).get(name, "")
                    )
                    yield _Item(
                        name=f"{shard}:{name}",
                        caption=caption,
                        shard=shard,
                        offset=member.offset_data,
                        size=member.size,
                        problem=problem,
                    )

    def _check(self, item: _Item) -> str | None:
        return self._size_problem(item.name) if item.path is not None else item.problem

    def _size_problem(self, name: str, data: bytes | None = None) -> str | None:
        """Why an image cannot be used (header only, so a scan stays fast), or None."""
        try:
            width, height = read_image_size(name, max_pixels=self.max_pixels, data=data)
        except ImageReadError as error:  # "skip this file", never "stop"
            return str(error).removeprefix(f"{name}: ")
        if min(width, height) < self.min_size:
            return f"{width}x{height} is smaller than min_size {self.min_size}"
        return None

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Image.Image:
        """Image ``index`` whole: upright 8-bit RGB (``ImageReadError`` if it cannot be read)."""
        item = self.items[index]
        if item.path is not None:
            return read_rgb(item.path, max_pixels=self.max_pixels)
        with item.shard.open("rb") as handle:
            handle.seek(item.offset)
            return read_rgb(item.name, max_pixels=self.max_pixels, data=handle.read(item.size))

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, seed = key
        # An image that passed the header check can still be truncated: fall back to the next
        # usable one (deterministically), and say which file was bad.
        for attempt in range(len(self.items)):
            current = (index + attempt) % len(self.items)
            try:
                image = self.load(current)
                break
            except Exception as error:
                name = self.items[current].name
                reason = str(error).removeprefix(f"{name}: ")
                warnings.warn(f"skipped corrupt image {name}: {reason}", stacklevel=2)
        else:
            raise DataError(f"no image in {self.root} could be decoded")
        rng = np.random.default_rng(seed)
        width, height = image.size
        if min(width, height) < self.crop_size:
            raise DataError(
                f"{self.items[current].name} is {width}x{height}, smaller than crop_size {self.crop_size}"
            )
        left = int(rng.integers(0, width - self.crop_size + 1))
        top = int(rng.integers(0, height - self.crop_size + 1))
        crop = np.asarray(
            image.crop((left, top, left + self.crop_size, top + self.crop_size)), dtype=np.float32
        )
        hq = torch.from_numpy(crop / 255.0).permute(2, 0, 1).contiguous()
        if self.flip and rng.random() < 0.5:
            hq = hq.flip(-1)
        if self.flip_vertical and rng.random() < 0.5:
            hq = hq.flip(-2)
        return {"hq": hq, "caption": self.items[current].caption}


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields, for each step from ``start_step``, this rank's share of the global batch.

    The global batch of step s is drawn from an epoch permutation seeded by (seed, epoch), so
    every sample is seen once per epoch; each entry carries its own crop seed. Nothing depends
    on how many steps ran before: resuming at step s gives exactly the batches of an
    uninterrupted run, and rank r of R always takes entries r, r + R, ... of the global batch.
    """

    def __init__(
        self,
        dataset_size: int,
        *,
        batch_size: int,
        seed: int,
        start_step: int = 0,
        steps: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.dataset_size = dataset_size
        self.batch_size = batch_size  # per rank
        self.seed = seed
        self.start_step = start_step
        self.steps = steps
        self.rank = rank
        self.world_size = world_size
        self._cached_epoch = -1
        self._cached = torch.empty(0)

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._cached_epoch != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._cached = torch.randperm(self.dataset_size, generator=generator)
            self._cached_epoch = epoch
        return self._cached

    def batch(self, step: int) -> list[tuple[int, int]]:
        global_batch = self.batch_size * self.world_size
        keys = []
        for slot in range(self.rank, global_batch, self.world_size):
            position = step * global_batch + slot
            epoch, offset = divmod(position, self.dataset_size)
            index = int(self._permutation(epoch)[offset])
            keys.append((index, (self.seed * 1_000_003 + position) % 2**63))
        return keys

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.steps):
            yield self.batch(step)


def collate(samples: Sequence[dict]) -> dict:
    """Stack every tensor entry of the samples ("hq"; "lq" and "teacher" from a teacher cache);
    other entries ("caption") become lists."""
    return {
        key: torch.stack([s[key] for s in samples])
        if isinstance(samples[0][key], torch.Tensor)
        else [s[key] for s in samples]
        for key in samples[0]
    }
