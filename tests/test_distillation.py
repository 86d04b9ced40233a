"""Distillation: a frozen teacher's outputs as extra targets, online or from a teacher cache.

The teachers are tiny networks saved by the tests (a spandrel Compact checkpoint, a GigaGAN
folder with style noise), so every run takes seconds on one thread.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import assert_same_weights, textured, tiny_recipe

from conftest import tiny_generator
from upsampler.training import RecipeError, Trainer, list_checkpoints, recipe_from_dict
from upsampler.training.recipe import load_recipe

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for index in range(4):
        textured(index).save(folder / f"{index}.png")
    return folder


@pytest.fixture(scope="module")
def compact_teacher(tmp_path_factory) -> Path:
    """A 4x Real-ESRGAN-compact checkpoint: no styles, a different architecture from ours."""
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    network = Compact(num_feat=8, num_conv=2, upscale=4)
    with torch.no_grad():  # small weights: close to its nearest-neighbour input residual, a
        for parameter in network.parameters():  # blocky target unlike the student's bicubic
            parameter.mul_(0.1)
    path = tmp_path_factory.mktemp("teacher") / "4x-Compact.pth"
    torch.save(network.state_dict(), path)
    return path


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def distil(photos: Path, run: Path, teacher: str, **sections) -> dict:
    recipe = tiny_recipe(photos, run, teacher={"model": teacher, "lpips": 0.0}, **sections)
    return recipe


def test_the_teacher_sees_the_students_input_and_its_loss_is_logged(
    photos, tmp_path, compact_teacher, monkeypatch
):
    trainer = Trainer(recipe_from_dict(distil(photos, tmp_path / "run", str(compact_teacher))))
    seen = []
    original = trainer._teach

    def spy(lq):
        seen.append(lq.clone())
        return original(lq)

    student_inputs = []
    step = trainer._generator_step

    def spy_step(lq, hq, teacher, *args):
        student_inputs.append(lq.clone())
        assert teacher.shape == hq.shape
        return step(lq, hq, teacher, *args)

    monkeypatch.setattr(trainer, "_teach", spy)
    monkeypatch.setattr(trainer, "_generator_step", spy_step)
    trainer.train()
    assert len(seen) == 6 and len(student_inputs) == 6
    for teacher_input, student_input in zip(seen, student_inputs, strict=True):
        assert torch.equal(teacher_input, student_input)
    logged = records(tmp_path / "run")
    assert all("teacher_reconstruction" in r for r in logged)


def test_the_discriminator_can_take_the_teachers_outputs_as_real(
    photos, tmp_path, compact_teacher, monkeypatch
):
    recipe = tiny_recipe(
        photos,
        tmp_path / "run",
        teacher={"model": str(compact_teacher), "lpips": 0.0, "real": 0.5},
        train={"steps": 4, "warmup_steps": 2},
    )
    trainer = Trainer(recipe_from_dict(recipe))
    taught, seen = [], []
    teach, discriminate = trainer._teach, trainer.discriminator.forward

    def spy_teach(lq):
        taught.append(teach(lq))
        return taught[-1]

    def spy_discriminator(images, *args):
        seen.append(images[0].detach().clone())
        return discriminate(images, *args)

    monkeypatch.setattr(trainer, "_teach", spy_teach)
    monkeypatch.setattr(trainer.discriminator, "forward", spy_discriminator)
    trainer.train()
    # Both GAN steps showed the discriminator that step's teacher outputs at full resolution.
    for output in taught[2:]:
        assert any(torch.equal(output, images) for images in seen)
    logged = records(tmp_path / "run")
    assert [("d_teacher_real" in r) for r in logged] == [False, False, True, True]
    assert all(0 < r["d_teacher_real"] < 10 for r in logged[2:])

    # Weight 0 (the default): the photos alone are real.
    plain = tiny_recipe(
        photos,
        tmp_path / "plain",
        teacher={"model": str(compact_teacher), "lpips": 0.0},
        train={"steps": 4, "warmup_steps": 2},
    )
    Trainer(recipe_from_dict(plain)).train()
    assert not any("d_teacher_real" in r for r in records(tmp_path / "plain"))


def test_a_tiny_distillation_run_moves_toward_the_teacher(tmp_path, compact_teacher):
    folder = tmp_path / "one"
    folder.mkdir()
    textured(0, size=32).save(folder / "only.png")
    recipe = distil(
        folder,
        tmp_path / "run",
        str(compact_teacher),
        data={"crop_size": 32, "batch_size": 2, "flip": False},
        optim={"generator_lr": 2e-3},
        # The teacher alone: no ground-truth loss, so only the teacher can pull the student.
        loss={"reconstruction": 0.0, "pyramid": 0.0},
        train={"steps": 40, "warmup_steps": 40, "checkpoint_every": 40, "sample_every": 40},
    )
    Trainer(recipe_from_dict(recipe)).train()
    logged = records(tmp_path / "run")
    first = logged[0]["teacher_reconstruction"]  # the untrained student's distance
    last = np.mean([r["teacher_reconstruction"] for r in logged[-3:]])
    assert last < 0.85 * first, (first, last)


def test_resume_continues_exactly_with_a_teacher_that_has_style_noise(photos, tmp_path):
    # A GigaGAN teacher draws its own z every step: that stream must resume exactly too.
    tiny_generator().save_pretrained(tmp_path / "teacher")
    teacher = str(tmp_path / "teacher")
    # The student is test_training's two-level model, the teacher conftest's three-level one.
    Trainer(recipe_from_dict(distil(photos, tmp_path / "straight", teacher))).train()
    split = tmp_path / "split"
    Trainer(recipe_from_dict(distil(photos, split, teacher, train={"steps": 3}))).train()
    resumed = Trainer(recipe_from_dict(distil(photos, split, teacher)), resume=True)
    resumed.train()
    assert_same_weights(list_checkpoints(tmp_path / "straight")[-1], list_checkpoints(split)[-1])


@pytest.mark.parametrize(
    ("teacher", "extra", "message"),
    [
        ({"model": "a", "cache": "b"}, {}, "not both"),
        ({"cache": "b"}, {"degradation": {"pool_size": 4}}, "degradation.pool_size cannot apply"),
        ({"cache": "b"}, {"degradation": {"clean_probability": 0.5}}, "clean_probability"),
        ({"model": "a", "lpips": -1.0}, {}, "teacher.lpips must be >= 0"),
        ({"model": "a", "real": -0.5}, {}, "teacher.real must be >= 0"),
        ({"model": "a", "weight": 1.0}, {}, "unknown key teacher.weight"),
    ],
)
def test_bad_teacher_tables_are_named(photos, tmp_path, teacher, extra, message):
    recipe = tiny_recipe(photos, tmp_path / "run", teacher=teacher, **extra)
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict(recipe)


def test_a_teacher_of_another_scale_or_missing_is_refused(photos, tmp_path):
    from spandrel.architectures.Compact import Compact

    torch.save(Compact(num_feat=8, num_conv=2, upscale=2).state_dict(), tmp_path / "2x.pth")
    with pytest.raises(RecipeError, match="is a 2x model, the student .* is 4x"):
        Trainer(recipe_from_dict(distil(photos, tmp_path / "run", str(tmp_path / "2x.pth"))))
    with pytest.raises(RecipeError, match="teacher.model: no model folder or file"):
        Trainer(recipe_from_dict(distil(photos, tmp_path / "run2", str(tmp_path / "none.pth"))))


def test_the_distillation_recipe_loads(tmp_path):
    recipe = load_recipe(
        Path(__file__).parent.parent / "recipes" / "distil-4x.toml",
        [f'train.output_dir="{tmp_path / "run"}"'],
    )
    assert recipe.teacher.enabled and recipe.teacher.lpips > 0


def build_cache(photos: Path, folder: Path, teacher: Path, **options) -> Path:
    """A tiny cache of 48 px crops; ``options`` override the count, shards, degradation, seed."""
    from upsampler.data import build_teacher_cache

    arguments = dict(degradation="realesrgan", count=12, shard_size=8, seed=0) | options
    build_teacher_cache(photos, folder, teacher=str(teacher), scale=4, crop_size=48, **arguments)
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory, photos, compact_teacher) -> Path:
    return build_cache(photos, tmp_path_factory.mktemp("cache") / "x4", compact_teacher)


def cached(cache: Path, run: Path, **sections) -> dict:
    # No data.path: every sample comes from the cache.
    recipe = tiny_recipe(Path(""), run, teacher={"cache": str(cache), "lpips": 0.0}, **sections)
    recipe["data"] = {"crop_size": 32, "batch_size": 2}
    return recipe


def test_training_from_a_teacher_cache_uses_its_inputs_and_resumes_exactly(cache, tmp_path):
    from upsampler.data import TeacherCacheDataset

    trainer = Trainer(recipe_from_dict(cached(cache, tmp_path / "straight")))
    assert isinstance(trainer.dataset, TeacherCacheDataset) and len(trainer.dataset) == 12
    inputs = []
    step = trainer._generator_step

    def spy_step(lq, hq, teacher, *args):
        inputs.append((lq.clone(), teacher.clone(), hq.clone()))
        return step(lq, hq, teacher, *args)

    trainer._generator_step = spy_step
    trainer._degrade = None  # nothing may degrade again: the cache holds the inputs
    trainer.train()
    assert len(inputs) == 6
    for lq, teacher, hq in inputs:  # 32 px crops of the cached 48 px samples, aligned
        assert lq.shape == (2, 3, 8, 8) and teacher.shape == hq.shape == (2, 3, 32, 32)
    assert "teacher_reconstruction" in records(tmp_path / "straight")[-1]

    split = tmp_path / "split"
    Trainer(recipe_from_dict(cached(cache, split, train={"steps": 3}))).train()
    Trainer(recipe_from_dict(cached(cache, split)), resume=True).train()
    assert_same_weights(list_checkpoints(tmp_path / "straight")[-1], list_checkpoints(split)[-1])


def test_training_can_start_on_the_first_samples_of_an_unfinished_cache(cache, tmp_path):
    import shutil

    from upsampler.data import TeacherCacheDataset, TeacherCacheError

    unfinished = tmp_path / "unfinished"
    shutil.copytree(cache, unfinished)
    (unfinished / "shard-00001.safetensors").unlink()  # 12 samples in shards of 8: one left
    with pytest.raises(TeacherCacheError, match="shard-00001.safetensors is missing"):
        TeacherCacheDataset(unfinished)
    first = TeacherCacheDataset(unfinished, samples=6)
    whole = TeacherCacheDataset(cache)
    assert len(first) == 6
    for index in range(6):  # the same samples as in the finished cache
        assert torch.equal(first[(index, 7)]["teacher"], whole[(index, 7)]["teacher"])
    with pytest.raises(TeacherCacheError, match="samples must be between 0"):
        TeacherCacheDataset(cache, samples=13)
    recipe = cached(unfinished, tmp_path / "run", train={"steps": 2})
    recipe["teacher"]["samples"] = 6
    trainer = Trainer(recipe_from_dict(recipe))
    assert len(trainer.dataset) == 6
    trainer.train()
    with pytest.raises(RecipeError, match="teacher.samples .* needs teacher.cache"):
        recipe_from_dict(tiny_recipe(tmp_path, tmp_path / "r", teacher={"samples": 4}))


def test_several_caches_are_read_as_one(cache, photos, compact_teacher, tmp_path):
    from upsampler.data import (
        TeacherCacheDataset,
        TeacherCacheError,
        TeacherCacheMix,
    )

    clean = build_cache(
        photos,
        tmp_path / "clean",
        compact_teacher,
        degradation="bicubic",
        count=4,
        shard_size=4,
        seed=1,
    )
    mix = TeacherCacheMix([TeacherCacheDataset(cache), TeacherCacheDataset(clean)])
    assert len(mix) == 12 + 4
    for index in (0, 11):
        assert torch.equal(mix[(index, 5)]["lq"], TeacherCacheDataset(cache)[(index, 5)]["lq"])
    assert torch.equal(mix[(13, 5)]["lq"], TeacherCacheDataset(clean)[(1, 5)]["lq"])
    with pytest.raises(IndexError):
        mix[(16, 0)]
    other_scale = TeacherCacheDataset(clean)
    other_scale.scale = 2  # as a 2x cache would be
    with pytest.raises(TeacherCacheError, match="different scales cannot mix"):
        TeacherCacheMix([TeacherCacheDataset(cache), other_scale])

    recipe = cached(cache, tmp_path / "run", train={"steps": 2})
    recipe["teacher"]["cache"] = [str(cache), str(clean)]
    trainer = Trainer(recipe_from_dict(recipe))
    assert isinstance(trainer.dataset, TeacherCacheMix) and len(trainer.dataset) == 16
    trainer.train()
    assert (tmp_path / "run" / "checkpoints" / "step-00000002").is_dir()

    # One count per cache: the first 10 degraded samples beside the first 3 clean ones.
    recipe["teacher"]["samples"] = [10, 3]
    recipe["train"]["output_dir"] = str(tmp_path / "counts")
    trainer = Trainer(recipe_from_dict(recipe))
    assert [len(part) for part in trainer.dataset.caches] == [10, 3]
    second = trainer.dataset.caches[1].cached(1)["lq"]
    assert torch.equal(second, TeacherCacheDataset(clean).cached(1)["lq"])
    recipe["teacher"]["samples"] = [10]
    with pytest.raises(RecipeError, match="gives 1 counts for 2 caches"):
        recipe_from_dict(recipe)
