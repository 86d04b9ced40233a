"""The one loader and the model contract: community checkpoints (spandrel), Hub ids from a real
Hugging Face cache layout with HF_HUB_OFFLINE, and clear errors for what cannot be loaded.

Checkpoints are tiny random networks saved by the tests in the key layouts their projects use:
Real-ESRGAN's RRDBNet, SRVGGNetCompact (Real-ESRGAN compact), SwinIR and SPAN.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from conftest import tiny_generator
from upsampler import Upscaler
from upsampler.inference.devices import resolve_dtype, usable_dtypes
from upsampler.models import (
    CheckpointError,
    ModelUnavailableError,
    SpandrelUpsampler,
    UpsamplerModel,
    load_model,
)
from upsampler.models.hub import parse_hub_id
from upsampler_cli.app import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")


def _compact(scale: int = 4, channels: int = 3):
    from spandrel.architectures.Compact import Compact

    return Compact(num_in_ch=channels, num_out_ch=channels, num_feat=8, num_conv=2, upscale=scale)


def _span():
    from spandrel.architectures.SPAN import SPAN

    return SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=4)


def _swinir():
    from spandrel.architectures.SwinIR import SwinIR

    return SwinIR(
        img_size=16,
        embed_dim=12,
        depths=[1],
        num_heads=[2],
        window_size=4,
        mlp_ratio=2.0,
        upscale=2,
        upsampler="pixelshuffledirect",
    )


def _esrgan():
    from spandrel.architectures.ESRGAN import ESRGAN

    return ESRGAN(num_filters=8, num_blocks=1, scale=4)


def _realesrgan_state_dict() -> dict[str, torch.Tensor]:
    from test_cli_eval import _tiny_rrdb_state_dict  # Real-ESRGAN's RRDBNet key layout

    return _tiny_rrdb_state_dict()


# name -> (state dict builder, architecture spandrel reports, scale, weight gain)
LAYOUTS = {
    "realesrgan-rrdbnet": (_realesrgan_state_dict, "ESRGAN", 4, 1.0),
    "esrgan-old-layout": (lambda: _esrgan().state_dict(), "ESRGAN", 4, 1.0),
    "compact": (lambda: _compact().state_dict(), "RealESRGAN Compact", 4, 1.0),
    "swinir": (lambda: _swinir().state_dict(), "SwinIR", 2, 1.0),
    "span": (lambda: _span().state_dict(), "SPAN", 4, 0.1),  # x255 inside: saturates at 1.0
}


def _save(
    network: torch.nn.Module | dict[str, torch.Tensor],
    path: Path,
    *,
    wrap: str | None = None,
    gain: float = 1.0,
) -> Path:
    """Save a network's (or a state dict's) weights, re-drawn with 1/fan-in variance so that
    the output depends on the input (and is not clamped flat); 1-D tensors (biases, norms) 0.1."""
    state = network if isinstance(network, dict) else network.state_dict()
    generator = torch.Generator().manual_seed(0)

    def redraw(tensor: torch.Tensor) -> torch.Tensor:
        if not tensor.is_floating_point():
            return tensor.contiguous()
        if tensor.ndim < 2:
            return torch.full(tensor.shape, 0.1)
        fan_in = tensor[0].numel()
        return (gain * torch.randn(tensor.shape, generator=generator) / fan_in**0.5).contiguous()

    state = {key: redraw(value) for key, value in state.items()}
    if path.suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state if wrap is None else {wrap: state}, path)
    return path


def _image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, channels), dtype=np.uint8)


# ---------------------------------------------------------------------------- spandrel files


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_community_checkpoints_load_and_run_through_the_engine(tmp_path, layout, suffix):
    build, architecture, scale, gain = LAYOUTS[layout]
    path = _save(build(), tmp_path / f"model{suffix}", wrap="params_ema", gain=gain)
    model = load_model(path)
    assert isinstance(model, SpandrelUpsampler) and isinstance(model, UpsamplerModel)
    assert model.architecture == architecture and model.scale == scale
    assert not model.text_conditioning and not model.uses_styles

    # One tile that covers the image: the engine gives exactly what the network gives.
    lq = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(1))
    direct = model.descriptor(lq).clone()
    saturated = ((direct == 0) | (direct == 1)).float().mean()
    assert direct.std() > 0.02 and saturated < 0.5, "the test network's output says nothing"
    upscaler = Upscaler(model, device="cpu")
    whole = upscaler.upscale(lq, tile=32)
    torch.testing.assert_close(whole, direct, atol=1e-5, rtol=0)
    # Tiled and blended: same size, close to the untiled output away from nothing in particular.
    tiled = upscaler.upscale(lq, tile=16, tile_overlap=4)
    assert tiled.shape == (1, 3, 24 * scale, 20 * scale)
    assert (tiled - direct).abs().mean() < 0.05


def test_alpha_grey_and_16_bit_work_as_for_our_models(tmp_path):
    upscaler = Upscaler(load_model(_save(_compact(), tmp_path / "c.safetensors")), device="cpu")
    rgba = Image.fromarray(_image(12, 10, 4))
    out = upscaler.upscale(rgba)
    assert out.mode == "RGBA" and out.size == (40, 48)
    grey16 = (np.linspace(0, 65535, 12 * 10).reshape(12, 10)).astype(np.uint16)
    out16 = upscaler.upscale(grey16)
    assert out16.dtype == np.uint16 and out16.shape == (48, 40)
    assert upscaler.upscale(rgba, outscale=8).size == (80, 96)  # two passes, as for ours


@pytest.mark.parametrize("scale", [1, 2, 3, 8])
def test_other_scales_run_and_reach_any_outscale(tmp_path, scale):
    model = load_model(_save(_compact(scale=scale), tmp_path / f"{scale}x.safetensors"))
    assert model.scale == scale
    upscaler = Upscaler(model, device="cpu")
    lq = torch.rand(1, 3, 10, 12, generator=torch.Generator().manual_seed(0))
    assert upscaler.upscale(lq, tile=8).shape == (1, 3, 10 * scale, 12 * scale)
    # A 1x model (a restorer) runs once and the resize does the rest; others as many passes
    # as their scale needs.
    assert upscaler.upscale(lq, outscale=4, tile=8).shape == (1, 3, 40, 48)


def test_grey_models_take_luma_and_give_rgb(tmp_path):
    model = load_model(_save(_compact(channels=1), tmp_path / "grey.pth"))
    assert model.input_channels == 1
    out = Upscaler(model, device="cpu").upscale(torch.rand(1, 3, 8, 8))
    assert out.shape == (1, 3, 32, 32)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])


def test_precision_follows_what_the_model_supports(tmp_path):
    model = load_model(_save(_compact(), tmp_path / "c.pth"))
    model.descriptor.supports_bfloat16 = False  # as spandrel says of some architectures
    cpu = torch.device("cpu")
    assert usable_dtypes(cpu, model) == (torch.float32,)
    assert resolve_dtype("auto", cpu, model) == torch.float32
    with pytest.raises(ValueError, match="RealESRGAN Compact models do not run correctly in bf"):
        resolve_dtype("bf16", cpu, model)
    assert Upscaler(model, device="cpu").supported_dtypes == (torch.float32,)


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_bad_checkpoint_files_fail_clearly(tmp_path):
    target = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"params": _compact().state_dict(), "extra": _Payload(target)}, evil)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_model(evil)
    assert not target.exists()  # nothing of the pickle ran

    unknown = tmp_path / "unknown.safetensors"
    save_file({"encoder.weight": torch.zeros(4, 4)}, unknown)
    with pytest.raises(CheckpointError, match="not an architecture spandrel knows"):
        load_model(unknown)

    good = _save(_compact(), tmp_path / "good.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(corrupt)
    truncated = tmp_path / "truncated.pth"
    _save(_compact(), tmp_path / "whole.pth")
    truncated.write_bytes((tmp_path / "whole.pth").read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(truncated)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelUnavailableError, match="not a model file"):
        load_model(tmp_path / "notes.txt")


def test_a_folder_of_checkpoints_names_them(tmp_path):
    _save(_compact(), tmp_path / "4x-Model.pth")
    with pytest.raises(ModelUnavailableError, match=r"name the file \(4x-Model.pth\)"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        ("evil", "weights_only=True"),
        ("unknown", "not an architecture spandrel knows"),
        ("corrupt", "truncated or corrupt"),
        ("hub", "not in the Hugging Face cache"),
    ],
)
def test_cli_refuses_bad_models_and_writes_nothing(tmp_path, monkeypatch, make, message):
    from huggingface_hub import constants

    Image.fromarray(_image(8, 8)).save(tmp_path / "in.png")
    if make == "evil":
        model = tmp_path / "evil.pth"
        torch.save({"params": _compact().state_dict(), "x": _Payload(tmp_path / "p")}, model)
    elif make == "unknown":
        model = tmp_path / "unknown.safetensors"
        save_file({"encoder.weight": torch.zeros(4, 4)}, model)
    elif make == "corrupt":
        model = tmp_path / "corrupt.safetensors"
        model.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    else:
        model = "someone/not-cached"
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["upscale", str(tmp_path / "in.png"), "-o", str(out), "-m", str(model)]
    )
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not any(out.iterdir())  # the folder was checked, nothing was written into it


# ---------------------------------------------------------------------------- Hub ids


def test_hub_ids_are_told_apart_from_paths():
    assert parse_hub_id("fal/AuraSR-v2") == ("fal/AuraSR-v2", None)
    assert parse_hub_id("owner/repo/4x-Model.safetensors") == ("owner/repo", "4x-Model.safetensors")
    assert parse_hub_id("owner/repo/models/x.pth") == ("owner/repo", "models/x.pth")
    assert parse_hub_id("owner/repo/README.md") is None  # a file must be a checkpoint
    assert parse_hub_id("nano-4x") is None
    assert parse_hub_id("owner/../etc/x.pth") is None


def cache_repo(cache: Path, repo_id: str, files: dict[str, Path], *, ref: str = "main") -> str:
    """Lay ``files`` (name in repo -> local file) out as huggingface_hub does in ``cache``:
    ``models--OWNER--NAME/blobs/<sha256>``, ``snapshots/<commit>/<name>`` linking to the blob,
    and ``refs/<ref>`` holding the commit. Returns the commit."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    digest = hashlib.sha1(repo_id.encode())
    for name, source in sorted(files.items()):
        digest.update(name.encode() + source.read_bytes())
    commit = digest.hexdigest()
    for name, source in files.items():
        data = source.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / ref).write_text(commit)
    return commit


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty HF cache, with the Hub offline, as huggingface_hub sees HF_HUB_CACHE and
    HF_HUB_OFFLINE when they are set before it is imported."""
    from huggingface_hub import constants

    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_cached_repos_and_files_load_offline(tmp_path, offline_cache):
    from test_aurasr import write_aurasr_folder

    ours = tmp_path / "ours"
    tiny_generator().save_pretrained(ours)
    cache_repo(offline_cache, "someone/tiny-4x", {p.name: p for p in ours.iterdir()})
    model = load_model("someone/tiny-4x")
    assert type(model).__name__ == "GigaGANUpsampler"

    aurasr = write_aurasr_folder(tmp_path / "aurasr")
    cache_repo(offline_cache, "fal/AuraSR-tiny", {p.name: p for p in aurasr.iterdir()})
    assert type(load_model("fal/AuraSR-tiny")).__name__ == "AuraSRUpsampler"

    checkpoint = _save(_span(), tmp_path / "4x-SPAN.safetensors")
    cache_repo(offline_cache, "someone/zoo", {"models/4x-SPAN.safetensors": checkpoint})
    assert load_model("someone/zoo/models/4x-SPAN.safetensors").architecture == "SPAN"
    with pytest.raises(ModelUnavailableError, match="not in the Hugging Face cache"):
        load_model("someone/zoo/models/other.pth")


def test_revisions_pick_their_snapshot(tmp_path, offline_cache):
    small, large = tmp_path / "small", tmp_path / "large"
    tiny_generator().save_pretrained(small)
    tiny_generator(encoder_channels=[8, 16, 24]).save_pretrained(large)
    cache_repo(offline_cache, "someone/tiny-4x", {p.name: p for p in small.iterdir()})
    cache_repo(offline_cache, "someone/tiny-4x", {p.name: p for p in large.iterdir()}, ref="v2")
    assert load_model("someone/tiny-4x").config.encoder_channels == [8, 16, 16]
    assert load_model("someone/tiny-4x", revision="v2").config.encoder_channels == [8, 16, 24]
    with pytest.raises(ModelUnavailableError, match="at revision 'v3' is not in the Hugging Face"):
        load_model("someone/tiny-4x", revision="v3")
    with pytest.raises(ModelUnavailableError, match="--revision applies to Hub ids"):
        load_model(small, revision="v2")


def test_cli_runs_a_cached_hub_model_with_hf_hub_offline(tmp_path):
    # A real process with the real environment variables, as a user runs it.
    cache = tmp_path / "home" / "hub"
    checkpoint = _save(_compact(), tmp_path / "4x-Compact.pth", wrap="params")
    cache_repo(cache, "someone/zoo", {"4x-Compact.pth": checkpoint})
    Image.fromarray(_image(10, 12)).save(tmp_path / "photo.png")
    environment = {
        **os.environ,
        "HF_HOME": str(tmp_path / "home"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    upsampler = Path(sys.executable).parent / "upsampler"
    command = [str(upsampler), "upscale", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out")]
    result = subprocess.run(
        [*command, "-m", "someone/zoo/4x-Compact.pth", "--no-progress"],
        env=environment,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert Image.open(tmp_path / "out" / "photo.png").size == (48, 40)
    info = subprocess.run(
        [str(upsampler), "info", "someone/zoo/4x-Compact.pth"],
        env=environment,
        capture_output=True,
        text=True,
    )
    assert info.returncode == 0, info.stderr
    assert "RealESRGAN Compact" in info.stdout and "4x" in info.stdout


# ---------------------------------------------------------------------------- listings


def test_models_lists_builtins_and_other_sources():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    assert "nano-4x" in result.output and "nano-4x-psnr" in result.output
    assert "spandrel" in result.output and "owner/repo" in result.output


def test_info_describes_builtin_and_checkpoint_models(tmp_path):
    result = runner.invoke(app, ["info", "nano-4x"])
    assert result.exit_code == 0, result.output
    assert "GigaGANUpsampler" in result.output and "1,397,289" in result.output
    # the `student` preset works at the input resolution: any size from 2 px
    assert "multiple of 1, at least 2 px" in result.output
    path = _save(_swinir(), tmp_path / "swinir.pth")
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.output.splitlines() if line.strip())
    assert lines["architecture"] == "SwinIR" and lines["scale"] == "2x"
    assert "at least 16 px" in lines["input"]
    result = runner.invoke(app, ["info", str(tmp_path / "missing.pth")])
    assert result.exit_code == 2 and "neither a built-in name" in result.output


# ---------------------------------------------------------------------------- training


def test_training_starts_from_a_cached_hub_id_and_refuses_other_architectures(
    tmp_path, offline_cache
):
    from test_training import TINY_MODEL, textured, tiny_recipe

    from upsampler import GigaGANUpsampler
    from upsampler.training import RecipeError, Trainer, recipe_from_dict

    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(2):
        textured(index).save(photos / f"{index}.png")
    torch.manual_seed(3)
    trained = GigaGANUpsampler(**TINY_MODEL)
    trained.save_pretrained(tmp_path / "release")
    cache_repo(
        offline_cache, "someone/tiny-4x", {p.name: p for p in (tmp_path / "release").iterdir()}
    )
    recipe = tiny_recipe(photos, tmp_path / "run", train={"init_from": "someone/tiny-4x"})
    trainer = Trainer(recipe_from_dict(recipe))
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(trainer.generator.state_dict()[key], value, rtol=0, atol=0)

    checkpoint = _save(_compact(), tmp_path / "4x-Compact.pth")
    recipe = tiny_recipe(photos, tmp_path / "run2", train={"init_from": str(checkpoint)})
    with pytest.raises(RecipeError, match="single checkpoint file"):
        Trainer(recipe_from_dict(recipe))
    recipe = tiny_recipe(photos, tmp_path / "run3", train={"init_from": "someone/not-cached"})
    with pytest.raises(RecipeError, match="train.init_from: .*not in the Hugging Face cache"):
        Trainer(recipe_from_dict(recipe))


def test_a_device_name_torch_does_not_know_names_the_accepted_ones():
    from upsampler.inference.devices import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"auto, cpu, cuda, cuda:N or mps, got 'gpu'$"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match="device must be cpu, cuda or mps, got meta"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
            resolve_device("cuda:1")
