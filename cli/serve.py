"""``upsampler serve``: the web page (docs/ui.md), a local Gradio app over the Upscaler.

upsampler serve                                  # http://127.0.0.1:7860 (or the next free port)
upsampler serve --model path/to/model --port 8000
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import tempfile
from pathlib import Path

import typer

from upsampler_cli.common import text_encoder_from_option, usage_error

# The page's input limit: smaller than the CLI's (40 MP), since anyone who can open the page
# can queue a job on this machine. 4 MP is a 2000x2000 photo, 8000x8000 at 4x.
PAGE_MAX_PIXELS = 4_000_000


def serve(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every network interface)."
    ),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="Port (default: the first free one from 7860)."
    ),
    model: list[str] = typer.Option(
        [],
        "--model",
        "-m",
        help="A model to offer and load at start (repeatable): model folder, checkpoint file "
        "or Hub id, as upscale --model takes. The built-in models are always offered.",
    ),
    text_encoder: str | None = typer.Option(
        None,
        "--text-encoder",
        help="Text encoder for text-conditioned models: BACKEND:NAME (as upscale takes).",
    ),
    text_weights: str | None = typer.Option(
        None, "--text-weights", help="open_clip pretrained tag or local checkpoint file."
    ),
    max_pixels: int = typer.Option(
        PAGE_MAX_PIXELS, "--max-pixels", min=1, help="Refuse uploads with more pixels than this."
    ),
    share: bool = typer.Option(
        False, "--share", help="Also publish a public gradio.live link (off unless asked)."
    ),
) -> None:
    """Serve a web page for upscaling: drop images, compare before/after, download.

    One job runs at a time (others wait in a queue, their position shown). Uploads and outputs
    live in a temporary folder, deleted when the server stops; the page serves no other file.
    Needs Gradio, the ui extra of upsampler (docs/ui.md).
    """
    if importlib.util.find_spec("gradio") is None:
        usage_error("the web page needs Gradio: pip install 'upsampler[ui]'")

    # The page's folder, made before Gradio is imported: Gradio fixes a few of its own folders
    # from GRADIO_TEMP_DIR when imported, and they too belong inside it.
    workdir = Path(tempfile.mkdtemp(prefix="upsampler-serve-"))
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "gradio")
    # A service manager's SIGTERM stops the page as Ctrl-C does: its folder is deleted.
    signal.signal(signal.SIGTERM, _interrupt)
    page = None
    try:
        from upsampler.ui.app import Page
        from upsampler.ui.jobs import ModelShelf

        encoder = text_encoder_from_option(text_encoder, text_weights)
        try:
            shelf = ModelShelf(model, text_encoder=encoder)
        except Exception as error:  # missing weights, bad file, no text encoder: nothing to serve
            usage_error(str(error))
        page = Page(shelf, max_pixels=max_pixels, workdir=workdir)
        try:
            url = page.launch(host=host, port=port, share=share)
        except OSError as error:  # the port is taken, the address is not ours
            usage_error(f"cannot serve on {host}:{port or 'a free port'}: {error}")
        typer.echo(f"upsampler page on {url} (models: {', '.join(shelf.choices)}); Ctrl-C stops it")
        typer.echo(f"uploads and outputs in {page.workdir} (deleted when it stops)")
        if page.share_url:
            typer.echo(f"public link: {page.share_url}")
        page.block()
    except KeyboardInterrupt:
        typer.echo("stopped")
    finally:
        if page is not None:
            page.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
