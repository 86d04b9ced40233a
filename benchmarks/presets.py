"""Parameter counts and CPU forward time of every generator preset.

    python benchmarks/presets.py                      # print the table
    python benchmarks/presets.py --write-readme README.md   # also refresh the README's table

Times are the median of ``--repeats`` forward passes (after one warm-up) of a 128x128 input at
4x, unconditional, fp32, batch 1, with torch's default thread count, random weights (the time
does not depend on the weights' values).
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import time
from pathlib import Path

import torch

from upsampler import GigaGANUpsampler

BEGIN = "<!-- presets-table:begin -->"
END = "<!-- presets-table:end -->"


def time_forward(model: GigaGANUpsampler, size: int, repeats: int) -> float:
    lq = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(0)
    times = []
    with torch.inference_mode():
        model(lq, generator=generator)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(lq, generator=generator)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def table(size: int, repeats: int, presets: list[str]) -> str:
    rows = [
        f"| preset | parameters (4x) | parameters (4x, text) | parameters (8x) | CPU forward, {size}x{size} -> {4 * size}x{4 * size} |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in presets:
        count = GigaGANUpsampler.preset_parameter_count(name)
        count_text = GigaGANUpsampler.preset_parameter_count(name, text_conditioning=True)
        count_8x = GigaGANUpsampler.preset_parameter_count(name, scale=8)
        torch.manual_seed(0)
        model = GigaGANUpsampler.from_preset(name).eval()
        # Large presets get fewer repeats: one forward of giga takes many seconds on a laptop CPU.
        seconds = time_forward(model, size, repeats if count < 100_000_000 else 1)
        del model
        rows.append(
            f"| `{name}` | {count / 1e6:,.1f}M | {count_text / 1e6:,.1f}M | {count_8x / 1e6:,.1f}M | {seconds:.2f} s |"
        )
    cpu = platform.processor() or platform.machine()
    rows.append("")
    rows.append(
        f"Measured by `python benchmarks/presets.py` on {torch.get_num_threads()} CPU threads ({cpu}), "
        f"torch {torch.__version__}, fp32, batch 1, median of {repeats} runs (1 for presets over 100M)."
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=128, help="input side in pixels")
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
