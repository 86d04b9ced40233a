"""diffusers post-processing: Stable Diffusion (or SDXL) images, 4x larger, in one line.

    # offline, in seconds: a tiny random-weight Stable Diffusion pipeline and upsampler
    python examples/diffusers_postprocess.py --tiny

    # Stable Diffusion 1.5 + your upsampler (an unconditional one needs no text encoder)
    python examples/diffusers_postprocess.py --upsampler models/my-4x \\
        --model stable-diffusion-v1-5/stable-diffusion-v1-5 --device cuda --dtype fp16

    # SDXL (1024 px -> 4096 px) + a text-conditioned upsampler, which reads the same prompt
    python examples/diffusers_postprocess.py --upsampler models/my-text-4x \\
        --text-encoder transformers:/models/all-MiniLM-L6-v2 \\
        --model stabilityai/stable-diffusion-xl-base-1.0 --device cuda --dtype fp16

The one line is ``UpscaledPipeline(base, upscaler)``: calling it runs the base pipeline and
returns its output with every image upscaled; a text-conditioned upsampler gets the prompt of
each image. The script also upscales images made earlier (``upscale_pipeline_output``) and
saves the wrapped pipeline and loads it back. Outputs go to ``outputs/diffusers_postprocess/``.

With ``--tiny`` every weight is random (the images are noise), but each step is the real one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import diffusers
import torch
import transformers
from diffusers import DiffusionPipeline

from upsampler import GigaGANUpsampler, Upscaler
from upsampler.integrations.diffusers import UpscaledPipeline, upscale_pipeline_output
from upsampler.text import OpenCLIPTextEncoder, load_text_encoder

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def tiny_base(folder: Path) -> DiffusionPipeline:
    """A Stable Diffusion pipeline a few channels wide, built from configs (64x64 images)."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    # A character-level CLIP tokenizer: vocab.json + merges.txt as a real checkpoint has them.
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in "abcdefghijklmnopqrstuvwxyz0123456789":
        vocab[symbol] = len(vocab)
        vocab[symbol + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=32)

    torch.manual_seed(0)
    return StableDiffusionPipeline(
        unet=UNet2DConditionModel(
            sample_size=32,
            block_out_channels=(16, 32),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=4,
            norm_num_groups=8,
        ),
        vae=AutoencoderKL(
            block_out_channels=(16, 32),
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            layers_per_block=1,
            norm_num_groups=8,
        ),
        text_encoder=CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(vocab),
                hidden_size=32,
                intermediate_size=64,
                num_attention_heads=2,
                num_hidden_layers=2,
                max_position_embeddings=32,
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
            )
        ).eval(),
        tokenizer=tokenizer,
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_upscaler(folder: Path) -> Upscaler:
    """A random text-conditioned 4x upsampler reading prompts through a random tiny CLIP."""
    config = {
        "embed_dim": 24,
        "vision_cfg": {
            "image_size": 32,
            "layers": 1,
            "width": 32,
            "head_width": 16,
            "patch_size": 16,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 1,
        },
    }
    path = folder / "upsampler-example-tiny-clip.json"
    path.write_text(json.dumps(config))
    torch.manual_seed(0)
    text_encoder = OpenCLIPTextEncoder(str(path), random_weights=True)
    model = GigaGANUpsampler(
        scale=4,
        encoder_channels=[16, 32, 32],
        upsample_channels=[16, 16, 8],
        blocks_per_level=1,
        num_kernels=2,
        z_dim=16,
        style_dim=32,
        attention_levels=[2],
        attention_heads=2,
        text_conditioning=True,
        text_embed_dim=text_encoder.dim,
        text_dim=32,
        text_layers=1,
        text_heads=2,
    )
    return Upscaler(model, device="cpu", text_encoder=text_encoder)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny random-weight models, offline")
    parser.add_argument(
        "--model",
        default="stable-diffusion-v1-5/stable-diffusion-v1-5",
        help="a text-to-image pipeline (Hub id or folder): SD 1.x/2.x, SDXL, ...",
    )
    parser.add_argument("--upsampler", help="upsampler: built-in name, folder or Hub id")
    parser.add_argument(
        "--text-encoder",
        help="for a text-conditioned upsampler: BACKEND:NAME, e.g. transformers:/models/minilm",
    )
    parser.add_argument("--text-weights", help="open_clip pretrained tag or checkpoint file")
    parser.add_argument(
        "--prompt",
        action="append",
        help="a prompt (repeat for a batch)",
    )
    parser.add_argument("--num-images-per-prompt", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="denoising steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--output", type=Path, default=Path("outputs/diffusers_postprocess"))
    args = parser.parse_args()
    prompts = args.prompt or ["a lighthouse on a cliff at dusk", "a red fox in fresh snow"]
    args.output.mkdir(parents=True, exist_ok=True)
    diffusers.utils.logging.disable_progress_bar()  # loading bars; the denoising bar is below
    transformers.utils.logging.disable_progress_bar()
    scratch = tempfile.TemporaryDirectory()

    if args.tiny:
        base = tiny_base(Path(scratch.name))
        upscaler = tiny_upscaler(Path(scratch.name))
        steps = args.steps or 2
    else:
        if args.upsampler is None:
            parser.error("--upsampler is required without --tiny")
        from diffusers import AutoPipelineForText2Image

        # AutoPipelineForText2Image picks StableDiffusionPipeline, StableDiffusionXLPipeline...
        base = AutoPipelineForText2Image.from_pretrained(
            args.model, torch_dtype=DTYPES[args.dtype]
        ).to(args.device)
        text_encoder = None
        if args.text_encoder:
            backend, _, name = args.text_encoder.partition(":")
            text_encoder = load_text_encoder(backend, name, args.text_weights, device=args.device)
        upscaler = Upscaler.from_pretrained(args.upsampler, text_encoder=text_encoder)
        if upscaler.text_conditioning and text_encoder is None:
            parser.error(f"{args.upsampler} is text-conditioned: give --text-encoder BACKEND:NAME")
        steps = args.steps or 30
    base.set_progress_bar_config(disable=True)

    # 1. The one line: the upsampler runs where the base pipeline runs, in its dtype (fp32 on
    #    the CPU), and reads each image's prompt.
    pipe = UpscaledPipeline(base, upscaler)
    start = time.perf_counter()
    result = pipe(
        prompts,
        num_images_per_prompt=args.num_images_per_prompt,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(args.seed),
    )
    print(
        f"{type(base).__name__} + {upscaler.scale}x upsampler: {len(result.images)} images of "
        f"{result.images[0].size} in {time.perf_counter() - start:.1f} s"
    )
    for index, image in enumerate(result.images):
        image.save(args.output / f"upscaled-{index}.png")

    # 2. Images made earlier: keep the prompts (expanded the same way) and upscale afterwards.
    #    Ask the pipeline for float images ("pt" or "np") to skip the 8-bit round trip of PIL.
    made = base(
        prompts,
        num_images_per_prompt=args.num_images_per_prompt,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(args.seed),
        output_type="pt",
    )
    later = upscale_pipeline_output(
        made,
        pipe.upscaler,
        prompts,
        num_images_per_prompt=args.num_images_per_prompt,
        output_type="pil",
    )
    print(
        f"upscale_pipeline_output: {tuple(made.images.shape)} -> {len(later.images)} images of "
        f"{later.images[0].size}"
    )

    # 3. Latents: the wrapper decodes them with the base pipeline's VAE, then upscales; the
    #    result is images as float tensors (there is no latent of the upscaled image).
    decoded = pipe(
        prompts[0],
        num_inference_steps=steps,
        output_type="latent",
        generator=torch.Generator().manual_seed(args.seed),
    )
    print(f'output_type="latent": {tuple(decoded.images.shape)} float images in [0, 1]')

    # 4. Save the wrapped pipeline and load it back: base/ is the base pipeline's folder,
    #    upsampler/ a GigaGANUpsampler folder. The text encoder is not saved: pass it again.
    if args.tiny:
        saved = Path(scratch.name) / "upscaled-pipeline"
        pipe.save_pretrained(saved)
        loaded = UpscaledPipeline.from_pretrained(saved, text_encoder=upscaler.text_encoder)
        loaded.set_progress_bar_config(disable=True)
        again = loaded(
            prompts,
            num_images_per_prompt=args.num_images_per_prompt,
            num_inference_steps=steps,
            generator=torch.Generator().manual_seed(args.seed),
            output_type="pt",
        ).images
        first = pipe(
            prompts,
            num_images_per_prompt=args.num_images_per_prompt,
            num_inference_steps=steps,
            generator=torch.Generator().manual_seed(args.seed),
            output_type="pt",
        ).images
        print(
            f"saved to {saved.name}/ ({', '.join(sorted(p.name for p in saved.iterdir()))}) and "
            f"reloaded: identical output {torch.allclose(again, first, atol=1e-6)}"
        )
    scratch.cleanup()
    print(f"wrote {args.output}/")


if __name__ == "__main__":
    main()
