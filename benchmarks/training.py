"""Training throughput of a recipe: steps/s and images/s, reconstruction and GAN phases.

    python benchmarks/training.py                       # recipes/nano-4x.toml on the CPU
    python benchmarks/training.py --recipe recipes/base-4x.toml --device auto --steps 20

Runs on synthetic photo-like crops in a temporary folder (the data does not change the
speed), with LPIPS on only when its weights are prepared (`upsampler prepare-lpips`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from upsampler.training import Trainer, load_recipe


def write_images(folder: Path, count: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for index in range(count):
        coarse = Image.fromarray(rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8))
        noise = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).filter(
            ImageFilter.GaussianBlur(1)
        )
        Image.blend(coarse.resize((size, size), Image.BICUBIC), noise, 0.3).save(
            folder / f"{index}.png"
        )


def lpips_ready(net: str) -> bool:
    try:
        from upsampler.losses.lpips import load_lpips

        load_lpips(net)
        return True
    except (FileNotFoundError, ImportError):
        return False


def measure(recipe_path: Path, steps: int, device: str, gan: bool) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        base = load_recipe(recipe_path)
        write_images(data, 16, max(256, base.data.crop_size))
        overrides = [
            f'data.path="{data}"',
            f'train.output_dir="{Path(tmp) / "run"}"',
            f"train.steps={steps + 2}",
            f"train.warmup_steps={0 if gan else steps + 2}",
            f"train.checkpoint_every={steps + 100}",
            f"train.sample_every={steps + 100}",
            f'train.device="{device}"',
            "data.num_workers=0",
        ]
        if not lpips_ready(base.loss.lpips_net):
            overrides.append("loss.lpips=0.0")
        recipe = load_recipe(recipe_path, overrides)
        trainer = Trainer(recipe)
        times = []
        last = [time.perf_counter()]

        def progress(step: int, logs: dict) -> None:
            now = time.perf_counter()
            times.append(now - last[0])
            last[0] = now

        trainer.progress = progress
        trainer.train()
        per_step = float(np.median(times[2:]))  # skip the first steps (allocations, warm-up)
        return per_step, recipe.data.batch_size * recipe.train.gradient_accumulation


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", type=Path, default=Path("recipes/nano-4x.toml"))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--device", choices=["cpu", "auto"], default="cpu")
    args = parser.parse_args()
    print(
        f"recipe {args.recipe}, device {args.device}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print("| phase | seconds/step | images/s |")
    print("|---|---:|---:|")
    for gan in (False, True):
        seconds, batch = measure(args.recipe, args.steps, args.device, gan)
        print(f"| {'GAN' if gan else 'reconstruction'} | {seconds:.2f} | {batch / seconds:.1f} |")


if __name__ == "__main__":
    main()
