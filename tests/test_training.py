"""The trainer on tiny models and tiny real image files, on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from safetensors.torch import load_file
from typer.testing import CliRunner

from upsampler import GigaGANUpsampler, Upscaler
from upsampler.training.checkpoints import export_release, list_checkpoints
from upsampler.training.recipe import RecipeError, load_recipe, recipe_from_dict
from upsampler.training.trainer import Trainer, TrainingDivergedError
from upsampler_cli.app import app

TINY_MODEL = dict(
    scale=4,
    encoder_channels=[8, 16],
    upsample_channels=[8, 8],
    blocks_per_level=1,
    num_kernels=2,
    z_dim=8,
    style_dim=16,
    mapping_layers=1,
    attention_levels=[1],
    attention_heads=2,
)


def textured(seed: int, size: int = 64) -> Image.Image:
    """A photo-like image: smooth shapes plus fine texture, so there is detail to learn."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
    noise = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).filter(
        ImageFilter.GaussianBlur(1)
    )
    return Image.blend(image, noise, 0.3)


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(4):
        textured(index).save(folder / f"{index}.png")
    return folder


def tiny_recipe(photos: Path, output: Path, **sections) -> dict:
    recipe = {
        "model": dict(TINY_MODEL),
        "discriminator": {"channels": [8, 16]},
        "data": {"path": str(photos), "crop_size": 32, "batch_size": 2},
        "degradation": {"preset": "bicubic"},
        "loss": {"lpips": 0.0, "r1_interval": 2},
        "optim": {"ema_decay": 0.9},
        "train": {
            "output_dir": str(output),
            "steps": 6,
            "warmup_steps": 2,
            "device": "cpu",
            "log_every": 1,
            "sample_every": 3,
            "checkpoint_every": 3,
        },
    }
    for section, values in sections.items():
        recipe.setdefault(section, {}).update(values)
    return recipe


def state(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "diffusion_pytorch_model.safetensors")


def assert_same_weights(a: Path, b: Path) -> None:
    for name in ("generator", "generator_ema", "discriminator"):
        left, right = state(a / name), state(b / name)
        assert left.keys() == right.keys()
        for key in left:
            torch.testing.assert_close(left[key], right[key], rtol=0, atol=0, msg=f"{name}.{key}")


def test_loss_falls_on_a_fixed_batch(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    textured(0, size=32).save(folder / "only.png")
    recipe = recipe_from_dict(
        tiny_recipe(
            folder,
            tmp_path / "run",
            data={"crop_size": 32, "batch_size": 2, "flip": False},
            optim={"generator_lr": 1e-3},
            loss={"pyramid": 0.0},
            train={"steps": 40, "warmup_steps": 40, "checkpoint_every": 40, "sample_every": 40},
        )
    )
    Trainer(recipe).train()
    records = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    first = records[0]["reconstruction"]  # the untrained model's loss
    last = np.mean([r["reconstruction"] for r in records[-3:]])
    # The untrained model already starts near bicubic (small style gains), so the headroom on
    # one 32 px image is modest: 40 steps take about a fifth off the loss.
    assert last < 0.85 * first, (first, last)


@pytest.mark.parametrize("pool_size", [0, 4])
def test_resume_continues_exactly(photos, tmp_path, pool_size):
    # With a pair pool the pool's contents travel in the checkpoint too.
    degradation = {"preset": "realesrgan", "pool_size": pool_size}
    straight = tmp_path / "straight"
    Trainer(recipe_from_dict(tiny_recipe(photos, straight, degradation=degradation))).train()

    split = tmp_path / "split"
    Trainer(
        recipe_from_dict(tiny_recipe(photos, split, degradation=degradation, train={"steps": 3}))
    ).train()
    resumed = Trainer(
        recipe_from_dict(tiny_recipe(photos, split, degradation=degradation)), resume=True
    )
    assert resumed.step == 3
    resumed.train()

    assert [p.name for p in list_checkpoints(split)] == [p.name for p in list_checkpoints(straight)]
    assert_same_weights(list_checkpoints(straight)[-1], list_checkpoints(split)[-1])
    # The run wrote what it promises: metrics, samples, the resolved recipe.
    records = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert "d_loss" in records[-1] and "d_loss" not in records[1]  # GAN phase from step 2
    assert ["r1" in r for r in records] == [
        False,
        False,
        True,
        False,
        True,
        False,
    ]  # every 2nd D step
    sample = Image.open(straight / "samples" / "step-00000006.png")
    assert sample.size == (3 * 32, 4 * 32)  # LQ | output | HQ, four rows
    assert load_recipe(straight / "recipe.toml").train.steps == 6


def test_two_process_data_parallel_ends_identical(photos, tmp_path):
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_text(json.dumps(tiny_recipe(photos, tmp_path / "ddp", train={"steps": 3})))
    script = Path(__file__).with_name("distributed_train.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29517",
            str(script),
            str(recipe_file),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    rank0, rank1 = (
        load_file(tmp_path / "rank0.safetensors"),
        load_file(tmp_path / "rank1.safetensors"),
    )
    assert rank0.keys() == rank1.keys() and len(rank0) > 10
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0, msg=key)
    # The ranks trained on different crops, so the run is really data parallel, and the
    # weights moved away from their initialisation.
    torch.manual_seed(0)  # the trainer seeds weight initialisation with train.seed
    initial = GigaGANUpsampler(**TINY_MODEL)
    assert json.loads((tmp_path / "world.json").read_text()) == {"world_size": 2}
    start = initial.state_dict()
    moved = [
        k
        for k, v in rank0.items()
        if k.startswith("generator.") and not torch.equal(v, start[k[10:]])
    ]
    assert len(moved) > 10


def test_corrupt_files_are_skipped_and_training_goes_on(photos, tmp_path):
    (photos / "zero.png").write_bytes(b"")
    (photos / "text.jpg").write_text("this is not a jpeg")
    truncated = (photos / "0.png").read_bytes()
    (photos / "truncated.png").write_bytes(truncated[: len(truncated) // 2])
    recipe = recipe_from_dict(
        tiny_recipe(photos, tmp_path / "run", train={"steps": 2, "warmup_steps": 1})
    )
    with pytest.warns(UserWarning, match=r"zero\.png|text\.jpg|truncated\.png"):
        Trainer(recipe).train()
    assert list_checkpoints(tmp_path / "run")


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(photos, tmp_path, monkeypatch):
    recipe = recipe_from_dict(
        tiny_recipe(photos, tmp_path / "run", train={"steps": 6, "checkpoint_every": 2})
    )
    trainer = Trainer(recipe)
    import upsampler.training.trainer as trainer_module

    real = trainer_module.reconstruction_loss

    def exploding(output, target, kind="l1"):
        return real(output, target, kind) * (float("nan") if trainer.step >= 3 else 1.0)

    monkeypatch.setattr(trainer_module, "reconstruction_loss", exploding)
    with pytest.raises(TrainingDivergedError, match=r"non-finite loss at step 3.*step-00000002"):
        trainer.train()
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-00000002"]


def test_export_round_trip(photos, tmp_path):
    run = tmp_path / "run"
    Trainer(
        recipe_from_dict(tiny_recipe(photos, run, train={"steps": 2, "warmup_steps": 1}))
    ).train()
    release = export_release(run, tmp_path / "release")
    assert sorted(p.name for p in release.iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
    ]
    config = json.loads((release / "config.json").read_text())
    assert "_name_or_path" not in config, "a release must not record the training machine's paths"
    assert config["_class_name"] == "GigaGANUpsampler" and config["scale"] == 4
    model = GigaGANUpsampler.from_pretrained(release)
    ema = GigaGANUpsampler.from_pretrained(list_checkpoints(run)[-1] / "generator_ema")
    # The release is what the Upscaler loads: a 4x image comes back.
    upscaled = Upscaler.from_pretrained(release, device="cpu").upscale(textured(9, size=24))
    assert upscaled.size == (96, 96)
    lq = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(
            model(lq, generator=torch.Generator().manual_seed(0)).hq,
            ema(lq, generator=torch.Generator().manual_seed(0)).hq,
        )
    half = export_release(run, tmp_path / "release16", fp16=True)
    weights = state(half)
    assert all(t.dtype == torch.float16 for t in weights.values() if t.is_floating_point())
    assert (half / "diffusion_pytorch_model.safetensors").stat().st_size < 0.6 * (
        release / "diffusion_pytorch_model.safetensors"
    ).stat().st_size


def write_recipe(path: Path, recipe: dict) -> Path:
    import tomli_w

    path.write_text(tomli_w.dumps(recipe))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train": {"stepz": 3}}, "unknown key train.stepz"),
        ({"train": {"steps": "many"}}, "train.steps must be an integer"),
        (
            {"data": {"crop_size": 30}},
            "crop_size \\(30\\) must be a positive multiple of model.scale \\(4\\)",
        ),
        ({"data": {"crop_size": 36}}, "multiple of scale x size_multiple"),
        ({"loss": {"reconstruction_type": "l3"}}, "loss.reconstruction_type must be one of"),
        ({"data": {"path": "/does/not/exist"}}, "data path not found"),
        ({"degradation": {"preset": "nope"}}, "degradation"),
        ({"degradation": {"clean_probability": 1.5}}, "clean_probability must be in \\[0, 1\\]"),
        (
            {"train": {"log_with": "tensorbord"}},
            "train.log_with: unknown tracker 'tensorbord'; choose 'none', one of 'tensorboard', "
            "'wandb', ",
        ),
        ({"train": {"log_with": ["tensorboard", "csv"]}}, "unknown tracker 'csv'"),
        ({"train": {"log_with": 1}}, "train.log_with has the wrong type"),
    ],
)
def test_bad_recipes_fail_before_training(photos, tmp_path, change, message):
    recipe = tiny_recipe(photos, tmp_path / "run")
    for section, values in change.items():
        recipe[section].update(values)
    path = write_recipe(tmp_path / "bad.toml", recipe)
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 2, result.output
    assert __import__("re").search(message, result.output), result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_tensorboard_gets_the_metrics_and_metrics_jsonl_stays(photos, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "tb-run"
    recipe = tiny_recipe(
        photos, run, train={"steps": 2, "warmup_steps": 1, "log_with": "tensorboard"}
    )
    Trainer(recipe_from_dict(recipe)).train()

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["run_id"] == records[0]["run_id"] for r in records)
    events = sorted((run / "logs" / "tb-run").glob("events.out.tfevents.*"))
    assert events, sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    scalars = EventAccumulator(str(events[0].parent)).Reload()
    for key in ("reconstruction", "g_loss", "lr"):
        logged = scalars.Scalars(key)
        assert [e.step for e in logged] == [1, 2]
        np.testing.assert_allclose([e.value for e in logged], [r[key] for r in records], atol=1e-5)
    assert [e.step for e in scalars.Scalars("d_loss")] == [2]  # the GAN phase only
    # The recipe is the run's configuration, flattened to scalars (hparams.yml beside it).
    (hparams,) = (run / "logs" / "tb-run").glob("*/hparams.yml")
    text = hparams.read_text()
    assert "train.log_with: tensorboard" in text and "model.encoder_channels: '[8, 16]'" in text


def test_a_tracker_that_is_not_installed_fails_at_start(photos, tmp_path, monkeypatch):
    import accelerate.tracking

    monkeypatch.setattr(accelerate.tracking, "_available_trackers", [])
    run = tmp_path / "run"
    path = write_recipe(
        tmp_path / "r.toml", tiny_recipe(photos, run, train={"log_with": ["tensorboard"]})
    )
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 2, result.output
    assert "train.log_with = 'tensorboard' needs the tensorboard package" in result.output
    assert "pip install tensorboard" in result.output
    assert not run.exists()  # refused before anything was written


def test_trackers_are_off_by_default_and_named_as_accelerate_names_them(photos, tmp_path):
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    from upsampler.training.recipe import TRACKERS
    from upsampler.training.trainer import flat_config

    assert set(TRACKERS) <= set(LOGGER_TYPE_TO_CLASS)
    recipe = recipe_from_dict(tiny_recipe(photos, tmp_path / "run"))
    assert recipe.train.log_with == "none" and recipe.train.trackers == []
    assert recipe_from_dict(
        tiny_recipe(photos, tmp_path / "run"), ['train.log_with=["tensorboard", "tensorboard"]']
    ).train.trackers == ["tensorboard"]
    flat = flat_config({"a": {"b": 1, "c": [8, 16], "d": {}}, "e": "x", "f": True})
    assert flat == {"a.b": 1, "a.c": "[8, 16]", "a.d": "{}", "e": "x", "f": True}


def test_empty_data_folder_fails_clearly(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    path = write_recipe(tmp_path / "r.toml", tiny_recipe(empty, tmp_path / "run"))
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 2 and "no images found" in result.output


def test_set_overrides_and_cli_train_export(photos, tmp_path):
    path = write_recipe(tmp_path / "r.toml", tiny_recipe(photos, tmp_path / "ignored"))
    run = tmp_path / "cli-run"
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(path),
            "--set",
            "train.steps=2",
            "--set",
            "train.warmup_steps=1",
            "-o",
            str(run),
        ],
    )
    assert result.exit_code == 0, result.output
    # The end of the warm-up (step 1) is always written and kept: it is the PSNR release.
    assert [p.name for p in list_checkpoints(run)] == ["step-00000001", "step-00000002"]
    result = CliRunner().invoke(app, ["export", str(run), "-o", str(tmp_path / "model")])
    assert result.exit_code == 0, result.output
    assert GigaGANUpsampler.from_pretrained(tmp_path / "model").config.encoder_channels == [8, 16]
    with pytest.raises(RecipeError, match="expects key=value"):
        load_recipe(path, ["train.steps"])


def test_shipped_recipes_are_valid():
    recipes = sorted(Path(__file__).parents[1].joinpath("recipes").glob("*.toml"))
    assert {p.stem for p in recipes} >= {"tiny", "nano-4x", "base-4x", "text-4x", "giga-8x"}
    for path in recipes:
        recipe = load_recipe(path)
        assert recipe.data.crop_size % recipe.scale == 0
        text = path.read_text()
        assert "Hardware:" in text and "Time:" in text, f"{path.name} must say what it expects"


def test_the_psnr_release_recipe_trains_the_student_for_fidelity():
    """nano-4x-psnr comes from recipes/nano-4x-psnr.toml: the `student` preset (the one
    recipes/distil-4x.toml distils into) from random weights, reconstruction only, on clean
    bicubic downscales, as its model card says."""
    recipes = Path(__file__).parents[1] / "recipes"
    distil = load_recipe(recipes / "distil-4x.toml")
    psnr = load_recipe(recipes / "nano-4x-psnr.toml")
    assert psnr.model == distil.model == {"preset": "student", "scale": 4}
    assert len(distil.teacher.cache) == 2 and distil.teacher.lpips > 0
    assert psnr.train.warmup_steps == psnr.train.steps == 12_000  # reconstruction only
    assert psnr.degradation.preset == "bicubic" and psnr.loss.lpips == 0
    assert not psnr.teacher.enabled and not psnr.train.init_from


def test_the_default_release_recipe_distils_from_the_psnr_release():
    """nano-4x comes from recipes/distil-4x.toml: nano-4x-psnr's weights taught by the cached
    teacher on degraded and clean inputs alike, as its model card says; both releases are
    therefore the same architecture."""
    recipes = Path(__file__).parents[1] / "recipes"
    distil = load_recipe(recipes / "distil-4x.toml")
    assert distil.train.init_from == "nano-4x-psnr"
    assert distil.teacher.samples == [2048, 2048]  # half degraded, half clean
    assert distil.train.warmup_steps == distil.train.steps == 8_000  # no GAN phase
    weights = Path(__file__).parents[1] / "upsampler" / "weights"
    configs = [
        json.loads((weights / name / "config.json").read_text())
        for name in ("nano-4x", "nano-4x-psnr")
    ]
    assert configs[0] == configs[1]


def test_text_conditioned_training_with_an_embedding_cache(photos, tmp_path):
    """A text model trains on sidecar captions (matching-aware loss on), caches embeddings on disk."""
    from safetensors import safe_open
    from transformers import BertConfig, BertModel, BertTokenizer

    encoder_dir = tmp_path / "tiny_bert"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "red", "barn", "sea"]
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(encoder_dir)
    BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}).save_pretrained(encoder_dir)
    for index, image in enumerate(sorted(photos.glob("*.png"))):
        image.with_suffix(".txt").write_text(["a red barn", "a photo of the sea"][index % 2])

    cache = tmp_path / "text_cache.safetensors"
    recipe = tiny_recipe(
        photos,
        tmp_path / "run",
        model={
            "text_conditioning": True,
            "text_embed_dim": 32,
            "text_dim": 16,
            "text_layers": 1,
            "text_heads": 2,
        },
        data={"captions": "sidecar", "caption_dropout": 0.5},
        text={"backend": "transformers", "name": str(encoder_dir), "cache": str(cache)},
        train={"steps": 3, "warmup_steps": 1},
    )
    trainer = Trainer(recipe_from_dict(recipe))
    trainer.train()
    records = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert "d_matching" in records[-1] and np.isfinite(records[-1]["d_matching"])
    with safe_open(str(cache), framework="pt") as handle:
        captions = set(json.loads(handle.metadata()["captions"]))
        assert handle.get_tensor("tokens").shape[-1] == 32
    assert captions <= {"a red barn", "a photo of the sea", ""} and len(captions) >= 2
    # A new run reads the cache instead of starting empty.
    again = Trainer(
        recipe_from_dict(
            tiny_recipe(
                photos, tmp_path / "run2", **{k: recipe[k] for k in ("model", "data", "text")}
            )
        )
    )
    assert set(again._text_cache) == captions


def test_bf16_mixed_precision_trains(photos, tmp_path):
    recipe = recipe_from_dict(
        tiny_recipe(
            photos,
            tmp_path / "run",
            train={"steps": 2, "warmup_steps": 1, "mixed_precision": "bf16"},
        )
    )
    Trainer(recipe).train()
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(last["g_loss"]) and np.isfinite(last["d_loss"])
    weights = state(list_checkpoints(tmp_path / "run")[-1] / "generator")
    assert all(
        t.dtype == torch.float32 for t in weights.values() if t.is_floating_point()
    )  # fp32 masters


def test_gradient_accumulation_splits_each_step_into_micro_batches(photos, tmp_path, monkeypatch):
    recipe = recipe_from_dict(
        tiny_recipe(
            photos,
            tmp_path / "run",
            data={"batch_size": 1},
            train={"steps": 2, "warmup_steps": 1, "gradient_accumulation": 2},
        )
    )
    trainer = Trainer(recipe)
    sizes = []
    step = trainer._generator_step

    def recording(lq, *args):
        sizes.append(lq.shape[0])
        return step(lq, *args)

    monkeypatch.setattr(trainer, "_generator_step", recording)
    trainer.train()
    assert sizes == [1, 1, 1, 1]  # two steps, two micro-batches of one image each
    assert list_checkpoints(tmp_path / "run")


@pytest.mark.parametrize("clean_probability", [0.0, 1.0])
def test_clean_probability_mixes_in_plain_bicubic_inputs(photos, tmp_path, clean_probability):
    recipe = recipe_from_dict(
        tiny_recipe(
            photos,
            tmp_path / "run",
            degradation={"preset": "realesrgan", "clean_probability": clean_probability},
        )
    )
    trainer = Trainer(recipe)
    hq = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    lq, target = trainer._degrade(hq)
    bicubic = trainer.clean_degrade(hq, torch.Generator().manual_seed(0))
    torch.testing.assert_close(target, hq)
    # Per image: identical to the bicubic downscale when clean, far from it when degraded.
    differences = (lq - bicubic).abs().flatten(1).amax(dim=1)
    if clean_probability == 1.0:
        assert differences.max() == 0
    else:
        assert (differences > 0.05).all(), differences


def test_pure_reconstruction_warmup_and_its_checkpoint_is_kept(photos, tmp_path, monkeypatch):
    import upsampler.losses.lpips as lpips_module

    recipe = recipe_from_dict(
        tiny_recipe(
            photos,
            tmp_path / "run",
            loss={"perceptual_in_warmup": False, "lpips": 1.0, "r1_interval": 2},
            train={"keep_checkpoints": 1, "warmup_steps": 2, "checkpoint_every": 3},
        )
    )
    calls = []

    def fake_lpips(fake, real):  # counts when the perceptual loss runs (no weights needed)
        calls.append(trainer.step)
        return (fake - real).abs().mean(dim=(1, 2, 3))

    monkeypatch.setattr(lpips_module, "load_lpips", lambda net, device: fake_lpips)
    trainer = Trainer(recipe)
    trainer.train()
    assert calls == [2, 3, 4, 5]  # the GAN phase only: steps 0 and 1 are pure L1
    records = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert ["lpips" in r for r in records] == [False, False, True, True, True, True]
    # keep_checkpoints=1 keeps the newest, and the end of the warm-up (the PSNR release) too.
    assert [c.name for c in list_checkpoints(tmp_path / "run")] == [
        "step-00000002",
        "step-00000006",
    ]


def test_init_from_starts_from_trained_weights(photos, tmp_path):
    # A GAN fine-tune of a PSNR model: the generator and its EMA start from the given weights.
    torch.manual_seed(7)
    trained = GigaGANUpsampler(**TINY_MODEL)
    trained.save_pretrained(tmp_path / "psnr")
    recipe = recipe_from_dict(
        tiny_recipe(photos, tmp_path / "run", train={"init_from": str(tmp_path / "psnr")})
    )
    trainer = Trainer(recipe)
    for model in (trainer.generator, trainer.generator_ema):
        for key, value in trained.state_dict().items():
            torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0, msg=key)
    # A checkpoint of a run works too: its EMA generator is the starting point.
    trainer.train()
    checkpoint = list_checkpoints(tmp_path / "run")[-1]
    again = Trainer(
        recipe_from_dict(
            tiny_recipe(photos, tmp_path / "run2", train={"init_from": str(checkpoint)})
        )
    )
    ema = state(checkpoint / "generator_ema")
    for key, value in again.generator.state_dict().items():
        torch.testing.assert_close(value, ema[key], rtol=0, atol=0, msg=key)


@pytest.mark.parametrize(
    "init_from, message",
    [("missing-folder", "neither a built-in name"), ("other-model", "do not fit")],
)
def test_init_from_rejects_bad_weights(photos, tmp_path, init_from, message):
    GigaGANUpsampler(**{**TINY_MODEL, "encoder_channels": [8, 8]}).save_pretrained(
        tmp_path / "other-model"
    )
    recipe = recipe_from_dict(
        tiny_recipe(photos, tmp_path / "run", train={"init_from": str(tmp_path / init_from)})
    )
    with pytest.raises(RecipeError, match=message):
        Trainer(recipe)
