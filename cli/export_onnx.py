"""``upsampler export-onnx``: a model frozen at one style, written as an ONNX graph.

upsampler export-onnx nano-4x -o nano-4x.onnx                 # the z of seed 0
upsampler export-onnx nano-4x -o nano-4x-mean.onnx --truncation 0
upsampler upscale photos/ -o big/ -m nano-4x.onnx             # run it with ONNX Runtime
"""

from __future__ import annotations

from pathlib import Path

import typer

from upsampler_cli.common import text_encoder_from_option, usage_error


def export_onnx(
    model: str = typer.Argument(
        ...,
        help="A built-in name, a model folder or file, or a Hub id (anything `upscale -m` takes).",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="The .onnx file to write."),
    seed: int = typer.Option(
        0, "--seed", help="Seed of the style noise z frozen into the graph (as `upscale --seed`)."
    ),
    truncation: float = typer.Option(
        1.0,
        "--truncation",
        help="Truncation psi of the frozen style: 1 full variety, 0 the model's mean style "
        "(GigaGAN models only).",
    ),
    prompt: str | None = typer.Option(
        None,
        "--prompt",
        help="Text-conditioned models: the prompt frozen into the graph (default: the empty one).",
    ),
    text_encoder: str | None = typer.Option(
        None, "--text-encoder", help="Text-conditioned models: BACKEND:NAME, as for upscale."
    ),
    text_weights: str | None = typer.Option(
        None, "--text-weights", help="Local weights of the text encoder, as for upscale."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
    verify: bool = typer.Option(
        True,
        "--verify/--no-verify",
        help="Run the graph with ONNX Runtime once and print its largest difference from PyTorch.",
    ),
) -> None:
    """Write MODEL, with one style (and prompt) folded into its kernels, as an ONNX graph.

    The graph maps lq (B, 3, H, W) float32 in [0, 1] (H and W multiples of the model's size
    multiple; any batch) to hq (B, 3, scale*H, scale*W), unclamped. Other runtimes (ONNX
    Runtime, OpenVINO, TensorRT) run it without this package; `upscale -m FILE.onnx` tiles it
    as any other model. The file is written atomically. Exit codes: 2 bad arguments or an
    unusable model, 1 the file could not be written.
    """
    from upsampler.inference.onnx import export_onnx as export
    from upsampler.models.loading import load_model
    from upsampler.text.base import encode_texts

    if output.suffix.lower() != ".onnx":
        usage_error(f"--output must end in .onnx, got {output}")
    if output.is_dir():
        usage_error(f"--output {output} is a folder; name the .onnx file to write")
    if output.exists() and not overwrite:
        usage_error(f"{output} exists; pass --overwrite to replace it")
    try:
        network = load_model(model)
    except Exception as error:  # missing weights, unknown name: nothing to export
        usage_error(str(error))
    text = None
    if network.text_conditioning:
        if text_encoder is None:
            usage_error(f"model {model!r} is text-conditioned: give --text-encoder BACKEND:NAME")
        text = encode_texts(prompt or "", text_encoder_from_option(text_encoder, text_weights))
    elif prompt is not None:
        usage_error(f"model {model!r} is unconditional: --prompt has no effect on it")
    if truncation != 1.0 and not hasattr(network, "w_avg"):
        usage_error(f"model {model!r} has no mean style: --truncation applies to GigaGAN models")
    try:
        result = export(
            network,
            output,
            seed=seed,
            truncation_psi=truncation,
            text=text,
            source=model,
            verify=verify,
        )
    except ImportError as error:
        usage_error(str(error))
    except OSError as error:
        typer.secho(
            f"error: could not write {output}: {error.strerror or error}; nothing was written",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1) from error
    typer.echo(f"wrote {result.path} ({result.bytes / 2**20:.1f} MiB)")
    if result.max_difference is not None:
        typer.echo(
            f"ONNX Runtime vs PyTorch on a random input: max abs difference "
            f"{result.max_difference:.2e}"
        )
