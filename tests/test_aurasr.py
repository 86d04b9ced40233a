"""AuraSR checkpoints: parity with the ``aura-sr`` reference, conversion, and our engine on them.

Every network here has random weights built from a config (nothing is downloaded): the
reference ``aura_sr.UnetUpsampler`` is seeded, its state dict is saved in AuraSR's published
layout or converted in memory, and ours must compute the same function.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from upsampler import Upscaler
from upsampler.evaluation.seams import grid_borders, seam_ratio, tile_borders
from upsampler.inference.tiling import plan_tiles
from upsampler.models.aurasr import AuraSRUpsampler
from upsampler.models.aurasr_checkpoint import (
    AURASR_PUBLISHED_CONFIG,
    AuraSRFormatError,
    config_from_aurasr,
    convert_aurasr_state_dict,
    load_aurasr,
)
from upsampler.models.loading import load_model
from upsampler_cli.app import app

aura_sr = pytest.importorskip("aura_sr")
pytestmark = pytest.mark.usefixtures("one_thread")

# Every structural feature of the published model with a few channels. The noise width is 128
# because the reference's tiling methods hard-code it.
TINY = {
    "style_network": {"dim_in": 128, "dim_out": 16, "depth": 2},
    "dim": 4,
    "image_size": 64,
    "input_image_size": 16,
    "self_attn_heads": 2,
    "self_attn_dim_head": 8,
    "attn_depths": [1, 1, 1, 1, 2],
    "mid_attn_depth": 1,
    "num_conv_kernels": 2,
    "skip_connect_scale": 0.4,
}
# Another shape of U-Net: two stride-2 stages (size multiple 4), attention in the encoder too,
# three kernels per bank, the default skip scale and a custom mapping learning rate.
VARIANT = {
    "style_network": {"dim_in": 8, "dim_out": 12, "depth": 3, "lr_mul": 0.5},
    "dim": 4,
    "image_size": 64,
    "input_image_size": 16,
    "up_dim_mults": [1, 2, 4, 8],
    "down_dim_mults": [4, 8],
    "full_attn": [False, True, False, True],
    "attn_depths": [1, 1, 2, 1],
    "mid_attn_depth": 2,
    "self_attn_heads": 2,
    "self_attn_dim_head": 4,
    "num_conv_kernels": 3,
}
SCALE = 4
SEAM_PERIOD = 32  # scale * size_multiple: the pattern period of a random AuraSR's output


def reference(config: dict, seed: int = 0):
    torch.manual_seed(seed)
    return aura_sr.UnetUpsampler(**config).eval()


def ours_from(network, config: dict) -> AuraSRUpsampler:
    model = AuraSRUpsampler(**config_from_aurasr(config)).eval()
    model.load_state_dict(convert_aurasr_state_dict(network.state_dict()), strict=True)
    return model


def max_relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max |ours - theirs| over max |theirs|: elementwise ratios blow up near zero."""
    return float((ours - theirs).abs().max() / theirs.abs().max())


def compare_with_reference(network, model: AuraSRUpsampler, lq: torch.Tensor) -> float:
    """Both forwards on ``lq`` with the same z and the same input noise."""
    z = torch.randn(lq.shape[0], network.style_network.dim_in, generator=torch.Generator())
    # The reference draws its input noise with randn_like as the first random call of forward:
    # seeding the global RNG the same way before both gives the same noise.
    torch.manual_seed(123)
    input_noise = torch.randn_like(lq)
    with torch.no_grad():
        torch.manual_seed(123)
        theirs = network(lq, noise=z)
        ours = model(lq, z=z, input_noise=input_noise).hq
    assert ours.shape == theirs.shape == (lq.shape[0], 3, SCALE * lq.shape[2], SCALE * lq.shape[3])
    return max_relative_error(ours, theirs)


def smooth_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    coarse = torch.rand(
        1, 3, max(1, height // 4), max(1, width // 4), generator=torch.Generator().manual_seed(seed)
    )
    return F.interpolate(coarse, size=(height, width), mode="bicubic").clamp(0, 1)


def to_pil_rgb(images: torch.Tensor) -> Image.Image:
    return Image.fromarray((images[0].permute(1, 2, 0) * 255).round().byte().numpy())


def from_pil_rgb(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255


def write_aurasr_folder(folder: Path, config: dict = TINY, seed: int = 0) -> Path:
    """AuraSR's published layout: config.json + model.safetensors of a seeded reference."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    state = {k: v.contiguous() for k, v in reference(config, seed).state_dict().items()}
    save_file(state, folder / "model.safetensors")
    return folder


@pytest.fixture(scope="module")
def aurasr_folder(tmp_path_factory) -> Path:
    return write_aurasr_folder(tmp_path_factory.mktemp("aurasr") / "AuraSR")


# ---------------------------------------------------------------------- parity


@pytest.mark.parametrize("config", [TINY, VARIANT], ids=["tiny", "variant"])
def test_forward_matches_the_reference(config):
    network = reference(config)
    model = ours_from(network, config)
    lq = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert compare_with_reference(network, model, lq) <= 1e-4


def test_published_architecture_converts_name_for_name_and_shape_for_shape():
    # On the meta device: the 618M-parameter networks cost no memory here.
    with torch.device("meta"):
        network = aura_sr.UnetUpsampler(**AURASR_PUBLISHED_CONFIG)
        model = AuraSRUpsampler()  # our defaults are the published architecture
    theirs = {k: v.shape for k, v in convert_aurasr_state_dict(network.state_dict()).items()}
    assert theirs == {k: v.shape for k, v in model.state_dict().items()}
    expected = config_from_aurasr(AURASR_PUBLISHED_CONFIG)
    defaults = json.loads(json.dumps({key: model.config[key] for key in expected}))
    assert defaults == expected
    count = sum(p.numel() for p in model.parameters())
    assert 617e6 < count < 618e6  # "618M parameters"; 10 unused reference scalars dropped
    assert sum(p.numel() for p in network.parameters()) - count == 10
    assert (model.scale, model.size_multiple) == (4, 8)


@pytest.mark.slow
def test_published_config_forward_matches_the_reference():
    network = reference(AURASR_PUBLISHED_CONFIG)
    model = ours_from(network, AURASR_PUBLISHED_CONFIG)
    lq = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert compare_with_reference(network, model, lq) <= 1e-4


# ---------------------------------------------------------------------- loading and converting


def test_upscaler_loads_the_published_layout(aurasr_folder):
    upscaler = Upscaler.from_pretrained(aurasr_folder, device="cpu")
    assert isinstance(upscaler.model, AuraSRUpsampler)
    assert (upscaler.scale, upscaler.size_multiple, upscaler.text_conditioning) == (4, 8, False)
    # The weights file itself, with config.json beside it, loads the same weights.
    from_file = load_model(aurasr_folder / "model.safetensors")
    for key, tensor in upscaler.model.state_dict().items():
        assert torch.equal(tensor, from_file.state_dict()[key]), key


def test_convert_cli_round_trip(aurasr_folder, tmp_path):
    output = tmp_path / "converted"
    result = CliRunner().invoke(app, ["convert", "aurasr", str(aurasr_folder), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in output.iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    assert json.loads((output / "config.json").read_text())["_class_name"] == "AuraSRUpsampler"
    mask = os.umask(0o022)
    os.umask(mask)
    for file in output.iterdir():  # safetensors writes 0600; a model folder is for sharing
        assert file.stat().st_mode & 0o777 == 0o666 & ~mask, file.name
    assert isinstance(AuraSRUpsampler.from_pretrained(output), AuraSRUpsampler)
    lq = smooth_image(40, 24)
    source = Upscaler.from_pretrained(aurasr_folder, device="cpu").upscale(lq, seed=3)
    converted = Upscaler.from_pretrained(output, device="cpu").upscale(lq, seed=3)
    assert torch.equal(source, converted)


def test_convert_cli_refuses_to_replace_a_model_or_its_source(aurasr_folder, tmp_path):
    output = tmp_path / "converted"
    args = ["convert", "aurasr", str(aurasr_folder), "-o", str(output)]
    assert CliRunner().invoke(app, args).exit_code == 0
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "already holds" in again.output
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0
    into_source = CliRunner().invoke(
        app, ["convert", "aurasr", str(aurasr_folder), "-o", str(aurasr_folder)]
    )
    assert into_source.exit_code == 2 and "AuraSR folder itself" in into_source.output
    assert sorted(p.name for p in aurasr_folder.iterdir()) == ["config.json", "model.safetensors"]


def _broken_folder(tmp_path: Path, aurasr_folder: Path, *, config=None, weights=None) -> Path:
    folder = tmp_path / "broken"
    folder.mkdir()
    if config is not None:
        (folder / "config.json").write_text(config)
    if weights is not None:
        (folder / "model.safetensors").write_bytes(weights)
    return folder


@pytest.mark.parametrize(
    "case, error, message",
    [
        ("no config", FileNotFoundError, "no config.json"),
        ("no weights", FileNotFoundError, "no model.safetensors"),
        ("pickle only", FileNotFoundError, "never loaded"),
        ("bad json", AuraSRFormatError, "not a readable JSON"),
        ("corrupt weights", AuraSRFormatError, "not a readable safetensors"),
        ("unknown key", AuraSRFormatError, "unknown AuraSR config keys"),
        ("text", AuraSRFormatError, "text-conditioned"),
        ("other sizes", AuraSRFormatError, "does not match the architecture"),
    ],
)
def test_bad_aurasr_folders_raise_clear_errors(aurasr_folder, tmp_path, case, error, message):
    config = (aurasr_folder / "config.json").read_text()
    weights = (aurasr_folder / "model.safetensors").read_bytes()
    edited = json.loads(config)
    if case == "no config":
        folder = _broken_folder(tmp_path, aurasr_folder, weights=weights)
    elif case == "no weights":
        folder = _broken_folder(tmp_path, aurasr_folder, config=config)
    elif case == "pickle only":
        folder = _broken_folder(tmp_path, aurasr_folder, config=config)
        (folder / "model.ckpt").write_bytes(b"not loaded")
    elif case == "bad json":
        folder = _broken_folder(tmp_path, aurasr_folder, config="{not json", weights=weights)
    elif case == "corrupt weights":
        folder = _broken_folder(tmp_path, aurasr_folder, config=config, weights=weights[:100])
    else:
        if case == "unknown key":
            edited["dim_mults"] = [1, 2]
        elif case == "text":
            edited["style_network"]["dim_text_latent"] = 8
        else:
            edited["dim"] = 8
        folder = _broken_folder(tmp_path, aurasr_folder, config=json.dumps(edited), weights=weights)
    with pytest.raises(error, match=message):
        load_aurasr(folder)
    result = CliRunner().invoke(
        app, ["convert", "aurasr", str(folder), "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 2 and "error:" in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_folder_of_ours_is_not_mistaken_for_aurasr(aurasr_folder, tmp_path):
    model = load_aurasr(aurasr_folder)
    model.save_pretrained(tmp_path / "ours")
    with pytest.raises(AuraSRFormatError, match="not an AuraSR config"):
        load_aurasr(tmp_path / "ours")
    assert isinstance(load_model(tmp_path / "ours"), AuraSRUpsampler)


def test_upscale_cli_runs_an_aurasr_folder(aurasr_folder, tmp_path):
    to_pil_rgb(smooth_image(19, 27)).save(tmp_path / "photo.png")
    result = CliRunner().invoke(
        app,
        [
            "upscale",
            str(tmp_path / "photo.png"),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(aurasr_folder),
            "--device",
            "cpu",
            "--dtype",
            "fp32",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "photo.png") as written:
        assert written.size == (4 * 27, 4 * 19) and written.mode == "RGB"
        actual = np.asarray(written)
    # The file is the library's output for the same folder and seed, not merely of its size.
    upscaler = Upscaler(load_model(aurasr_folder), device="cpu", dtype="fp32")
    with Image.open(tmp_path / "photo.png") as photo:
        expected = np.asarray(upscaler.upscale(photo, seed=0))
    np.testing.assert_array_equal(actual, expected)
    # ... and no other: another seed (AuraSR's z and input noise) changes about a fifth of the
    # pixels of this random network's output (measured), so the comparison could fail.
    with Image.open(tmp_path / "photo.png") as photo:
        other = np.asarray(upscaler.upscale(photo, seed=1))
    assert (other != actual).mean() > 0.05


# ---------------------------------------------------------------------- our engine


@pytest.fixture(scope="module")
def tiny_pair():
    network = reference(TINY)
    return network, ours_from(network, TINY)


def test_one_tile_is_exactly_the_model_with_the_seeds_z_and_input_noise(tiny_pair):
    _, model = tiny_pair
    lq = smooth_image(16, 24)
    hq = Upscaler(model, device="cpu").upscale(lq, seed=5, tile=24)
    generator = torch.Generator().manual_seed(5)  # the Upscaler's draws: z, then the noise
    z = torch.randn(1, 128, generator=generator)
    input_noise = torch.randn(lq.shape, generator=generator)
    with torch.no_grad():
        expected = model(lq, z=z, input_noise=input_noise).hq.clamp(0, 1)
    torch.testing.assert_close(hq, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("height, width", [(13, 21), (37, 50), (3, 5)])
def test_upscaler_takes_any_input_size(tiny_pair, height, width):
    upscaler = Upscaler(tiny_pair[1], device="cpu")
    lq = smooth_image(height, width)
    hq = upscaler.upscale(lq, seed=1, tile=16)
    assert hq.shape == (1, 3, SCALE * height, SCALE * width)
    assert float(hq.min()) >= 0.0 and float(hq.max()) <= 1.0
    assert torch.equal(hq, upscaler.upscale(lq, seed=1, tile=16))  # a seed fixes the output
    assert not torch.equal(hq, upscaler.upscale(lq, seed=2, tile=16))


def test_bf16_stays_close_to_fp32(tiny_pair):
    network, _ = tiny_pair
    lq = smooth_image(32, 32)
    fp32 = Upscaler(ours_from(network, TINY), device="cpu").upscale(lq, tile=32)
    bf16 = Upscaler(ours_from(network, TINY), device="cpu", dtype="bf16").upscale(lq, tile=32)
    assert max_relative_error(bf16, fp32) < 0.05


def test_truncation_needs_a_mean_style_aurasr_does_not_have(tiny_pair):
    with pytest.raises(ValueError, match="no mean style"):
        Upscaler(tiny_pair[1], device="cpu").upscale(smooth_image(16, 16), truncation_psi=0.5)


def test_blended_tiles_hide_the_seams_that_aurasr_tiling_shows(tiny_pair):
    # Measured: AuraSR's butted tiles (a new z per batch, zero padding at every edge) 122 at
    # their borders; ours (one z, 32 px tiles overlapping by 8, blended) 1.01 at our own tile
    # edges and at AuraSR's; our tiles butted (overlap 0) 115: the measure sees seams.
    network, model = tiny_pair
    image = to_pil_rgb(smooth_image(48, 48))
    aura = aura_sr.AuraSR.__new__(aura_sr.AuraSR)  # its __init__ would build on "cuda"
    aura.upsampler, aura.input_image_size = network, TINY["input_image_size"]
    torch.manual_seed(0)
    theirs = from_pil_rgb(aura.upscale_4x(image))
    side = SCALE * 48
    grid = grid_borders(side, SCALE * TINY["input_image_size"])
    assert seam_ratio(theirs, grid, grid, period=SEAM_PERIOD) > 5.0

    lq8 = from_pil_rgb(image)[None]  # the same 8-bit pixels AuraSR saw
    upscaler = Upscaler(model, device="cpu")
    plan = plan_tiles(48, 48, tile=32, overlap=8, size_multiple=8, scale=SCALE)
    ours = upscaler.upscale(lq8, tile=32, tile_overlap=8)
    edges = tile_borders(plan.ys, plan.tile_height, 48, SCALE)
    assert seam_ratio(ours, edges, edges, period=SEAM_PERIOD) < 1.25
    assert seam_ratio(ours, grid, grid, period=SEAM_PERIOD) < 1.25
    butted = upscaler.upscale(lq8, tile=16, tile_overlap=0)
    butted_edges = tile_borders((0, 16, 32), 16, 48, SCALE)
    assert seam_ratio(butted, butted_edges, butted_edges, period=SEAM_PERIOD) > 5.0


# ---------------------------------------------------------------------- the seam measure


def test_seam_ratio_sees_a_step_at_a_border_and_nothing_elsewhere():
    ramp = torch.linspace(0, 1, 64)[None, None].expand(3, 64, 64).clone()
    assert seam_ratio(ramp, [32], [32]) == pytest.approx(1.0, rel=1e-4)
    stepped = ramp.clone()
    stepped[:, :, 32:] += 0.2
    assert seam_ratio(stepped, [], [32]) > 10
    assert grid_borders(100, 32) == [32, 64, 96]
    assert tile_borders((0, 12, 24), 24, 48, scale=2) == [24, 48, 72]
    with pytest.raises(ValueError, match="outside"):
        seam_ratio(ramp, [64], [])
    with pytest.raises(ValueError, match="phase"):
        seam_ratio(ramp, [32], [], period=32)
