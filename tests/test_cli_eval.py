"""``upsampler eval`` on a few real photos with a tiny random model, bicubic and Lanczos.

Needs real LPIPS weights (``make test`` prepares them); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter
from typer.testing import CliRunner

from upsampler.degradations import DegradationPipeline
from upsampler.evaluation import (
    degradation_seed,
    evaluate,
    interpolation_method,
    load_hq,
    psnr,
    ssim,
    upscaler_method,
)
from upsampler.losses.lpips_weights import default_weights_dir, missing_weight_files
from upsampler_cli.app import app

runner = CliRunner()
SIZES = [(128, 96), (124, 102), (112, 112)]  # (width, height); two are not multiples of 4


def _photos() -> list[Image.Image]:
    """Real photos from scikit-image when installed, else textured synthetic images."""
    try:
        from skimage import data

        arrays = [data.astronaut(), data.coffee(), data.chelsea()]
        return [Image.fromarray(array) for array in arrays]
    except ImportError:
        images = []
        for seed in range(3):
            rng = np.random.default_rng(seed)
            coarse = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
            image = Image.fromarray(coarse).resize((480, 360), Image.Resampling.BICUBIC)
            draw = ImageDraw.Draw(image)
            for _ in range(30):
                x, y = rng.integers(0, 420), rng.integers(0, 300)
                colour = tuple(int(c) for c in rng.integers(0, 256, 3))
                draw.ellipse(
                    (x, y, x + rng.integers(20, 80), y + rng.integers(20, 80)), fill=colour
                )
            images.append(image.filter(ImageFilter.GaussianBlur(1.5)))
        return images


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for index, (photo, size) in enumerate(zip(_photos(), SIZES, strict=True)):
        photo.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(
            folder / f"photo{index}.png"
        )
    # Sorted after the photos, in a subfolder (the search is recursive).
    (folder / "sub").mkdir()
    (folder / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return folder


@pytest.fixture(scope="module")
def real_weights() -> None:
    if missing_weight_files():
        pytest.skip(
            f"real LPIPS weights are not prepared in {default_weights_dir()}: run "
            "`upsampler prepare-lpips` (`make test` does it with --if-missing)"
        )


def _table(output: str) -> dict[str, list[float]]:
    rows = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] in ("bicubic", "lanczos", "tiny-4x", "tiny_rrdb.pth"):
            rows[parts[0]] = [float(value) for value in parts[1:]]
    return rows


def test_eval_prints_all_metrics_and_writes_json(real_weights, data_dir, model_dir, tmp_path):
    out = tmp_path / "report" / "eval.json"
    result = runner.invoke(
        app,
        ["eval", str(data_dir), "--model", str(model_dir), "--degradation", "bicubic",
         "--scale", "4", "--seed", "0", "--json", str(out), "--device", "cpu"],
    )  # fmt: skip
    # One broken image was skipped: the scores are printed and written, and the exit code says so.
    assert result.exit_code == 1, result.output
    print(result.output)
    header = next(line for line in result.output.splitlines() if line.startswith("method"))
    for column in ("PSNR-Y (dB)", "SSIM-Y", "LPIPS-alex", "s/image"):
        assert column in header
    assert "3 images" in result.output and "1 input(s) failed" in result.output
    assert "sub/broken.png: skipped, not scored" in result.output
    rows = _table(result.output)
    assert sorted(rows) == ["bicubic", "lanczos", "tiny-4x"]
    for name, (row_psnr, row_ssim, row_lpips, seconds) in rows.items():
        assert 0 < row_psnr < 60 and -1 <= row_ssim <= 1 and 0 <= row_lpips < 2, name
        assert seconds >= 0
    # Interpolation of bicubic-downscaled photos: PSNR in the usual range, the two kernels close;
    # an untrained model (which starts near bicubic, plus random detail) is measurably worse.
    assert 20 < rows["bicubic"][0] < 40
    assert abs(rows["bicubic"][0] - rows["lanczos"][0]) < 1.5
    assert rows["tiny-4x"][0] < rows["bicubic"][0] - 0.3
    assert rows["tiny-4x"][2] > rows["bicubic"][2]

    report = json.loads(out.read_text())
    assert report["num_images"] == 3 and report["channel"] == "y" and report["crop_border"] == 4
    assert [entry["image"] for entry in report["skipped"]] == ["sub/broken.png"]
    assert sorted(report["methods"]) == ["bicubic", "lanczos", "tiny-4x"]
    for method in report["methods"].values():
        assert len(method["images"]) == 3
        assert all(math.isfinite(method[key]) for key in ("psnr", "ssim", "lpips"))

    # Recompute bicubic on one image by hand: crop, seeded degradation, PIL bicubic, Y metrics.
    hq = load_hq(data_dir / "photo1.png", 4)
    assert tuple(hq.shape) == (1, 3, 100, 124)
    generator = torch.Generator().manual_seed(degradation_seed(0, "photo1.png"))
    lq = DegradationPipeline.from_preset("bicubic", scale=4)(hq, generator=generator)
    lq_image = Image.fromarray((lq[0].permute(1, 2, 0) * 255).round().byte().numpy())
    upscaled = np.asarray(lq_image.resize((124, 100), Image.Resampling.BICUBIC)) / 255.0
    upscaled = torch.from_numpy(upscaled).permute(2, 0, 1)[None].float()
    entry = report["methods"]["bicubic"]["images"][1]
    assert entry["image"] == "photo1.png"
    assert entry["psnr"] == pytest.approx(psnr(upscaled, hq, crop_border=4).item(), abs=1e-6)
    assert entry["ssim"] == pytest.approx(ssim(upscaled, hq, crop_border=4).item(), abs=1e-6)


def test_degraded_inputs_are_seeded(real_weights, data_dir):
    methods = [interpolation_method("bicubic", 4)]

    def run(seed: int) -> list[float]:
        report = evaluate(
            data_dir, methods, degradation="realesrgan", scale=4, seed=seed, limit=2, device="cpu"
        )
        return [score.psnr for score in report.methods[0].images]

    first = run(0)
    assert run(0) == first
    assert run(1) != first


def test_a_4x_model_is_scored_at_8x_as_upscale_runs_it(real_weights, data_dir, model_dir):
    """--scale 8 with a 4x model: two passes and a 2x reduction, exactly Upscaler(outscale=8)."""
    from upsampler import Upscaler

    method = upscaler_method(model_dir, scale=8, seed=0, device="cpu")
    assert method.name == "tiny-4x (2 passes, resized)"
    report = evaluate(data_dir, [method], degradation="bicubic", scale=8, seed=0, limit=1)
    hq = load_hq(data_dir / "photo0.png", 8)
    generator = torch.Generator().manual_seed(degradation_seed(0, "photo0.png"))
    lq = DegradationPipeline.from_preset("bicubic", scale=8)(hq, generator=generator)
    expected = Upscaler.from_pretrained(model_dir, device="cpu").upscale(lq, seed=0, outscale=8)
    assert expected.shape == hq.shape
    expected = (expected.clamp(0, 1) * 255).round() / 255
    score = report.methods[0].images[0]
    assert score.image == "photo0.png"
    assert score.psnr == pytest.approx(psnr(expected, hq, crop_border=8).item(), abs=1e-4)


def test_bad_options_fail_clearly(data_dir):
    result = runner.invoke(app, ["eval", str(data_dir), "--degradation", "jpeg-only"])
    assert result.exit_code == 2
    assert "unknown degradation 'jpeg-only'" in result.output
    result = runner.invoke(app, ["eval", str(data_dir / "nowhere")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_missing_lpips_weights_name_the_command(data_dir, tmp_path):
    result = runner.invoke(app, ["eval", str(data_dir), "--lpips-dir", str(tmp_path / "empty")])
    assert result.exit_code == 2
    assert f"upsampler prepare-lpips --output {tmp_path / 'empty'}" in result.output


def test_baseline_needs_spandrel(data_dir, tmp_path, monkeypatch):
    torch.save({"params_ema": _tiny_rrdb_state_dict()}, tmp_path / "x.pth")
    monkeypatch.setitem(sys.modules, "spandrel", None)  # as if the install had lost it
    result = runner.invoke(app, ["eval", str(data_dir), "--baseline", str(tmp_path / "x.pth")])
    assert result.exit_code == 2
    assert "pip install spandrel" in result.output


def _tiny_rrdb_state_dict(features: int = 8, growth: int = 32) -> dict[str, torch.Tensor]:
    """A 4x Real-ESRGAN (BasicSR RRDBNet) state dict with one block and few channels."""
    generator = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = {}

    def conv(name: str, out_channels: int, in_channels: int) -> None:
        shape = (out_channels, in_channels, 3, 3)
        state[f"{name}.weight"] = torch.randn(shape, generator=generator) * 0.05
        state[f"{name}.bias"] = torch.zeros(out_channels)

    conv("conv_first", features, 3)
    for rdb in (1, 2, 3):
        for i in range(1, 5):
            conv(f"body.0.rdb{rdb}.conv{i}", growth, features + (i - 1) * growth)
        conv(f"body.0.rdb{rdb}.conv5", features, features + 4 * growth)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        conv(name, features, features)
    conv("conv_last", 3, features)
    return state


def test_baseline_through_spandrel(real_weights, data_dir, tmp_path):
    baseline = tmp_path / "tiny_rrdb.pth"
    torch.save({"params_ema": _tiny_rrdb_state_dict()}, baseline)
    result = runner.invoke(
        app, ["eval", str(data_dir), "--baseline", str(baseline), "--limit", "1", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(_table(result.output)) == ["bicubic", "lanczos", "tiny_rrdb.pth"]


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_baseline_pickles_load_only_weights(data_dir, tmp_path):
    target = tmp_path / "pwned"
    baseline = tmp_path / "evil.pth"
    torch.save({"params_ema": _tiny_rrdb_state_dict(), "extra": _Payload(target)}, baseline)
    result = runner.invoke(app, ["eval", str(data_dir), "--baseline", str(baseline)])
    assert result.exit_code == 2
    assert "weights_only=True" in result.output
    assert not target.exists()


def test_images_over_max_pixels_are_skipped_with_the_flag_named(real_weights, data_dir):
    smallest = min(width * height for width, height in SIZES)
    result = runner.invoke(
        app,
        ["eval", str(data_dir), "--degradation", "bicubic", "--device", "cpu",
         "--max-pixels", str(smallest)],
    )  # fmt: skip
    # The smallest photo is read; the others and the broken file are skipped and reported.
    assert result.exit_code == 1, result.output
    assert "1 images" in result.output or "1 image" in result.output
    assert result.output.count("--max-pixels") >= len(SIZES) - 1


def test_an_exactly_reproduced_image_is_left_out_of_every_psnr_mean():
    from upsampler.evaluation import EvaluationReport, ImageScore, MethodScores, format_table

    def score(name, value):
        return ImageScore(image=name, psnr=value, ssim=1.0, lpips=0.0, seconds=0.1)

    def report(*methods):
        return EvaluationReport(
            data_dir="d",
            degradation="bicubic",
            scale=4,
            seed=0,
            crop_border=4,
            y_channel=True,
            lpips_net="alex",
            images=("flat.png", "photo.png"),
            methods=methods,
        )

    # A flat image that bicubic reproduces exactly has an infinite PSNR; the model's 40 dB on
    # it is left out too, so both means are over the same images.
    bicubic = MethodScores("bicubic", (score("flat.png", math.inf), score("photo.png", 30.0)))
    model = MethodScores("model", (score("flat.png", 40.0), score("photo.png", 32.0)))
    mixed = report(bicubic, model)
    assert mixed.exact_images == ("flat.png",)
    assert (mixed.psnr(bicubic), mixed.psnr(model)) == (30.0, 32.0)
    assert bicubic.psnr == math.inf and model.psnr == 36.0  # the plain means
    note = (
        "PSNR means leave out 1 of 2 images that bicubic reproduced exactly (infinite PSNR): "
        "flat.png"
    )
    for markdown in (False, True):
        table = format_table(mixed, markdown=markdown)
        assert "30.00" in table and "32.00" in table and note in table
        assert "inf" not in table.replace("infinite", "")
    data = mixed.to_dict()
    assert data["psnr_left_out"] == ["flat.png"]
    assert data["methods"]["bicubic"]["psnr"] == 30.0 and data["methods"]["model"]["psnr"] == 32.0
    assert data["methods"]["bicubic"]["images"][0]["psnr"] is None  # JSON has no inf
    # Nothing exact: the means of all images, no note.
    clean = report(model)
    assert clean.psnr(model) == 36.0 and clean.psnr_note() is None
    assert "PSNR means" not in format_table(clean) and clean.to_dict()["psnr_left_out"] == []
    # Every image exact: nothing to average, and the mean says so.
    exact = MethodScores("exact", (score("flat.png", math.inf), score("photo.png", math.inf)))
    assert report(exact).psnr(exact) == math.inf
