from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

import upsampler
from upsampler_cli.app import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"upsampler {upsampler.__version__}"


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "presets" in result.output


def test_presets_lists_parameter_counts():
    result = runner.invoke(app, ["presets", "--scale", "8"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split()[1] for line in result.output.splitlines()[1:]}
    assert list(lines) == ["nano", "small", "base", "giga", "student"]
    assert int(lines["nano"].replace(",", "")) == upsampler.GigaGANUpsampler.preset_parameter_count(
        "nano", scale=8
    )


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
