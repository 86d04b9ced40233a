"""The teacher cache: shards of (lq, teacher output, hq), resumable, and the dataset over them.

Teachers are tiny spandrel Compact networks saved as .pth (4.9k parameters) and a tiny
GigaGAN; a Compact with all weights zero is exactly a nearest-neighbour 4x upsampler (its
output is its body's, zero, plus the nearest-upsampled input), which makes alignment exact.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from spandrel.architectures.Compact import Compact
from typer.testing import CliRunner

import upsampler.data.teacher_cache as teacher_cache_module
from conftest import tiny_generator
from upsampler.data import (
    TeacherCacheDataset,
    TeacherCacheError,
    build_teacher_cache,
    collate,
)
from upsampler.models.loading import load_model
from upsampler_cli.app import app

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Four 64x64 photos (smooth gradients plus noise, so a degraded crop keeps detail), a
    random-weight Compact teacher and a zero-weight (nearest-neighbour) one."""
    root = tmp_path_factory.mktemp("teacher-cache")
    photos = root / "photos"
    photos.mkdir()
    ramp = np.linspace(0, 200, 64)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        base = ramp[None, :, None] * rng.random(3) + ramp[:, None, None] * rng.random(3) * 0.2
        pixels = np.clip(base + rng.integers(0, 56, (64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(photos / f"photo{seed}.png")
    torch.manual_seed(0)
    network = Compact(num_feat=8, num_conv=2, upscale=4)
    torch.save(network.state_dict(), root / "compact.pth")
    zero = {key: torch.zeros_like(value) for key, value in network.state_dict().items()}
    torch.save(zero, root / "nearest.pth")
    return {
        "photos": photos,
        "teacher": root / "compact.pth",
        "nearest": root / "nearest.pth",
    }


def build(files, output, **overrides):
    arguments = dict(
        teacher=files["teacher"],
        degradation="realesrgan",
        scale=4,
        crop_size=32,
        count=10,
        shard_size=4,
        seed=0,
        batch_size=3,
    )
    arguments.update(overrides)
    return build_teacher_cache(files["photos"], output, **arguments)


def folder_bytes(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def cache(files, tmp_path_factory):
    """The reference cache: 10 samples in shards of 4, 4, 2."""
    return build(files, tmp_path_factory.mktemp("reference") / "cache")


def test_shards_hold_uint8_triples_and_the_teacher_output_of_lq(files, cache):
    record = json.loads((cache / "cache.json").read_text())
    assert [s["count"] for s in record["shards"]] == [4, 4, 2]
    assert record["teacher"]["architecture"] == "RealESRGAN Compact"
    assert record["teacher"]["name"] == str(files["teacher"].resolve())
    assert record["degradation"]["preset"] == "realesrgan"
    assert record["data"] == {"path": str(files["photos"].resolve()), "images": 4}
    assert {k: record[k] for k in ("scale", "crop_size", "count", "shard_size", "seed")} == {
        "scale": 4,
        "crop_size": 32,
        "count": 10,
        "shard_size": 4,
        "seed": 0,
    }
    shard = load_file(cache / "shard-00002.safetensors")
    assert {k: (tuple(v.shape), v.dtype) for k, v in shard.items()} == {
        "lq": ((2, 3, 8, 8), torch.uint8),
        "teacher": ((2, 3, 32, 32), torch.uint8),
        "hq": ((2, 3, 32, 32), torch.uint8),
    }
    # The pipeline's lq is on 8-bit levels already, so the teacher saw exactly the stored lq:
    # only the float rounding of another batch can move a value by one level.
    teacher = load_model(files["teacher"])
    with torch.inference_mode():
        again = teacher(shard["lq"].float() / 255).hq.clamp(0, 1)
    again = (again * 255).round().to(torch.uint8)
    assert (again.int() - shard["teacher"].int()).abs().max() <= 1
    # The teacher did something, and the lq is a degraded hq, not a copy of another sample.
    assert not torch.equal(shard["teacher"], shard["hq"])
    downscaled = torch.nn.functional.avg_pool2d(shard["hq"].float(), 4)
    assert (downscaled - shard["lq"].float()).abs().mean() < 40


def test_same_seed_same_bytes_other_seed_other_samples(files, cache, tmp_path):
    again = build(files, tmp_path / "again")
    assert folder_bytes(again) == folder_bytes(cache)
    other = build(files, tmp_path / "other", seed=1, count=4)
    assert not torch.equal(
        load_file(other / "shard-00000.safetensors")["lq"],
        load_file(cache / "shard-00000.safetensors")["lq"],
    )


def test_interrupted_build_resumes_to_the_same_bytes(files, cache, tmp_path):
    output = tmp_path / "cache"
    calls = []

    def interrupt(done, total):
        calls.append((done, total))
        if done == 7:  # after the first batch of the second shard
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(files, output, progress=interrupt)
    assert calls == [(0, 10), (3, 10), (4, 10), (7, 10)]
    assert sorted(p.name for p in output.iterdir()) == ["cache.json", "shard-00000.safetensors"]

    calls.clear()
    build(files, output, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(4, 10), (7, 10), (8, 10), (10, 10)]
    assert folder_bytes(output) == folder_bytes(cache)

    # A damaged shard (a copy cut short) is built again; complete ones are not touched.
    shard = output / "shard-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])
    calls.clear()
    build(files, output, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (6, 10)
    assert folder_bytes(output) == folder_bytes(cache)


def test_a_cache_made_with_other_arguments_is_refused(files, cache, tmp_path):
    output = tmp_path / "cache"
    build(files, output, count=4)
    with pytest.raises(TeacherCacheError, match=r"crop_size 32 there, 16 now; seed 0 there, 1 now"):
        build(files, output, count=4, seed=1, crop_size=16)
    with pytest.raises(TeacherCacheError, match="teacher weights differ"):
        build(files, output, count=4, teacher=files["nearest"])
    with pytest.raises(TeacherCacheError, match="degradation 'realesrgan' there, 'bicubic' now"):
        build(files, output, count=4, degradation="bicubic")
    with pytest.raises(TeacherCacheError, match="count 4 there, 10 now"):
        build(files, output)
    build(files, output, count=4, batch_size=4)  # complete: nothing to do, nothing refused

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(TeacherCacheError, match="not empty"):
        build(files, tmp_path / "busy")
    with pytest.raises(TeacherCacheError, match="multiple of scale 4"):
        build(files, tmp_path / "new", crop_size=30)
    with pytest.raises(TeacherCacheError, match="4x model, but scale is 2"):
        build(files, tmp_path / "new", scale=2)
    assert not (tmp_path / "new").exists()


def test_teacher_with_styles_and_a_size_rule(files, tmp_path):
    """A tiny GigaGAN: style noise drawn per sample from the seed, and lq 6x6 padded to its
    multiple of 4 and cropped back."""
    teacher = tiny_generator()
    first = build(files, tmp_path / "a", teacher=teacher, crop_size=24, count=3)
    second = build(files, tmp_path / "b", teacher=teacher, crop_size=24, count=3)
    assert folder_bytes(first) == folder_bytes(second)
    shard = load_file(first / "shard-00000.safetensors")
    assert tuple(shard["lq"].shape) == (3, 3, 6, 6)
    assert tuple(shard["teacher"].shape) == (3, 3, 24, 24)
    assert json.loads((first / "cache.json").read_text())["teacher"]["name"] == "GigaGANUpsampler"


def locate(window: torch.Tensor, image: torch.Tensor) -> list[tuple[int, int]]:
    """Every (top, left) where ``window`` (3, h, w) lies in ``image`` (3, H, W) exactly."""
    height, width = window.shape[-2:]
    return [
        (top, left)
        for top in range(image.shape[-2] - height + 1)
        for left in range(image.shape[-1] - width + 1)
        if torch.equal(image[:, top : top + height, left : left + width], window)
    ]


def test_dataset_crops_are_aligned_and_keyed(files, tmp_path):
    cache = build(files, tmp_path / "nearest", teacher=files["nearest"], count=5)
    dataset = TeacherCacheDataset(cache, crop_size=16, flip=False)
    assert len(dataset) == 5
    positions = set()
    for index, seed in [(0, 1), (3, 2), (4, 3), (2, 4), (1, 5), (4, 6)]:
        sample = dataset[(index, seed)]
        assert sample["caption"] == ""
        assert {k: tuple(sample[k].shape) for k in ("lq", "teacher", "hq")} == {
            "lq": (3, 4, 4),
            "teacher": (3, 16, 16),
            "hq": (3, 16, 16),
        }
        assert all(sample[k].dtype == torch.float32 for k in ("lq", "teacher", "hq"))
        # The teacher is nearest-neighbour: its crop is exactly the lq crop, upsampled.
        nearest = sample["lq"].repeat_interleave(4, -1).repeat_interleave(4, -2)
        assert torch.equal(sample["teacher"], nearest)
        # The hq crop comes from where the lq crop lies, times the scale.
        full = {k: v.float() / 255 for k, v in dataset.cached(index).items()}
        (top, left), *_ = locate(sample["hq"], full["hq"])
        assert top % 4 == 0 and left % 4 == 0
        assert (top // 4, left // 4) in locate(sample["lq"], full["lq"])
        positions.add((top, left))
        assert torch.equal(dataset[(index, seed)]["hq"], sample["hq"])  # the key fixes it
    assert len(positions) > 1

    # Flips turn all three together; the crop position is drawn before them.
    flipping = TeacherCacheDataset(cache, crop_size=16, flip=True, flip_vertical=True)
    kinds = set()
    for seed in range(12):
        plain, flipped = dataset[(0, seed)], flipping[(0, seed)]
        for dims in ([], [-1], [-2], [-2, -1]):
            if all(torch.equal(flipped[k], plain[k].flip(dims)) for k in ("lq", "teacher", "hq")):
                kinds.add(tuple(dims))
                break
        else:
            pytest.fail(f"seed {seed}: lq, teacher and hq were not flipped alike")
    assert len(kinds) == 4

    whole = TeacherCacheDataset(cache, flip=False)
    assert tuple(whole[(0, 0)]["hq"].shape) == (3, 32, 32)
    batch = collate([whole[(0, 0)], whole[(1, 0)]])
    assert tuple(batch["teacher"].shape) == (2, 3, 32, 32) and batch["caption"] == ["", ""]
    # Loader workers get a copy without open shard handles.
    copy = pickle.loads(pickle.dumps(whole))
    assert torch.equal(copy[(4, 9)]["lq"], whole[(4, 9)]["lq"])


def test_dataset_errors_name_the_problem(cache, tmp_path):
    with pytest.raises(TeacherCacheError, match="no cache.json"):
        TeacherCacheDataset(tmp_path)
    with pytest.raises(TeacherCacheError, match="not a folder"):
        TeacherCacheDataset(tmp_path / "missing")
    with pytest.raises(TeacherCacheError, match="larger than the cached crops"):
        TeacherCacheDataset(cache, crop_size=64)
    with pytest.raises(TeacherCacheError, match="multiple of the cache's scale 4"):
        TeacherCacheDataset(cache, crop_size=18)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name, data in folder_bytes(cache).items():
        (damaged / name).write_bytes(data)
    shard = damaged / "shard-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:5000])
    with pytest.raises(TeacherCacheError, match=r"shard-00001\.safetensors is not a readable"):
        TeacherCacheDataset(damaged)
    shard.unlink()
    with pytest.raises(TeacherCacheError, match=r"incomplete: shard-00001\.safetensors is missing"):
        TeacherCacheDataset(damaged)


def test_cli_builds_resumes_and_refuses(files, cache, tmp_path, monkeypatch):
    output = tmp_path / "cli-cache"
    command = ["teacher-cache", str(files["photos"]), "-o", str(output)]
    command += ["--teacher", str(files["teacher"]), "--crop-size", "32", "--count", "10"]
    command += ["--shard-size", "4", "--batch-size", "3", "--device", "cpu"]

    made = teacher_cache_module._make_batch
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the first batch of the second shard
            raise KeyboardInterrupt
        return made(*args, **kwargs)

    monkeypatch.setattr(teacher_cache_module, "_make_batch", interrupted)
    result = runner.invoke(app, command)
    assert result.exit_code == 1, result.output
    assert "kept 1 of 3 shards (4 of 10 samples)" in result.output
    assert "To resume, run the same command" in result.output
    monkeypatch.setattr(teacher_cache_module, "_make_batch", made)

    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    assert "resuming: 4 of 10 samples" in result.output
    assert "done: 10 samples (6 built now" in result.output
    assert "MB on disk" in result.output
    assert folder_bytes(output) == folder_bytes(cache)

    for extra, message in [
        (["--seed", "3"], "seed 0 there, 3 now"),
        (["--scale", "2"], "4x model, but scale is 2"),
        (["--teacher", str(tmp_path / "none.pth")], "none.pth"),
        (["--degradation", "blurry"], "unknown degradation preset 'blurry'"),
    ]:
        result = runner.invoke(app, command + extra)
        assert result.exit_code == 2, result.output
        assert message in result.output
    result = runner.invoke(app, ["teacher-cache", str(tmp_path / "nowhere")] + command[2:])
    assert result.exit_code == 2 and "data path not found" in result.output


def test_cli_max_pixels_limits_the_photos_read(files, tmp_path):
    command = ["teacher-cache", str(files["photos"]), "--teacher", str(files["teacher"])]
    command += ["--crop-size", "32", "--count", "2", "--shard-size", "2", "--device", "cpu"]
    # The photos are 64x64 = 4,096 pixels: one pixel less and every photo is skipped.
    with pytest.warns(UserWarning, match="4,096 pixels is over the limit of 4,095"):
        result = runner.invoke(app, command + ["-o", str(tmp_path / "a"), "--max-pixels", "4095"])
    assert result.exit_code == 2, result.output
    assert "no usable image" in result.output
    result = runner.invoke(app, command + ["-o", str(tmp_path / "b"), "--max-pixels", "4096"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "b" / "cache.json").read_text())
    assert record["data"]["images"] == 4
