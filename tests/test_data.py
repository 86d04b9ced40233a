from __future__ import annotations

import io
import json
import tarfile
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from upsampler.data import DataError, ImageDataset, StepBatchSampler


def photo(seed: int, size=(80, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_folder_recursive_with_sidecar_captions_and_filters(tmp_path):
    (tmp_path / "sub").mkdir()
    photo(0).save(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("a red barn\n")
    photo(1).save(tmp_path / "sub" / "b.jpg")
    photo(2, size=(20, 20)).save(tmp_path / "small.png")  # below min_size
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "notes.md").write_text("ignored")
    with pytest.warns(
        UserWarning,
        match=r"skipped 2 of 4 images.*small\.png.*smaller than min_size 32|broken\.png",
    ):
        dataset = ImageDataset(tmp_path, crop_size=32, captions="sidecar")
    assert len(dataset) == 2
    sample = dataset[(0, 123)]
    assert sample["hq"].shape == (3, 32, 32) and sample["hq"].dtype == torch.float32
    assert sample["hq"].min() >= 0.0 and sample["hq"].max() <= 1.0
    assert sample["caption"] == "a red barn"
    assert dataset[(1, 0)]["caption"] == ""
    # The crop seed fixes crop and flip; another seed gives another crop.
    assert torch.equal(dataset[(0, 5)]["hq"], dataset[(0, 5)]["hq"])
    assert not torch.equal(dataset[(0, 5)]["hq"], dataset[(0, 6)]["hq"])


def test_manifests(tmp_path):
    photo(0).save(tmp_path / "a.png")
    photo(1).save(tmp_path / "b.png")
    manifest = tmp_path / "captions.jsonl"
    manifest.write_text(json.dumps({"file": "b.png", "caption": "bee"}) + "\n")
    dataset = ImageDataset(tmp_path, crop_size=32, captions=str(manifest))
    assert [item.caption for item in dataset.items] == ["", "bee"]
    table = tmp_path / "captions.csv"
    table.write_text('file,caption\na.png,"a, with comma"\n')
    dataset = ImageDataset(tmp_path, crop_size=32, captions=str(table))
    assert [item.caption for item in dataset.items] == ["a, with comma", ""]
    bad = tmp_path / "bad.csv"
    bad.write_text("path,text\n")
    with pytest.raises(DataError, match="file,caption"):
        ImageDataset(tmp_path, crop_size=32, captions=str(bad))


def test_tar_shards(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    for shard_index in range(2):
        with tarfile.open(shards / f"{shard_index:05d}.tar", "w") as archive:
            for item in range(2):
                key = f"{shard_index}_{item}"
                buffer = io.BytesIO()
                photo(shard_index * 10 + item).save(buffer, format="PNG")
                for name, data in (
                    (f"{key}.png", buffer.getvalue()),
                    (f"{key}.txt", f"caption {key}".encode()),
                ):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
    dataset = ImageDataset(shards, crop_size=32, captions="sidecar")
    assert len(dataset) == 4
    sample = dataset[(3, 0)]
    assert sample["caption"] == "caption 1_1"
    expected = np.asarray(photo(11), dtype=np.float32) / 255.0
    # The crop is some 32x32 window of the original image (maybe flipped).
    hq = sample["hq"].permute(1, 2, 0).numpy()
    windows = [
        expected[top : top + 32, left : left + 32]
        for top in range(64 - 31)
        for left in range(80 - 31)
    ]
    assert any(np.array_equal(hq, w) or np.array_equal(hq[:, ::-1], w) for w in windows)


def test_pixel_limit_is_explicit_and_leaves_pillow_alone(tmp_path):
    import subprocess
    import sys

    # Importing the module changes nothing in Pillow (it once set Image.MAX_IMAGE_PIXELS).
    code = (
        "from PIL import Image; before = Image.MAX_IMAGE_PIXELS; "
        "import upsampler.data.datasets; print(before == Image.MAX_IMAGE_PIXELS)"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert completed.stdout.strip() == "True", completed.stderr

    photo(0).save(tmp_path / "a.png")  # 80x64 = 5,120 pixels
    photo(1, size=(40, 40)).save(tmp_path / "b.png")  # 1,600 pixels
    before = Image.MAX_IMAGE_PIXELS
    with pytest.warns(
        UserWarning, match=r"a\.png \(80x64 = 5,120 pixels is over the limit of 5,000"
    ):
        dataset = ImageDataset(tmp_path, crop_size=32, max_pixels=5_000)
    assert [item.path.name for item in dataset.items] == ["b.png"]
    assert dataset[(0, 0)]["hq"].shape == (3, 32, 32)
    dataset = ImageDataset(tmp_path, crop_size=32, max_pixels=5_120)
    assert len(dataset) == 2 and dataset[(0, 0)]["hq"].shape == (3, 32, 32)
    assert before == Image.MAX_IMAGE_PIXELS  # reading changed nothing either


def test_hidden_files_and_folders_are_not_training_data(tmp_path):
    photo(0).save(tmp_path / "a.png")
    (tmp_path / ".thumbnails").mkdir()
    photo(1).save(tmp_path / ".thumbnails" / "a.png")
    (tmp_path / "._a.png").write_bytes(b"macOS resource fork, not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to skip, so no warning either
        dataset = ImageDataset(tmp_path, crop_size=32)
    assert [item.path.name for item in dataset.items] == ["a.png"]


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="not found"):
        ImageDataset(tmp_path / "nope", crop_size=32)
    with pytest.raises(DataError, match="no images found"):
        ImageDataset(tmp_path, crop_size=32)
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(DataError, match="all 1 were skipped"):
        ImageDataset(tmp_path, crop_size=32)


def test_step_sampler_is_a_function_of_the_step():
    full = list(StepBatchSampler(10, batch_size=3, seed=0, steps=8))
    resumed = list(StepBatchSampler(10, batch_size=3, seed=0, start_step=5, steps=8))
    assert resumed == full[5:]
    # Every image once per epoch (30 draws over 10 images = 3 epochs, first 9 steps' worth).
    indices = [
        index for batch in StepBatchSampler(10, batch_size=5, seed=0, steps=2) for index, _ in batch
    ]
    assert sorted(indices) == list(range(10))
    # Ranks split one global batch: disjoint, and together equal to the single-process batch.
    single = StepBatchSampler(10, batch_size=4, seed=0, steps=1).batch(0)
    rank0 = StepBatchSampler(10, batch_size=2, seed=0, steps=1, rank=0, world_size=2).batch(0)
    rank1 = StepBatchSampler(10, batch_size=2, seed=0, steps=1, rank=1, world_size=2).batch(0)
    assert sorted(rank0 + rank1) == sorted(single)
    assert not set(rank0) & set(rank1)
