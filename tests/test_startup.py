"""The command line answers at once: importing ``upsampler`` and the CLI, and every ``--help``,
load none of the heavy packages (torch's import alone takes seconds, with diffusers more).

Each check runs in a fresh interpreter, since this one has imported torch long ago. The checks
are structural (which modules got imported), not timed; ``benchmarks/startup.py`` times them.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import upsampler

# What `upsampler --help` must not wait for: torch and what imports it, and NumPy and Pillow,
# which the help does not need either.
HEAVY = ("torch", "diffusers", "transformers", "open_clip", "numpy", "PIL")

PACKAGE_DIR = Path(upsampler.__file__).parent


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_import_loads_torch_only_when_a_model_is_used():
    result = _run(
        f"""
        import json, sys
        import upsampler, upsampler_cli.app

        heavy = {HEAVY!r}
        def loaded():
            return sorted({{name.split(".")[0] for name in sys.modules}} & set(heavy))

        after_import = loaded()
        # Sub-packages are attributes, as when __init__ imported them; constants stay light.
        max_pixels = upsampler.io.formats.DEFAULT_MAX_PIXELS
        after_constant = loaded()
        missing = hasattr(upsampler, "no_such_name")
        upscaler = upsampler.Upscaler
        print(json.dumps(dict(
            after_import=after_import,
            after_constant=after_constant,
            max_pixels=max_pixels,
            missing=missing,
            upscaler=f"{{upscaler.__module__}}.{{upscaler.__name__}}",
            torch_after_use="torch" in sys.modules,
        )))
        """
    )
    assert result["after_import"] == []
    assert result["after_constant"] == []
    assert result["max_pixels"] == 40_000_000
    assert result["missing"] is False
    assert result["upscaler"] == "upsampler.inference.upscaler.Upscaler"
    assert result["torch_after_use"] is True


def test_every_help_answers_without_heavy_imports():
    result = _run(
        f"""
        import json, sys
        import typer
        from typer.testing import CliRunner
        from upsampler_cli.app import app

        def commands(group, path=()):
            yield path
            for name, command in getattr(group, "commands", {{}}).items():
                yield from commands(command, (*path, name))

        runner = CliRunner()
        helps = {{}}
        for path in commands(typer.main.get_command(app)):
            outcome = runner.invoke(app, [*path, "--help"])
            helps[" ".join(path)] = [outcome.exit_code, "Usage:" in outcome.output]
        heavy = sorted({{name.split(".")[0] for name in sys.modules}} & set({HEAVY!r}))
        print(json.dumps(dict(helps=helps, heavy=heavy)))
        """
    )
    helps = result["helps"]
    # The walk found the subcommands, nested ones too (not just the top-level help).
    assert {"", "upscale", "train", "eval", "convert", "convert aurasr"} <= set(helps)
    assert {command: outcome for command, outcome in helps.items() if outcome != [0, True]} == {}
    assert result["heavy"] == []


# ------------------------------------------------------------------ the lazy package exports


def _lazy_packages() -> list[Path]:
    return sorted(
        path
        for path in PACKAGE_DIR.rglob("__init__.py")
        if "attach(" in path.read_text(encoding="utf-8")
    )


def _module_name(init: Path) -> str:
    relative = init.parent.relative_to(PACKAGE_DIR.parent)
    return ".".join(relative.parts)


def _declared(init: Path) -> tuple[set[tuple[str, str]], set[tuple[str, str]], set[str]]:
    """(module, name) pairs imported under TYPE_CHECKING, the same pairs given to ``attach``,
    and the names the ``__init__`` itself defines."""
    tree = ast.parse(init.read_text(encoding="utf-8"))
    typed: set[tuple[str, str]] = set()
    attached: set[tuple[str, str]] = set()
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            typed |= {
                (imported.module, alias.name)
                for imported in node.body
                if isinstance(imported, ast.ImportFrom)
                for alias in imported.names
            }
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            if ast.unparse(node.value.func) == "attach":
                exports = ast.literal_eval(node.value.args[1])
                attached |= {(module, name) for module, names in exports.items() for name in names}
            else:
                defined |= {ast.unparse(target) for target in node.targets}
        elif isinstance(node, ast.Assign):
            defined |= {ast.unparse(target) for target in node.targets}
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            defined.add(node.name)
    return typed, attached, defined


def test_the_lazy_packages_are_found():
    names = {_module_name(init) for init in _lazy_packages()}
    assert {"upsampler", "upsampler.data", "upsampler.models", "upsampler.training"} <= names


@pytest.mark.parametrize("init", _lazy_packages(), ids=_module_name)
def test_lazy_exports_match_the_type_checking_imports_and_all(init):
    typed, attached, defined = _declared(init)
    assert typed == attached
    package = importlib.import_module(_module_name(init))
    exported = {name for _, name in attached}
    assert set(package.__all__) == exported | (defined & set(package.__all__))
    assert set(package.__all__) <= set(dir(package))
    for module, name in attached:
        # Each name is the very object its module defines (an exception caught by the CLI is
        # the class the library raises).
        assert getattr(package, name) is getattr(importlib.import_module(module), name)
        # A name that is also a module of the package would be shadowed by that module once
        # imported (see upsampler._lazy).
        assert not (init.parent / f"{name}.py").exists(), name
