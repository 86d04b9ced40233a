"""``upsampler degrade`` on real image files, through typer's CliRunner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from upsampler.degradations import DegradationPipeline
from upsampler_cli.app import app

runner = CliRunner()


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack(
        [128 + 90 * np.sin(x / 6.0), 60 + 150 * (x > width // 2), 128 + 80 * np.cos(y / 5.0)], -1
    )
    pixels = pixels + rng.normal(0, 8, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _files(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def _hq(path: Path) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1], as read from the file."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB")).copy()
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255


def _uint8(lq: torch.Tensor) -> np.ndarray:
    return (lq[0] * 255).round().byte().permute(1, 2, 0).numpy()


def _degraded(hq: torch.Tensor, pipeline: DegradationPipeline, seed: int, count: int = 1):
    """The library's variants of ``hq``: ``count`` calls on one generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return [_uint8(pipeline(hq, generator=generator)) for _ in range(count)]


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _detail(pixels: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels: lower is smoother."""
    pixels = pixels.astype(np.float64)
    return float(np.abs(np.diff(pixels, axis=0)).mean() + np.abs(np.diff(pixels, axis=1)).mean())


def test_degrade_writes_variants_and_sheets_and_reports_broken_files(tmp_path):
    inputs = tmp_path / "photos"
    inputs.mkdir()
    _photo(4 * 25 + 3, 4 * 18 + 2).save(inputs / "beach.png")  # not a multiple of 4: cropped
    _photo(96, 64, seed=1).save(inputs / "city.jpg", quality=92)
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (inputs / "notes.txt").write_text("not an image, not picked up from a folder")
    out = tmp_path / "out"

    result = runner.invoke(
        app,
        ["degrade", str(inputs), "-o", str(out), "--count", "2", "--sheet", "--seed", "3"],
    )
    assert result.exit_code == 1, result.output
    assert "broken.png" in result.output and "1 input(s) failed" in result.output
    assert _files(out) == {
        "beach_lq0.png", "beach_lq1.png", "beach_sheet.png",
        "city_lq0.png", "city_lq1.png", "city_sheet.png",
    }  # fmt: skip
    with Image.open(out / "beach_lq0.png") as lq:
        assert lq.size == (25, 18) and lq.mode == "RGB"
    with Image.open(out / "city_lq1.png") as lq:
        assert lq.size == (24, 16)
    with Image.open(out / "beach_sheet.png") as sheet:
        assert sheet.size == (100 * 3, 72)  # HQ | LQ 0 | LQ 1, at the cropped HQ size
        hq_part = np.asarray(sheet)[:, :100]
        lq_part = np.asarray(sheet)[:, 100:200]
    with Image.open(out / "beach_lq0.png") as lq:
        assert np.array_equal(lq_part, np.asarray(lq.resize((100, 72), Image.Resampling.NEAREST)))
    with Image.open(inputs / "beach.png") as original:
        assert np.array_equal(hq_part, np.asarray(original)[1:73, 1:101])  # center crop
    with Image.open(out / "beach_lq0.png") as a, Image.open(out / "beach_lq1.png") as b:
        assert not np.array_equal(np.asarray(a), np.asarray(b)), "variants differ"
    # Input number i (beach 0, broken 1, city 2) uses seed + i, and its variants are successive
    # draws of one generator: the files are the library's realesrgan pipeline with seed 3 + 2.
    realesrgan = DegradationPipeline.from_preset("realesrgan", scale=4)
    city = _hq(inputs / "city.jpg")
    expected = _degraded(city, realesrgan, seed=5, count=2)
    for variant, pixels in enumerate(expected):
        np.testing.assert_array_equal(_read(out / f"city_lq{variant}.png"), pixels)
    assert not np.array_equal(_degraded(city, realesrgan, seed=3)[0], expected[0])


def test_degrade_is_reproducible_for_a_seed(tmp_path):
    photo = tmp_path / "photo.png"
    _photo(64, 48).save(photo)

    def run(seed: int, name: str) -> bytes:
        result = runner.invoke(
            app, ["degrade", str(photo), "-o", str(tmp_path / name), "--seed", str(seed)]
        )
        assert result.exit_code == 0, result.output
        return (tmp_path / name / "photo_lq0.png").read_bytes()

    assert run(0, "a") == run(0, "b")
    assert run(0, "a") != run(1, "c")


def test_degrade_progress_bar_can_be_turned_off(tmp_path):
    photo = tmp_path / "photo.png"
    _photo(64, 48).save(photo)
    for flag, shown in (("--progress", True), ("--no-progress", False)):
        result = runner.invoke(app, ["degrade", str(photo), "-o", str(tmp_path / flag), flag])
        assert result.exit_code == 0, result.output
        assert ("degrading" in result.stderr) is shown, result.stderr


def test_degrade_presets_scale_and_recipe_file(tmp_path):
    photo = tmp_path / "photo.jpg"
    _photo(80, 64).save(photo, quality=95)
    result = runner.invoke(
        app,
        ["degrade", str(photo), "-o", str(tmp_path / "b"), "--preset", "bicubic", "--scale", "8"],
    )
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "b" / "photo_lq0.png") as lq:
        assert lq.size == (10, 8)
    # bicubic: an antialiased bicubic resize to 1/8, rounded to 8 bits, and nothing else
    # (without antialiasing it is up to 33 levels off, an area average 6).
    hq = _hq(photo)
    bicubic = F.interpolate(hq, size=(8, 10), mode="bicubic", antialias=True, align_corners=False)
    lq = _read(tmp_path / "b" / "photo_lq0.png")
    np.testing.assert_array_equal(lq, _uint8(bicubic.clamp(0, 1)))

    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        '[degradation]\n\n[[degradation.stages]]\ntype = "blur"\nsigma = [3.0, 4.0]\n\n'
        '[[degradation.stages]]\ntype = "resize"\nup_down_keep = [0, 0, 1]\nrelative_to = "target"\n'
    )
    result = runner.invoke(
        app, ["degrade", str(photo), "-o", str(tmp_path / "r"), "--preset", str(recipe)]
    )
    assert result.exit_code == 0, result.output
    lq = _read(tmp_path / "r" / "photo_lq0.png")
    assert lq.shape == (16, 20, 3)
    # The recipe's stages, with the seed's draws: the library's pipeline from the same tables.
    stages = [
        {"type": "blur", "sigma": [3.0, 4.0]},
        {"type": "resize", "up_down_keep": [0, 0, 1], "relative_to": "target"},
    ]
    pipeline = DegradationPipeline.from_config(stages, scale=4)
    np.testing.assert_array_equal(lq, _degraded(hq, pipeline, seed=0)[0])
    assert not np.array_equal(lq, _degraded(hq, pipeline, seed=1)[0])  # the seed matters
    # ... blurred before the resize: smoother than the plain bicubic downscale (measured: 27.4
    # against 30.5 levels between neighbours).
    plain = _uint8(F.interpolate(hq, size=(16, 20), mode="bicubic", antialias=True).clamp(0, 1))
    assert _detail(lq) < 0.95 * _detail(plain)


def test_degrade_rejects_bad_options(tmp_path):
    photo = tmp_path / "photo.png"
    _photo(32, 32).save(photo)
    result = runner.invoke(
        app, ["degrade", str(photo), "-o", str(tmp_path / "o"), "--preset", "sharp"]
    )
    assert result.exit_code == 2
    assert "unknown degradation preset 'sharp'" in result.output

    recipe = tmp_path / "bad.toml"
    recipe.write_text('[[stages]]\ntype = "blur"\nprobability = 2\n\n[[stages]]\ntype = "final"\n')
    result = runner.invoke(
        app, ["degrade", str(photo), "-o", str(tmp_path / "o"), "--preset", str(recipe)]
    )
    assert result.exit_code == 2
    assert "probability must be a probability in [0, 1]" in result.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_degrade_guards_decoding_and_keeps_outputs_inside_the_folder(tmp_path):
    good = tmp_path / "good.png"
    _photo(64, 64).save(good)
    truncated = tmp_path / "truncated.jpg"
    _photo(64, 64).save(truncated, quality=90)
    truncated.write_bytes(truncated.read_bytes()[:300])
    tiny = tmp_path / "tiny.png"
    _photo(3, 3).save(tiny)
    missing = tmp_path / "missing.png"
    out = tmp_path / "out"

    result = runner.invoke(
        app, ["degrade", str(good), str(truncated), str(tiny), str(missing), "-o", str(out)]
    )
    assert result.exit_code == 1
    for name in ("truncated.jpg", "tiny.png", "missing.png"):
        assert name in result.output
    assert "smaller than the scale 4" in result.output
    assert _files(out) == {"good_lq0.png"}, "no temporary files are left behind"
    assert _files(tmp_path) == {"good.png", "truncated.jpg", "tiny.png", "out"}

    # The decompression-bomb guard: refused with the flag that raises it named, then allowed.
    result = runner.invoke(app, ["degrade", str(good), "-o", str(out), "--max-pixels", "1000"])
    assert result.exit_code == 1
    assert "4,096 pixels is over the limit of 1,000" in result.output
    assert "--max-pixels" in result.output
    result = runner.invoke(app, ["degrade", str(good), "-o", str(out), "--max-pixels", "4096"])
    assert result.exit_code == 0, result.output


def test_degrade_into_a_subfolder_of_the_input_folder_skips_earlier_outputs(tmp_path):
    _photo(64, 64).save(tmp_path / "a.png")
    _photo(64, 64, seed=2).save(tmp_path / "b.png")
    args = ["degrade", str(tmp_path), "-o", str(tmp_path / "lq"), "--sheet"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "for 2 of 2 inputs" in result.output
    assert _files(tmp_path / "lq") == {"a_lq0.png", "a_sheet.png", "b_lq0.png", "b_sheet.png"}


@pytest.mark.parametrize("names", [("x/a.png", "y/a.png"), ("a.png", "a.jpg")])
def test_degrade_gives_inputs_with_the_same_name_distinct_outputs(tmp_path, names):
    paths = []
    for index, name in enumerate(names):
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _photo(32, 32, seed=index).save(path)
        paths.append(str(path))
    result = runner.invoke(app, ["degrade", *paths, "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert _files(tmp_path / "out") == {"a_lq0.png", "a-2_lq0.png"}
