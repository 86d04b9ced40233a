#!/usr/bin/env python3
"""Gather the real photographs that can be had offline into a training set and a held-out split.

Sources (see docs/data.md):

- Debian packages, fetched with ``apt-get download`` into ``--cache`` and unpacked with
  ``dpkg-deb -x``: ``endless-sky-high-dpi`` (``images/land/*``: landscape and city photos),
  ``mate-backgrounds`` (``nature/*``) and ``lomiri-wallpapers-16.04`` (its photographs only).
  Each file's author and licence come from the package's machine-readable (DEP-5) copyright
  file; a file that no stanza covers is left out and reported.
- scikit-image's bundled colour photographs, when ``skimage`` is importable (optional), with
  the licences stated in the ``skimage.data`` docstrings.

Every photo is downscaled 2x (Lanczos), which removes most JPEG artefacts, and saved as PNG:

- ``OUTPUT/train/``: the downscaled whole photos used for training;
- ``OUTPUT/val/``: seeded, roughly centred 256x256 crops of whole photos held out from training
  (no validation crop shares a photo with the training set);
- ``OUTPUT/SOURCES.csv``: for every output file its source package, original path,
  author/copyright and licence; ``OUTPUT/EXCLUDED.csv``: what was left out and why.

``--examples DIR`` also writes the small demo inputs of ``make demo`` with a LICENSES.md.

Re-running with the same arguments writes byte-identical files and reuses the cached .debs.
Nothing is written outside ``--output``, ``--cache`` and ``--examples``.

Usage: python scripts/gather_photos.py [--output data] [--cache DIR] [--examples examples/images]
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import importlib.util
import inspect
import io
import os
import random
import re
import shutil
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from upsampler.io.files import atomic_output
from upsampler.io.formats import IMAGE_SUFFIXES, TRAINING_MAX_PIXELS
from upsampler.io.images import ImageReadError, read_rgb

DOWNSCALE = 2
VAL_CROP_SIZE = 256
MIN_VAL_CROPS = 20  # what issue 6 asks of the held-out split
SOURCES_FIELDS = (
    "file",
    "split",
    "source",
    "package",
    "original_path",
    "copyright",
    "license",
    "width",
    "height",
    "crop",
    "note",
    "license_detail",
)

LICENSE_URLS = {
    "CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "CC-BY-2.0": "https://creativecommons.org/licenses/by/2.0/",
    "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "CC-BY-SA-3.0": "https://creativecommons.org/licenses/by-sa/3.0/",
    "CC-BY-SA-4.0": "https://creativecommons.org/licenses/by-sa/4.0/",
    "GPL-2+": "https://www.gnu.org/licenses/old-licenses/gpl-2.0.html",
}


class GatherError(RuntimeError):
    """A problem the user has to fix (missing tool, failed download, bad copyright file...)."""


# --------------------------------------------------------------------------------------------
# DEP-5 (Debian machine-readable copyright format 1.0)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stanza:
    """One ``Files:`` paragraph of a DEP-5 copyright file."""

    index: int  # position among the Files paragraphs, 0-based
    files: tuple[str, ...]
    copyright: str  # continuation lines joined with "; "
    license: str  # the short name (first line of the License field)
    license_detail: str  # the rest of the License field (for public-domain: why)
    comment: str

    def matching_patterns(self, path: str) -> list[str]:
        return [pattern for pattern in self.files if dep5_match(pattern, path)]


def _paragraphs(text: str) -> list[dict[str, str]]:
    """Split deb822 text into paragraphs of ``{lowercased field: value}``.

    Continuation lines (starting with a space or tab) are appended with a newline; a
    continuation line holding only ``.`` stands for an empty line.
    """
    paragraphs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            if current:
                paragraphs.append(current)
            current, key = {}, None
            continue
        if raw.startswith("#"):
            continue
        if raw[0] in " \t":
            if key is None:
                raise GatherError(f"line {number}: continuation line outside a field: {raw!r}")
            line = raw.strip()
            current[key] += "\n" + ("" if line == "." else line)
            continue
        name, sep, value = raw.partition(":")
        if not sep or not name.strip():
            raise GatherError(f"line {number}: expected 'Field: value', got {raw!r}")
        key = name.strip().lower()
        current[key] = value.strip()
    if current:
        paragraphs.append(current)
    return paragraphs


@functools.lru_cache(maxsize=4096)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern) and pattern[i + 1] in "*?\\":
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
        i += 1
    return re.compile("".join(parts), re.DOTALL)


def dep5_match(pattern: str, path: str) -> bool:
    """DEP-5 glob: ``*`` matches any string (slashes included), ``?`` any one character,
    ``\\*``, ``\\?`` and ``\\\\`` are literal; patterns are relative to the source root."""
    pattern = pattern.removeprefix("./")
    path = path.removeprefix("./")
    return _pattern_regex(pattern).fullmatch(path) is not None


@dataclass(frozen=True)
class Dep5:
    stanzas: tuple[Stanza, ...]

    @classmethod
    def parse(cls, text: str) -> Dep5:
        stanzas = []
        for paragraph in _paragraphs(text):
            if "files" not in paragraph:
                continue  # the header, or a stand-alone License paragraph (full licence text)
            files = tuple(paragraph["files"].split())
            if not files:
                raise GatherError(f"a Files paragraph lists no files: {paragraph}")
            license_name, _, license_detail = paragraph.get("license", "").partition("\n")
            stanzas.append(
                Stanza(
                    index=len(stanzas),
                    files=files,
                    copyright="; ".join(
                        line.strip()
                        for line in paragraph.get("copyright", "").splitlines()
                        if line.strip()
                    ),
                    license=license_name.strip(),
                    license_detail=" ".join(license_detail.split()),
                    comment=" ".join(paragraph.get("comment", "").split()),
                )
            )
        if not stanzas:
            raise GatherError("no Files paragraphs: not a DEP-5 copyright file?")
        return cls(tuple(stanzas))

    def matches(self, path: str) -> list[Stanza]:
        """Every stanza with a pattern that matches ``path``, in file order."""
        return [stanza for stanza in self.stanzas if stanza.matching_patterns(path)]

    def lookup(self, path: str) -> Stanza | None:
        """The DEP-5 rule: the last stanza that matches wins. None when nothing matches."""
        found = self.matches(path)
        return found[-1] if found else None


def _is_default_pattern(pattern: str) -> bool:
    """``*`` or ``some/dir/*``: a catch-all default that specific stanzas are meant to refine."""
    if pattern == "*":
        return True
    return pattern.endswith("/*") and not any(char in pattern[:-2] for char in "*?")


def license_rank(license_name: str) -> int:
    """How restrictive a licence is (higher = more obligations); used to resolve conflicts."""
    name = license_name.lower()
    if name in {"public-domain", "cc0", "cc0-1.0"}:
        return 0
    if name.startswith("cc-by-sa"):
        return 2
    if name.startswith("cc-by"):
        return 1
    if name.startswith(("gpl", "lgpl")):
        return 3
    return 4


@dataclass(frozen=True)
class Attribution:
    copyright: str
    license: str
    license_detail: str
    note: str  # which stanza, and any conflict
    comment: str = ""  # the stanza's Comment field


CONFLICT_POLICIES = ("restrictive", "last", "exclude")


def attribute(dep5: Dep5, path: str, conflicts: str = "restrictive") -> Attribution | str:
    """Author and licence of ``path``, or a string saying why it cannot be attributed.

    The DEP-5 rule is that the last matching stanza wins. Upstream files sometimes break their
    own intent with it: endless-sky lists ``images/land/mountain1*`` (unsplash, public domain)
    AFTER ``images/land/*-sfiera*`` (Chris Pickel, CC-BY-SA-4.0), so ``mountain10-sfiera``
    would become public domain. When two or more *specific* stanzas (not ``*`` or ``dir/*``
    defaults) match with different copyright or licence, ``conflicts`` decides:
    ``restrictive`` keeps the most restrictive licence (ties: the last), ``last`` applies the
    DEP-5 rule, ``exclude`` leaves the file out. The choice is recorded in the note.
    """
    if conflicts not in CONFLICT_POLICIES:
        raise ValueError(f"conflicts must be one of {CONFLICT_POLICIES}, got {conflicts!r}")
    found = dep5.matches(path)
    if not found:
        return "no Files stanza of the copyright file matches it"
    last = found[-1]
    specific = [
        stanza
        for stanza in found
        if not all(_is_default_pattern(p) for p in stanza.matching_patterns(path))
    ]
    claims = {(stanza.copyright, stanza.license) for stanza in specific}
    note = f"DEP-5 stanza {last.index + 1}"
    chosen = last
    if len(claims) > 1:
        described = "; ".join(
            f"stanza {s.index + 1} ({', '.join(s.matching_patterns(path))}): "
            f"{s.copyright} / {s.license}"
            for s in specific
        )
        if conflicts == "exclude":
            return f"conflicting copyright stanzas: {described}"
        why = "the last match"
        if conflicts == "restrictive":
            chosen = max(specific, key=lambda s: (license_rank(s.license), s.index))
            if len({license_rank(s.license) for s in specific}) > 1:
                why = "the most restrictive licence"
        note = f"conflicting DEP-5 stanzas ({described}); kept stanza {chosen.index + 1}, {why}"
    if not chosen.license:
        return f"stanza {chosen.index + 1} has no License field"
    if not chosen.copyright:
        return f"stanza {chosen.index + 1} has no Copyright field"
    return Attribution(
        chosen.copyright, chosen.license, chosen.license_detail, note, chosen.comment
    )


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Photo:
    key: str  # unique output stem, e.g. "endless-sky_beach2"
    source: str  # short source name, e.g. "endless-sky"
    package: str  # "endless-sky-high-dpi 0.9.8-1" or "scikit-image 0.26.0"
    original_path: str  # where the file lives once the package is installed
    path: Path  # the local file read
    copyright: str
    license: str
    license_detail: str = ""
    note: str = ""
    comment: str = ""  # the copyright stanza's Comment (e.g. where the photo was taken from)
    val_ok: bool = True  # may be held out for validation


@dataclass(frozen=True)
class DebSource:
    key: str  # short name, prefix of the output files
    package: str
    files: str  # glob of the installed photos, relative to the package root
    copyright_file: str
    copyright_root: str  # installed folder that the copyright file's paths are relative to
    copyright_prefix: str = ""  # prepended to those relative paths
    not_photos: dict[str, str] = field(default_factory=dict)  # file name -> reason


DEB_SOURCES = (
    DebSource(
        key="endless-sky",
        package="endless-sky-high-dpi",
        # Only the landscape / city photographs; the rest of the package is game sprites.
        files="usr/share/games/endless-sky/plugins/endless-sky-high-dpi/images/land/*",
        copyright_file="usr/share/doc/endless-sky-high-dpi/copyright",
        copyright_root="usr/share/games/endless-sky/plugins/endless-sky-high-dpi",
    ),
    DebSource(
        key="mate",
        package="mate-backgrounds",
        files="usr/share/backgrounds/mate/nature/*",
        copyright_file="usr/share/doc/mate-backgrounds/copyright",
        copyright_root="usr/share/backgrounds/mate",
    ),
    DebSource(
        key="lomiri",
        package="lomiri-wallpapers-16.04",
        files="usr/share/backgrounds/*",
        copyright_file="usr/share/doc/lomiri-wallpapers-16.04/copyright",
        copyright_root="usr/share/backgrounds",
        copyright_prefix="16.04/",
        # Checked by eye (contact sheet): every other wallpaper in 20.04.0-2 is a photograph.
        not_photos={"umang_by_Abhishek_Mudgal.jpg": "abstract colour-gradient graphic"},
    ),
)


@dataclass(frozen=True)
class SkimagePhoto:
    name: str  # skimage.data function
    file: str  # file in skimage/data
    copyright: str
    license: str
    evidence: str  # phrase that the function's docstring must contain


# The licences as scikit-image documents them, in the docstrings of skimage.data.<name>
# (skimage/data/_fetchers.py); the bundled README.txt does not list them. Only colour
# photographs; the grayscale and scientific images are left out.
SKIMAGE_PHOTOS = (
    SkimagePhoto(
        "astronaut",
        "astronaut.png",
        "NASA (photograph of astronaut Eileen Collins, NASA Great Images)",
        "public-domain",
        "No known copyright restrictions, released into the public domain.",
    ),
    SkimagePhoto(
        "coffee",
        "coffee.png",
        "Rachel Michetti (courtesy of Pikolo Espresso Bar)",
        "CC0-1.0",
        "CC0 by the photographer (Rachel Michetti)",
    ),
    SkimagePhoto(
        "chelsea",
        "chelsea.png",
        "Stefan van der Walt",
        "CC0-1.0",
        "CC0 by the photographer (Stefan van der Walt)",
    ),
    SkimagePhoto(
        "rocket",
        "rocket.jpg",
        "SpaceX (Falcon 9 / DSCOVR launch, SpaceX Photos on Flickr)",
        "public-domain",
        "released in the public domain",
    ),
)


@dataclass
class Excluded:
    source: str
    original_path: str
    reason: str


def _safe_stem(name: str) -> str:
    stem = Path(name).stem.removesuffix("@2x")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-")


def collect_deb_photos(
    root: Path, source: DebSource, version: str, conflicts: str = "restrictive"
) -> tuple[list[Photo], list[Excluded]]:
    """The attributed photos of one unpacked package (``root`` = where ``dpkg-deb -x`` put it)."""
    copyright_path = root / source.copyright_file
    if not copyright_path.is_file():
        raise GatherError(f"{source.package}: copyright file not found at {copyright_path}")
    try:
        dep5 = Dep5.parse(copyright_path.read_text(encoding="utf-8"))
    except GatherError as error:
        raise GatherError(f"{copyright_path}: {error}") from error
    files = sorted(
        path
        for path in root.glob(source.files)
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise GatherError(f"{source.package}: no images match {source.files} under {root}")
    photos: list[Photo] = []
    excluded: list[Excluded] = []
    for path in files:
        relative = path.relative_to(root).as_posix()
        original = "/" + relative
        if path.name in source.not_photos:
            reason = f"not a photograph: {source.not_photos[path.name]}"
            excluded.append(Excluded(source.key, original, reason))
            continue
        in_source = (
            source.copyright_prefix + path.relative_to(root / source.copyright_root).as_posix()
        )
        found = attribute(dep5, in_source, conflicts)
        if isinstance(found, str):
            excluded.append(Excluded(source.key, original, f"cannot attribute: {found}"))
            continue
        photos.append(
            Photo(
                key=f"{source.key}_{_safe_stem(path.name)}",
                source=source.key,
                package=f"{source.package} {version}",
                original_path=original,
                path=path,
                copyright=found.copyright,
                license=found.license,
                license_detail=found.license_detail,
                note=f"{found.note} of {source.copyright_file} (as {in_source})"
                + (f"; comment: {found.comment}" if found.comment else ""),
                comment=found.comment,
            )
        )
    return photos, excluded


def collect_skimage_photos() -> tuple[list[Photo], list[Excluded], str]:
    """scikit-image's bundled colour photographs; empty (with a message) without skimage."""
    if importlib.util.find_spec("skimage") is None:
        return [], [], "scikit-image is not installed: skipping its bundled photos (optional)"
    import skimage
    import skimage.data

    data_dir = Path(skimage.data.__file__).parent
    photos: list[Photo] = []
    excluded: list[Excluded] = []
    for item in SKIMAGE_PHOTOS:
        original = f"skimage/data/{item.file}"
        function = getattr(skimage.data, item.name, None)
        doc = " ".join((inspect.getdoc(function) or "").split()) if function else ""
        if item.evidence not in doc:
            reason = f"skimage.data.{item.name} no longer documents {item.evidence!r}"
            excluded.append(Excluded("skimage", original, f"cannot attribute: {reason}"))
            continue
        if not (data_dir / item.file).is_file():
            excluded.append(Excluded("skimage", original, "file missing from this install"))
            continue
        photos.append(
            Photo(
                key=f"skimage_{item.name}",
                source="skimage",
                package=f"scikit-image {skimage.__version__}",
                original_path=original,
                path=data_dir / item.file,
                copyright=item.copyright,
                license=item.license,
                note=f"licence as documented in the skimage.data.{item.name} docstring",
                # Train only: the held-out split must not depend on whether skimage is there.
                val_ok=False,
            )
        )
    return photos, excluded, f"scikit-image {skimage.__version__}: {len(photos)} photos"


# --------------------------------------------------------------------------------------------
# Debian packages: download and unpack
# --------------------------------------------------------------------------------------------


def _run(command: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as error:
        raise GatherError(
            f"{command[0]} not found: this script needs a Debian/Ubuntu system (apt, dpkg)"
        ) from error


def _deb_version(deb: Path) -> str:
    result = _run(["dpkg-deb", "-f", str(deb), "Version"])
    if result.returncode != 0:
        raise GatherError(f"{deb} is not a readable .deb: {result.stderr.strip()}")
    return result.stdout.strip()


def _compare_versions(a: str, b: str) -> int:
    if a == b:
        return 0
    return 1 if _run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0 else -1


def fetch_deb(package: str, cache: Path) -> tuple[Path, str]:
    """The cached .deb of ``package`` (newest version), downloaded with apt-get when absent."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{package}_*.deb"))
    if not found:
        print(f"  apt-get download {package} -> {cache}", flush=True)
        result = _run(["apt-get", "download", package], cwd=cache)
        if result.returncode != 0 and hasattr(os, "geteuid") and os.geteuid() == 0:
            print("  download failed; running apt-get update and retrying", flush=True)
            _run(["apt-get", "update"])
            result = _run(["apt-get", "download", package], cwd=cache)
        if result.returncode != 0:
            raise GatherError(
                f"apt-get download {package} failed:\n{result.stderr.strip()}\n"
                "Run `apt-get update` (as root) and try again, or put the .deb into the cache "
                f"folder {cache} yourself."
            )
        found = sorted(cache.glob(f"{package}_*.deb"))
        if not found:
            raise GatherError(f"apt-get download {package} left no {package}_*.deb in {cache}")
    versions = {deb: _deb_version(deb) for deb in found}
    deb = max(
        found, key=functools.cmp_to_key(lambda a, b: _compare_versions(versions[a], versions[b]))
    )
    if len(found) > 1:
        print(f"  several cached versions of {package}; using {deb.name}", flush=True)
    return deb, versions[deb]


def unpack_deb(deb: Path, cache: Path) -> Path:
    """``dpkg-deb -x`` into ``cache/extracted/<deb name>`` once; later runs reuse it."""
    destination = cache / "extracted" / deb.stem
    marker = destination / ".complete"
    if marker.is_file():
        return destination
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    result = _run(["dpkg-deb", "-x", str(deb), str(destination)])
    if result.returncode != 0:
        raise GatherError(f"dpkg-deb -x {deb} failed: {result.stderr.strip()}")
    marker.write_text(deb.name + "\n")
    return destination


# --------------------------------------------------------------------------------------------
# Images, split and output
# --------------------------------------------------------------------------------------------


def load_downscaled(path: Path, factor: int = DOWNSCALE) -> Image.Image:
    """RGB, EXIF orientation applied, downscaled ``factor``x with Lanczos (even crop first)."""
    try:
        image = read_rgb(path, max_pixels=TRAINING_MAX_PIXELS)
    except ImageReadError as error:
        reason = str(error).removeprefix(f"{path}: ")
        raise GatherError(f"cannot read image {path}: {reason}") from error
    width, height = image.size[0] // factor, image.size[1] // factor
    if width < 1 or height < 1:
        raise GatherError(f"{path} is too small to downscale {factor}x: {image.size}")
    image = image.crop((0, 0, width * factor, height * factor))
    return image.resize((width, height), Image.Resampling.LANCZOS)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` (atomically) unless ``path`` already holds exactly it. True when written."""
    if path.is_file() and path.read_bytes() == data:
        return False
    with atomic_output(path) as temporary:
        temporary.write_bytes(data)
    return True


@dataclass(frozen=True)
class Crop:
    key: str
    index: int
    box: tuple[int, int, int, int]  # left, top, right, bottom

    @property
    def name(self) -> str:
        return f"{self.key}_{self.index}.png"


@dataclass(frozen=True)
class Split:
    train: tuple[str, ...]
    val: tuple[str, ...]  # held-out photos (whole photos: none of them is in train)
    crops: tuple[Crop, ...]


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def centred_crop(size: tuple[int, int], crop: int, rng: random.Random) -> tuple[int, int, int, int]:
    """A ``crop`` square near the centre: jittered by up to a quarter of the free margin."""
    width, height = size
    if width < crop or height < crop:
        raise ValueError(f"{width}x{height} is smaller than the crop {crop}")
    free_x, free_y = width - crop, height - crop
    left = round(free_x / 2 + rng.uniform(-0.25, 0.25) * free_x)
    top = round(free_y / 2 + rng.uniform(-0.25, 0.25) * free_y)
    return left, top, left + crop, top + crop


def plan_split(
    sizes: dict[str, tuple[int, int]],
    val_crops: int,
    seed: int,
    crop_size: int = VAL_CROP_SIZE,
    held_out: Iterable[str] = (),
    val_candidates: Iterable[str] | None = None,
) -> Split:
    """Choose the held-out photos and their validation crops from the photos' sizes alone.

    Whole photos are held out: those in ``held_out`` (e.g. the demo examples) plus photos
    drawn from ``val_candidates`` (default: all) by a seeded hash of their key, so adding or
    removing one photo does not reshuffle the others. One crop per held-out photo when there
    are enough photos; fewer photos with several crops each otherwise. At least one photo is
    always left for training.
    """
    if val_crops < 1:
        raise ValueError(f"val_crops must be >= 1, got {val_crops}")
    keys = sorted(sizes)
    candidates = set(keys if val_candidates is None else val_candidates) & set(keys)
    forced = sorted(set(held_out) & set(keys))

    def fits(key: str) -> bool:
        return min(sizes[key]) >= crop_size

    eligible_forced = [key for key in forced if fits(key)]
    pool = sorted(
        (key for key in candidates - set(forced) if fits(key)), key=lambda k: _rank(seed, k)
    )
    room = len(keys) - len(forced) - 1  # photos that may still leave training
    if room < 0:
        raise ValueError("every photo is held out: nothing left to train on")
    wanted = min(val_crops, max(1, (len(eligible_forced) + len(pool)) // 4))
    drawn = pool[: max(0, min(wanted - len(eligible_forced), room))]
    val_photos = sorted(eligible_forced + drawn)
    if not val_photos:
        raise ValueError(f"no photo can be held out: none is at least {crop_size}px on both sides")

    crops = []
    for number in range(val_crops):
        key = val_photos[number % len(val_photos)]
        index = number // len(val_photos)
        rng = random.Random(f"{seed}:{key}:{index}")
        crops.append(Crop(key, index, centred_crop(sizes[key], crop_size, rng)))
    held = set(forced) | set(drawn)
    train = tuple(key for key in keys if key not in held)
    return Split(
        train=train, val=tuple(sorted(held)), crops=tuple(sorted(crops, key=lambda c: c.name))
    )


@dataclass(frozen=True)
class ExampleSpec:
    file: str
    photo: str  # Photo.key
    title: str


# Demo inputs (public domain / CC0 first, one CC-BY-SA with attribution). Their photos are
# always held out of training, so `make demo` upscales photos the models never saw.
EXAMPLES = (
    ExampleSpec("skyline.png", "endless-sky_city11", "Manhattan skyline"),
    ExampleSpec("dandelions.png", "lomiri_seeding_by_Clements_Engelhardt", "Dandelion seed heads"),
    ExampleSpec("lava-lake.png", "endless-sky_lava0", "Lava lake (USGS)"),
    ExampleSpec("azure-window.png", "endless-sky_bwerner1", "Azure Window, Gozo"),
)
EXAMPLE_SIZE = (192, 128)


def make_example(photo: Photo, size: tuple[int, int] = EXAMPLE_SIZE) -> Image.Image:
    """Centre crop of the photo to the aspect of ``size``, downscaled to it with Lanczos."""
    image = load_downscaled(photo.path)
    width, height = image.size
    aspect = size[0] / size[1]
    if width / height > aspect:
        new_width = round(height * aspect)
        box = ((width - new_width) // 2, 0, (width - new_width) // 2 + new_width, height)
    else:
        new_height = round(width / aspect)
        box = (0, (height - new_height) // 2, width, (height - new_height) // 2 + new_height)
    return image.crop(box).resize(size, Image.Resampling.LANCZOS)


def write_examples(photos: dict[str, Photo], directory: Path) -> list[Path]:
    rows = []
    written = []
    for spec in EXAMPLES:
        photo = photos.get(spec.photo)
        if photo is None:
            raise GatherError(f"example {spec.file}: photo {spec.photo} was not gathered")
        write_if_changed(directory / spec.file, png_bytes(make_example(photo)))
        written.append(directory / spec.file)
        url = LICENSE_URLS.get(photo.license)
        license_cell = f"[{photo.license}]({url})" if url else photo.license
        if photo.license_detail:
            license_cell += f" ({photo.license_detail})"
        author = photo.copyright
        if author == "Various":
            author = "photographer not named (the copyright file says 'Various')"
        if photo.comment:
            author += f"; {photo.comment}"
        rows.append(
            f"| `{spec.file}` | {spec.title} | {photo.package}: `{photo.original_path}` "
            f"| {author} | {license_cell} |"
        )
    width, height = EXAMPLE_SIZE
    intro = (
        f"Small real photographs ({width}x{height}), the inputs of `make demo`. Each is a "
        "centre crop of the original photo, downscaled with Lanczos by "
        "`python scripts/gather_photos.py --examples examples/images` (reproducible). "
        "Their source photos are held out of the training set (`data/train`)."
    )
    outro = (
        "The authors and licences come from the packages' Debian copyright files "
        "(`/usr/share/doc/PACKAGE/copyright`). The files here are modified (cropped and "
        "downscaled) versions of the originals. A CC BY-SA image stays under its licence "
        "when adapted: its upscaled outputs must keep the attribution and the same "
        "licence. Public-domain and CC0 images carry no conditions."
    )
    text = "\n".join(
        [
            "# Example images: sources and licences",
            "",
            textwrap.fill(intro, 100, break_on_hyphens=False, break_long_words=False),
            "",
            "| File | Subject | Source (Debian package: installed path) | Author / copyright | Licence |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
            textwrap.fill(outro, 100, break_on_hyphens=False, break_long_words=False),
            "",
        ]
    )
    write_if_changed(directory / "LICENSES.md", text.encode())
    written.append(directory / "LICENSES.md")
    return written


def _read_previous(path: Path) -> list[str]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [row["file"] for row in csv.DictReader(handle) if row.get("file")]


def _csv_bytes(fields: Sequence[str], rows: list[dict[str, object]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


@dataclass
class Report:
    photos: list[Photo]
    split: Split
    excluded: list[Excluded]
    rows: list[dict[str, object]]
    written: int
    bytes_train: int
    bytes_val: int
    removed: list[str]


def gather(
    photos: Sequence[Photo],
    output: Path,
    val_crops: int = 24,
    seed: int = 0,
    excluded: Sequence[Excluded] = (),
    held_out: Iterable[str] = (),
    crop_size: int = VAL_CROP_SIZE,
) -> Report:
    """Downscale every photo, split whole photos into train / val, write files and records."""
    keys = [photo.key for photo in photos]
    duplicates = [key for key, count in Counter(keys).items() if count > 1]
    if duplicates:
        raise GatherError(f"two photos would share an output name: {duplicates}")
    by_key = {photo.key: photo for photo in photos}
    images: dict[str, Image.Image] = {}
    for number, photo in enumerate(photos, 1):
        if number % 50 == 0 or number == len(photos):
            print(f"  downscaled {number}/{len(photos)}", flush=True)
        images[photo.key] = load_downscaled(photo.path)
    try:
        split = plan_split(
            {key: image.size for key, image in images.items()},
            val_crops,
            seed,
            crop_size=crop_size,
            held_out=held_out,
            val_candidates=[photo.key for photo in photos if photo.val_ok],
        )
    except ValueError as error:
        raise GatherError(f"cannot split {len(photos)} photos: {error}") from error

    def record(photo: Photo, file: str, split_name: str, size: tuple[int, int], crop: str):
        return {
            "file": file,
            "split": split_name,
            "source": photo.source,
            "package": photo.package,
            "original_path": photo.original_path,
            "copyright": photo.copyright,
            "license": photo.license,
            "width": size[0],
            "height": size[1],
            "crop": crop,
            "note": photo.note,
            "license_detail": photo.license_detail,
        }

    rows: list[dict[str, object]] = []
    written = bytes_train = bytes_val = 0
    for key in split.train:
        image = images[key]
        data = png_bytes(image)
        written += write_if_changed(output / "train" / f"{key}.png", data)
        bytes_train += len(data)
        rows.append(record(by_key[key], f"train/{key}.png", "train", image.size, ""))
    for crop in split.crops:
        data = png_bytes(images[crop.key].crop(crop.box))
        written += write_if_changed(output / "val" / crop.name, data)
        bytes_val += len(data)
        note = "crop (left,top,right,bottom) of the 2x-downscaled photo"
        rows.append(
            record(
                by_key[crop.key],
                f"val/{crop.name}",
                "val",
                (crop_size, crop_size),
                ",".join(map(str, crop.box)),
            )
            | {"note": f"{note}; {by_key[crop.key].note}"}
        )
    rows.sort(key=lambda row: str(row["file"]))

    # Files an earlier run wrote that this run does not: remove them (only those it recorded).
    new_files = {str(row["file"]) for row in rows}
    removed = []
    for old in _read_previous(output / "SOURCES.csv"):
        target = output / old
        if old not in new_files and old.startswith(("train/", "val/")) and target.is_file():
            target.unlink()
            removed.append(old)
    write_if_changed(output / "SOURCES.csv", _csv_bytes(SOURCES_FIELDS, rows))
    write_if_changed(
        output / "EXCLUDED.csv",
        _csv_bytes(
            ("source", "original_path", "reason"),
            [vars(item) for item in sorted(excluded, key=lambda e: (e.source, e.original_path))],
        ),
    )
    return Report(
        list(photos), split, list(excluded), rows, written, bytes_train, bytes_val, removed
    )


def summary(report: Report, output: Path) -> str:
    lines = [
        f"Wrote {output}/ ({report.written} files changed, {len(report.removed)} stale removed)"
    ]
    sources = sorted({photo.source for photo in report.photos})
    val_photos = set(report.split.val)
    lines.append(f"  {'source':<12} {'photos':>6} {'train':>6} {'held out':>8} {'val crops':>9}")
    for source in sources:
        keys = [photo.key for photo in report.photos if photo.source == source]
        crops = sum(1 for crop in report.split.crops if crop.key in keys)
        held = sum(1 for key in keys if key in val_photos)
        lines.append(f"  {source:<12} {len(keys):>6} {len(keys) - held:>6} {held:>8} {crops:>9}")
    total_crops = len(report.split.crops)
    lines.append(
        f"  {'total':<12} {len(report.photos):>6} {len(report.split.train):>6} "
        f"{len(val_photos):>8} {total_crops:>9}"
    )
    lines.append("  licences (train images / val crops):")
    train_licences = Counter(str(r["license"]) for r in report.rows if r["split"] == "train")
    val_licences = Counter(str(r["license"]) for r in report.rows if r["split"] == "val")
    for name in sorted(set(train_licences) | set(val_licences)):
        lines.append(f"    {name:<16} {train_licences[name]:>4} / {val_licences[name]:>3}")
    conflicts = sum(1 for photo in report.photos if "conflicting DEP-5" in photo.note)
    if conflicts:
        lines.append(
            f"  {conflicts} photos matched conflicting copyright stanzas (see 'note' in SOURCES.csv)"
        )
    if report.excluded:
        lines.append(f"  excluded {len(report.excluded)}:")
        for item in report.excluded:
            lines.append(f"    {item.source}: {item.original_path}: {item.reason}")
    mib = 1024 * 1024
    lines.append(
        f"  size: train {report.bytes_train / mib:.1f} MiB, val {report.bytes_val / mib:.1f} MiB, "
        f"total {(report.bytes_train + report.bytes_val) / mib:.1f} MiB"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Gather offline real photographs (Debian packages, scikit-image) into "
        "OUTPUT/train, a held-out OUTPUT/val split and OUTPUT/SOURCES.csv.",
    )
    parser.add_argument("--output", type=Path, default=Path("data"), help="default: data")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="folder for the downloaded .debs and their unpacked trees (default: OUTPUT/.debs)",
    )
    parser.add_argument(
        "--val-crops",
        type=int,
        default=24,
        help=f"number of {VAL_CROP_SIZE}x{VAL_CROP_SIZE} validation crops (>= {MIN_VAL_CROPS})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the crops")
    parser.add_argument(
        "--examples",
        type=Path,
        default=None,
        help="also write the demo images and their LICENSES.md here (e.g. examples/images)",
    )
    parser.add_argument(
        "--no-skimage", action="store_true", help="leave out scikit-image's bundled photos"
    )
    parser.add_argument(
        "--conflicts",
        choices=CONFLICT_POLICIES,
        default="restrictive",
        help="when specific copyright stanzas disagree on a file: keep the most restrictive "
        "licence (default), apply the DEP-5 last-match rule, or exclude the file",
    )
    args = parser.parse_args(argv)
    if args.val_crops < MIN_VAL_CROPS:
        parser.error(f"--val-crops must be at least {MIN_VAL_CROPS}, got {args.val_crops}")
    if args.cache is None:
        args.cache = args.output / ".debs"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    photos: list[Photo] = []
    excluded: list[Excluded] = []
    try:
        for source in DEB_SOURCES:
            print(f"{source.package}:", flush=True)
            deb, version = fetch_deb(source.package, args.cache)
            root = unpack_deb(deb, args.cache)
            found, left_out = collect_deb_photos(root, source, version, args.conflicts)
            print(f"  {deb.name}: {len(found)} photos, {len(left_out)} excluded", flush=True)
            photos += found
            excluded += left_out
        if args.no_skimage:
            print("scikit-image: skipped (--no-skimage)")
        else:
            found, left_out, message = collect_skimage_photos()
            print(message)
            photos += found
            excluded += left_out
        held_out = [spec.photo for spec in EXAMPLES]
        report = gather(photos, args.output, args.val_crops, args.seed, excluded, held_out)
        print(summary(report, args.output))
        if args.examples is not None:
            written = write_examples({photo.key: photo for photo in photos}, args.examples)
            size = sum(path.stat().st_size for path in written)
            print(f"Wrote {len(written)} files to {args.examples}/ ({size / 1024:.0f} KiB)")
    except GatherError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
