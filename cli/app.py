"""The ``upsampler`` console script: a thin typer layer over the library.

Each subcommand lives in its own module and is registered here; the library never imports
typer and never prints, so everything user-facing (progress, summaries, exit codes) is here.
"""

from __future__ import annotations

import inspect

import typer

import upsampler

app = typer.Typer(
    name="upsampler",
    help="GigaGAN super-resolution: upscale images 4x/8x, degrade photos, train and evaluate models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"upsampler {upsampler.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version_callback,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """GigaGAN super-resolution toolkit."""


def _register() -> None:
    # One import per subcommand module; each defines a function taking typer options.
    from upsampler_cli.presets import presets

    app.command("presets")(presets)

    from upsampler_cli.upscale import upscale

    app.command("upscale")(upscale)

    from upsampler_cli.bench import bench

    app.command("bench")(bench)

    from upsampler_cli.degrade import degrade

    app.command("degrade")(degrade)

    from upsampler_cli.teacher_cache import teacher_cache

    app.command("teacher-cache")(teacher_cache)

    from upsampler_cli.train import export, train

    app.command("train")(train)
    app.command("export")(export)

    from upsampler_cli.export_onnx import export_onnx

    app.command("export-onnx")(export_onnx)

    from upsampler_cli.prepare_lpips import prepare_lpips

    app.command("prepare-lpips")(prepare_lpips)

    from upsampler_cli.eval import eval_command

    app.command("eval")(eval_command)

    from upsampler_cli.models import info, models

    app.command("models")(models)
    app.command("info")(info)

    from upsampler_cli.serve import serve

    app.command("serve")(serve)

    from upsampler_cli.convert import app as convert_app

    app.add_typer(convert_app, name="convert")


def _reflowed(doc: str) -> str:
    """A command's docstring as help: each paragraph on one line, so that the terminal wraps it
    (typer keeps a docstring's single line breaks, which leaves ragged lines in 80 columns)."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def _reflow_help(typer_app: typer.Typer) -> None:
    for command in typer_app.registered_commands:
        if command.help is None and command.callback is not None and command.callback.__doc__:
            command.help = _reflowed(command.callback.__doc__)
    for group in typer_app.registered_groups:
        _reflow_help(group.typer_instance)


_register()
_reflow_help(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
