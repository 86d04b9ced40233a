"""AuraSR weights through our engine vs AuraSR's own tiling, on the same image in the same run.

    python benchmarks/aurasr.py                       # published architecture, 128x128 input
    python benchmarks/aurasr.py --tiny                # a tiny random AuraSR: seconds, for a check
    python benchmarks/aurasr.py --size 256x192 --device cuda --dtype bf16

One random-weight AuraSR generator (``aura_sr.UnetUpsampler`` built from the published
config.json, seeded; time and memory do not depend on the weights' values) is saved in AuraSR's
own layout (config.json + model.safetensors) in a temporary folder. Each method then runs in a
fresh process that loads it:

* ``ours``: ``Upscaler.from_pretrained(folder)`` (converted in memory), one z per image, tiles
  overlapping by ``--overlap`` and blended, in ``--dtype`` (the tile size is the Upscaler's
  automatic choice unless ``--tile`` is given).
* ``aurasr upscale_4x``: the reference's butted 64 px tiles, fp32, a new z per batch of tiles.
* ``aurasr upscale_4x_overlapped``: the reference's second pass over tiles offset by 32 px,
  blended with its checkerboard weights (twice the work).

Reported: seconds for one upscale (no warm-up: one 64 px tile of the published model takes
seconds on a CPU), peak memory while upscaling (resident memory high-water mark reset after
loading, on the CPU; ``torch.cuda.max_memory_allocated`` on a GPU), and the seam ratio of
:func:`upsampler.evaluation.seams.seam_ratio` at that method's own tile borders, with period
``scale * size_multiple`` = 32 output pixels (random weights leave a strong pattern of that
period). 1 means the borders are invisible.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from upsampler.models.aurasr_checkpoint import AURASR_PUBLISHED_CONFIG, CONFIG_NAME, WEIGHTS_NAME

# A few channels, every structural feature of the published model; noise width 128 because
# the reference's tiling methods hard-code it.
TINY_CONFIG: dict = {
    "style_network": {"dim_in": 128, "dim_out": 16, "depth": 2},
    "dim": 4,
    "image_size": 256,
    "input_image_size": 64,
    "self_attn_heads": 2,
    "self_attn_dim_head": 8,
    "attn_depths": [1, 1, 1, 1, 2],
    "mid_attn_depth": 1,
    "num_conv_kernels": 2,
    "skip_connect_scale": 0.4,
}
METHODS = ("ours", "upscale_4x", "upscale_4x_overlapped")
SEAM_PERIOD = 32  # scale (4) * size_multiple (8)


def test_image(width: int, height: int):
    """A real photo (scikit-image's astronaut) resized to ``width x height``, as PIL RGB."""
    from PIL import Image

    try:
        from skimage import data

        photo = Image.fromarray(data.astronaut())
    except ImportError:  # a smooth random image instead
        coarse = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        pixels = F.interpolate(coarse, size=(512, 512), mode="bicubic").clamp(0, 1)
        photo = Image.fromarray((pixels[0].permute(1, 2, 0) * 255).byte().numpy())
    return photo.resize((width, height), Image.Resampling.LANCZOS)


def write_aurasr_folder(folder: Path, config: dict, seed: int) -> int:
    """Save a seeded random ``aura_sr.UnetUpsampler`` in AuraSR's layout; its parameter count."""
    from aura_sr import UnetUpsampler
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    network = UnetUpsampler(**config)
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, folder / WEIGHTS_NAME)
    return sum(p.numel() for p in network.parameters())


# ---------------------------------------------------------------------- worker process


def _reset_peak_rss() -> None:
    """Reset the process's resident-memory high-water mark (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _worker(spec: dict) -> dict:
    import numpy as np

    from upsampler.evaluation.seams import grid_borders, seam_ratio, tile_borders
    from upsampler.inference.devices import resolve_device
    from upsampler.inference.tiling import plan_tiles
    from upsampler.inference.upscaler import Upscaler

    device = resolve_device(spec["device"])
    image = test_image(spec["width"], spec["height"])
    folder = Path(spec["folder"])
    config = json.loads((folder / CONFIG_NAME).read_text())
    side = config["input_image_size"]  # the reference's tile
    out_height, out_width = 4 * spec["height"], 4 * spec["width"]
    # Each method's tile borders in the output, as (rows, cols). The reference's second
    # overlapped pass puts borders halfway between those of its first.
    borders = {
        "upscale_4x": (grid_borders(out_height, 4 * side), grid_borders(out_width, 4 * side)),
        "upscale_4x_overlapped": (
            grid_borders(out_height, 2 * side),
            grid_borders(out_width, 2 * side),
        ),
    }
    if spec["method"] == "ours":
        upscaler = Upscaler.from_pretrained(folder, device=device, dtype=spec["dtype"])
        tile = spec["tile"] or upscaler.auto_tile(
            spec["height"], spec["width"], overlap=spec["overlap"]
        )
        overlap = min(spec["overlap"], tile // 2)
        plan = plan_tiles(
            spec["height"],
            spec["width"],
            tile=tile,
            overlap=overlap,
            size_multiple=upscaler.size_multiple,
            scale=upscaler.scale,
            min_side=min(2 * upscaler.size_multiple, tile),
        )
        borders["ours"] = (
            tile_borders(plan.ys, plan.tile_height, spec["height"], upscaler.scale),
            tile_borders(plan.xs, plan.tile_width, spec["width"], upscaler.scale),
        )
        tiles = f"{plan.num_tiles} x {plan.tile_height}x{plan.tile_width}, overlap {overlap}"

        def run():
            return upscaler.upscale(image, seed=spec["seed"], tile=tile, tile_overlap=overlap)

    else:
        from aura_sr import AuraSR, UnetUpsampler
        from safetensors.torch import load_file

        network = UnetUpsampler(**config)
        network.load_state_dict(load_file(folder / WEIGHTS_NAME), strict=True)
        # AuraSR.__init__ would build the network on "cuda": wrap ours as it would.
        aura = AuraSR.__new__(AuraSR)
        aura.upsampler = network.eval().to(device)
        aura.input_image_size = side
        count = -(-spec["height"] // side) * -(-spec["width"] // side)
        if spec["method"] == "upscale_4x":
            tiles = f"{count} x {side}x{side}"
        else:
            shifted = (-(-spec["height"] // side) + 1) * (-(-spec["width"] // side) + 1)
            tiles = f"{count} + {shifted} x {side}x{side}"
        method = getattr(aura, spec["method"])
        torch.manual_seed(spec["seed"])

        def run():
            return method(image)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    synchronize()
    start = time.perf_counter()
    output = run()
    synchronize()
    seconds = time.perf_counter() - start
    peak_rss = _peak_rss_bytes()  # before the untiled forward below
    peak_gpu = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0

    def to_tensor(output) -> torch.Tensor:
        return torch.from_numpy(np.array(output, dtype=np.float32) / 255.0).permute(2, 0, 1)

    def seams(pixels: torch.Tensor, method: str) -> float | None:
        rows, cols = borders[method]
        return seam_ratio(pixels, rows, cols, period=SEAM_PERIOD) if rows or cols else None

    pixels = to_tensor(output)
    if tuple(pixels.shape[-2:]) != (out_height, out_width):
        raise RuntimeError(f"{spec['method']} returned {tuple(pixels.shape)}")
    untiled = {}
    if spec["method"] == "ours" and spec["untiled"]:
        # One forward over the whole image has no tile borders at all: its ratio at a method's
        # border lines is what this image's content gives there (the measure's floor).
        whole = -(-max(spec["height"], spec["width"]) // upscaler.size_multiple)
        one_tile = to_tensor(
            upscaler.upscale(
                image, seed=spec["seed"], tile=whole * upscaler.size_multiple, tile_overlap=0
            )
        )
        untiled = dict(
            untiled_seam_ratios={method: seams(one_tile, method) for method in borders},
            untiled_max_difference=float((pixels - one_tile).abs().max()),
            untiled_mean_difference=float((pixels - one_tile).abs().mean()),
        )
    return dict(
        **untiled,
        seconds=seconds,
        tiles=tiles,
        peak_rss_bytes=peak_rss,
        peak_gpu_bytes=peak_gpu,
        seam_ratio=seams(pixels, spec["method"]),
        threads=torch.get_num_threads(),
        device_name=torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (platform.processor() or platform.machine()),
    )


# ---------------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="128x128", help="input WIDTHxHEIGHT (default 128x128)")
    parser.add_argument("--tiny", action="store_true", help="a tiny AuraSR instead of 618M")
    parser.add_argument("--seed", type=int, default=0, help="weights, z and noise seed")
    parser.add_argument("--tile", type=int, help="our tile side (default: automatic)")
    parser.add_argument("--overlap", type=int, default=16, help="our tile overlap (default 16)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or mps (default cpu)")
    parser.add_argument("--dtype", default="fp32", help="our dtype: fp32, bf16, fp16")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    parser.add_argument(
        "--no-untiled",
        dest="untiled",
        action="store_false",
        help="skip our untiled forward (the seam measure's floor; needs the whole image in memory)",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per method")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return

    width, _, height = args.size.lower().partition("x")
    width, height = int(width), int(height or width)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if unknown := sorted(set(methods) - set(METHODS)):
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    config = TINY_CONFIG if args.tiny else AURASR_PUBLISHED_CONFIG
    results = []
    with tempfile.TemporaryDirectory(prefix="aurasr-bench-") as tmp:
        parameters = write_aurasr_folder(Path(tmp), config, args.seed)
        for method in methods:
            spec = dict(
                method=method,
                folder=tmp,
                width=width,
                height=height,
                seed=args.seed,
                tile=args.tile,
                overlap=args.overlap,
                device=args.device,
                dtype=args.dtype if method == "ours" else "fp32",
                untiled=args.untiled,
            )
            completed = subprocess.run(
                [sys.executable, __file__, "--worker", json.dumps(spec)],
                capture_output=True,
                text=True,
                timeout=args.timeout,
            )
            if completed.returncode != 0:
                raise SystemExit(f"{method} failed:\n{completed.stderr[-3000:]}")
            results.append({**spec, **json.loads(completed.stdout.strip().splitlines()[-1])})

    label = {
        "ours": "ours (`Upscaler`, overlapped + blended, one z)",
        "upscale_4x": "AuraSR `upscale_4x`",
        "upscale_4x_overlapped": "AuraSR `upscale_4x_overlapped`",
    }
    gpu = args.device != "cpu"
    floors = next((r["untiled_seam_ratios"] for r in results if "untiled_seam_ratios" in r), {})
    print(
        f"| method | dtype | tiles | s / image | peak {'GPU' if gpu else 'RSS'} | seam ratio "
        "| untiled, same lines |\n|---|---|---|---:|---:|---:|---:|"
    )

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for result in results:
        memory = result["peak_gpu_bytes"] if gpu else result["peak_rss_bytes"]
        print(
            f"| {label[result['method']]} | {result['dtype']} | {result['tiles']} "
            f"| {result['seconds']:.2f} | {memory / 2**30:.2f} GiB "
            f"| {ratio(result['seam_ratio'])} | {ratio(floors.get(result['method']))} |"
        )
    first = results[0]
    print(
        f"\n{'tiny' if args.tiny else 'published'} AuraSR architecture ({parameters / 1e6:.1f}M "
        f"parameters, random weights, seed {args.seed}), {width}x{height} -> "
        f"{4 * width}x{4 * height}, {first['device_name']}, {first['threads']} thread(s), "
        f"torch {torch.__version__}; one run each, no warm-up. Peak memory is measured while "
        "upscaling, weights included, loading excluded. Seam ratio: mean jump across the "
        f"method's tile borders over the jump at other positions in phase (period {SEAM_PERIOD}); "
        "'untiled, same lines': the same measure on one untiled forward of ours."
    )
    ours = next((r for r in results if "untiled_max_difference" in r), None)
    if ours is not None:
        print(
            f"Ours tiled vs untiled: max |difference| {ours['untiled_max_difference']:.4f}, "
            f"mean {ours['untiled_mean_difference']:.2e} (8-bit output: one level is 0.0039)."
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
