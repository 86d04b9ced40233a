"""Packaging: code behind an extra names it when its package is missing, and the wheel on its
own (built from this tree, installed with its base dependencies only into a fresh virtual
environment: no Makefile, no extras) runs `upsampler upscale` with the built-in weights.

The wheel test is slow (several minutes: torch alone is a large install) and needs the package
index the Makefile's install uses. CI runs it once, through `make test-packaging` in .ci/run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "images" / "skyline.png"
# What the wheel is built from (pyproject.toml's readme and package-dir); copied so that the
# build writes nothing into the working tree and no stale build/ folder leaks into the wheel.
SOURCES = ("pyproject.toml", "README.md", "upsampler", "cli")
# In extras, not in the base install.
EXTRA_MODULES = ("open_clip", "transformers", "tomli_w", "onnxruntime", "kornia")


def _torch_pins() -> list[str]:
    """The Makefile's torch and torchvision pins, installed the way the Makefile installs them."""
    match = re.search(r"^TORCH_PINS\s*:?=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "Makefile has no TORCH_PINS line"
    return match.group(1).split()


def _run(command: list[str], *, cwd: Path, env: dict[str, str], timeout: float):
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
    )
    return result


def test_text_encoders_name_the_text_extra(monkeypatch):
    from upsampler.losses.clip import ClipLoss
    from upsampler.text import OpenCLIPTextEncoder, TransformersTextEncoder
    from upsampler.text.base import TextEncoderUnavailableError

    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip raises ImportError
    monkeypatch.setitem(sys.modules, "transformers", None)
    extra = re.escape("pip install 'upsampler[text]'")
    with pytest.raises(TextEncoderUnavailableError, match=f"open_clip_torch.*{extra}"):
        OpenCLIPTextEncoder("ViT-B-32", random_weights=True)
    with pytest.raises(TextEncoderUnavailableError, match=f"open_clip_torch.*{extra}"):
        ClipLoss("ViT-B-32", "unused.safetensors", random_weights=True)
    with pytest.raises(TextEncoderUnavailableError, match=f"transformers.*{extra}"):
        TransformersTextEncoder("all-MiniLM-L6-v2", random_weights=True)


def test_launched_processes_name_the_train_extra(monkeypatch):
    from upsampler_cli.workers import Workers

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "accelerate", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'upsampler[train]'")):
        Workers.from_environment("cpu")


def test_training_names_the_train_extra(monkeypatch, tmp_path):
    from upsampler.training.recipe import load_recipe
    from upsampler.training.trainer import Trainer

    recipe = load_recipe(
        ROOT / "recipes" / "nano-4x.toml",
        [f'train.output_dir="{(tmp_path / "run").as_posix()}"', 'train.device="cpu"'],
    )
    monkeypatch.setitem(sys.modules, "accelerate", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'upsampler[train]'")):
        Trainer(recipe)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_wheel_installs_and_upscales_in_a_fresh_venv():
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.pop("VIRTUAL_ENV", None)
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    # About 6 GB with the CUDA build of torch: removed even when the test fails.
    with tempfile.TemporaryDirectory(prefix="upsampler-packaging-") as folder:
        tmp = Path(folder)
        source = tmp / "source"
        source.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for name in SOURCES:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, source / name, ignore=ignore)
            else:
                shutil.copy2(ROOT / name, source / name)

        # The wheel, with this environment's setuptools (no build-time download).
        dist = tmp / "dist"
        pip = [sys.executable, "-m", "pip"]
        _run(
            [*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", dist, source],
            cwd=tmp,
            env=env,
            timeout=300,
        )
        (wheel,) = dist.glob("upsampler-*.whl")

        venv = tmp / "venv"
        _run([sys.executable, "-m", "venv", venv], cwd=tmp, env=env, timeout=300)
        python = venv / "bin" / "python"
        venv_pip = [python, "-m", "pip", "install", "--quiet"]
        _run([*venv_pip, *_torch_pins()], cwd=tmp, env=env, timeout=1200)
        _run([*venv_pip, wheel], cwd=tmp, env=env, timeout=1200)

        installed = _run(
            [
                python,
                "-c",
                "import importlib.util, sys; "
                "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m)))",
                *EXTRA_MODULES,
            ],
            cwd=tmp,
            env=env,
            timeout=120,
        ).stdout.split()
        assert installed == [], f"the base install pulled in extras' packages: {installed}"

        output = tmp / "out"
        upscaled = _run(
            [venv / "bin" / "upsampler", "upscale", IMAGE, "-o", output, "--device", "cpu"],
            cwd=tmp,
            env=env,
            timeout=600,
        )
        with Image.open(IMAGE) as small, Image.open(output / IMAGE.name) as big:
            assert big.size == (4 * small.width, 4 * small.height)
        # Nothing asks for a package the base install lacks (diffusers does, without accelerate).
        assert "pip install" not in upscaled.stdout + upscaled.stderr

        # Code behind an extra says which one to install.
        missing = subprocess.run(
            [
                python,
                "-c",
                "from upsampler.text import load_text_encoder; "
                "load_text_encoder('open_clip', 'ViT-B-32', random_weights=True)",
            ],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert missing.returncode != 0
        assert "pip install 'upsampler[text]'" in missing.stderr
