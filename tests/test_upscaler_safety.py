"""Nothing lost, nothing silently wrong: NaN/Inf outputs, 16-bit precision in bf16, alpha
fringes, and model folders whose weights do not match their config."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from conftest import tiny_generator
from upsampler import Upscaler
from upsampler.inference import NonFiniteOutputError
from upsampler.models import ModelUnavailableError, ModelWeightsError
from upsampler.models.loading import load_model
from upsampler_cli.app import app

pytestmark = pytest.mark.usefixtures("one_thread")
WEIGHTS = "diffusion_pytorch_model.safetensors"


def smooth_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    coarse = torch.rand(
        1, 3, height // 4, width // 4, generator=torch.Generator().manual_seed(seed)
    )
    return F.interpolate(coarse, size=(height, width), mode="bicubic").clamp(0, 1)


def nan_generator():
    model = tiny_generator()
    with torch.no_grad():
        model.stem.bias[0] = float("nan")
    return model


def bicubic_generator():
    """A tiny generator whose learned part is exactly 0: its output is the bicubic residual."""
    model = tiny_generator()
    with torch.no_grad():
        for parameter in model.to_rgb.parameters():
            parameter.zero_()
    return model


# ---------------------------------------------------------------------- NaN / Inf


@pytest.mark.parametrize(
    ("dtype", "precision"), [("fp32", "in float32"), ("bf16", "even in fp32 \\(after bfloat16\\)")]
)
def test_nan_weights_raise_instead_of_returning_a_black_image(dtype, precision):
    upscaler = Upscaler(nan_generator(), device="cpu", dtype=dtype)
    message = rf"tile 1 of 4 \(input rows 0-15, columns 0-15\) {precision}: its weights hold NaN"
    with pytest.raises(NonFiniteOutputError, match=message) as error:
        upscaler.upscale(smooth_image(24, 24), tile=16)
    assert "stem.bias" in str(error.value) and "export it again" in str(error.value)


def test_a_batch_that_overflows_in_bf16_is_retried_in_fp32(monkeypatch):
    # Old GPUs overflow in fp16; the CPU has no fp16 here, so a model that gives Inf only in bf16
    # (every batch) stands in for it. Each batch is run again in fp32 with the same weights (the
    # bf16 ones, cast up), so the output is the fp32 output of the bf16-rounded model.
    model = tiny_generator()
    forward = model.forward
    calls = {torch.bfloat16: 0, torch.float32: 0}

    def overflows_in_bf16(lq, *args, **kwargs):
        calls[lq.dtype] += 1
        output = forward(lq, *args, **kwargs)
        if lq.dtype == torch.bfloat16:
            output.hq[:, :, :3] = float("inf")
        return output

    monkeypatch.setattr(model, "forward", overflows_in_bf16)
    upscaler = Upscaler(model, device="cpu", dtype="bf16")
    lq = smooth_image(24, 32)
    hq = upscaler.upscale(lq, tile=16, tile_overlap=4, batch_size=2)
    # 6 tiles, 3 batches, 3 retries; and first the tiny input that records the folded kernels
    assert calls[torch.bfloat16] == 1 + 3 and calls[torch.float32] == 3
    rounded = Upscaler(nn_to(tiny_generator(), torch.bfloat16), device="cpu")
    torch.testing.assert_close(hq, rounded.upscale(lq, tile=16, tile_overlap=4), atol=1e-5, rtol=0)
    # The model is back in bf16, with parameters that autograd can still use.
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any(p.is_inference() for p in model.parameters())


def nn_to(model, dtype):
    """``model`` with its weights rounded to ``dtype`` and back to float32."""
    return torch.nn.Module.to(torch.nn.Module.to(model, dtype=dtype), dtype=torch.float32)


def test_only_the_batch_that_overflows_is_retried(monkeypatch):
    model = tiny_generator()
    forward = model.forward
    calls = []

    def first_batch_overflows(lq, *args, **kwargs):
        calls.append(lq.dtype)
        output = forward(lq, *args, **kwargs)
        if len(calls) == 2:  # the first tile batch (after the folding probe)
            output.hq[:] = float("nan")
        return output

    monkeypatch.setattr(model, "forward", first_batch_overflows)
    hq = Upscaler(model, device="cpu", dtype="bf16").upscale(smooth_image(24, 32), tile=16)
    # The tiny input that records the folded kernels, then the tiles.
    assert calls == [torch.bfloat16] * 2 + [torch.float32] + [torch.bfloat16] * 5
    assert torch.isfinite(hq).all()


def test_cli_reports_a_nan_model_and_writes_nothing(tmp_path):
    nan_generator().save_pretrained(tmp_path / "model")
    Image.fromarray(np.full((12, 16, 3), 128, dtype=np.uint8)).save(tmp_path / "photo.png")
    result = CliRunner().invoke(
        app,
        [
            "upscale",
            str(tmp_path / "photo.png"),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(tmp_path / "model"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "NaN/Inf" in result.output and "photo.png" in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ---------------------------------------------------------------------- precision


def sixteen_bit_ramp(size: int = 64) -> np.ndarray:
    """(size, size, 3) uint16: a smooth diagonal ramp over [0.2, 0.8], each channel shifted."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    channels = [0.2 + 0.3 * y + 0.3 * x - 0.05 * c for c in range(3)]
    return np.rint(np.stack(channels, axis=-1) * 65535).astype(np.uint16)


def test_sixteen_bit_input_keeps_its_precision_through_a_bf16_model():
    # The learned part of this model is 0, so its output must be the bicubic upsample of the
    # input. In bf16 the network's input and output are rounded to 8 significant bits, so the
    # engine adds the bicubic residual in fp32. Measured: max error 0 and 8,474 output levels
    # (as many as the fp32 reference) with the fp32 residual; 380/65535 (0.0058, more than
    # 1/256) and 387 levels with the residual added inside the bf16 model.
    ramp = sixteen_bit_ramp()
    hq = Upscaler(bicubic_generator(), device="cpu", dtype="bf16").upscale(ramp, tile=64)
    lq = torch.from_numpy(ramp.astype(np.float32) / 65535).permute(2, 0, 1)[None]
    reference = F.interpolate(lq, scale_factor=4, mode="bicubic").clamp(0, 1)
    reference = np.rint(reference[0].permute(1, 2, 0).numpy() * 65535).astype(np.int64)
    error = np.abs(hq.astype(np.int64) - reference).max()
    assert error <= 2, f"max error {error}/65535"  # 1/256 would be 256
    assert len(np.unique(hq)) > 4096


def test_fp32_output_is_the_models_own_output():
    # The engine adds the residual itself; in fp32 that is the model's forward, to the bit, on
    # the per-sample path, and to float rounding with the image's kernels folded.
    model = tiny_generator()
    lq = smooth_image(32, 48)
    with torch.no_grad():
        ws = model.styles(1, generator=torch.Generator().manual_seed(0))
        reference = model(lq, ws=ws).hq.clamp(0, 1)
        detail = model(lq, ws=ws, add_input=False).hq
    unfolded = Upscaler(model, device="cpu", fold_styles=False, channels_last=False)
    assert torch.equal(unfolded.upscale(lq, tile=64), reference)
    folded = Upscaler(model, device="cpu").upscale(lq, tile=64)
    torch.testing.assert_close(folded, reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        detail + model.interpolated_input(lq, (128, 192)), model(lq, ws=ws).hq
    )


# ---------------------------------------------------------------------- alpha


def disc_on_transparent(hidden: tuple[float, float, float], size: int = 32) -> np.ndarray:
    """(size, size, 4) float32: an opaque red disc; outside it alpha 0 over ``hidden``."""
    y, x = np.mgrid[0:size, 0:size]
    inside = (y - size / 2 + 0.5) ** 2 + (x - size / 2 + 0.5) ** 2 < (size / 3) ** 2
    rgba = np.zeros((size, size, 4), dtype=np.float32)
    rgba[..., :3] = np.where(inside[..., None], (1.0, 0.0, 0.0), hidden)
    rgba[..., 3] = inside
    return rgba


def test_colour_under_transparent_pixels_does_not_bleed_into_visible_ones():
    # Before premultiplying: visible edge pixels differed by up to 1.0 between the two hidden
    # colours, and the bicubic model's faint edge pixels were up to 0.9999 green.
    upscaler = Upscaler(tiny_generator(), device="cpu")
    green = upscaler.upscale(disc_on_transparent((0.0, 1.0, 0.0)))
    blue = upscaler.upscale(disc_on_transparent((0.0, 0.0, 1.0)))
    visible = green[..., 3] > 0
    assert visible.sum() > 1000 and np.array_equal(green[..., 3], blue[..., 3])
    assert np.abs(green[visible] - blue[visible]).max() < 1e-6
    assert (green[~visible, :3] == 0).all()  # transparent pixels come back transparent black

    bicubic = Upscaler(bicubic_generator(), device="cpu").upscale(
        disc_on_transparent((0.0, 1.0, 0.0))
    )
    assert bicubic[bicubic[..., 3] > 0, 1].max() == 0.0  # no green at all where it shows
    assert bicubic[bicubic[..., 3] > 0.01, 0].min() > 0.99  # the disc stays pure red


def test_opaque_alpha_changes_nothing():
    upscaler = Upscaler(tiny_generator(), device="cpu")
    rgb = smooth_image(16, 20)[0].permute(1, 2, 0).numpy()
    rgba = np.concatenate([rgb, np.ones_like(rgb[..., :1])], axis=-1)
    np.testing.assert_allclose(upscaler.upscale(rgba)[..., :3], upscaler.upscale(rgb), atol=1e-6)


# ---------------------------------------------------------------------- model loading


@pytest.fixture
def saved(tmp_path):
    tiny_generator().save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def rewrite_weights(folder, edit) -> None:
    path = folder / WEIGHTS
    save_file(edit(load_file(path)), path)


def test_missing_keys_are_an_error_not_random_weights(saved):
    # diffusers fills missing tensors with random values and logs a line.
    rewrite_weights(saved, lambda weights: {k: v for k, v in weights.items() if "decoder" not in k})
    with pytest.raises(ModelWeightsError) as error:
        load_model(saved)
    message = str(error.value)
    assert str(saved / WEIGHTS) in message and "do not match" in message
    assert "missing keys decoder_attention.2." in message and " more)" in message
    assert "saved from another model" in message and "upsampler export" in message
    assert isinstance(error.value, ModelUnavailableError)


def test_wrong_shapes_and_unexpected_keys_name_the_tensors(saved):
    def edit(weights):
        weights["stem.weight"] = weights["stem.weight"][:4]
        weights["extra.weight"] = torch.zeros(2)
        return weights

    rewrite_weights(saved, edit)
    with pytest.raises(ModelWeightsError) as error:
        Upscaler.from_pretrained(saved, device="cpu")
    message = str(error.value)
    assert "unexpected keys extra.weight" in message
    assert "wrong shapes stem.weight [4, 3, 3, 3] (config.json: [8, 3, 3, 3])" in message
    assert "ignore_mismatched_sizes" not in message


@pytest.mark.parametrize("keep", [0.5, 0.99, 0.0])
def test_a_truncated_weights_file_names_the_file(saved, keep):
    path = saved / WEIGHTS
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelWeightsError, match="is not a readable safetensors file") as error:
        load_model(saved)
    assert str(path) in str(error.value) and "truncated or corrupt" in str(error.value)


def test_weights_under_another_name_and_bad_configs(saved):
    (saved / WEIGHTS).rename(saved / "model.safetensors")
    with pytest.raises(ModelWeightsError, match=f"no {WEIGHTS}.*model.safetensors"):
        load_model(saved)
    (saved / "model.safetensors").rename(saved / WEIGHTS)
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "scale": 3}))
    with pytest.raises(ModelWeightsError, match="does not describe a GigaGANUpsampler"):
        load_model(saved)


def test_sharded_folders_load_and_are_checked(tmp_path):
    model = tiny_generator()
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    shards = sorted((tmp_path / "sharded").glob("*.safetensors"))
    assert len(shards) > 1
    loaded = load_model(tmp_path / "sharded")
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.parameters(), model.parameters(), strict=True)
    )
    for shard in shards:
        weights = load_file(shard)
        if "stem.weight" in weights:
            save_file({**weights, "stem.weight": torch.zeros(1)}, shard)
    with pytest.raises(ModelWeightsError, match=rf"the {len(shards)} shards in .*wrong shapes"):
        load_model(tmp_path / "sharded")


def test_aurasr_weights_that_do_not_match_name_the_tensors_as_in_the_file(tmp_path):
    aura_sr = pytest.importorskip("aura_sr")
    from test_aurasr import TINY as config

    from upsampler.models.aurasr_checkpoint import AuraSRFormatError

    torch.manual_seed(0)
    weights = aura_sr.UnetUpsampler(**config).state_dict()
    weights = {key: tensor.contiguous() for key, tensor in weights.items()}
    del weights["final_to_rgb.weight"]
    weights["init_conv.weight"] = weights["init_conv.weight"][:2]
    save_file(weights, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(AuraSRFormatError) as error:
        load_model(tmp_path)
    message = str(error.value)
    assert "missing keys (as converted) to_rgb.weight" in message
    assert "wrong shapes init_conv.weight [2, 3, 7, 7] (config.json: [8, 3, 7, 7])" in message
    assert "download both files again" in message
