"""Tile seams of any loadable model through our engine: blended tiles, butted tiles, no tiles.

    python benchmarks/seams.py --model ~/models/RealESRGAN_x4plus.safetensors examples/images
    python benchmarks/seams.py --model nano-4x --tile 32 --overlap 8 photo.png

Every image is upscaled three times in the same run, with the same model:

* ``untiled``: one tile covering the whole image, the floor of the measure (there are no
  borders; the ratio is measured at the tiled run's borders all the same);
* ``blended``: tiles of ``--tile`` input pixels overlapping by ``--overlap``, blended, as
  ``upsampler upscale`` runs (the engine's default overlap is 16);
* ``butted``: the same tiles with no overlap, put side by side: what a tiler without context
  or blending gives (Real-ESRGAN's own ``--tile`` pads each tile but does not blend).

Printed: the seam ratio of :func:`upsampler.evaluation.seams.seam_ratio` at the tiles' borders
(period ``scale``: upsampling leaves a pattern of that period), per image and averaged, and the
seconds each run took. 1 means the borders cannot be told from the rest of the image.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def _borders(upscaler, height: int, width: int, tile: int, overlap: int) -> tuple[list, list]:
    from upsampler.evaluation.seams import tile_borders
    from upsampler.inference.tiling import plan_tiles

    plan = plan_tiles(
        height,
        width,
        tile=tile,
        overlap=overlap,
        size_multiple=upscaler.size_multiple,
        scale=upscaler.scale,
        min_side=min(upscaler.model.min_size, tile),
    )
    rows = tile_borders(plan.ys, plan.tile_height, height, upscaler.scale)
    cols = tile_borders(plan.xs, plan.tile_width, width, upscaler.scale)
    return rows, cols


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="images or folders of images")
    parser.add_argument("--model", "-m", required=True, help="any model the loader accepts")
    parser.add_argument("--tile", type=int, default=32, help="tile side, input pixels (32)")
    parser.add_argument("--overlap", type=int, default=16, help="blended overlap (16)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from upsampler.evaluation.evaluate import list_images
    from upsampler.evaluation.seams import seam_ratio
    from upsampler.inference.upscaler import Upscaler
    from upsampler.io.images import read_image

    files = [f for item in args.inputs for f in (list_images(item) if item.is_dir() else [item])]
    upscaler = Upscaler.from_pretrained(args.model, device=args.device)
    print(
        f"model {args.model}: {upscaler.scale}x; tiles {args.tile} px, overlap {args.overlap} "
        f"(blended) or 0 (butted); device {upscaler.device}, {upscaler.dtype}"
    )
    print("| image | size | untiled | blended | butted | s untiled / blended / butted |")
    print("|---|---|---|---|---|---|")
    totals = {"untiled": [], "blended": [], "butted": []}
    for file in files:
        pixels = read_image(file).pixels[..., :3]
        lq = torch.from_numpy(pixels).permute(2, 0, 1)[None].float()
        height, width = lq.shape[-2:]
        whole = -(-max(height, width) // upscaler.size_multiple) * upscaler.size_multiple
        rows, cols = _borders(upscaler, height, width, args.tile, args.overlap)
        butted_rows, butted_cols = _borders(upscaler, height, width, args.tile, 0)
        runs = {
            "untiled": (dict(tile=whole, tile_overlap=0), rows, cols),
            "blended": (dict(tile=args.tile, tile_overlap=args.overlap), rows, cols),
            "butted": (dict(tile=args.tile, tile_overlap=0), butted_rows, butted_cols),
        }
        ratios, seconds = {}, {}
        for name, (options, run_rows, run_cols) in runs.items():
            started = time.perf_counter()
            hq = upscaler.upscale(lq, seed=args.seed, **options)
            seconds[name] = time.perf_counter() - started
            if not run_rows and not run_cols:
                ratios[name] = float("nan")
                continue
            ratios[name] = seam_ratio(hq, run_rows, run_cols, period=upscaler.scale)
            totals[name].append(ratios[name])
        print(
            f"| {file.name} | {width}x{height} | {ratios['untiled']:.3f} | "
            f"{ratios['blended']:.3f} | {ratios['butted']:.3f} | "
            f"{seconds['untiled']:.1f} / {seconds['blended']:.1f} / {seconds['butted']:.1f} |"
        )
    means = {name: sum(v) / len(v) if v else float("nan") for name, v in totals.items()}
    print(f"| mean | | {means['untiled']:.3f} | {means['blended']:.3f} | {means['butted']:.3f} | |")


if __name__ == "__main__":
    main()
