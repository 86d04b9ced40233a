"""``upsampler bench``: seconds per image, output megapixels per second and peak memory.

Every measurement runs in a fresh Python process, so its peak resident memory
(``resource.getrusage`` max RSS: the process's high-water mark, imports and model included) is
its own. Each method is timed end to end on a random image already in memory: bicubic
interpolation, the GigaGAN presets through the tiled :class:`~upsampler.Upscaler` (random
weights: the time does not depend on their values), and the Real-ESRGAN x4plus architecture
(RRDBNet, 23 blocks, 64 features, 16.7M parameters, random weights; spandrel's ESRGAN, the
implementation the loader runs Real-ESRGAN checkpoints with), untiled as Real-ESRGAN
runs by default, or tiled with ``--rrdbnet-tile``.

    upsampler bench --presets nano --sizes 256x256                 # nano vs RRDBNet vs bicubic
    upsampler bench --presets nano --sizes 960x540 --methods gigagan,bicubic   # 4K output
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import typer

METHODS = ("bicubic", "gigagan", "rrdbnet", "conv-peak")
# The ways the Upscaler can run a GigaGAN preset: its default (folded styles, channels-last on
# the CPU), the per-sample path as it ran before folding (fp32 NCHW, 96 px tiles on the CPU),
# and ONNX Runtime (needs upsampler[onnx]).
PATHS = ("default", "per-sample", "onnxruntime")
# The machine's convolution peak: the fastest (in GFLOP/s) of plain C -> C 3x3 convolutions
# over one C x side x side map, in both memory layouts (the shapes of RRDBNet's and the
# student's trunks and of nano's inner levels); the timed runs repeat the fastest.
PEAK_CONFIGS = [
    (channels, side, layout)
    for channels in (64, 128)
    for side in (64, 128, 256)
    for layout in ("NCHW", "channels-last")
]


def _parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        size = (int(width), int(height or width))
    except ValueError:
        raise typer.BadParameter(f"sizes are WIDTHxHEIGHT, e.g. 960x540, got {text!r}") from None
    if min(size) < 1:
        raise typer.BadParameter(f"sizes must be positive, got {text!r}")
    return size


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _measure(spec: dict, timeout: float) -> dict:
    """Run one measurement in a fresh interpreter and return its JSON report."""
    completed = subprocess.run(
        [sys.executable, "-m", "upsampler_cli.bench", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if completed.returncode != 0:
        # The last line of the worker's output: the exception, without its traceback.
        lines = (completed.stderr or completed.stdout).strip().splitlines()
        return {"error": lines[-1].strip() if lines else f"exit code {completed.returncode}"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def bench(
    presets: str = typer.Option(
        "nano",
        "--presets",
        help="Comma-separated GigaGAN presets (`upsampler presets` lists them; nano-4x and "
        "nano-4x-psnr are `student`).",
    ),
    sizes: str = typer.Option(
        "128x128,256x256,512x512",
        "--sizes",
        help="Comma-separated input sizes WIDTHxHEIGHT; outputs are 4x.",
    ),
    methods: str = typer.Option(
        ",".join(METHODS),
        "--methods",
        help=f"Comma-separated, from {', '.join(METHODS)} (conv-peak: the fastest of a few "
        "plain 3x3 convolutions, the machine's achievable GFLOP/s).",
    ),
    paths: str = typer.Option(
        "default",
        "--paths",
        help=f"GigaGAN: comma-separated Upscaler paths, from {', '.join(PATHS)} (per-sample: "
        "styles not folded, NCHW, 96 px tiles, as before folding).",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or mps."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32, fp16 or bf16 (models only)."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed runs (median reported)."),
    warmup: bool = typer.Option(
        True, "--warmup/--no-warmup", help="One untimed run first (kernel selection, caches)."
    ),
    tile: int | None = typer.Option(
        None, "--tile", help="GigaGAN tile side (default: the Upscaler's automatic choice)."
    ),
    rrdbnet_tile: int | None = typer.Option(
        None, "--rrdbnet-tile", help="Tile RRDBNet too (default: whole image, as Real-ESRGAN)."
    ),
    timeout: float = typer.Option(
        1800.0, "--timeout", help="Seconds allowed for one measurement process."
    ),
    json_path: Path | None = typer.Option(
        None, "--json", help="Also write every measurement to this JSON file."
    ),
) -> None:
    """Time GigaGAN presets against bicubic and RRDBNet (Real-ESRGAN x4plus) at several sizes."""
    chosen = _split(methods)
    if unknown := [m for m in chosen if m not in METHODS]:
        raise typer.BadParameter(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    path_list = _split(paths)
    if unknown := [p for p in path_list if p not in PATHS]:
        raise typer.BadParameter(f"unknown paths {unknown}; choose from {', '.join(PATHS)}")
    size_list = [_parse_size(s) for s in _split(sizes)]
    preset_list = _split(presets)
    if "gigagan" in chosen:
        from upsampler.models.generator import GigaGANUpsampler
        from upsampler.models.registry import BUILTIN_MODELS

        known = GigaGANUpsampler.preset_names()
        if unknown := [p for p in preset_list if p not in known]:
            hints = "".join(
                f" ({name} is the `{BUILTIN_MODELS[name].preset}` preset)"
                for name in unknown
                if name in BUILTIN_MODELS
            )
            raise typer.BadParameter(
                f"unknown presets {unknown}{hints}; choose from {', '.join(known)}",
                param_hint="--presets",
            )
    common = dict(device=device, dtype=dtype, repeats=repeats, warmup=warmup)
    runs = []
    if "conv-peak" in chosen:
        runs.append(
            dict(method="conv-peak", preset=None, path=None, width=0, height=0, tile=None, **common)
        )
    for width, height in size_list:
        for method in (m for m in chosen if m != "conv-peak"):
            if method == "gigagan":
                variants = [(name, path) for name in preset_list for path in path_list]
            else:
                variants = [(None, None)]
            for name, path in variants:
                runs.append(
                    dict(
                        method=method,
                        preset=name,
                        path=path,
                        width=width,
                        height=height,
                        tile=tile if method == "gigagan" else rrdbnet_tile,
                        **common,
                    )
                )

    typer.echo(HEADER)
    typer.echo("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    load_before = os.getloadavg()[0]
    results = []
    for spec in runs:
        result = {**spec, **_measure(spec, timeout)}
        results.append(result)
        typer.echo(_row(result))
    for line in _speed_ratios(results):
        typer.echo(line)
    first = next((r for r in results if "error" not in r), None)
    if first is not None:
        typer.echo(
            f"\n{first['device_name']}, {first['threads']} threads, torch {first['torch']}, "
            f"{dtype}, median of {repeats} run(s){' after a warm-up' if warmup else ''}; "
            "peak RSS is each measurement process's high-water mark (imports included). "
            f"1-minute load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
            f"on {os.cpu_count()} CPUs: anything else running makes the times meaningless."
        )
    if json_path is not None:
        from upsampler.io.files import atomic_output

        with atomic_output(json_path) as tmp:
            tmp.write_text(json.dumps(results, indent=2))
    if any("error" in r for r in results):
        raise typer.Exit(1)


def _label(spec: dict) -> str:
    if spec["method"] != "gigagan":
        return spec["method"]
    path = spec.get("path") or "default"
    return f"gigagan `{spec['preset']}`" + ("" if path == "default" else f" ({path})")


HEADER = (
    "| method | parameters | input | output | s / image | output MP/s | s / output MP "
    "| GFLOP | GFLOP/s | peak RSS | peak GPU |"
)


def _row(result: dict) -> str:
    """One table row: a measurement, or the reason it failed."""
    label = _label(result)
    if result["method"] == "conv-peak":
        size_in = size_out = result.get("config", "")
    else:
        size_in = f"{result['width']}x{result['height']}"
        size_out = f"{4 * result['width']}x{4 * result['height']}"
    if "error" in result:
        error = result["error"].replace("|", "\\|")  # a table cell
        return f"| {label} | | {size_in} | {size_out} | failed: {error} |||||||"
    seconds = statistics.median(result["seconds"])
    if result["method"] == "conv-peak":
        rates = "| - | - "  # no output image
    else:
        megapixels = 16 * result["width"] * result["height"] / 1e6
        rates = f"| {megapixels / seconds:.2f} | {seconds / megapixels:.3f} "
    flops = result.get("flops") or 0
    work = f"| {flops / 1e9:.1f} | {flops / 1e9 / seconds:.1f} " if flops else "| - | - "
    gpu = f"{result['peak_gpu_bytes'] / 2**30:.2f} GiB" if result["peak_gpu_bytes"] else "-"
    return (
        f"| {label} | {result['parameters'] / 1e6:.1f}M | {size_in} | {size_out} "
        f"| {seconds:.3f} {rates}{work}| {result['peak_rss_bytes'] / 2**30:.2f} GiB | {gpu} |"
    )


def _speed_ratios(results: list[dict]) -> list[str]:
    """Lines comparing measurements of the same size in the run: each GigaGAN row against
    RRDBNet (the Real-ESRGAN x4plus architecture) and against its own per-sample path, and
    each row's GFLOP/s against the measured convolution peak."""
    ok = [r for r in results if "error" not in r]
    seconds = {
        (r["method"], r["preset"], r.get("path"), r["width"], r["height"]): statistics.median(
            r["seconds"]
        )
        for r in ok
    }
    lines = []
    for (method, preset, path, width, height), time in seconds.items():
        if method != "gigagan":
            continue
        size = f"{width}x{height} -> {4 * width}x{4 * height}"
        label = _label(dict(method=method, preset=preset, path=path))
        reference = seconds.get(("rrdbnet", None, None, width, height))
        if reference is not None:
            lines.append(
                f"{size}: {label} is {reference / time:.1f}x faster than RRDBNet "
                f"({time:.3f} s against {reference:.3f} s)"
            )
        before = seconds.get(("gigagan", preset, "per-sample", width, height))
        if before is not None and path != "per-sample":
            how = (
                f"{before / time:.2f}x faster" if time <= before else f"{time / before:.2f}x slower"
            )
            lines.append(
                f"{size}: {label} is {how} than its per-sample path "
                f"({time:.3f} s against {before:.3f} s)"
            )
    peak = next((r for r in ok if r["method"] == "conv-peak"), None)
    if peak is not None:
        rate = peak["flops"] / min(peak["seconds"])  # the best run: a peak
        lines.append(f"convolution peak: {rate / 1e9:.1f} GFLOP/s (its fastest run)")
        for r in ok:
            if r["method"] in ("gigagan", "rrdbnet") and r.get("flops"):
                achieved = r["flops"] / statistics.median(r["seconds"])
                lines.append(
                    f"{r['width']}x{r['height']}: {_label(r)} runs at {achieved / 1e9:.1f} "
                    f"GFLOP/s, {100 * achieved / rate:.0f}% of the peak"
                )
    return ["", *lines] if lines else []


# ---------------------------------------------------------------------- worker process


def _worker(spec: dict) -> dict:
    import functools
    import platform
    import resource
    import time

    import torch
    import torch.nn.functional as F
    from spandrel.architectures.ESRGAN import ESRGAN
    from torch.utils.flop_counter import FlopCounterMode

    from upsampler.inference.devices import resolve_device, resolve_dtype
    from upsampler.inference.tiling import plan_tiles, tiled_apply
    from upsampler.inference.upscaler import Upscaler
    from upsampler.models.generator import GigaGANUpsampler

    device = resolve_device(spec["device"])
    dtype = resolve_dtype(spec["dtype"], device)
    torch.manual_seed(0)
    lq = torch.rand(1, 3, spec["height"], spec["width"])
    parameters = 0
    count_run = None  # what the work is counted on, when not run itself
    peak_config = None
    if spec["method"] == "bicubic":

        def run() -> torch.Tensor:
            return F.interpolate(lq, scale_factor=4, mode="bicubic").clamp(0, 1)

    elif spec["method"] == "conv-peak":
        best = None
        for channels, side, layout in PEAK_CONFIGS:
            x = torch.rand(1, channels, side, side, device=device, dtype=dtype)
            weight = torch.rand(channels, channels, 3, 3, device=device, dtype=dtype)
            if layout == "channels-last":
                x = x.contiguous(memory_format=torch.channels_last)
                weight = weight.contiguous(memory_format=torch.channels_last)

            def attempt(x: torch.Tensor = x, weight: torch.Tensor = weight) -> torch.Tensor:
                with torch.inference_mode():
                    return F.conv2d(x, weight, padding=1)

            attempt()
            rates = []
            for _ in range(3):
                start = time.perf_counter()
                attempt()
                rates.append(2 * channels**2 * 9 * side**2 / (time.perf_counter() - start))
            if best is None or max(rates) > best[0]:
                best = (max(rates), attempt, f"{channels}x{side}x{side} {layout}")
        _, run, peak_config = best

    elif spec["method"] == "gigagan":
        model = GigaGANUpsampler.from_preset(spec["preset"], scale=4)
        parameters = sum(p.numel() for p in model.parameters())
        path = spec.get("path") or "default"
        tile = spec["tile"]
        if path == "per-sample":
            upscaler = Upscaler(
                model, device=device, dtype=dtype, fold_styles=False, channels_last=False
            )
            tile = tile or (96 if device.type == "cpu" else None)
        else:
            backend = "onnxruntime" if path == "onnxruntime" else "torch"
            upscaler = Upscaler(model, device=device, dtype=dtype, backend=backend)
        # The network's work, counted on the torch path (ONNX Runtime runs the same graph).
        counted = upscaler if path != "onnxruntime" else Upscaler(model, device=device)

        def run() -> torch.Tensor:
            return upscaler.upscale(lq, tile=tile)

        count_run = functools.partial(counted.upscale, lq, tile=tile)

    else:
        model = ESRGAN().eval().to(device=device, dtype=dtype)  # RRDBNet, x4plus size
        parameters = sum(p.numel() for p in model.parameters())

        def forward(tiles: torch.Tensor) -> torch.Tensor:
            return model(tiles.to(device, dtype)).float().cpu()

        def run() -> torch.Tensor:
            with torch.inference_mode():
                if spec["tile"] is None:
                    return forward(lq).clamp(0, 1)
                plan = plan_tiles(
                    lq.shape[-2],
                    lq.shape[-1],
                    tile=spec["tile"],
                    overlap=min(16, spec["tile"] // 2),
                    size_multiple=1,
                    scale=4,
                )
                return tiled_apply(lq, forward, plan).clamp(0, 1)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    if spec["warmup"]:
        run()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(spec["repeats"]):
        synchronize()
        start = time.perf_counter()
        hq = run()
        synchronize()
        seconds.append(time.perf_counter() - start)
    if spec["method"] != "conv-peak" and tuple(hq.shape[-2:]) != (
        4 * spec["height"],
        4 * spec["width"],
    ):
        raise RuntimeError(f"{spec['method']} returned {tuple(hq.shape)}")
    max_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    if sys.platform == "darwin":
        max_rss_kib //= 1024  # bytes there
    flops = None
    if spec["method"] != "bicubic":
        # Counted after the timing (and the memory reading), in one more untimed run: the
        # convolutions and matrix products actually run, tile overlaps included.
        with FlopCounterMode(display=False) as counter:
            (count_run or run)()
        flops = counter.get_total_flops()
    return dict(
        config=peak_config if spec["method"] == "conv-peak" else None,
        seconds=seconds,
        flops=flops,
        parameters=parameters,
        peak_rss_bytes=max_rss_kib * 1024,
        peak_gpu_bytes=torch.cuda.max_memory_allocated() if device.type == "cuda" else 0,
        device_name=torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (platform.processor() or platform.machine()),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
    )


if __name__ == "__main__":
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
