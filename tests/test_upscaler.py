"""The Upscaler with tiny random generators on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import TEXT_EMBED_DIM, random_text, tiny_generator
from upsampler import TextEmbeddings, Upscaler
from upsampler.models.registry import BUILTIN_MODELS, BuiltinModel, ModelUnavailableError
from upsampler.text.base import TextEncoder

pytestmark = pytest.mark.usefixtures("one_thread")


def smooth_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1]: low-frequency content, like a photo rather than noise."""
    coarse = torch.rand(
        1, 3, height // 4, width // 4, generator=torch.Generator().manual_seed(seed)
    )
    return F.interpolate(coarse, size=(height, width), mode="bicubic").clamp(0, 1)


def structured_levels(height: int, width: int, channels: int) -> np.ndarray:
    """(H, W, C) uint8 with ramps, a step edge and a different pattern in every channel; alpha
    (the last of 2 or 4 channels) stays in [96, 255], so the colour under it shows."""
    y, x = np.mgrid[0:height, 0:width]
    ramp = 40 + 15 * x + 9 * y + 60 * (x > width // 2)
    planes = [(ramp * (1 + c) + 70 * c) % 256 for c in range(channels)]
    if channels in (2, 4):
        planes[-1] = 96 + (7 * x + 13 * y) % 160
    return np.stack(planes, -1).astype(np.uint8)


def untiled(model, lq: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The reference: one forward of the whole image with the z the Upscaler draws for ``seed``."""
    with torch.no_grad():
        ws = model.styles(1, generator=torch.Generator().manual_seed(seed))
        return model(lq, ws=ws).hq.clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a - b).pow(2).mean()))


def residual_snr(hq: torch.Tensor, reference: torch.Tensor, lq: torch.Tensor) -> float:
    """dB of what the network adds to bicubic over the tiling error: independent of how large
    the random network's residual happens to be (PSNR is not)."""
    bicubic = F.interpolate(lq, scale_factor=4, mode="bicubic")
    return float(
        10 * torch.log10((reference - bicubic).pow(2).mean() / (hq - reference).pow(2).mean())
    )


@pytest.fixture(scope="module")
def upscaler() -> Upscaler:
    return Upscaler(tiny_generator(), device="cpu")


def test_tiled_matches_untiled_for_a_convolutional_generator():
    # Without attention the generator is local, so overlapping, blended tiles must reproduce the
    # untiled output. Measured: PSNR 63.6 dB, residual SNR 23.1 dB for 32 px tiles overlapping by
    # 8; butted 16 px tiles: 40.4 dB, residual SNR -0.1 dB (seams as large as the detail).
    model = tiny_generator(attention_levels=[])
    upscaler = Upscaler(model, device="cpu")
    lq = smooth_image(64, 48)
    reference = untiled(model, lq)
    overlapped = upscaler.upscale(lq, tile=32, tile_overlap=8)
    assert psnr(overlapped, reference) > 50.0
    assert residual_snr(overlapped, reference, lq) > 18.0
    butted = upscaler.upscale(lq, tile=16, tile_overlap=0)
    assert residual_snr(butted, reference, lq) < 5.0  # the test can see seams


def test_overlap_brings_tiles_closer_to_untiled_with_attention(upscaler):
    # Self-attention and its group norms see one tile, not the image, so a generator with
    # attention is not tile-invariant; overlap and blending must still help. Measured: butted
    # 16 px tiles PSNR 31.0 dB / residual SNR 3.4 dB; 32 px tiles overlapping by 8: 40.5 / 12.9.
    lq = smooth_image(64, 48)
    reference = untiled(upscaler.model, lq)
    butted = residual_snr(upscaler.upscale(lq, tile=16, tile_overlap=0), reference, lq)
    hq = upscaler.upscale(lq, tile=32, tile_overlap=8)
    assert psnr(hq, reference) > 36.0
    assert residual_snr(hq, reference, lq) > max(butted + 6.0, 9.0)


def test_one_image_fitting_one_tile_is_exactly_the_model(upscaler):
    lq = smooth_image(32, 48)
    assert torch.allclose(upscaler.upscale(lq, tile=64), untiled(upscaler.model, lq), atol=1e-6)


def test_same_seed_same_output_whatever_the_batch_size(upscaler):
    lq = smooth_image(24, 32)
    outputs = [upscaler.upscale(lq, tile=16, batch_size=size, seed=3) for size in (1, 4, 8)]
    for other in outputs[1:]:
        torch.testing.assert_close(other, outputs[0], atol=1e-4, rtol=0)
    different_seed = upscaler.upscale(lq, tile=16, batch_size=3, seed=4)
    assert (different_seed - outputs[0]).abs().max() > 1e-2


def test_only_tiles_reach_the_model(monkeypatch):
    model = tiny_generator()
    seen = []
    forward = model.forward

    def spy(lq, *args, **kwargs):
        seen.append(tuple(lq.shape))
        return forward(lq, *args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    Upscaler(model, device="cpu").upscale(smooth_image(40, 44), tile=16, batch_size=2)
    # First the one tiny input that records the image's folded kernels, then tiles only.
    probe, *tiles = seen
    assert probe == (1, 3, model.min_size, model.min_size)
    assert len(tiles) >= 3 and all(shape[0] <= 2 and shape[2:] == (16, 16) for shape in tiles)


def test_out_of_memory_retries_with_smaller_batches_and_tiles(monkeypatch):
    model = tiny_generator()
    forward = model.forward

    def small_only(lq, *args, **kwargs):
        if lq.shape[0] > 1 or lq.shape[-1] > 16:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(lq, *args, **kwargs)

    monkeypatch.setattr(model, "forward", small_only)
    upscaler = Upscaler(model, device="cpu")
    lq = smooth_image(24, 24)
    hq = upscaler.upscale(lq, tile=32, batch_size=4)
    monkeypatch.setattr(model, "forward", forward)
    assert torch.allclose(hq, upscaler.upscale(lq, tile=16, tile_overlap=8), atol=1e-4)


@pytest.mark.parametrize(
    ("mode", "size"), [("RGB", (30, 20)), ("RGBA", (13, 9)), ("L", (8, 8)), ("LA", (9, 5))]
)
def test_pil_in_pil_out(upscaler, mode, size):
    image = Image.fromarray(
        (np.random.default_rng(0).random((*size[::-1], 4)) * 255).astype(np.uint8)
    )
    image = image.convert(mode)
    hq = upscaler.upscale(image)
    assert hq.mode == mode and hq.size == (4 * size[0], 4 * size[1])


def test_alpha_is_upscaled_with_bicubic(upscaler):
    rgba = np.random.default_rng(1).random((12, 16, 4)).astype(np.float32)
    hq = upscaler.upscale(rgba)
    alpha = F.interpolate(
        torch.from_numpy(rgba[..., 3])[None, None], scale_factor=4, mode="bicubic"
    )
    assert np.allclose(hq[..., 3], alpha.clamp(0, 1)[0, 0].numpy(), atol=1e-6)


def test_palette_and_sixteen_bit_pil_inputs(upscaler):
    palette = Image.new("P", (6, 5))
    palette.info["transparency"] = 0
    assert upscaler.upscale(palette).mode == "RGBA"
    grey16 = Image.fromarray(np.full((5, 6), 30000, dtype=np.uint16))
    hq = upscaler.upscale(grey16)
    assert hq.mode == "I;16" and hq.size == (24, 20)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((10, 12), np.uint8),
        ((10, 12, 3), np.uint16),
        ((10, 12, 2), np.float32),
        ((9, 7, 4), np.uint8),
    ],
)
def test_numpy_in_numpy_out(upscaler, shape, dtype):
    # The input sits on 8-bit levels, so a uint8 PIL image of the same levels is the same input
    # and the PIL path is the reference: the one model output, rounded to the array's levels
    # here and to 8 bits there (exactly equal for uint8, within half an 8-bit level otherwise).
    levels = structured_levels(*shape[:2], shape[2] if len(shape) == 3 else 1).reshape(shape)
    peak = {np.uint8: 255, np.uint16: 65535, np.float32: 1}[dtype]
    if dtype is np.uint16:
        array = levels.astype(np.uint16) * 257  # k * 257 / 65535 == k / 255
    elif dtype is np.float32:
        array = levels.astype(np.float32) / np.float32(255)
    else:
        array = levels
    hq = upscaler.upscale(array)
    assert hq.dtype == dtype and hq.shape == (4 * shape[0], 4 * shape[1], *shape[2:])

    pil = np.asarray(upscaler.upscale(Image.fromarray(levels)), dtype=np.float64)
    tolerance = 0.0 if dtype is np.uint8 else 0.5 + 1e-3
    np.testing.assert_allclose(hq.astype(np.float64) / peak * 255, pil, rtol=0, atol=tolerance)

    # Both paths could share a layout bug (channels swapped, alpha read as colour): every
    # channel must stay near its own bicubic upscale (measured: at most 0.05 mean difference;
    # another channel's is 0.19 or more).
    lq = torch.from_numpy(levels.reshape(*shape[:2], -1)).permute(2, 0, 1)[None].float() / 255
    bicubic = F.interpolate(lq, scale_factor=4, mode="bicubic").clamp(0, 1)[0].permute(1, 2, 0)
    difference = np.abs(hq.reshape(bicubic.shape) / peak - bicubic.numpy()).mean(axis=(0, 1))
    assert (difference < 0.08).all(), difference


def test_tensors_and_lists_keep_their_kind(upscaler):
    single = torch.rand(3, 10, 12, dtype=torch.float64)
    assert upscaler.upscale(single).shape == (3, 40, 48)
    assert upscaler.upscale(single).dtype == torch.float64
    batch = torch.rand(2, 3, 8, 8)
    assert upscaler.upscale(batch).shape == (2, 3, 32, 32)
    outputs = upscaler.upscale([single, np.zeros((3, 5, 3), np.uint8)])  # smaller than 2x2 at
    assert isinstance(outputs, list) and outputs[1].shape == (12, 20, 3)  # the lowest level
    with pytest.raises(ValueError, match="float in"):
        upscaler.upscale(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_outscale_reapplies_the_model_and_resizes(upscaler):
    lq = smooth_image(12, 16)
    events = []
    hq = upscaler.upscale(lq, outscale=8, progress=events.append)
    assert hq.shape == (1, 3, 96, 128)
    assert {event.pass_index for event in events} == {0, 1} and events[-1].passes == 2
    # 8x is the 16x image (two passes) reduced by half: resized after clamping, like any image.
    sixteen = upscaler.upscale(lq, outscale=16)
    assert sixteen.shape == (1, 3, 192, 256)
    halved = F.interpolate(sixteen, size=(96, 128), mode="bicubic", antialias=True).clamp(0, 1)
    torch.testing.assert_close(hq, halved, atol=1e-6, rtol=0)
    assert upscaler.upscale(lq, outscale=2.5).shape == (1, 3, 30, 40)
    native = Upscaler(tiny_generator(scale=8), device="cpu")
    events.clear()
    assert native.upscale(lq, progress=events.append).shape == (1, 3, 96, 128)
    assert events[-1].passes == 1
    with pytest.raises(ValueError, match="outscale must be a positive number"):
        upscaler.upscale(lq, outscale=0)


def test_progress_reports_every_tile(upscaler):
    events = []
    upscaler.upscale([smooth_image(24, 24), smooth_image(12, 12)], tile=16, progress=events.append)
    first = [e for e in events if e.image == 0]
    assert [e.tiles_done for e in first] == list(range(1, first[-1].tiles + 1))
    assert events[-1].image == 1 and events[-1].images == 2


class FakeEncoder(TextEncoder):
    dim = TEXT_EMBED_DIM

    def encode(self, texts):
        return random_text(len(texts), seed=len(texts[0]))


def test_text_conditioned_models_take_prompts_or_embeddings():
    text_model = tiny_generator(text_conditioning=True)
    lq = smooth_image(16, 16)
    without_encoder = Upscaler(text_model, device="cpu")
    with pytest.raises(ValueError, match="text-conditioned"):
        without_encoder.upscale(lq)
    assert without_encoder.upscale([lq, lq], prompt=random_text(2))[1].shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="got 3 prompts for 2 images"):
        without_encoder.upscale([lq, lq], prompt=random_text(3))
    with_encoder = Upscaler(text_model, device="cpu", text_encoder=FakeEncoder())
    cat, dog = with_encoder.upscale([lq, lq], prompt=["a cat", "a dog on a beach"])
    assert (cat - dog).abs().max() > 1e-3  # the prompt steers the output
    assert isinstance(random_text(1), TextEmbeddings)


def test_unconditional_models_refuse_prompts(upscaler):
    with pytest.raises(ValueError, match="unconditional"):
        upscaler.upscale(smooth_image(8, 8), prompt="a cat")


def test_dtypes_and_options():
    with pytest.raises(ValueError, match="half precision is not supported on the CPU"):
        Upscaler(tiny_generator(), device="cpu", dtype="fp16")
    fp32 = Upscaler(tiny_generator(), device="cpu")
    bf16 = Upscaler(tiny_generator(), device="cpu", dtype="bf16")
    assert bf16.supported_dtypes == (torch.float32, torch.bfloat16)
    lq = smooth_image(16, 16)
    assert psnr(bf16.upscale(lq), fp32.upscale(lq)) > 25.0
    channels_last = Upscaler(tiny_generator(), device="cpu", channels_last=True)
    assert torch.allclose(channels_last.upscale(lq), fp32.upscale(lq), atol=1e-4)
    with pytest.raises(ValueError, match="tile must be a positive multiple of 4"):
        fp32.upscale(lq, tile=30)
    with pytest.raises(ValueError, match="at most 8 for tile 16"):
        fp32.upscale(lq, tile=16, tile_overlap=12)


def test_auto_tile_fits_the_memory_budget(upscaler, monkeypatch):
    assert upscaler.auto_tile() == 192  # the CPU's preferred tile when memory is plentiful
    budget = upscaler.estimate_tile_bytes(48)
    monkeypatch.setattr(upscaler, "available_bytes", lambda: budget)
    assert upscaler.auto_tile() == 48
    monkeypatch.undo()
    # Given the image, the tile that covers it with the fewest pixels: 2 x 2 tiles of 136 px
    # for 256 px (2 x 2 of 192 would compute 2.25 times the image); one tile when it fits.
    assert upscaler.auto_tile(256, 256) == 136
    assert upscaler.auto_tile(200, 200) == 128
    assert upscaler.auto_tile(128, 128) == 192
    assert upscaler.scale == 4 and upscaler.size_multiple == 4


def test_an_image_up_to_320_px_runs_whole_when_the_work_per_pixel_is_constant(monkeypatch):
    attention = Upscaler(tiny_generator(), device="cpu")  # attention grows with the tile
    assert not attention.model.work_per_pixel_is_constant
    assert attention.auto_tile(256, 256) == 136
    plain = Upscaler(tiny_generator(attention_levels=[]), device="cpu")
    assert plain.model.work_per_pixel_is_constant
    assert plain.auto_tile(256, 256) == 256  # one tile: no overlaps computed twice
    assert plain.auto_tile(250, 100) == 252  # sides rounded up to the size multiple
    assert plain.auto_tile(320, 200) == 320
    assert plain.auto_tile(321, 200) == attention.auto_tile(321, 200) == 128  # tiles as before
    assert plain.auto_tile() == 192
    budget = plain.estimate_tile_bytes(128)
    monkeypatch.setattr(plain, "available_bytes", lambda: budget)
    assert plain.auto_tile(256, 256) <= 128  # one tile only when it fits the memory


def test_from_pretrained_round_trip_and_clear_errors(tmp_path, monkeypatch):
    model = tiny_generator()
    model.save_pretrained(tmp_path / "model")
    lq = smooth_image(16, 20)
    loaded = Upscaler.from_pretrained(tmp_path / "model", device="cpu")
    assert torch.equal(loaded.upscale(lq), Upscaler(model, device="cpu").upscale(lq))

    assert set(BUILTIN_MODELS) >= {"nano-4x", "nano-4x-psnr"}
    unreleased = BuiltinModel("unreleased-4x", "nano", 4, False, "registered, no weights")
    monkeypatch.setitem(BUILTIN_MODELS, unreleased.name, unreleased)
    with pytest.raises(ModelUnavailableError, match="ships no weights for the built-in model"):
        Upscaler.from_pretrained("unreleased-4x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match="no config.json"):
        Upscaler.from_pretrained(tmp_path / "empty")
    (tmp_path / "model" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelUnavailableError, match="no .safetensors weights"):
        Upscaler.from_pretrained(tmp_path / "model")
    with pytest.raises(ModelUnavailableError, match="no model folder"):
        Upscaler.from_pretrained(tmp_path / "nowhere" / "deeper" / "x")
    # huggingface_hub reads HF_HUB_OFFLINE when it is imported (as diffusers relies on).
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        ModelUnavailableError, match="not in the Hugging Face cache.*Hub is offline"
    ):
        Upscaler.from_pretrained("someone/some-upsampler")


def test_the_benchmarks_rrdbnet_has_the_real_esrgan_x4plus_size():
    # The benchmarks time spandrel's ESRGAN (the implementation the loader runs Real-ESRGAN
    # checkpoints with) at its default size, which is x4plus's.
    from spandrel.architectures.ESRGAN import ESRGAN

    with torch.device("meta"):
        full = ESRGAN()
    assert sum(p.numel() for p in full.parameters()) == 16_697_987  # "16.7M" in the paper
    small = ESRGAN(num_blocks=1, num_filters=8).eval()
    with torch.no_grad():
        assert small(torch.rand(1, 3, 5, 7)).shape == (1, 3, 20, 28)


def test_memory_backoff_halves_the_batch_then_the_tile_and_lets_other_errors_through():
    from upsampler.inference.memory import with_memory_backoff

    tried = []

    def run(tile, batch_size):
        tried.append((tile, batch_size))
        if tile > 32:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return tile, batch_size

    cpu = torch.device("cpu")
    assert with_memory_backoff(run, tile=128, batch_size=4, size_multiple=4, device=cpu) == (32, 1)
    assert tried == [(128, 4), (128, 2), (128, 1), (64, 1), (32, 1)]

    def broken(tile, batch_size):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        with_memory_backoff(broken, tile=128, batch_size=4, size_multiple=4, device=cpu)

    def never_fits(tile, batch_size):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB")

    with pytest.raises(RuntimeError, match="even with one 16px tile"):
        with_memory_backoff(never_fits, tile=64, batch_size=1, size_multiple=4, device=cpu)
