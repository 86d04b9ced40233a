"""A figure of sample crops: LQ | bicubic | each model | HQ, one row per image.

    python scripts/sample_figure.py data/val -o docs/images/nano-4x-samples.png \
        --image endless-sky_city11_0.png --image endless-sky_mfield1_0.png \
        --image endless-sky_snow0_0.png --image endless-sky_sea1_0.png \
        --model ~/models/nano-4x-previous --label "nano-4x (previous)" --model nano-4x \
        --model ~/models/RealESRGAN_x4plus.safetensors --label "Real-ESRGAN (teacher)" \
        --degradation realesrgan

(the README's figure; ``--degradation bicubic -o docs/images/nano-4x-samples-bicubic.png`` makes
its clean-input companion).

Inputs are made exactly as `upsampler eval` makes them (same preset, same per-image seed), so
the crops shown are crops of the images scored in the README's table. Each panel is ``--crop``
output pixels square, taken from the centre of the image; the LQ panel is
the input enlarged with nearest-neighbour interpolation so its pixels stay visible.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from upsampler.degradations import DegradationPipeline
from upsampler.evaluation.evaluate import degradation_seed, list_images, load_hq
from upsampler.evaluation.methods import interpolation_method, upscaler_method
from upsampler.io.files import atomic_output
from upsampler.io.tensors import to_pil_rgb

LABEL_HEIGHT = 16


def labelled(panel: Image.Image, label: str) -> Image.Image:
    canvas = Image.new("RGB", (panel.width, panel.height + LABEL_HEIGHT), "white")
    canvas.paste(panel, (0, LABEL_HEIGHT))
    ImageDraw.Draw(canvas).text((3, 2), label, fill="black")
    return canvas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder of held-out photos (as for upsampler eval)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG to write")
    parser.add_argument("--image", action="append", default=[], help="file name (repeatable)")
    parser.add_argument("--model", action="append", default=[], help="model name or folder")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        help="panel title of each --model, in the same order (default: the model's name)",
    )
    parser.add_argument("--degradation", default="realesrgan")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--crop", type=int, default=128, help="panel side in output pixels")
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("give at least one --model")
    if args.label and len(args.label) != len(args.model):
        parser.error(f"{len(args.label)} --label for {len(args.model)} --model: give one per model")

    paths = list_images(args.data)
    if args.image:
        by_name = {path.name: path for path in paths}
        missing = [name for name in args.image if name not in by_name]
        if missing:
            parser.error(f"not in {args.data}: {', '.join(missing)}")
        paths = [by_name[name] for name in args.image]

    pipeline = DegradationPipeline.from_preset(args.degradation, scale=args.scale)
    methods = [interpolation_method("bicubic", args.scale)] + [
        upscaler_method(model, scale=args.scale, seed=args.seed, device="cpu")
        for model in args.model
    ]
    labels = ["bicubic"] + (args.label or [method.name for method in methods[1:]])
    crop, scale = args.crop, args.scale
    rows = []
    for path in paths:
        hq = load_hq(path, scale)
        relative = path.relative_to(args.data).as_posix()
        generator = torch.Generator().manual_seed(degradation_seed(args.seed, relative))
        lq = pipeline(hq, generator=generator)
        # A centre crop on the LQ grid, so every panel shows the same scene pixels.
        top = (hq.shape[-2] - crop) // 2 // scale * scale
        left = (hq.shape[-1] - crop) // 2 // scale * scale
        window = (slice(top, top + crop), slice(left, left + crop))
        lq_window = (
            slice(top // scale, (top + crop) // scale),
            slice(left // scale, (left + crop) // scale),
        )
        panels = [
            labelled(
                to_pil_rgb(lq[..., lq_window[0], lq_window[1]]).resize((crop, crop), Image.NEAREST),
                f"LQ ({args.degradation})",
            )
        ]
        for method, label in zip(methods, labels, strict=True):
            output = method.upscale(lq).cpu()
            panels.append(labelled(to_pil_rgb(output[..., window[0], window[1]]), label))
        panels.append(labelled(to_pil_rgb(hq[..., window[0], window[1]]), "HQ"))
        row = Image.new("RGB", (sum(p.width for p in panels), panels[0].height), "white")
        for index, panel in enumerate(panels):
            row.paste(panel, (index * panel.width, 0))
        rows.append(row)

    figure = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)), "white")
    for index, row in enumerate(rows):
        figure.paste(row, (0, index * row.height))
    with atomic_output(args.output) as temporary:
        figure.save(temporary, format="PNG", optimize=True)
    print(f"wrote {args.output} ({figure.width}x{figure.height}, {len(rows)} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
