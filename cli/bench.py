"""``upsampler bench``: seconds per image, output megapixels per second and peak memory.

Every measurement runs in a fresh Python process, so its peak resident memory
(``resource.getrusage`` max RSS: the process's high-water mark, imports and model included) is
its own. Each method is timed end to end on a random image already in memory: bicubic
interpolation, the GigaGAN presets through the tiled :class:`~upsampler.Upscaler` (random
weights: the time does not depend on their values), and the Real-ESRGAN x4plus architecture
(RRDBNet, 23 blocks, 64 features, 16.7M parameters, random weights), untiled as Real-ESRGAN
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

METHODS = ("bicubic", "gigagan", "rrdbnet")


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
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail) or f"exit code {completed.returncode}"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def bench(
    presets: str = typer.Option(
        "nano",
        "--presets",
        help="Comma-separated GigaGAN presets (`upsampler presets` lists them; nano-4x is "
        "`nano`, nano-4x-psnr is `student`).",
    ),
    sizes: str = typer.Option(
        "128x128,256x256,512x512",
        "--sizes",
        help="Comma-separated input sizes WIDTHxHEIGHT; outputs are 4x.",
    ),
    methods: str = typer.Option(
        ",".join(METHODS), "--methods", help=f"Comma-separated, from {', '.join(METHODS)}."
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
    size_list = [_parse_size(s) for s in _split(sizes)]
    runs = []
    for width, height in size_list:
        for method in chosen:
            names = _split(presets) if method == "gigagan" else [method]
            for name in names:
                runs.append(
                    dict(
                        method=method,
                        preset=name if method == "gigagan" else None,
                        width=width,
                        height=height,
                        device=device,
                        dtype=dtype,
                        repeats=repeats,
                        warmup=warmup,
                        tile=tile if method == "gigagan" else rrdbnet_tile,
                    )
                )

    header = (
        "| method | parameters | input | output | s / image | output MP/s | s / output MP "
        "| peak RSS | peak GPU |"
    )
    typer.echo(header)
    typer.echo("|---|---:|---|---|---:|---:|---:|---:|---:|")
    load_before = os.getloadavg()[0]
    results = []
    for spec in runs:
        result = {**spec, **_measure(spec, timeout)}
        results.append(result)
        label = f"gigagan `{spec['preset']}`" if spec["method"] == "gigagan" else spec["method"]
        size_in = f"{spec['width']}x{spec['height']}"
        size_out = f"{4 * spec['width']}x{4 * spec['height']}"
        if "error" in result:
            typer.echo(f"| {label} | | {size_in} | {size_out} | failed: {result['error']} |||||")
            continue
        seconds = statistics.median(result["seconds"])
        megapixels = 16 * spec["width"] * spec["height"] / 1e6
        gpu = f"{result['peak_gpu_bytes'] / 2**30:.2f} GiB" if result["peak_gpu_bytes"] else "-"
        typer.echo(
            f"| {label} | {result['parameters'] / 1e6:.1f}M | {size_in} | {size_out} "
            f"| {seconds:.3f} | {megapixels / seconds:.2f} | {seconds / megapixels:.3f} "
            f"| {result['peak_rss_bytes'] / 2**30:.2f} GiB | {gpu} |"
        )
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
        json_path.write_text(json.dumps(results, indent=2))
    if any("error" in r for r in results):
        raise typer.Exit(1)


def _speed_ratios(results: list[dict]) -> list[str]:
    """One line per GigaGAN measurement that has an RRDBNet one of the same size in the run:
    how many times faster than RRDBNet (the Real-ESRGAN x4plus architecture) it is."""
    seconds = {
        (r["method"], r["preset"], r["width"], r["height"]): statistics.median(r["seconds"])
        for r in results
        if "error" not in r
    }
    lines = []
    for (method, preset, width, height), time in seconds.items():
        reference = seconds.get(("rrdbnet", None, width, height))
        if method == "gigagan" and reference is not None:
            lines.append(
                f"{width}x{height} -> {4 * width}x{4 * height}: gigagan `{preset}` is "
                f"{reference / time:.1f}x faster than RRDBNet ({time:.3f} s against {reference:.3f} s)"
            )
    return ["", *lines] if lines else []


# ---------------------------------------------------------------------- worker process


def _worker(spec: dict) -> dict:
    import platform
    import resource
    import time

    import torch
    import torch.nn.functional as F

    from upsampler.inference.devices import resolve_device, resolve_dtype
    from upsampler.inference.tiling import plan_tiles, tiled_apply
    from upsampler.inference.upscaler import Upscaler
    from upsampler.models.generator import GigaGANUpsampler
    from upsampler.models.rrdbnet import RRDBNet

    device = resolve_device(spec["device"])
    dtype = resolve_dtype(spec["dtype"], device)
    torch.manual_seed(0)
    lq = torch.rand(1, 3, spec["height"], spec["width"])
    parameters = 0
    if spec["method"] == "bicubic":

        def run() -> torch.Tensor:
            return F.interpolate(lq, scale_factor=4, mode="bicubic").clamp(0, 1)

    elif spec["method"] == "gigagan":
        model = GigaGANUpsampler.from_preset(spec["preset"], scale=4)
        parameters = sum(p.numel() for p in model.parameters())
        upscaler = Upscaler(model, device=device, dtype=dtype)

        def run() -> torch.Tensor:
            return upscaler.upscale(lq, tile=spec["tile"])

    else:
        model = RRDBNet().eval().to(device=device, dtype=dtype)
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
    if tuple(hq.shape[-2:]) != (4 * spec["height"], 4 * spec["width"]):
        raise RuntimeError(f"{spec['method']} returned {tuple(hq.shape)}")
    max_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    if sys.platform == "darwin":
        max_rss_kib //= 1024  # bytes there
    return dict(
        seconds=seconds,
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
