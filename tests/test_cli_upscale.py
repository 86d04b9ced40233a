"""`upsampler upscale` end to end on a folder of good and broken files, with a tiny model."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner

from conftest import tiny_generator
from upsampler import TextEmbeddings
from upsampler.io.images import ImageData, read_image, write_image
from upsampler_cli.app import app

runner = CliRunner()
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
BAD = ("empty.png", "truncated.jpg", "text.png")


pytestmark = pytest.mark.usefixtures("one_thread")


def pixels(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def make_inputs(folder):
    """Good images of every kind, broken files, and a non-image, in folder (and folder/sub)."""
    (folder / "sub").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait: rotate 90 degrees clockwise
    exif[0x010F] = "TestCam"
    Image.fromarray(pixels(16, 24, 3)).save(
        folder / "photo.jpg", exif=exif, icc_profile=SRGB, quality=95
    )
    Image.fromarray(pixels(12, 20, 4)).save(folder / "rgba.png")
    Image.fromarray(pixels(10, 14, 1)[..., 0]).save(folder / "grey.png")
    deep = np.random.default_rng(1).random((12, 10, 3)).astype(np.float32)
    write_image(folder / "deep.png", ImageData(deep, bit_depth=16, icc_profile=SRGB))
    Image.fromarray(np.full((9, 11), 40000, dtype=np.uint16)).save(folder / "grey16.tif")
    with_holes = pixels(8, 8, 4)
    with_holes[..., 3] = np.where(with_holes[..., 3] > 128, 255, 0)
    Image.fromarray(with_holes).save(folder / "palette.gif")  # P with a transparent index
    Image.fromarray(pixels(8, 12, 3)).save(folder / "sub" / "nested.webp", quality=90)
    (folder / "notes.txt").write_text("not an image, ignored")
    (folder / "empty.png").write_bytes(b"")
    jpeg = io.BytesIO()
    Image.fromarray(pixels(32, 32, 3)).save(jpeg, "JPEG")
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (folder / "text.png").write_text("hello, I am text in disguise\n" * 20)
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])


# name -> (output name, (width, height) of the output, mode of the output as Pillow opens it)
EXPECTED = {
    "photo.jpg": ("photo.jpg", (64, 96), "RGB"),  # upright 16x24, then 4x
    "rgba.png": ("rgba.png", (80, 48), "RGBA"),
    "grey.png": ("grey.png", (56, 40), "L"),
    "deep.png": ("deep.png", (40, 48), "RGB"),  # 16-bit RGB: Pillow opens it as 8-bit RGB
    "grey16.tif": ("grey16.tif", (44, 36), "I;16"),
    "palette.gif": ("palette.png", (32, 32), "RGBA"),  # GIF is written as PNG
    "sub/nested.webp": ("sub/nested.webp", (48, 32), "RGB"),
    "animated.gif": ("animated.gif", (32, 32), "P"),  # an animation stays one (test_video.py)
}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, model_dir):
    root = tmp_path_factory.mktemp("job")
    make_inputs(root / "in")
    args = ["upscale", str(root / "in"), "-o", str(root / "out"), "-r", "--model", str(model_dir)]
    result = runner.invoke(app, [*args, "--no-progress"])
    return root, args, result


def test_every_good_input_has_a_faithful_output(first_run):
    root, _, result = first_run
    assert "done 8, skipped 0" in result.output, result.output
    for name, (output, size, mode) in EXPECTED.items():
        with Image.open(root / "out" / output) as image:
            assert (image.size, image.mode) == (size, mode), name
    photo = Image.open(root / "out" / "photo.jpg")
    assert photo.info["icc_profile"] == SRGB
    assert photo.getexif()[0x0112] == 1 and photo.getexif()[0x010F] == "TestCam"
    deep = read_image(root / "out" / "deep.png")
    assert deep.bit_depth == 16 and deep.mode == "RGB;16" and deep.icc_profile == SRGB
    assert len(np.unique(np.rint(deep.pixels * 65535) % 257)) > 1  # not 8-bit values scaled up
    assert read_image(root / "out" / "grey16.tif").mode == "L;16"


def test_every_bad_input_is_reported_and_the_exit_code_says_so(first_run):
    root, _, result = first_run
    assert result.exit_code == 1
    assert "failed 3" in result.output
    for name in BAD:
        assert f"{root / 'in' / name}: " in result.output
        assert not list((root / "out").glob(f"{name.split('.')[0]}.*"))
    assert "empty file" in result.output
    assert "notes.txt" not in result.output  # non-image files in a folder are ignored
    assert not list((root / "out").rglob(".*"))  # no temporary files left


def test_rerun_skips_finished_outputs_and_overwrite_redoes_them(first_run):
    root, args, _ = first_run
    stamps = {p: p.stat().st_mtime_ns for p in (root / "out").rglob("*") if p.is_file()}
    again = runner.invoke(app, [*args, "--no-progress"])
    assert "done 0, skipped 8" in again.output and again.exit_code == 1
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}
    redo = runner.invoke(app, [*args, "--no-progress", "--overwrite", "--progress"])
    assert "done 8, skipped 0" in redo.output


def test_interrupted_write_leaves_no_partial_output_and_resumes(tmp_path, model_dir, monkeypatch):
    Image.fromarray(pixels(8, 8, 3)).save(tmp_path / "a.png")
    Image.fromarray(pixels(8, 8, 3, seed=1)).save(tmp_path / "b.png")
    args = [
        "upscale",
        str(tmp_path / "a.png"),
        str(tmp_path / "b.png"),
        "-o",
        str(tmp_path / "out"),
    ]
    args += ["--model", str(model_dir), "--no-progress"]
    original_save = Image.Image.save

    def killed_midway(self, fp, *a, **kw):
        if "b.png" in str(fp):
            with open(fp, "wb") as handle:
                handle.write(b"\x89PNG\r\n\x1a\n only the first bytes")
            raise KeyboardInterrupt
        return original_save(self, fp, *a, **kw)

    monkeypatch.setattr(Image.Image, "save", killed_midway)
    interrupted = runner.invoke(app, args)
    assert interrupted.exit_code != 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]
    monkeypatch.setattr(Image.Image, "save", original_save)
    resumed = runner.invoke(app, args)
    assert "done 1, skipped 1, failed 0" in resumed.output and resumed.exit_code == 0
    assert Image.open(tmp_path / "out" / "b.png").size == (32, 32)


def test_format_suffix_scale_and_flat_folders(tmp_path, model_dir):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    Image.fromarray(pixels(10, 12, 3)).save(tmp_path / "in" / "a.png")
    Image.fromarray(pixels(10, 12, 3)).save(tmp_path / "in" / "sub" / "b.png")
    result = runner.invoke(
        app,
        ["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(model_dir)]
        + [
            "--format",
            "jpg",
            "--quality",
            "90",
            "--suffix",
            "_x2",
            "--scale",
            "2",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_x2.jpg"]  # no recursion
    assert Image.open(tmp_path / "out" / "a_x2.jpg").size == (24, 20)


def test_output_folder_inside_the_input_is_not_read_back(tmp_path, model_dir):
    Image.fromarray(pixels(8, 8, 3)).save(tmp_path / "a.png")
    args = ["upscale", str(tmp_path), "-o", str(tmp_path / "big"), "-r", "--model", str(model_dir)]
    assert "done 1" in runner.invoke(app, [*args, "--no-progress"]).output
    again = runner.invoke(app, [*args, "--no-progress"])
    assert "done 0, skipped 1, failed 0" in again.output
    assert not (tmp_path / "big" / "big").exists()


def test_a_run_with_nothing_left_to_do_shows_no_empty_progress_bar(tmp_path, model_dir):
    Image.fromarray(pixels(8, 8, 3)).save(tmp_path / "a.png")
    args = ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "-m", str(model_dir)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and "images: 100%" in first.stderr, first.stderr
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "skipped 1" in again.output
    assert "images" not in again.stderr, again.stderr


def test_png_compression_changes_the_bytes_not_the_pixels(tmp_path, model_dir):
    Image.fromarray(pixels(16, 16, 3)).save(tmp_path / "a.png")
    sizes, images = {}, {}
    for level in ("0", "9"):
        out = tmp_path / level
        args = ["upscale", str(tmp_path / "a.png"), "-o", str(out), "-m", str(model_dir)]
        result = runner.invoke(app, [*args, "--png-compression", level, "--no-progress"])
        assert result.exit_code == 0, result.output
        sizes[level] = (out / "a.png").stat().st_size
        images[level] = np.asarray(Image.open(out / "a.png"))
    assert sizes["9"] < sizes["0"] and np.array_equal(images["0"], images["9"])
    bad = runner.invoke(app, ["upscale", str(tmp_path / "a.png"), "--png-compression", "10"])
    assert bad.exit_code == 2


def test_a_file_given_twice_or_with_its_folder_is_upscaled_once(tmp_path, model_dir):
    (tmp_path / "in").mkdir()
    Image.fromarray(pixels(8, 8, 3)).save(tmp_path / "in" / "a.png")
    Image.fromarray(pixels(8, 8, 3)).save(tmp_path / "in" / "b.png")
    a = str(tmp_path / "in" / "a.png")
    args = ["upscale", a, a, str(tmp_path / "in"), "-o", str(tmp_path / "out")]
    result = runner.invoke(app, [*args, "--model", str(model_dir), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "done 2, skipped 0, failed 0" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]


def test_hidden_files_and_folders_are_not_inputs_and_max_pixels_is_named(tmp_path, model_dir):
    (tmp_path / "in" / ".thumbnails").mkdir(parents=True)
    Image.fromarray(pixels(8, 10, 3)).save(tmp_path / "in" / "a.png")  # 80 pixels
    Image.fromarray(pixels(8, 8, 3)).save(tmp_path / "in" / ".thumbnails" / "a.png")
    (tmp_path / "in" / "._a.png").write_bytes(b"macOS resource fork, not an image")
    args = ["upscale", str(tmp_path / "in"), "-r", "--model", str(model_dir), "--no-progress"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "small"), "--max-pixels", "79"])
    assert result.exit_code == 1
    assert "80 pixels is over the limit of 79" in result.output
    assert "--max-pixels" in result.output and "failed 1" in result.output
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "out"), "--max-pixels", "80"])
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "out").rglob("*")] == ["a.png"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "unreleased-4x"], "ships no weights for the built-in model 'unreleased-4x'"),
        (["--suffix", "/../../escape"], "--suffix must not contain path separators"),
        (["--prompt", "a cat"], "is unconditional: --prompt has no effect"),
        (["--dtype", "fp16", "--device", "cpu"], "half precision is not supported on the CPU"),
        (["--tile", "30"], "--tile must be a multiple of 4, got 30"),
        (["--tile", "32", "--tile-overlap", "20"], "at most half the tile (16), got 20"),
    ],
)
def test_usage_errors_exit_2(tmp_path, model_dir, extra, message, monkeypatch):
    from upsampler.models.registry import BUILTIN_MODELS, BuiltinModel

    unreleased = BuiltinModel("unreleased-4x", "nano", 4, False, "registered, no weights")
    monkeypatch.setitem(BUILTIN_MODELS, unreleased.name, unreleased)
    Image.fromarray(pixels(8, 8, 3)).save(tmp_path / "a.png")
    args = [
        "upscale",
        str(tmp_path / "a.png"),
        "-o",
        str(tmp_path / "out"),
        "--model",
        str(model_dir),
    ]
    result = runner.invoke(app, args + extra)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_text_conditioned_model_needs_a_text_encoder(tmp_path):
    tiny_generator(text_conditioning=True).save_pretrained(tmp_path / "text-model")
    Image.fromarray(pixels(8, 8, 3)).save(tmp_path / "a.png")
    result = runner.invoke(
        app,
        ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "out")]
        + ["--model", str(tmp_path / "text-model")],
    )
    assert result.exit_code == 2 and "give --text-encoder" in result.output


def test_bench_worker_times_every_method():
    from upsampler_cli.bench import _worker

    flops = {}
    cases = [("bicubic", None, None), ("gigagan", "nano", "default")]
    cases += [("gigagan", "nano", "per-sample"), ("rrdbnet", None, None)]
    for method, preset, path in cases:
        spec = dict(method=method, preset=preset, path=path, width=12, height=8)
        spec.update(device="cpu", dtype="fp32", repeats=2, warmup=False, tile=None)
        report = _worker(spec)
        assert len(report["seconds"]) == 2 and report["peak_rss_bytes"] > 0
        assert (report["parameters"] > 16_000_000) == (method == "rrdbnet")
        assert (report["flops"] is None) == (method == "bicubic")
        flops[method, path] = report["flops"]
    # The same network on both paths. The folded one runs its upsampling convolutions in
    # sub-pixel form (4/9 of their work) and adds its kernel-recording input, 8x8 here (two
    # thirds of this 12x8 image, a vanishing share of a real one).
    folded, per_sample = flops["gigagan", "default"], flops["gigagan", "per-sample"]
    assert 0.5 * per_sample < folded < 2 * per_sample and folded != per_sample
    assert flops["rrdbnet", None] > 10 * folded
    spec = dict(method="conv-peak", preset=None, path=None, width=0, height=0, device="cpu")
    peak = _worker({**spec, "dtype": "fp32", "repeats": 2, "warmup": False, "tile": None})
    channels, side = (int(n) for n in peak["config"].split()[0].split("x")[:2])
    assert peak["flops"] == 2 * channels**2 * 9 * side**2 and len(peak["seconds"]) == 2


@pytest.mark.slow
def test_bench_command_prints_a_table(tmp_path):
    result = runner.invoke(
        app,
        ["bench", "--sizes", "16x16", "--repeats", "1", "--no-warmup"]
        + ["--json", str(tmp_path / "bench.json")],
    )
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| ")]
    assert [row.split("|")[1].strip() for row in rows[1:]] == [
        "conv-peak",
        "bicubic",
        "gigagan `nano`",
        "rrdbnet",
    ]
    assert "64x64" in rows[2] and (tmp_path / "bench.json").is_file()
    assert {row.count("|") for row in rows} == {rows[0].count("|")}  # every row, every column
    assert "16x16 -> 64x64: gigagan `nano` is " in result.output
    assert "convolution peak: " in result.output and "% of the peak" in result.output


def test_bench_rows_have_the_headers_columns():
    from upsampler_cli.bench import HEADER, _row

    def cells(line):
        assert line.startswith("| ") and line.endswith("|")
        return [cell.strip() for cell in re.split(r"(?<!\\)\|", line[1:-1])]

    columns = cells(HEADER)
    common = dict(parameters=2.5e6, seconds=[2.0], peak_rss_bytes=2**30, peak_gpu_bytes=0)
    peak = dict(method="conv-peak", preset=None, path=None, width=0, height=0, flops=4.8e9)
    peak.update(common, seconds=[0.025], config="64x256x256 channels-last")
    nano = dict(method="gigagan", preset="nano", path="default", width=256, height=256)
    bicubic = dict(method="bicubic", preset=None, path=None, width=256, height=256, flops=None)
    failed = {**nano, "error": "ValueError: a | b"}  # a pipe in a message stays in its cell
    rows = {
        "peak": cells(_row(peak)),
        "nano": cells(_row({**nano, **common, "flops": 46.8e9})),
        "bicubic": cells(_row({**bicubic, **common})),
        "failed": cells(_row(failed)),
    }
    for name, row in rows.items():
        assert len(row) == len(columns), (name, row)
    named = {name: dict(zip(columns, row, strict=True)) for name, row in rows.items()}
    assert named["peak"]["GFLOP"] == "4.8" and named["peak"]["GFLOP/s"] == "192.0"
    assert named["peak"]["output MP/s"] == "-" and named["peak"]["peak RSS"] == "1.00 GiB"
    assert named["nano"]["s / output MP"] == "1.907" and named["nano"]["GFLOP/s"] == "23.4"
    assert named["bicubic"]["GFLOP"] == "-" and named["bicubic"]["output"] == "1024x1024"
    assert named["failed"]["s / image"] == "failed: ValueError: a \\| b"


def test_bench_prints_each_models_speed_against_rrdbnet():
    from upsampler_cli.bench import _speed_ratios

    def run(method, preset, seconds, width=256):
        return dict(method=method, preset=preset, width=width, height=width, seconds=seconds)

    results = [
        run("bicubic", None, [0.01]),
        run("gigagan", "student", [0.5, 0.4, 0.6]),  # median 0.5
        run("rrdbnet", None, [13.0, 12.0, 14.0]),  # median 13.0
        run("gigagan", "nano", [1.0], width=512),  # no RRDBNet at this size: no ratio
        {**run("rrdbnet", None, [1.0], width=512), "error": "timed out"},
    ]
    assert _speed_ratios(results) == [
        "",
        "256x256 -> 1024x1024: gigagan `student` is 26.0x faster than RRDBNet "
        "(0.500 s against 13.000 s)",
    ]


def test_bench_compares_paths_and_the_convolution_peak():
    from upsampler_cli.bench import _speed_ratios

    def run(path, seconds, flops):
        return dict(
            method="gigagan",
            preset="nano",
            path=path,
            width=64,
            height=64,
            seconds=seconds,
            flops=flops,
        )

    peak = dict(
        method="conv-peak",
        preset=None,
        path=None,
        width=0,
        height=0,
        seconds=[2.0, 1.0, 4.0],
        flops=100e9,
    )  # best run: 100 GFLOP/s
    results = [
        peak,
        run("default", [0.5], 30e9),
        run("per-sample", [1.0], 30e9),
        run("onnxruntime", [2.0], 30e9),
    ]
    assert _speed_ratios(results) == [
        "",
        "64x64 -> 256x256: gigagan `nano` is 2.00x faster than its per-sample path "
        "(0.500 s against 1.000 s)",
        "64x64 -> 256x256: gigagan `nano` (onnxruntime) is 2.00x slower than its per-sample "
        "path (2.000 s against 1.000 s)",
        "convolution peak: 100.0 GFLOP/s (its fastest run)",
        "64x64: gigagan `nano` runs at 60.0 GFLOP/s, 60% of the peak",
        "64x64: gigagan `nano` (per-sample) runs at 30.0 GFLOP/s, 30% of the peak",
        "64x64: gigagan `nano` (onnxruntime) runs at 15.0 GFLOP/s, 15% of the peak",
    ]


def test_sidecar_captions_steer_a_text_conditioned_model(tmp_path, monkeypatch):
    import upsampler_cli.upscale as command
    from conftest import random_text

    class CaptionEncoder:  # a stand-in text encoder: embeddings seeded by the caption
        def encode(self, texts):
            return TextEmbeddings.cat([random_text(1, seed=len(text)) for text in texts])

    monkeypatch.setattr(command, "text_encoder_from_option", lambda spec, weights: CaptionEncoder())
    tiny_generator(text_conditioning=True).save_pretrained(tmp_path / "text-model")
    image = Image.fromarray(pixels(8, 8, 3))
    for name, caption in (("a", "a cat"), ("b", "a dog on a beach"), ("c", "a bat")):
        image.save(tmp_path / f"{name}.png")
        (tmp_path / f"{name}.txt").write_text(caption)
    args = ["upscale", str(tmp_path), "-o", str(tmp_path / "out"), "--no-progress"]
    args += ["--model", str(tmp_path / "text-model"), "--text-encoder", "fake:encoder"]
    assert runner.invoke(app, args).exit_code == 0
    a, b, c = (np.asarray(Image.open(tmp_path / "out" / f"{n}.png")) for n in "abc")
    assert np.array_equal(a, c) and not np.array_equal(a, b)  # same caption length, same seed
    prompt = runner.invoke(app, [*args, "--overwrite", "--prompt", "one prompt for all"])
    assert prompt.exit_code == 0
    a, b = (np.asarray(Image.open(tmp_path / "out" / f"{n}.png")) for n in "ab")
    assert np.array_equal(a, b)
