"""The plain Python API in one screen: load an upsampler, upscale PIL images, NumPy arrays and
tensors, go to 8x, follow progress, steer a text-conditioned model, save and reload.

    python examples/python_api.py --model nano-4x             # the built-in model (offline)
    python examples/python_api.py --model models/my-4x        # a GigaGANUpsampler folder
    python examples/python_api.py --random-weights            # a random `nano` model

``--random-weights`` shows the API with a model of random weights: the shapes, kinds and
timings are real, the added detail is noise. Outputs go to ``outputs/python_api/``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from upsampler import GigaGANUpsampler, TextEmbeddings, Upscaler
from upsampler.inference import UpscaleProgress

IMAGES = Path(__file__).resolve().parent / "images"


def load(args: argparse.Namespace) -> Upscaler:
    if args.random_weights:
        # Every setting of a model lives in its config; a preset is a named set of them.
        torch.manual_seed(0)
        model = GigaGANUpsampler.from_preset("nano", scale=4)
        return Upscaler(model, device=args.device)
    # A built-in name, a save_pretrained folder, or a Hub id (online only). A text-conditioned
    # model also needs the text encoder it was trained with, e.g.
    #   encoder = load_text_encoder("transformers", "/models/all-MiniLM-L6-v2")
    #   Upscaler.from_pretrained(path, text_encoder=encoder)
    return Upscaler.from_pretrained(args.model, device=args.device)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="built-in name, save_pretrained folder or Hub id")
    source.add_argument(
        "--random-weights", action="store_true", help="a random `nano` model (offline demo)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--output", type=Path, default=Path("outputs/python_api"))
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)

    upscaler = load(args)
    print(
        f"{upscaler.scale}x model on {upscaler.device} in {upscaler.dtype}, "
        f"text-conditioned: {upscaler.text_conditioning}, input sides padded to multiples of "
        f"{upscaler.size_multiple} internally"
    )
    if upscaler.text_conditioning and upscaler.text_encoder is None:
        # Without an encoder, a text-conditioned model still runs on precomputed embeddings;
        # here, zero embeddings of the model's width (a stand-in for the empty prompt).
        width = upscaler.model.config.text_embed_dim
        prompt = TextEmbeddings(
            torch.zeros(1, 4, width), torch.zeros(1, width), torch.ones(1, 4, dtype=torch.bool)
        )
    else:
        prompt = "dandelion seed heads, macro photograph" if upscaler.text_conditioning else None

    # 1. PIL in, PIL out: any mode (RGBA keeps its alpha, upscaled with bicubic).
    photo = Image.open(IMAGES / "dandelions.png")  # 192x128
    start = time.perf_counter()
    big = upscaler.upscale(photo, prompt, seed=0)
    print(f"PIL {photo.size} -> {big.size} in {time.perf_counter() - start:.2f} s")
    big.save(args.output / "dandelions-4x.png")

    # 2. NumPy in, NumPy out: uint8 stays uint8 (uint16 stays uint16, float stays float).
    array = np.asarray(Image.open(IMAGES / "skyline.png"))
    big_array = upscaler.upscale(array, prompt)
    print(f"NumPy {array.shape} {array.dtype} -> {big_array.shape} {big_array.dtype}")

    # 3. Tensors: (B, 3, H, W) float in [0, 1], back on their own device and dtype. A list
    #    upscales images of different sizes in one call.
    batch = torch.stack(
        [
            torch.from_numpy(np.array(Image.open(IMAGES / name))).permute(2, 0, 1) / 255.0
            for name in ("lava-lake.png", "azure-window.png")
        ]
    )
    big_batch = upscaler.upscale(batch, prompt)
    print(f"tensor {tuple(batch.shape)} -> {tuple(big_batch.shape)}")

    # 4. 8x with a 4x model: the model runs twice (the second pass costs 16 times the first),
    #    then an exact resize; progress reports every batch of tiles.
    def report(progress: UpscaleProgress) -> None:
        if progress.tiles_done == progress.tiles:
            print(f"  pass {progress.pass_index + 1}/{progress.passes}: {progress.tiles} tiles")

    crop = photo.crop((64, 32, 128, 96))  # 64x64
    eight = upscaler.upscale(crop, prompt, outscale=8, progress=report)
    print(f"8x: {crop.size} -> {eight.size}")
    eight.save(args.output / "dandelions-crop-8x.png")

    # 5. Seeds: one z per image, shared by all its tiles; the same seed gives the same pixels.
    again = upscaler.upscale(photo, prompt, seed=0)
    other = upscaler.upscale(photo, prompt, seed=1)
    same = np.array_equal(np.asarray(again), np.asarray(big))
    changed = np.abs(np.asarray(other, dtype=np.int16) - np.asarray(big, dtype=np.int16)).max()
    print(f"seed 0 twice identical: {same}; seed 1 differs by up to {changed} levels")

    # 6. Tiles: smaller tiles bound memory; overlapping tiles are blended, so no seams.
    tiled = upscaler.upscale(photo, prompt, tile=32, tile_overlap=8)
    print(f"32 px tiles: {tiled.size}")

    # 7. Models are diffusers ModelMixin + ConfigMixin: a folder with config.json + safetensors.
    with tempfile.TemporaryDirectory() as folder:
        upscaler.model.save_pretrained(folder)
        reloaded = Upscaler.from_pretrained(
            folder,
            device=upscaler.device,
            dtype=upscaler.dtype,
            text_encoder=upscaler.text_encoder,
        )
        identical = np.array_equal(
            np.asarray(reloaded.upscale(photo, prompt, seed=0)), np.asarray(big)
        )
    print(f"saved and reloaded: identical output {identical}")
    print(f"wrote {args.output}/")


if __name__ == "__main__":
    main()
