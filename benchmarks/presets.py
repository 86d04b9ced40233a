"""Parameters, FLOPs and CPU time of every generator preset, beside RRDBNet (Real-ESRGAN x4plus).

    python benchmarks/presets.py                      # print the table
    python benchmarks/presets.py --write-readme README.md   # also refresh the README's table

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts 2)
on one forward of the whole ``--size`` input at 4x, on the meta device (no memory, no time),
and given per output megapixel. Times are end to end through the :class:`~upsampler.Upscaler`
(its automatic CPU tiles, as ``upsampler bench`` runs the presets), and for RRDBNet one untiled
forward (as Real-ESRGAN runs by default): unconditional, fp32, batch 1, torch's default thread
count, random weights (the time does not depend on the weights' values). The runs are
interleaved (every round times each model once, after one warm-up each), so a job that starts
on a shared machine halfway through slows every model alike; the table gives the median and
the range of the rounds and the load average around them.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from spandrel.architectures.ESRGAN import ESRGAN as RRDBNet  # Real-ESRGAN x4plus's network
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from upsampler import GigaGANUpsampler, Upscaler

BEGIN = "<!-- presets-table:begin -->"
END = "<!-- presets-table:end -->"
REFERENCE = "RRDBNet"
# Presets this large are timed once: one forward of giga takes tens of seconds on a laptop CPU.
LARGE = 100_000_000


def build(name: str) -> nn.Module:
    if name == REFERENCE:
        return RRDBNet()
    return GigaGANUpsampler.from_preset(name)


def count_flops(name: str, size: int) -> int:
    """FLOPs of one forward of a ``size x size`` input at 4x (shapes only: on the meta device)."""
    with torch.device("meta"):
        model = build(name)
        lq = torch.zeros(1, 3, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        if isinstance(model, GigaGANUpsampler):
            model(lq, z=torch.zeros(1, model.config.z_dim))
        else:
            model(lq)
    return counter.get_total_flops()


def runner(name: str, size: int) -> Callable[[], torch.Tensor]:
    """A function that upscales one random ``size x size`` image with a fresh random model."""
    torch.manual_seed(0)
    model = build(name).eval()
    lq = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    if isinstance(model, GigaGANUpsampler):
        upscaler = Upscaler(model, device="cpu", dtype="fp32")
        return lambda: upscaler.upscale(lq)

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model(lq)

    return run


def time_interleaved(names: list[str], size: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of ``repeats`` rounds that each time every model once (large presets: round 1 only)."""
    runs = {name: runner(name, size) for name in names}
    for run in runs.values():
        run()  # warm-up: kernel selection, allocator, caches
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        for name, run in runs.items():
            if round_index > 0 and parameter_count(name) >= LARGE:
                continue
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def parameter_count(name: str, **kwargs) -> int:
    if name == REFERENCE:
        with torch.device("meta"):
            return sum(p.numel() for p in RRDBNet().parameters())
    return GigaGANUpsampler.preset_parameter_count(name, **kwargs)


def table(size: int, repeats: int, presets: list[str]) -> str:
    names = [*presets, REFERENCE]
    output_megapixels = 16 * size * size / 1e6
    load_before = os.getloadavg()[0]
    seconds = time_interleaved(names, size, repeats)
    load_after = os.getloadavg()[0]
    reference_seconds = statistics.median(seconds[REFERENCE])
    reference_flops = count_flops(REFERENCE, size)
    rows = [
        "| model | parameters (4x) | parameters (4x, text) | parameters (8x) "
        f"| GFLOP / output MP | FLOPs vs RRDBNet | CPU, {size}x{size} -> {4 * size}x{4 * size} "
        "| time vs RRDBNet |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        flops = count_flops(name, size)
        times = seconds[name]
        median = statistics.median(times)
        spread = f" ({min(times):.2f}-{max(times):.2f})" if len(times) > 1 else ""
        if name == REFERENCE:
            label = f"{REFERENCE} (Real-ESRGAN x4plus)"
            counts = [f"{parameter_count(name) / 1e6:,.1f}M", "-", "-"]
        else:
            label = f"`{name}`"
            counts = [
                f"{parameter_count(name) / 1e6:,.2f}M",
                f"{parameter_count(name, text_conditioning=True) / 1e6:,.2f}M",
                f"{parameter_count(name, scale=8) / 1e6:,.2f}M",
            ]
        rows.append(
            f"| {label} | {' | '.join(counts)} | {flops / 1e9 / output_megapixels:,.1f} "
            f"| 1/{reference_flops / flops:,.1f} | {median:.2f} s{spread} "
            f"| 1/{reference_seconds / median:,.1f} |"
        )
    cpu = platform.processor() or platform.machine()
    rows.append("")
    rows.append(
        f"Measured by `python benchmarks/presets.py` on {torch.get_num_threads()} CPU threads ({cpu}), "
        f"torch {torch.__version__}, fp32, batch 1: presets through the Upscaler (automatic tiles), "
        f"RRDBNet untiled; median (range) of {repeats} interleaved rounds (1 for presets over "
        f"{LARGE // 1_000_000}M parameters); 1-minute load average {load_before:.2f} before, "
        f"{load_after:.2f} after on {os.cpu_count()} CPUs. FLOPs: one forward of the whole "
        f"{size}x{size} input (FlopCounterMode, a multiply-add counts 2)."
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=256, help="input side in pixels")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--presets", nargs="+", default=GigaGANUpsampler.preset_names())
    parser.add_argument(
        "--write-readme", type=Path, help="replace the table between the README's markers"
    )
    args = parser.parse_args()
    result = table(args.size, args.repeats, args.presets)
    print(result)
    if args.write_readme:
        text = args.write_readme.read_text()
        if BEGIN not in text or END not in text:
            raise SystemExit(f"{args.write_readme} has no {BEGIN} ... {END} markers")
        text = re.sub(
            f"{re.escape(BEGIN)}.*?{re.escape(END)}", f"{BEGIN}\n{result}\n{END}", text, flags=re.S
        )
        args.write_readme.write_text(text)


if __name__ == "__main__":
    main()
