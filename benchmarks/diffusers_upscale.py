"""Our 4x stage against diffusers' StableDiffusionUpscalePipeline, on the same 128x128 input.

    python benchmarks/diffusers_upscale.py                      # published configs, 75 steps
    python benchmarks/diffusers_upscale.py --steps 3            # time 3 steps, extrapolate to 75
    python benchmarks/diffusers_upscale.py --device cuda --dtype fp16
    python benchmarks/diffusers_upscale.py --quick              # tiny configs: checks it runs

Both sides get random weights (time does not depend on the weights' values) and the same
input: the 128x128 centre crop of ``examples/images/skyline.png`` (192x128), upscaled to
512x512, PIL in and PIL out, batch 1, in one process.

- diffusers: ``StableDiffusionUpscalePipeline`` built from the published configuration of
  ``stabilityai/stable-diffusion-x4-upscaler`` (its UNet, VAE, OpenCLIP-H text encoder and
  schedulers, written below as dicts because the Hub is not reachable here), with its defaults:
  75 DDIM steps, guidance 9 (two UNet passes per step), noise level 20. The tokenizer is a
  small character-level CLIP tokenizer (the real 49k-entry vocabulary is not available
  offline); it changes which token ids the text encoder sees, not how long it takes. Each
  denoising step is timed through the pipeline's step callback, so ``--steps`` below 75 gives
  a measured time per step; the 75-step total is then the measured run with the missing steps
  added at the median step time, and is labelled EXTRAPOLATED.
- ours: ``Upscaler`` with the ``nano`` preset at 4x, unconditional and text-conditioned
  (precomputed 77-token embeddings of width 512 stand in for a CLIP ViT-B text encoder, whose
  time is not counted), tiled as ``upsampler upscale`` would tile; median of ``--repeats``
  runs after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import diffusers
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    StableDiffusionUpscalePipeline,
    UNet2DConditionModel,
)
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from upsampler import GigaGANUpsampler, TextEmbeddings, Upscaler
from upsampler.inference.devices import resolve_device, resolve_dtype

DEFAULT_STEPS = 75  # StableDiffusionUpscalePipeline's default num_inference_steps
IMAGE = Path(__file__).resolve().parent.parent / "examples" / "images" / "skyline.png"
PROMPT = "a city skyline at dusk, highly detailed photograph"

# stabilityai/stable-diffusion-x4-upscaler, unet/config.json (the ldm x4-upscaling.yaml:
# model_channels 256, channel_mult 1-2-2-4, attention at 2x/4x/8x downsampling, cross-attention
# only (no self-attention) in the three higher-resolution attention levels, noise-level class
# embedding, 4 latent + 3 image input channels).
X4_UNET = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [256, 512, 512, 1024],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": [
        "DownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
    ],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 7,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": 1000,
    "only_cross_attention": [True, True, True, False],
    "out_channels": 4,
    "sample_size": 128,
    "up_block_types": [
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "UpBlock2D",
    ],
    "use_linear_projection": True,
}
# vae/config.json: three levels (4x spatial compression), the x4 upscaler's latent scaling.
X4_VAE = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512],
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 256,
    "scaling_factor": 0.08333,
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
}
# text_encoder/config.json: OpenCLIP ViT-H/14's text tower as in Stable Diffusion 2 (23 layers:
# SD 2 reads the penultimate layer of the 24).
X4_TEXT = {
    "hidden_act": "gelu",
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_attention_heads": 16,
    "num_hidden_layers": 23,
    "projection_dim": 512,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
}
X4_SCHEDULER = {
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
X4_LOW_RES_SCHEDULER = {
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "clip_sample": False,
}
X4_MAX_NOISE_LEVEL = 350

# --quick: the same architecture families, a few channels wide.
QUICK_UNET = dict(
    X4_UNET,
    block_out_channels=[32, 32, 64, 64],
    attention_head_dim=2,
    cross_attention_dim=32,
    layers_per_block=1,
    norm_num_groups=8,
)
QUICK_VAE = dict(X4_VAE, block_out_channels=[16, 32, 32], layers_per_block=1, norm_num_groups=8)
QUICK_TEXT = dict(
    X4_TEXT,
    hidden_size=32,
    intermediate_size=64,
    num_attention_heads=2,
    num_hidden_layers=1,
    projection_dim=32,
)


def char_tokenizer(folder: Path, max_length: int) -> CLIPTokenizer:
    """A CLIP tokenizer over single characters (vocab.json + merges.txt written to ``folder``)."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in "abcdefghijklmnopqrstuvwxyz0123456789,.":
        vocab[symbol] = len(vocab)
        vocab[symbol + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=max_length)


def x4_pipeline(quick: bool, folder: Path) -> StableDiffusionUpscalePipeline:
    torch.manual_seed(0)
    text_config = QUICK_TEXT if quick else X4_TEXT
    pipe = StableDiffusionUpscalePipeline(
        vae=AutoencoderKL(**(QUICK_VAE if quick else X4_VAE)),
        text_encoder=CLIPTextModel(CLIPTextConfig(**text_config)).eval(),
        tokenizer=char_tokenizer(folder, text_config["max_position_embeddings"]),
        unet=UNet2DConditionModel(**(QUICK_UNET if quick else X4_UNET)),
        low_res_scheduler=DDPMScheduler(**X4_LOW_RES_SCHEDULER),
        scheduler=DDIMScheduler(**X4_SCHEDULER),
        max_noise_level=X4_MAX_NOISE_LEVEL,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_image(size: int) -> Image.Image:
    """A ``size`` x ``size`` centre crop of a real photo (downscaled first, antialiased)."""
    image = Image.open(IMAGE).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return square.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_diffusion(
    pipe: StableDiffusionUpscalePipeline,
    image: Image.Image,
    steps: int,
    device: torch.device,
    warmup: bool,
) -> tuple[float, list[float]]:
    """(seconds for the whole call, seconds of each denoising step)."""
    kwargs = dict(prompt=PROMPT, image=image, generator=torch.Generator().manual_seed(0))
    if warmup:
        pipe(num_inference_steps=1, **kwargs)
    marks: list[float] = []

    def on_step(step: int, timestep: int, latents: torch.Tensor) -> None:
        synchronize(device)
        marks.append(time.perf_counter())

    synchronize(device)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the legacy step callback is deprecated
        result = pipe(num_inference_steps=steps, callback=on_step, callback_steps=1, **kwargs)
    synchronize(device)
    total = time.perf_counter() - start
    assert result.images[0].size == (4 * image.width, 4 * image.height)
    step_times = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    return total, step_times


def time_ours(
    upscaler: Upscaler, image: Image.Image, text: TextEmbeddings | None, repeats: int
) -> float:
    upscaler.upscale(image, text)  # warm-up
    times = []
    for _ in range(repeats):
        synchronize(upscaler.device)
        start = time.perf_counter()
        hq = upscaler.upscale(image, text)
        synchronize(upscaler.device)
        times.append(time.perf_counter() - start)
    assert hq.size == (4 * image.width, 4 * image.height)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help="denoising steps to run and time (at least 2; fewer than 75 are extrapolated)",
    )
    parser.add_argument("--size", type=int, default=None, help="input side (default 128)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps or auto")
    parser.add_argument("--dtype", default="fp32", help="fp32, fp16 or bf16, for both sides")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of our stage")
    parser.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the diffusion pipeline once with 1 step before timing (default: on GPUs only)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny configs, 32x32 input, 2 steps: a smoke test"
    )
    args = parser.parse_args()
    # diffusers logs that cast models have no fp32-only modules; nothing to act on here.
    diffusers.utils.logging.set_verbosity_error()
    size = args.size or (32 if args.quick else 128)
    steps = 2 if args.quick and args.steps == DEFAULT_STEPS else args.steps
    if steps < 2:
        parser.error("--steps must be at least 2 (a time per step needs two step marks)")
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    warmup = device.type != "cpu" if args.warmup is None else args.warmup
    image = test_image(size)

    with tempfile.TemporaryDirectory() as folder:
        pipe = x4_pipeline(args.quick, Path(folder)).to(device, dtype)
    total, step_times = time_diffusion(pipe, image, steps, device, warmup)
    del pipe
    per_step = statistics.median(step_times)
    # The first step's mark includes prompt encoding and image preparation, the tail the VAE:
    # everything that is not a step is kept as measured.
    overhead = total - steps * per_step
    extrapolated = overhead + DEFAULT_STEPS * per_step

    torch.manual_seed(0)
    ours = {}
    for text_conditioning in (False, True):
        model = GigaGANUpsampler.from_preset("nano", scale=4, text_conditioning=text_conditioning)
        upscaler = Upscaler(model, device=device, dtype=dtype)
        text = None
        if text_conditioning:
            tokens = torch.randn(1, 77, 512)
            text = TextEmbeddings(tokens, tokens.mean(dim=1), torch.ones(1, 77, dtype=torch.bool))
        ours[text_conditioning] = time_ours(upscaler, image, text, args.repeats)

    out = f"{4 * size}x{4 * size}"
    configs = "tiny --quick configs" if args.quick else "published config"
    rows = [
        f"| method ({size}x{size} -> {out}) | denoising steps | s / image | s / step |",
        "|---|---:|---:|---:|",
        f"| diffusers `StableDiffusionUpscalePipeline` ({configs}), measured | {steps} "
        f"| {total:.2f} | {per_step:.3f} |",
    ]
    if steps != DEFAULT_STEPS:
        rows.append(
            f"| diffusers `StableDiffusionUpscalePipeline`, **EXTRAPOLATED** to its default "
            f"{DEFAULT_STEPS} steps | {DEFAULT_STEPS} | {extrapolated:.2f} | {per_step:.3f} |"
        )
    for text_conditioning, seconds in ours.items():
        name = "text-conditioned" if text_conditioning else "unconditional"
        rows.append(
            f"| ours: `nano` 4x, {name} (`Upscaler`, one forward pass) | - | {seconds:.3f} | - |"
        )
    speedup = (extrapolated if steps != DEFAULT_STEPS else total) / ours[True]
    cpu = platform.processor() or platform.machine()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    if not args.quick:  # tiny configs say nothing about the real ratio
        rows += [
            "",
            f"At {DEFAULT_STEPS} steps the diffusion upscaler takes {speedup:,.0f}x as long as "
            "the text-conditioned `nano` stage"
            + (" (extrapolated from the measured steps)." if steps != DEFAULT_STEPS else "."),
        ]
    rows += [
        "",
        f"Measured by `python benchmarks/diffusers_upscale.py{' --quick' if args.quick else ''}"
        f"{f' --steps {steps}' if steps != DEFAULT_STEPS and not args.quick else ''}` on "
        f"{device.type} ({where}), {torch.get_num_threads()} threads, "
        f"{str(dtype).removeprefix('torch.')}, torch {torch.__version__}, diffusers "
        f"{diffusers.__version__}; random weights, batch 1, PIL in and out; ours: median of "
        f"{args.repeats} runs after a warm-up.",
    ]
    print("\n".join(rows))


if __name__ == "__main__":
    main()
