"""Nothing lost, nothing silently wrong: what train, export and convert do with folders that are
in use, full disks, Ctrl-C, malformed recipes and weights, and file modes. Tiny runs on the CPU."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from test_training import TINY_MODEL, textured, tiny_recipe, write_recipe
from typer.testing import CliRunner

import upsampler.training.builders as builders_module
import upsampler.training.trainer as trainer_module
from upsampler import GigaGANDiscriminator, GigaGANUpsampler
from upsampler.training.checkpoints import (
    RunFolderError,
    export_release,
    list_checkpoints,
    load_trainer_state,
)
from upsampler.training.recipe import RecipeError, load_recipe, recipe_from_dict
from upsampler.training.trainer import OutputWriteError, Trainer
from upsampler_cli.app import app

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for index in range(4):
        textured(index).save(folder / f"{index}.png")
    return folder


@pytest.fixture(scope="module")
def trained(photos, tmp_path_factory) -> Path:
    """A finished two-step run (checkpoints at steps 1 and 2); copy it before changing it."""
    run = tmp_path_factory.mktemp("trained") / "run"
    recipe = tiny_recipe(photos, run, train={"steps": 2, "warmup_steps": 1})
    Trainer(recipe_from_dict(recipe)).train()
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its contents, to show that nothing changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_clean_exit(result, code: int) -> None:
    """The command ended with ``code`` through its own error handling, not a traceback."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------- export


def test_export_keeps_the_files_of_a_folder_that_is_not_empty(run, tmp_path):
    output = tmp_path / "release"
    output.mkdir()
    (output / "notes.txt").write_text("my notes")
    (output / "config.json").write_text("{}")
    refused = invoke("export", run, "-o", output)
    assert_clean_exit(refused, 2)
    assert "already holds config.json, notes.txt" in refused.output
    assert "--overwrite" in refused.output
    assert tree(output) == {"notes.txt": b"my notes", "config.json": b"{}"}

    replaced = invoke("export", run, "-o", output, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    # The model files were replaced, the other file kept, and nothing else was left behind.
    assert sorted(p.name for p in output.iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "notes.txt",
    ]
    assert (output / "notes.txt").read_text() == "my notes"
    assert GigaGANUpsampler.from_pretrained(output).config.encoder_channels == [8, 16]


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize(
    "where, message",
    [
        ("run", "is the run folder itself"),
        ("run/release", "is inside the run folder"),
        ("run/checkpoints/step-00000002", "is the checkpoint itself"),
        ("the folder above", "contains the run folder"),
    ],
)
def test_export_never_writes_into_or_around_its_source(run, where, message, overwrite):
    before = tree(run)
    output = run.parent if where == "the folder above" else run.parent / where
    args = ["export", run, "-o", output] + (["--overwrite"] if overwrite else [])
    result = invoke(*args)
    assert_clean_exit(result, 2)
    assert message in result.output
    assert tree(run) == before
    assert [p.name for p in list_checkpoints(run)] == ["step-00000001", "step-00000002"]


def test_export_of_one_checkpoint_refuses_its_run_folder(run):
    checkpoint = list_checkpoints(run)[0]
    with pytest.raises(ValueError, match="is inside the run folder"):
        export_release(checkpoint, run / "release", overwrite=True)
    assert not (run / "release").exists()


def test_convert_follows_the_same_rule(tmp_path):
    pytest.importorskip("aura_sr")
    from test_aurasr import write_aurasr_folder

    source = write_aurasr_folder(tmp_path / "AuraSR")
    output = tmp_path / "converted"
    output.mkdir()
    (output / "notes.txt").write_text("my notes")
    refused = invoke("convert", "aurasr", source, "-o", output)
    assert_clean_exit(refused, 2)
    assert "already holds notes.txt" in refused.output
    assert tree(output) == {"notes.txt": b"my notes"}
    replaced = invoke("convert", "aurasr", source, "-o", output, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert sorted(p.name for p in output.iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "notes.txt",
    ]
    before = tree(source)
    inside = invoke("convert", "aurasr", source, "-o", source / "ours", "--overwrite")
    assert_clean_exit(inside, 2)
    assert "is inside the AuraSR folder" in inside.output
    assert tree(source) == before


# ---------------------------------------------------------------------- run folders


def test_train_refuses_a_used_run_folder_before_building_a_model(
    run, photos, tmp_path, monkeypatch
):
    before = tree(run)
    built = []
    monkeypatch.setattr(builders_module, "build_generator", lambda recipe: built.append(recipe))
    path = write_recipe(tmp_path / "r.toml", tiny_recipe(photos, run, train={"seed": 1}))
    result = invoke("train", path)
    assert_clean_exit(result, 2)
    text = " ".join(result.output.split())  # undo the terminal's line wrapping
    assert f"the run folder {run} is not empty" in text
    assert "step-00000002" in text and "--resume" in text
    assert built == []
    # The old run is untouched, so `export` can never take its weights for the new run's.
    assert tree(run) == before


def test_every_file_of_a_run_names_its_run_and_resume_keeps_it(run, photos):
    run_id = json.loads((run / "run.json").read_text())["run_id"]
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", run_id)
    for checkpoint in list_checkpoints(run):
        assert load_trainer_state(checkpoint)["run_id"] == run_id
    resumed = Trainer(recipe_from_dict(tiny_recipe(photos, run, train={"steps": 3})), resume=True)
    assert resumed.step == 2 and resumed.run_id == run_id
    resumed.train()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert {r["run_id"] for r in records} == {run_id}
    assert load_trainer_state(list_checkpoints(run)[-1])["run_id"] == run_id
    assert json.loads((run / "run.json").read_text())["run_id"] == run_id


def test_resume_refuses_a_folder_that_mixes_two_runs(run, photos):
    (run / "run.json").write_text(json.dumps({"run_id": "another-run"}))
    with pytest.raises(RunFolderError, match="mixes two runs"):
        Trainer(recipe_from_dict(tiny_recipe(photos, run)), resume=True)


def test_resume_needs_a_run(photos, tmp_path):
    with pytest.raises(FileNotFoundError, match="--resume: no run in"):
        Trainer(recipe_from_dict(tiny_recipe(photos, tmp_path / "nothing")), resume=True)


def test_an_empty_folder_is_a_fine_run_folder(photos, tmp_path):
    (tmp_path / "empty").mkdir()
    Trainer(recipe_from_dict(tiny_recipe(photos, tmp_path / "empty")))  # no error


# ---------------------------------------------------------------------- full disk


def failing_second_save(error: Exception):
    """A discriminator save_pretrained that fails, half-way through a file, on its second call."""
    calls = []
    real = GigaGANDiscriminator.save_pretrained

    def save_pretrained(self, folder, *args, **kwargs):
        calls.append(folder)
        if len(calls) == 2:
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / "diffusion_pytorch_model.safetensors").write_bytes(b"half")
            raise error
        return real(self, folder, *args, **kwargs)

    return save_pretrained


@pytest.mark.parametrize(
    "error, reason",
    [
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "No space left on device"),
        # What safetensors really raises on a full disk (measured on a full tmpfs).
        (
            SafetensorError(
                "Error while serializing: I/O error: No space left on device (os error 28)"
            ),
            "No space left on device",
        ),
    ],
)
def test_a_full_disk_keeps_the_previous_checkpoint(photos, tmp_path, monkeypatch, error, reason):
    monkeypatch.setattr(GigaGANDiscriminator, "save_pretrained", failing_second_save(error))
    run = tmp_path / "run"
    recipe = tiny_recipe(
        photos,
        run,
        # keep_checkpoints=1: the old checkpoint must outlive the failed new one.
        train={"steps": 6, "warmup_steps": 0, "checkpoint_every": 3, "keep_checkpoints": 1},
    )
    result = invoke("train", write_recipe(tmp_path / "r.toml", recipe))
    assert_clean_exit(result, 1)
    text = " ".join(result.output.split())
    assert len(re.findall(r"^error: ", result.output, re.MULTILINE)) == 1
    assert f"could not write checkpoint step-00000006 to {run / 'checkpoints'}: " in text
    assert reason in text
    assert "the previous checkpoint step-00000003 is intact; steps 4-6 are lost" in text
    assert "free space on that disk and run again with --resume" in text
    # No temporary folder is left, the old checkpoint was not pruned, and it resumes.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000003"]
    monkeypatch.undo()
    resumed = Trainer(recipe_from_dict(recipe), resume=True)
    assert resumed.step == 3


def can_mount_a_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = "mount -t tmpfs -o size=64k tmpfs /mnt"
    return subprocess.run(["unshare", "-m", "sh", "-c", probe], capture_output=True).returncode == 0


@pytest.mark.skipif(not can_mount_a_tmpfs(), reason="needs unshare and mount (root)")
def test_a_really_full_disk(photos, tmp_path):
    """The same on a small tmpfs that fills up, in a private mount namespace: nothing is patched,
    so the errors are the ones torch and safetensors really raise."""
    disk = tmp_path / "disk"
    disk.mkdir()
    recipe = tiny_recipe(
        photos,
        disk / "run",
        train={
            "steps": 40,
            "warmup_steps": 0,
            "checkpoint_every": 10,
            "keep_checkpoints": 10,
            "sample_every": 1000,  # only checkpoints fill the disk
        },
    )
    path = write_recipe(tmp_path / "r.toml", recipe)
    # One tiny checkpoint takes about 0.9 MB: the second one does not fit.
    script = (
        f"mount -t tmpfs -o size=1200k tmpfs {disk} && OMP_NUM_THREADS=1 "
        f"{sys.executable} -m upsampler_cli.app train {path}; code=$?; "
        f"ls -a {disk}/run/checkpoints; exit $code"
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert (
        f"error: could not write checkpoint step-00000020 to {disk / 'run' / 'checkpoints'}: "
        "No space left on device; the previous checkpoint step-00000010 is intact" in done.stderr
    )
    assert done.stdout.split() == [".", "..", "step-00000010"]  # no temporary folder left


def test_a_sample_that_cannot_be_written_stops_with_one_message(photos, tmp_path, monkeypatch):
    class FullDisk:
        def save(self, path, format):
            Path(path).write_bytes(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(trainer_module.Image, "fromarray", lambda pixels: FullDisk())
    run = tmp_path / "run"
    recipe = tiny_recipe(photos, run, train={"steps": 4, "checkpoint_every": 2, "sample_every": 3})
    result = invoke("train", write_recipe(tmp_path / "r.toml", recipe))
    assert_clean_exit(result, 1)
    text = " ".join(result.output.split())
    assert f"could not write the sample {run / 'samples' / 'step-00000003.png'}" in text
    assert "step-00000002 is intact; steps 3-3 are lost" in text
    assert list((run / "samples").iterdir()) == []  # the half-written file is gone


def test_metrics_that_cannot_be_written_stop_with_one_message(photos, tmp_path):
    run = tmp_path / "run"
    trainer = Trainer(recipe_from_dict(tiny_recipe(photos, run)))

    def break_metrics(step: int, logs: dict) -> None:
        if step == 1:  # metrics.jsonl becomes a folder: appending to it fails
            (run / "metrics.jsonl").unlink()
            (run / "metrics.jsonl").mkdir()

    trainer.progress = break_metrics
    with pytest.raises(OutputWriteError) as caught:
        trainer.train()
    message = str(caught.value)
    assert message.startswith(f"could not write {run / 'metrics.jsonl'}: Is a directory;")
    assert "no checkpoint was written yet" in message and "fix that" in message


# ---------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_prints_what_was_kept_and_lost_and_exits_1(photos, tmp_path):
    run = tmp_path / "run"
    recipe = tiny_recipe(
        photos,
        tmp_path / "unused",
        train={"steps": 10_000, "warmup_steps": 0, "checkpoint_every": 2, "sample_every": 10_000},
    )
    path = write_recipe(tmp_path / "r.toml", recipe)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "upsampler_cli.app", "train", str(path), "-o", str(run)]
    child = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # A child started from a background job inherits an ignored SIGINT, and Python then
        # never raises KeyboardInterrupt: give it the default a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 180
        while not list_checkpoints(run) and child.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within 180 s"
            time.sleep(0.2)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    done = int(re.search(r"interrupted: (\d+) of 10000 steps done", err).group(1))
    checkpoint = list_checkpoints(run)[-1]
    kept = int(checkpoint.name.removeprefix("step-"))
    assert f"last checkpoint: {checkpoint} (step {kept})" in err
    assert done >= kept >= 2
    if done > kept:
        assert f"lost: the {done - kept} step" in err
    assert f"resume with: upsampler train {path} --resume -o {run}" in err
    # The checkpoint it names resumes.
    assert Trainer(recipe_from_dict(tiny_recipe(photos, run)), resume=True).step == kept


# ---------------------------------------------------------------------- recipes and weights


def test_a_string_where_a_list_belongs_is_named(photos, tmp_path):
    recipe = tiny_recipe(photos, tmp_path / "run")
    path = write_recipe(tmp_path / "r.toml", recipe)
    result = invoke("train", path, "--set", 'model.encoder_channels="64,128"')
    assert_clean_exit(result, 2)
    assert (
        "model.encoder_channels must be a list of integers like [64, 128, 256], "
        "got the string '64,128'" in " ".join(result.output.split())
    )
    recipe["model"]["attention_levels"] = "1"
    with pytest.raises(
        RecipeError,
        match=r"model.attention_levels must be a list of integers like \[2\], got the string '1'",
    ):
        load_recipe(write_recipe(tmp_path / "r2.toml", recipe))
    recipe["model"]["attention_levels"] = [1]
    recipe["discriminator"]["channels"] = 16
    with pytest.raises(RecipeError, match="discriminator.channels must be a list of integers"):
        load_recipe(write_recipe(tmp_path / "r3.toml", recipe))


def weights_folder(tmp_path: Path, name: str, change) -> Path:
    """A save_pretrained folder of TINY_MODEL whose safetensors ``change`` rewrites."""
    folder = tmp_path / name
    GigaGANUpsampler(**TINY_MODEL).save_pretrained(folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    change(weights)
    return folder


def drop_a_key(weights: Path) -> None:
    tensors = load_file(weights)
    del tensors["decoder_attention.1.ff.0.bias"]
    save_file(tensors, weights)


def other_shapes(weights: Path) -> None:
    other = GigaGANUpsampler(**{**TINY_MODEL, "encoder_channels": [8, 8]})
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, weights)


@pytest.mark.parametrize(
    "change, message",
    [
        # diffusers loads this with a random weight and a warning: silently wrong.
        (drop_a_key, r"missing keys decoder_attention.1.ff.0.bias;? ?"),
        # diffusers advises ignore_mismatched_sizes, an argument no recipe has.
        (other_shapes, r"wrong shapes [^ ]+ \[\d+[\d, ]*\] \(this recipe: \[\d+[\d, ]*\]\)"),
        (lambda weights: weights.unlink(), "has a config.json but no diffusion_pytorch_model"),
        (lambda weights: weights.write_bytes(b"not safetensors"), "not a readable safetensors"),
    ],
    ids=["missing key", "other shapes", "no weights", "corrupt"],
)
def test_init_from_weights_that_do_not_load_are_named(photos, tmp_path, change, message):
    folder = weights_folder(tmp_path, "weights", change)
    recipe = tiny_recipe(photos, tmp_path / "run", train={"init_from": str(folder)})
    with pytest.raises(RecipeError, match=f"train.init_from: .*{message}") as caught:
        Trainer(recipe_from_dict(recipe))
    assert "meta tensor" not in str(caught.value)
    assert "ignore_mismatched_sizes" not in str(caught.value)


def test_init_from_names_the_config_settings_that_differ(photos, tmp_path):
    GigaGANUpsampler(**{**TINY_MODEL, "encoder_channels": [8, 8]}).save_pretrained(
        tmp_path / "other"
    )
    recipe = tiny_recipe(photos, tmp_path / "run", train={"init_from": str(tmp_path / "other")})
    result = invoke("train", write_recipe(tmp_path / "r.toml", recipe))
    assert_clean_exit(result, 2)
    assert "encoder_channels=[8, 8] where the recipe has [8, 16]" in " ".join(result.output.split())


# ---------------------------------------------------------------------- file modes


@pytest.fixture
def umask():
    def set_umask(mask: int) -> None:
        os.umask(mask)

    previous = os.umask(0o022)
    yield set_umask
    os.umask(previous)


def modes(folder: Path) -> set[tuple[str, int]]:
    """(kind, mode) of everything under ``folder``, the folder included."""
    found = {("dir", folder.stat().st_mode & 0o777)}
    for path in folder.rglob("*"):
        found.add(("dir" if path.is_dir() else "file", path.stat().st_mode & 0o777))
    return found


def test_checkpoints_and_releases_have_ordinary_file_modes(photos, tmp_path, umask):
    run = tmp_path / "run"
    Trainer(
        recipe_from_dict(tiny_recipe(photos, run, train={"steps": 1, "warmup_steps": 1}))
    ).train()
    assert modes(list_checkpoints(run)[-1]) == {("dir", 0o755), ("file", 0o644)}
    assert modes(export_release(run, tmp_path / "release")) == {("dir", 0o755), ("file", 0o644)}
    umask(0o027)  # the user's umask is respected
    assert modes(export_release(run, tmp_path / "private", fp16=True)) == {
        ("dir", 0o750),
        ("file", 0o640),
    }
