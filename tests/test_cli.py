from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import upsampler
from upsampler_cli.app import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"upsampler {upsampler.__version__}"


# Every subcommand: the start of its one-line help, and the options a user reaches for first.
SUBCOMMANDS = {
    "presets": ("List the generator presets", ["--scale", "--text"]),
    "upscale": (
        "Upscale images 4x/8x",
        [
            "--output",
            "--scale",
            "--model",
            "--prompt",
            "--tile",
            "--device",
            "--dtype",
            "--seed",
            "--format",
            "--overwrite",
            "--backend",
            "--max-pixels",
            "--video-codec",
            "--crf",
            "--pix-fmt",
            "--fps",
            "--segment",
        ],
    ),
    "bench": (
        "Time GigaGAN presets",
        ["--presets", "--sizes", "--methods", "--paths", "--device", "--json"],
    ),
    "degrade": (
        "Degrade photos",
        ["--output", "--preset", "--scale", "--seed", "--count", "--sheet", "--progress"],
    ),
    "teacher-cache": (
        "Cache a teacher's outputs",
        ["--output", "--teacher", "--degradation", "--scale", "--crop-size", "--count", "--seed"],
    ),
    "train": ("Train an upsampler from a recipe", ["--resume", "--set", "--output-dir"]),
    "export": ("Write a slim release", ["--output", "--fp16", "--overwrite"]),
    "export-onnx": (
        "Write MODEL, with one style",
        ["--output", "--seed", "--truncation", "--prompt", "--overwrite", "--verify"],
    ),
    "prepare-lpips": ("Prepare real LPIPS weights", ["--source", "--output", "--if-missing"]),
    "eval": (
        "Score models beside bicubic",
        [
            "--model",
            "--baseline",
            "--degradation",
            "--scale",
            "--seed",
            "--json",
            "--max-pixels",
            "--progress",
        ],
    ),
    "serve": (
        "Serve a web page for upscaling",
        ["--host", "--port", "--model", "--text-encoder", "--max-pixels", "--share"],
    ),
    "models": ("List the built-in models", []),
    "info": ("Print what a model is", ["--revision"]),
    "convert": ("Convert other projects' upsampler checkpoints", []),
}


def plain(output: str) -> str:
    """Help text without rich's box drawing, wrapped lines joined: phrases read whole."""
    return " ".join(re.sub("[\u2500-\u257f]", " ", output).split())


def option_names(output: str) -> set[str]:
    """The long options that start a row of the help's option table."""
    return set(re.findall(r"^[\s\u2502*]*(--[a-z][a-z0-9-]*)", output, flags=re.MULTILINE))


def test_help_lists_every_command_with_its_summary():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    text = plain(result.output)
    assert "Usage: upsampler [OPTIONS] COMMAND" in text
    for name, (summary, _) in SUBCOMMANDS.items():
        assert f" {name} {summary}" in text, name
    # The table lists exactly what is registered, and the list above covers all of it.
    listed = set(re.findall(r"^\u2502 ([a-z][a-z-]*) ", result.output, flags=re.MULTILINE))
    assert listed == set(typer.main.get_command(app).commands) == set(SUBCOMMANDS)


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_each_command_help_shows_its_key_options(name):
    summary, options = SUBCOMMANDS[name]
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    text = plain(result.output)
    assert f"Usage: upsampler {name} [OPTIONS]" in text
    assert summary in text
    missing = set(options) - option_names(result.output)
    assert not missing, f"{name} --help lacks {sorted(missing)}"


def test_convert_help_names_its_converters_and_their_options():
    result = runner.invoke(app, ["convert", "--help"])
    assert result.exit_code == 0, result.output
    assert "aurasr Convert AuraSR weights" in plain(result.output)
    result = runner.invoke(app, ["convert", "aurasr", "--help"])
    assert result.exit_code == 0, result.output
    assert {"--output", "--overwrite"} <= option_names(result.output)


def test_presets_lists_parameter_counts():
    result = runner.invoke(app, ["presets", "--scale", "8"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split()[1] for line in result.output.splitlines()[1:]}
    assert list(lines) == ["nano", "small", "base", "giga", "student"]
    assert int(lines["nano"].replace(",", "")) == upsampler.GigaGANUpsampler.preset_parameter_count(
        "nano", scale=8
    )


def test_bad_option_values_are_usage_errors_before_any_work(tmp_path):
    # exit status 2 and the option named, before a model loads or a folder is made
    result = runner.invoke(app, ["presets", "--scale", "3"])
    assert result.exit_code == 2 and "must be one of 2, 4, 8, got 3" in plain(result.output)
    result = runner.invoke(app, ["bench", "--presets", "nano-4x", "--sizes", "16x16"])
    text = plain(result.output)
    assert result.exit_code == 2 and "unknown presets ['nano-4x']" in text
    assert "(nano-4x is the `student` preset)" in text and "choose from nano," in text
    image = tmp_path / "a.png"
    image.write_bytes(b"not read")
    for scale in ("0", "-2", "nan", "inf"):
        result = runner.invoke(
            app, ["upscale", str(image), "-o", str(tmp_path / "out"), "-s", scale]
        )
        assert result.exit_code == 2, (scale, result.output)
        assert "--scale" in plain(result.output) and "must be a positive number" in plain(
            result.output
        )
    assert not (tmp_path / "out").exists()


def test_help_shows_the_extras_to_install():
    # Rich markup would eat "[onnx]" unless escaped.
    result = runner.invoke(app, ["upscale", "--help"], env={"COLUMNS": "200"})
    assert "needs upsampler[onnx]" in plain(result.output)


def test_console_script_is_installed(tmp_path):
    # Run away from the checkout so only installed packages are importable: the cli/ folder is
    # installed as upsampler_cli, never as a top-level "cli" module that would shadow others.
    probe = "import importlib.util as u; print(u.find_spec('upsampler_cli') is not None, u.find_spec('cli'))"
    completed = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert completed.stdout.split() == ["True", "None"]
    script = Path(sys.executable).with_name("upsampler")
    completed = subprocess.run(
        [str(script), "--version"], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == f"upsampler {upsampler.__version__}"
