"""The diffusers integration on tiny random-weight pipelines built from configs (CPU, offline).

Two base pipelines: a text-to-image StableDiffusionPipeline (UNet with cross-attention, VAE, CLIP
text model, a CLIP tokenizer read from a tiny vocab.json/merges.txt) making 32x32 images, and an
unconditional DDPMPipeline making 32x32 images; both run 2 denoising steps. The upsamplers are
the tests' tiny generators; the text-conditioned one reads prompts through a text encoder that
records every prompt it is given.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
    UNet2DModel,
)
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from conftest import TEXT_EMBED_DIM, tiny_generator
from upsampler import GigaGANUpsampler, TextEmbeddings, Upscaler
from upsampler.integrations.diffusers import (
    UpscaledPipeline,
    decode_latents,
    expand_prompts,
    upscale_pipeline_output,
)
from upsampler.text.base import TextEncoder

pytestmark = pytest.mark.usefixtures("one_thread")

BASE_SIZE = 32
STEPS = 2


class RecordingTextEncoder(TextEncoder):
    """Embeddings that are a fixed function of the text (seeded by its CRC), and a log of every
    batch of prompts it was asked to encode."""

    dim = TEXT_EMBED_DIM

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> TextEmbeddings:
        self.calls.append(list(texts))
        tokens = torch.stack(
            [
                torch.randn(
                    4, self.dim, generator=torch.Generator().manual_seed(zlib.crc32(t.encode()))
                )
                for t in texts
            ]
        )
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool)
        return TextEmbeddings(tokens=tokens, pooled=tokens.mean(dim=1), mask=mask)


def tiny_tokenizer(folder: Path) -> CLIPTokenizer:
    """A CLIP BPE tokenizer over single characters, read from vocab.json + merges.txt."""
    symbols = "abcdefghijklmnopqrstuvwxyz0123456789"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols:
        vocab[symbol] = len(vocab)
        vocab[symbol + "</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=16)


def tiny_stable_diffusion(folder: Path) -> StableDiffusionPipeline:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=BASE_SIZE // 2,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=BASE_SIZE,
    )
    tokenizer = tiny_tokenizer(folder)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=1,
            max_position_embeddings=16,
            projection_dim=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    ).eval()
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_ddpm() -> DDPMPipeline:
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=BASE_SIZE,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=100))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def sd(tmp_path_factory) -> StableDiffusionPipeline:
    return tiny_stable_diffusion(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def ddpm() -> DDPMPipeline:
    return tiny_ddpm()


@pytest.fixture
def encoder() -> RecordingTextEncoder:
    return RecordingTextEncoder()


def text_upscaler(encoder: TextEncoder, scale: int = 4) -> Upscaler:
    return Upscaler(
        tiny_generator(scale=scale, text_conditioning=True), device="cpu", text_encoder=encoder
    )


def seeded(seed: int = 0) -> dict:
    return {"generator": torch.Generator().manual_seed(seed), "num_inference_steps": STEPS}


# --- sizes and output types -------------------------------------------------------------------


@pytest.mark.parametrize("scale", [4, 8])
def test_text_to_image_output_is_scale_times_larger(sd, encoder, scale):
    pipe = UpscaledPipeline(sd, text_upscaler(encoder, scale))
    images = pipe("a red fox", **seeded()).images
    assert len(images) == 1 and isinstance(images[0], Image.Image)
    assert images[0].size == (scale * BASE_SIZE, scale * BASE_SIZE)


def test_outscale_8_runs_a_4x_model_twice(ddpm):
    upscaler = Upscaler(tiny_generator(scale=4), device="cpu")
    pipe = UpscaledPipeline(ddpm, upscaler)
    images = pipe(batch_size=2, output_type="pt", upscale_outscale=8, **seeded()).images
    assert images.shape == (2, 3, 8 * BASE_SIZE, 8 * BASE_SIZE)

    # Written out: the model twice with the same seed (16x), then the documented reduction to
    # 8x, a bicubic antialiased resize by one half.
    lq = ddpm(batch_size=2, output_type="pt", **seeded()).images
    once = upscaler.upscale(lq)
    twice = upscaler.upscale(once)
    assert twice.shape == (2, 3, 16 * BASE_SIZE, 16 * BASE_SIZE)
    expected = F.interpolate(
        twice, size=images.shape[-2:], mode="bicubic", align_corners=False, antialias=True
    ).clamp(0, 1)
    torch.testing.assert_close(images, expected, atol=1e-5, rtol=0)
    # Neither shortcut passes for it (measured: 0.15 and 0.02 apart): one pass enlarged 2x,
    # or the reduction without antialiasing.
    enlarged = F.interpolate(once, scale_factor=2, mode="bicubic").clamp(0, 1)
    aliased = F.interpolate(twice, size=images.shape[-2:], mode="bicubic").clamp(0, 1)
    assert (images - enlarged).abs().max() > 0.05
    assert (images - aliased).abs().max() > 5e-3


def test_every_output_type_gives_the_same_pixels(sd, encoder):
    pipe = UpscaledPipeline(sd, text_upscaler(encoder))
    prompts = ["a red fox", "a blue car"]
    size = 4 * BASE_SIZE
    out = {kind: pipe(prompts, output_type=kind, **seeded()).images for kind in ("pil", "np", "pt")}
    out["latent"] = pipe(prompts, output_type="latent", **seeded()).images

    assert isinstance(out["pt"], torch.Tensor) and out["pt"].shape == (2, 3, size, size)
    assert out["pt"].dtype == torch.float32 and out["pt"].min() >= 0 and out["pt"].max() <= 1
    assert isinstance(out["np"], np.ndarray) and out["np"].shape == (2, size, size, 3)
    assert out["np"].dtype == np.float32
    assert [image.size for image in out["pil"]] == [(size, size)] * 2
    assert all(image.mode == "RGB" for image in out["pil"])
    np.testing.assert_allclose(out["np"], out["pt"].permute(0, 2, 3, 1).numpy(), atol=1e-6)
    # PIL is numpy_to_pil's rounding of the float result, not an upscale of 8-bit images.
    np.testing.assert_array_equal(
        np.stack([np.asarray(image) for image in out["pil"]]),
        (out["np"] * 255).round().astype(np.uint8),
    )
    # "latent": the wrapper decodes the base latents with the VAE itself; the pixels must match
    # the pipeline's own decoding.
    assert isinstance(out["latent"], torch.Tensor) and out["latent"].shape == (2, 3, size, size)
    torch.testing.assert_close(out["latent"], out["pt"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("output_type", ["pil", "np", "pt", "latent"])
def test_unconditional_pipeline_every_output_type(ddpm, encoder, output_type):
    upscaler = text_upscaler(encoder)
    pipe = UpscaledPipeline(ddpm, upscaler)
    images = pipe(batch_size=3, output_type=output_type, **seeded()).images
    size = 4 * BASE_SIZE
    if output_type == "pil":
        assert [image.size for image in images] == [(size, size)] * 3
        pixels = np.stack([np.asarray(image) for image in images])
        actual = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    elif output_type == "np":
        assert images.shape == (3, size, size, 3)
        actual = torch.from_numpy(images).permute(0, 3, 1, 2)
    else:
        assert images.shape == (3, 3, size, size)
        actual = images
    # A text-conditioned upsampler after an unconditional pipeline reads the empty prompt.
    assert encoder.calls == [["", "", ""]]
    # ... and its pixels are the model's upscale of the base images with that prompt (PIL: up
    # to its 8-bit rounding).
    lq = ddpm(batch_size=3, output_type="pt", **seeded()).images
    expected = upscaler.upscale(lq, "")
    atol = 0.5 / 255 + 1e-6 if output_type == "pil" else 1e-5
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


def test_wrapping_a_pipeline_upscales_its_images_with_the_model(ddpm):
    # What Upscaler.attach(pipe) did before it became UpscaledPipeline(pipe, upscaler).
    upscaler = Upscaler(tiny_generator(), device="cpu")
    pipe = UpscaledPipeline(ddpm, upscaler)
    hq = pipe(batch_size=2, output_type="pt", upscale_seed=3, **seeded()).images
    lq = ddpm(batch_size=2, output_type="pt", **seeded()).images
    assert lq.shape == (2, 3, BASE_SIZE, BASE_SIZE)
    assert hq.shape == (2, 3, 4 * BASE_SIZE, 4 * BASE_SIZE)
    torch.testing.assert_close(hq, upscaler.upscale(lq, seed=3), atol=1e-5, rtol=0)
    # The seed reaches the model (another z, other detail), so the comparison could fail; and
    # the detail is the model's, not a bicubic enlargement.
    assert (upscaler.upscale(lq, seed=0) - hq).abs().max() > 1e-2
    bicubic = F.interpolate(lq, scale_factor=4, mode="bicubic").clamp(0, 1)
    assert (bicubic - hq).abs().max() > 1e-2


def test_return_dict_false_returns_the_base_tuple(sd, encoder):
    pipe = UpscaledPipeline(sd, text_upscaler(encoder))
    base_tuple = sd("a red fox", return_dict=False, output_type="pt", **seeded())
    result = pipe("a red fox", return_dict=False, output_type="pt", **seeded())
    assert isinstance(result, tuple) and len(result) == len(base_tuple) == 2
    assert result[0].shape == (1, 3, 4 * BASE_SIZE, 4 * BASE_SIZE)
    assert result[1] is None  # nsfw_content_detected: no safety checker

    output = pipe("a red fox", **seeded())
    assert isinstance(output, StableDiffusionPipelineOutput)
    assert output.nsfw_content_detected is None


# --- prompts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "per_prompt", "expected"),
    [
        ("a red fox", 1, ["a red fox"]),
        ("a red fox", 3, ["a red fox"] * 3),
        (["a red fox", "a blue car"], 1, ["a red fox", "a blue car"]),
        (["a red fox", "a blue car"], 2, ["a red fox", "a red fox", "a blue car", "a blue car"]),
    ],
)
def test_upsampler_receives_the_prompt_of_each_image(sd, encoder, prompt, per_prompt, expected):
    upscaler = text_upscaler(encoder)
    pipe = UpscaledPipeline(sd, upscaler)
    hq = pipe(prompt, num_images_per_prompt=per_prompt, output_type="pt", **seeded()).images
    assert encoder.calls == [expected]

    # Image by image: the same as upscaling the base pipeline's float output with its prompt.
    lq = sd(prompt, num_images_per_prompt=per_prompt, output_type="pt", **seeded()).images
    assert hq.shape[0] == lq.shape[0] == len(expected)
    for index, text in enumerate(expected):
        alone = upscaler.upscale(lq[index], text)
        torch.testing.assert_close(hq[index], alone, atol=1e-5, rtol=0)
    # ... and the prompt matters, so the comparison above could fail.
    assert (upscaler.upscale(lq[0], "something else") - hq[0]).abs().max() > 1e-3


def test_upscale_prompt_overrides_the_base_prompt(sd, encoder):
    pipe = UpscaledPipeline(sd, text_upscaler(encoder))
    pipe(["a", "b"], num_images_per_prompt=2, upscale_prompt=["a fox", "a car"], **seeded())
    assert encoder.calls == [["a fox", "a fox", "a car", "a car"]]


def test_prompt_embeds_need_an_upscale_prompt(sd, encoder):
    pipe = UpscaledPipeline(sd, text_upscaler(encoder))
    embeds = torch.zeros(1, 16, 16)
    with pytest.raises(ValueError, match="upscale_prompt"):
        pipe(prompt_embeds=embeds, negative_prompt_embeds=embeds, **seeded())
    images = pipe(
        prompt_embeds=embeds, negative_prompt_embeds=embeds, upscale_prompt="a fox", **seeded()
    ).images
    assert images[0].size == (4 * BASE_SIZE, 4 * BASE_SIZE)
    assert encoder.calls == [["a fox"]]


def test_text_conditioned_upsampler_without_encoder_fails_before_the_base_runs(sd, monkeypatch):
    pipe = UpscaledPipeline(sd, tiny_generator(text_conditioning=True))
    monkeypatch.setattr(type(sd), "__call__", lambda *a, **k: pytest.fail("base pipeline ran"))
    with pytest.raises(ValueError, match="text_encoder"):
        pipe("a red fox", **seeded())


def test_unconditional_upsampler_ignores_prompts(sd):
    upscaler = Upscaler(tiny_generator(), device="cpu")
    pipe = UpscaledPipeline(sd, upscaler)
    hq = pipe(["a red fox", "a blue car"], output_type="pt", **seeded()).images
    lq = sd(["a red fox", "a blue car"], output_type="pt", **seeded()).images
    assert hq.shape == (2, 3, 4 * BASE_SIZE, 4 * BASE_SIZE)
    torch.testing.assert_close(hq, upscaler.upscale(lq), atol=1e-5, rtol=0)


def test_expand_prompts_orders_like_diffusers():
    assert expand_prompts(["a", "b"], 6, 3) == ["a", "a", "a", "b", "b", "b"]
    assert expand_prompts(["a", "b", "c", "d"], 4, 2) == ["a", "b", "c", "d"]  # one per image
    assert expand_prompts(None, 2) == ["", ""]
    with pytest.raises(ValueError, match="3 prompts for 4 images"):
        expand_prompts(["a", "b", "c"], 4)
    embeddings = RecordingTextEncoder().encode(["a", "b"])
    expanded = expand_prompts(embeddings, 4, 2)
    torch.testing.assert_close(expanded.tokens, embeddings.tokens[[0, 0, 1, 1]])


# --- device and dtype ---------------------------------------------------------------------------


def test_device_and_dtype_follow_the_base_pipeline():
    base = tiny_ddpm()
    pipe = UpscaledPipeline(base, Upscaler(tiny_generator(), device="cpu", dtype="fp32"))
    assert pipe.upscaler.device == torch.device("cpu") and pipe.upscaler.dtype == torch.float32
    pipe.to(torch.bfloat16)
    assert base.dtype == torch.bfloat16
    images = pipe(batch_size=1, output_type="pt", **seeded()).images
    assert pipe.upscaler.dtype == torch.bfloat16
    assert pipe.upsampler.dtype == torch.bfloat16
    assert images.dtype == torch.bfloat16  # "pt" keeps the base images' dtype, as diffusers does
    pinned = UpscaledPipeline(base, pipe.upsampler, upscale_dtype="fp32")
    assert pinned.upscaler.dtype == torch.float32
    assert pinned.device == torch.device("cpu")


# --- existing outputs ---------------------------------------------------------------------------


def test_upscale_pipeline_output_keeps_the_output_class_and_fields(sd, encoder):
    upscaler = text_upscaler(encoder)
    output = sd(["a red fox", "a blue car"], num_images_per_prompt=2, **seeded())
    upscaled = upscale_pipeline_output(
        output, upscaler, ["a red fox", "a blue car"], num_images_per_prompt=2
    )
    assert isinstance(upscaled, StableDiffusionPipelineOutput)
    assert upscaled.nsfw_content_detected is None
    assert [image.size for image in upscaled.images] == [(4 * BASE_SIZE, 4 * BASE_SIZE)] * 4
    assert encoder.calls == [["a red fox", "a red fox", "a blue car", "a blue car"]]
    assert [image.size for image in output.images] == [(BASE_SIZE, BASE_SIZE)] * 4  # untouched


def test_upscale_pipeline_output_on_lists_arrays_tuples(ddpm):
    upscaler = Upscaler(tiny_generator(), device="cpu")
    size = 4 * BASE_SIZE
    output = ddpm(batch_size=2, output_type="np", **seeded())
    assert isinstance(upscale_pipeline_output(output, upscaler), ImagePipelineOutput)
    array = upscale_pipeline_output(output.images, upscaler)
    assert isinstance(array, np.ndarray) and array.shape == (2, size, size, 3)
    pil = upscale_pipeline_output(ddpm.numpy_to_pil(output.images), upscaler)
    assert [image.size for image in pil] == [(size, size)] * 2
    single = upscale_pipeline_output(ddpm.numpy_to_pil(output.images)[0], upscaler)
    assert isinstance(single, Image.Image) and single.size == (size, size)
    as_tuple = upscale_pipeline_output((output.images,), upscaler, output_type="pt")
    assert isinstance(as_tuple, tuple) and as_tuple[0].shape == (2, 3, size, size)
    # A bare model works too, run where it is.
    tensor = upscale_pipeline_output(output.images, tiny_generator(), output_type="pt")
    torch.testing.assert_close(tensor, torch.from_numpy(array).permute(0, 3, 1, 2))


def test_upscale_pipeline_output_decodes_latents(sd, encoder):
    upscaler = text_upscaler(encoder)
    latents = sd("a red fox", output_type="latent", **seeded())
    assert latents.images.shape == (1, 4, BASE_SIZE // 2, BASE_SIZE // 2)
    with pytest.raises(ValueError, match="pass pipeline="):
        upscale_pipeline_output(latents, upscaler, "a red fox")
    decoded = upscale_pipeline_output(latents, upscaler, "a red fox", pipeline=sd)
    assert decoded.images.shape == (1, 3, 4 * BASE_SIZE, 4 * BASE_SIZE)
    wrapped = UpscaledPipeline(sd, upscaler)("a red fox", output_type="pt", **seeded()).images
    torch.testing.assert_close(decoded.images, wrapped, atol=1e-5, rtol=0)
    # decode_latents alone matches the pipeline's own VAE decoding.
    images = sd("a red fox", output_type="pt", **seeded()).images
    torch.testing.assert_close(decode_latents(latents.images, sd), images, atol=1e-6, rtol=0)


# --- save / load --------------------------------------------------------------------------------


def test_save_load_round_trip_text_to_image(sd, encoder, tmp_path):
    pipe = UpscaledPipeline(sd, text_upscaler(encoder))
    pipe.save_pretrained(tmp_path)

    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "UpscaledPipeline"
    assert index["base"] == ["stable_diffusion", "StableDiffusionPipeline"]
    assert index["upsampler"] == ["upsampler.models.generator", "GigaGANUpsampler"]
    assert (tmp_path / "base" / "model_index.json").is_file()
    assert (tmp_path / "upsampler" / "config.json").is_file()

    # The upsampler folder is an ordinary GigaGANUpsampler folder.
    model = GigaGANUpsampler.from_pretrained(tmp_path, subfolder="upsampler")
    for name, tensor in pipe.upsampler.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, atol=0, rtol=0)

    loaded = UpscaledPipeline.from_pretrained(tmp_path, text_encoder=encoder)
    assert isinstance(loaded.base, StableDiffusionPipeline)
    assert isinstance(loaded.upsampler, GigaGANUpsampler) and loaded.text_encoder is encoder
    loaded.set_progress_bar_config(disable=True)
    prompts = ["a red fox", "a blue car"]
    expected = pipe(prompts, num_images_per_prompt=2, output_type="pt", **seeded(3)).images
    actual = loaded(prompts, num_images_per_prompt=2, output_type="pt", **seeded(3)).images
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


def test_save_load_round_trip_unconditional(ddpm, tmp_path):
    pipe = UpscaledPipeline(ddpm, Upscaler(tiny_generator(scale=8), device="cpu"))
    pipe.save_pretrained(tmp_path)
    loaded = UpscaledPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.base, DDPMPipeline)
    expected = pipe(batch_size=2, output_type="np", **seeded(1)).images
    actual = loaded(batch_size=2, output_type="np", **seeded(1)).images
    assert actual.shape == (2, 8 * BASE_SIZE, 8 * BASE_SIZE, 3)
    np.testing.assert_allclose(actual, expected, atol=1e-6, rtol=0)


def test_from_pretrained_casts_the_base_pipeline_and_accepts_components(ddpm, tmp_path):
    UpscaledPipeline(ddpm, tiny_generator()).save_pretrained(tmp_path)
    loaded = UpscaledPipeline.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    # diffusers alone would load the nested base pipeline in float32.
    assert loaded.base.dtype == torch.bfloat16 and loaded.upsampler.dtype == torch.bfloat16
    given = UpscaledPipeline.from_pretrained(tmp_path, base=ddpm)
    assert given.base is ddpm and given.base.dtype == torch.float32


def test_the_engine_does_not_import_the_integration():
    # inference -> integrations -> inference was a cycle; the engine must load without diffusers'
    # pipeline machinery, and the wrapper is built from the integration's side.
    import subprocess
    import sys

    code = (
        "import sys, upsampler.inference.upscaler; "
        "sys.exit(int('upsampler.integrations.diffusers' in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- any loadable model -----------------------------------------------------------------------


def test_a_community_checkpoint_file_post_processes_a_pipeline(ddpm, tmp_path):
    from spandrel.architectures.Compact import Compact

    from upsampler.models import SpandrelUpsampler

    torch.manual_seed(0)
    checkpoint = tmp_path / "4x-Compact.pth"
    torch.save(Compact(num_feat=8, num_conv=2, upscale=4).state_dict(), checkpoint)
    pipe = UpscaledPipeline(ddpm, str(checkpoint), upscale_device="cpu")
    assert isinstance(pipe.upsampler, SpandrelUpsampler)
    images = pipe(batch_size=2, output_type="np", **seeded()).images
    assert images.shape == (2, 128, 128, 3)
    # The same checkpoint on images that already exist, given as a bare model.
    base = ddpm(batch_size=1, output_type="pt", **seeded())
    upscaled = upscale_pipeline_output(base, pipe.upsampler, output_type="pt")
    assert upscaled.images.shape == (1, 3, 128, 128)
    # It has no folder format of ours: saving says what to do instead, and writes nothing.
    with pytest.raises(TypeError, match="keep the checkpoint file"):
        pipe.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved").exists()


def test_anything_else_is_refused_with_the_accepted_kinds(ddpm):
    with pytest.raises(TypeError, match="an Upscaler, an upsampler model or a name"):
        UpscaledPipeline(ddpm, torch.nn.Conv2d(3, 3, 1))
