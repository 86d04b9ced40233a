"""How long the command line takes to answer: the median wall time of fresh processes.

    python benchmarks/startup.py                          # --help, upscale --help, import
    python benchmarks/startup.py --runs 20 -- upsampler train --help

Each command runs ``--runs`` times in a new process, one after another, after one untimed run
that fills the file-system cache. The median wall time is printed with its range, beside the
median CPU time (user + system) of the process: on a busy machine the wall time includes the
wait for a CPU, the CPU time much less so. The 1-minute load average says how busy it was.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

DEFAULT_COMMANDS = (
    ["upsampler", "--help"],
    ["upsampler", "upscale", "--help"],
    [sys.executable, "-c", "import upsampler"],
)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_command(command: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``runs`` fresh runs of ``command`` (after one untimed run)."""
    subprocess.run(command, check=True, capture_output=True)
    wall, cpu = [], []
    for _ in range(runs):
        cpu_start, start = _children_cpu(), time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        wall.append(time.perf_counter() - start)
        cpu.append(_children_cpu() - cpu_start)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="Timed runs per command.")
    parser.add_argument("command", nargs="*", help="One command to time (after --).")
    args = parser.parse_args()
    commands = [args.command] if args.command else [list(c) for c in DEFAULT_COMMANDS]
    # The console script beside this interpreter, so a venv's python times the venv's CLI.
    script = shutil.which("upsampler", path=os.path.dirname(sys.executable))
    load_before = os.getloadavg()[0]
    for command in commands:
        if command[0] == "upsampler" and script is not None:
            command = [script, *command[1:]]
        wall, cpu = time_command(command, args.runs)
        shown = " ".join(os.path.basename(c) if i == 0 else c for i, c in enumerate(command))
        print(
            f"{shown:<32} median {statistics.median(wall):.3f} s wall "
            f"(min {min(wall):.3f}, max {max(wall):.3f}), "
            f"{statistics.median(cpu):.3f} s CPU; {args.runs} runs"
        )
    print(
        f"1-minute load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, "
        f"on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
