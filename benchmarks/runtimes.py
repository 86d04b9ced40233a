"""A model's exported ONNX graph through OpenVINO and ONNX Runtime against PyTorch, interleaved.

    pip install openvino                       # not a dependency of upsampler
    python benchmarks/runtimes.py              # student (nano-4x's architecture), 256x256
    python benchmarks/runtimes.py --preset nano --size 960x540 --rounds 3

The question this answers: is OpenVINO faster than the Upscaler's own folded PyTorch path on
this CPU? (On Intel CPUs it may be; none was available to measure.) Every runtime upscales the
same whole image (no tiling) with the same folded model: PyTorch folded in channels-last (what
the Upscaler runs per tile), the exported graph in ONNX Runtime, and the same graph in OpenVINO
with dynamic shapes (what a backend serving any tile size would compile once) and reshaped to
the image's static shape (compiled per size). Each round times every runtime once; the medians
over rounds are compared. Random weights: speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from upsampler import GigaGANUpsampler
from upsampler.inference.onnx import export_onnx
from upsampler.models.folding import folded_styles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="student", help="GigaGAN preset (nano-4x: student)")
    parser.add_argument("--size", default="256", help="input side, or WIDTHxHEIGHT (output 4x)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (median reported)")
    args = parser.parse_args()
    try:
        import onnxruntime
        import openvino
    except ImportError as error:
        sys.exit(f"needs openvino and onnxruntime: pip install openvino onnxruntime ({error})")

    width, _, height = args.size.partition("x")
    width, height = int(width), int(height or width)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    model = GigaGANUpsampler.from_preset(args.preset, scale=4).eval()
    image = torch.rand(1, 3, height, width)
    array = image.numpy()
    with tempfile.TemporaryDirectory() as folder:
        graph = Path(folder) / "model.onnx"
        export_onnx(model, graph, seed=0, verify=False)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(
            str(graph), options, providers=["CPUExecutionProvider"]
        )
        core = openvino.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        dynamic = core.compile_model(core.read_model(graph), "CPU", config)
        static_model = core.read_model(graph)
        static_model.reshape({"lq": [1, 3, height, width]})
        started = time.perf_counter()
        static = core.compile_model(static_model, "CPU", config)
        compile_seconds = time.perf_counter() - started

    ws = model.image_styles(None, generator=torch.Generator().manual_seed(0))
    with folded_styles(model, ws, channels_last=True), torch.inference_mode():
        lq = image.contiguous(memory_format=torch.channels_last)
        runs: dict[str, Callable[[], np.ndarray]] = {
            "pytorch (folded, channels-last)": lambda: model(lq, None, ws=ws).hq.numpy(),
            "onnxruntime": lambda: session.run(["hq"], {"lq": array})[0],
            "openvino (dynamic shape)": lambda: dynamic([array])[0],
            "openvino (static shape)": lambda: static([array])[0],
        }
        reference = next(iter(runs.values()))()
        times: dict[str, list[float]] = {name: [] for name in runs}
        for name, run in runs.items():  # warm-up, and agreement with PyTorch
            difference = float(np.abs(run() - reference).max())
            print(f"{name}: max abs difference from pytorch {difference:.2e}", flush=True)
        for _ in range(args.rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)

    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["pytorch (folded, channels-last)"]
    print(
        f"\n{args.preset}, {width}x{height} -> {4 * width}x{4 * height}, "
        f"{threads} threads, median of {args.rounds} interleaved rounds "
        f"(openvino {openvino.__version__.split('-')[0]}, onnxruntime {onnxruntime.__version__}):"
    )
    for name, seconds in medians.items():
        print(f"  {name}: {seconds:.3f} s ({base / seconds:.2f}x pytorch's speed)")
    print(f"  (openvino compiled the static shape in {compile_seconds:.1f} s)")


if __name__ == "__main__":
    main()
