"""The Upscaler's default path against its per-sample path and RRDBNet, interleaved.

    python benchmarks/cpu_paths.py                 # 256x256 -> 1024x1024, 3 rounds
    python benchmarks/cpu_paths.py --size 128 --rounds 5 --no-rrdbnet

``upsampler bench`` times each method in its own process, one after another; on a machine
whose speed drifts over minutes (a shared VM) its ratios move with the drift. Here every
method runs once per round, in one process, and the medians over rounds are compared:
``nano`` and ``student`` through the default path (folded styles, channels-last, automatic
tiles) and through the per-sample path as it ran before folding (NCHW, 96 px tiles), and
RRDBNet (spandrel's ESRGAN at the Real-ESRGAN x4plus size) untiled. Random weights: speed does
not depend on their values.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from upsampler import GigaGANUpsampler, Upscaler


def methods(size: int, rrdbnet: bool) -> dict[str, Callable[[], object]]:
    torch.manual_seed(0)
    image = torch.rand(1, 3, size, size)
    runs: dict[str, Callable[[], object]] = {}
    for preset in ("nano", "student"):
        default = Upscaler(GigaGANUpsampler.from_preset(preset, scale=4), device="cpu")
        per_sample = Upscaler(
            GigaGANUpsampler.from_preset(preset, scale=4),
            device="cpu",
            fold_styles=False,
            channels_last=False,
        )
        runs[f"{preset} default"] = lambda u=default: u.upscale(image)
        runs[f"{preset} per-sample"] = lambda u=per_sample: u.upscale(image, tile=96)
    if rrdbnet:
        from spandrel.architectures.ESRGAN import ESRGAN

        network = ESRGAN().eval()

        def run_rrdbnet() -> torch.Tensor:
            with torch.inference_mode():
                return network(image)

        runs["rrdbnet"] = run_rrdbnet
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="input side (output is 4x)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median reported)")
    parser.add_argument("--no-rrdbnet", dest="rrdbnet", action="store_false")
    args = parser.parse_args()
    runs = methods(args.size, args.rrdbnet)
    for run in runs.values():  # warm-up: kernel selection, allocations
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_index in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
        line = ", ".join(f"{name} {values[-1]:.3f} s" for name, values in times.items())
        print(f"round {round_index + 1}: {line}", flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    size = f"{args.size}x{args.size} -> {4 * args.size}x{4 * args.size}"
    print(f"\n{size}, {torch.get_num_threads()} threads, median of {args.rounds} rounds:")
    for preset in ("nano", "student"):
        default, before = medians[f"{preset} default"], medians[f"{preset} per-sample"]
        line = f"{preset}: default {default:.3f} s, per-sample {before:.3f} s ({before / default:.2f}x)"
        if "rrdbnet" in medians:
            line += f", {medians['rrdbnet'] / default:.1f}x faster than RRDBNet"
        print(line)
    if "rrdbnet" in medians:
        print(f"rrdbnet: {medians['rrdbnet']:.2f} s")


if __name__ == "__main__":
    main()
