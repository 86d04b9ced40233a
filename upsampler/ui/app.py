"""The Gradio page of ``upsampler serve`` (docs/ui.md): drop or paste images, pick a model and a
scale, see the result in a before/after slider, download it.

    from upsampler.ui.app import Page

    page = Page(ModelShelf(["path/to/model"]), max_pixels=4_000_000)
    url = page.launch(port=7860)      # 127.0.0.1; returns at once, the server runs in a thread
    ...
    page.close()                      # stops the server and deletes the page's files

Sharing one machine: the queue runs one request at a time (others wait, their place in the
queue shown on their page), every upload is checked against ``max_pixels`` before anything is
upscaled, and Gradio serves files only from this page's temporary folder, which is deleted on
:meth:`Page.close` and pruned of files older than an hour while the page runs.

Needs ``pip install 'upsampler[ui]'``. Gradio's usage analytics and version check are off, and
the page needs nothing from the internet (its fonts ship with Gradio).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

# Gradio reads these when it is imported and when the page is built: no telemetry, no version
# check against the internet.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import torch  # noqa: E402

from upsampler.ui.jobs import (  # noqa: E402
    OUTPUT_FORMATS,
    SCALES,
    ModelShelf,
    UpscaleRequest,
    comparison,
    summary,
    upscale_files,
    zip_outputs,
)

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "images"
# One example photo per built-in model (examples/images ships with a source checkout).
EXAMPLES = {"nano-4x": "skyline.png", "nano-4x-psnr": "azure-window.png"}
# Files the page made are deleted after an hour (checked every ten minutes), and all of them
# when it closes.
CACHE_CLEANUP = (600, 3600)
DTYPES = ("auto", "fp32", "bf16", "fp16")
# Where Gradio keeps uploads, returned files and cached examples: the page's folder while it runs.
_GRADIO_FOLDERS = ("GRADIO_TEMP_DIR", "GRADIO_EXAMPLES_CACHE")


class Page:
    """The app: a :class:`ModelShelf`, a pixel limit, a temporary folder and the Gradio Blocks.

    Args:
        shelf: the models offered (the first is selected).
        max_pixels: the largest input, in pixels; larger uploads get a message, not a job.
        workdir: the folder of uploads and outputs; None: a temporary folder, made here and
            deleted on close (a given one is left to its owner).
    """

    def __init__(self, shelf: ModelShelf, *, max_pixels: int, workdir: Path | None = None):
        self.shelf = shelf
        self.max_pixels = max_pixels
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="upsampler-serve-")).resolve()
        # Gradio keeps uploads (and the files a function returns) in GRADIO_TEMP_DIR, and serves
        # files from there only: pointing it into the workdir confines the page to this folder.
        self.upload_dir = self.workdir / "gradio"
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        self._environment = {name: os.environ.get(name) for name in _GRADIO_FOLDERS}
        os.environ["GRADIO_TEMP_DIR"] = str(self.upload_dir)
        os.environ["GRADIO_EXAMPLES_CACHE"] = str(self.workdir / "examples-cache")
        self.blocks = self._build()

    # ------------------------------------------------------------------ the page

    def _build(self) -> gr.Blocks:
        choices = list(self.shelf.choices)
        first = self.shelf.choices[self.shelf.default]
        devices = ["auto", "cpu"]
        if torch.cuda.is_available():
            devices += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
        if torch.backends.mps.is_available():
            devices.append("mps")

        with gr.Blocks(
            title="upsampler", analytics_enabled=False, delete_cache=CACHE_CLEANUP
        ) as blocks:
            gr.Markdown(
                "## upsampler\nGigaGAN super-resolution: drop or paste images, choose a model "
                f"and a scale. Inputs up to {self.max_pixels:,} pixels."
            )
            with gr.Row():
                with gr.Column():
                    files = gr.File(
                        label="Images (one or many)",
                        file_count="multiple",
                        file_types=["image"],
                        elem_id="images",
                    )
                    pasted = gr.Image(
                        label="Or paste an image",
                        sources=["clipboard", "upload"],
                        type="filepath",
                        image_mode=None,
                        format="png",
                        height=160,
                        elem_id="pasted",
                    )
                    model = gr.Dropdown(choices, value=first.name, label="Model", elem_id="model")
                    with gr.Row():
                        scale = gr.Dropdown(
                            list(SCALES), value=first.scale, label="Scale", elem_id="scale"
                        )
                        seed = gr.Number(0, label="Seed", precision=0, minimum=0)
                        output_format = gr.Dropdown(
                            list(OUTPUT_FORMATS), value="same", label="Download as"
                        )
                    prompt = gr.Textbox(
                        label="Prompt", visible=first.text_conditioning, elem_id="prompt"
                    )
                    with gr.Row(visible=first.text_conditioning) as text_controls:
                        truncation = gr.Slider(0, 1, value=1, step=0.05, label="Truncation psi")
                        strength = gr.Slider(0, 1, value=1, step=0.05, label="Text strength")
                    with gr.Accordion("Advanced", open=False):
                        tile = gr.Number(
                            0, label="Tile (input px, 0: auto)", precision=0, minimum=0
                        )
                        dtype = gr.Dropdown(list(DTYPES), value="auto", label="Precision")
                        device = gr.Dropdown(devices, value="auto", label="Device")
                    run = gr.Button("Upscale", variant="primary", elem_id="upscale")
                with gr.Column():
                    slider = gr.ImageSlider(
                        label="Before / after",
                        type="filepath",
                        interactive=False,
                        elem_id="comparison",
                        buttons=["fullscreen"],
                    )
                    info = gr.Markdown(elem_id="result-info")
                    download = gr.File(label="Download", interactive=False, elem_id="download")
            examples = [
                [[str(self._example(name))], name]
                for name, file in EXAMPLES.items()
                if name in self.shelf.choices and (EXAMPLES_DIR / file).is_file()
            ]
            if examples:
                gr.Examples(examples, inputs=[files, model], label="Examples (one per model)")

            model.change(self._on_model, inputs=model, outputs=[prompt, text_controls, scale])
            run.click(
                self.upscale,
                inputs=[
                    files,
                    pasted,
                    model,
                    scale,
                    seed,
                    prompt,
                    truncation,
                    strength,
                    tile,
                    dtype,
                    device,
                    output_format,
                ],
                outputs=[slider, info, download],
                api_name="upscale",
                concurrency_limit=1,
                concurrency_id="device",
            )
        return blocks

    def _example(self, model: str) -> Path:
        """The example photo of a built-in model, copied into the page's folder (Gradio serves
        nothing from elsewhere)."""
        target = self.upload_dir / "examples" / EXAMPLES[model]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(EXAMPLES_DIR / EXAMPLES[model], target)
        return target

    def _on_model(self, name: str):
        choice = self.shelf.choices[name]
        text = choice.text_conditioning
        return gr.update(visible=text), gr.update(visible=text), gr.update(value=choice.scale)

    def upscale(
        self,
        files,
        pasted,
        model,
        scale,
        seed,
        prompt,
        truncation,
        strength,
        tile,
        dtype,
        device,
        output_format,
        progress=gr.Progress(),  # noqa: B008 (Gradio's way to ask for a progress bar)
    ):
        """The Upscale button (and the ``/upscale`` API): the comparison, the summary line and
        the download (the image, or a zip of a batch)."""
        paths = [Path(_path(item)) for item in files or []]
        if pasted:
            paths.append(Path(_path(pasted)))
        request = UpscaleRequest(
            model=model,
            outscale=int(scale),
            seed=int(seed or 0),
            prompt=prompt or "",
            truncation_psi=float(truncation),
            text_strength=float(strength),
            tile=int(tile) if tile else None,
            device=device,
            dtype=dtype,
            output_format=output_format,
        )
        self.prune()
        out_dir = self.upload_dir / "outputs" / uuid.uuid4().hex
        progress(0.0, desc="starting")
        try:
            results = upscale_files(
                self.shelf,
                paths,
                request,
                out_dir,
                max_pixels=self.max_pixels,
                progress=lambda fraction, text: progress(fraction, desc=text),
            )
            before, after = comparison(paths[0], results[0], out_dir, self.max_pixels)
        except (ValueError, RuntimeError, OSError) as error:
            # Shown on the page (and raised by gradio_client as its message).
            raise gr.Error(str(error), print_exception=False) from error
        download = results[0].output
        if len(results) > 1:
            download = zip_outputs(results, out_dir / "upscaled.zip")
        return (str(before), str(after)), summary(results, model), str(download)

    def prune(self, age: float = CACHE_CLEANUP[1]) -> None:
        """Delete the outputs of requests older than ``age`` seconds (Gradio's ``delete_cache``
        prunes the uploads)."""
        cutoff = time.time() - age
        for folder in (self.upload_dir / "outputs").glob("*"):
            with contextlib.suppress(OSError):
                if folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)

    # ------------------------------------------------------------------ serving

    def launch(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        share: bool = False,
        queue_size: int = 64,
    ) -> str:
        """Start the server in a thread and return its local URL. ``port`` None: the first free
        one from 7860. Only the page's own folder is readable through it."""
        self.blocks.queue(max_size=queue_size, default_concurrency_limit=1)
        self.blocks.launch(
            server_name=host,
            server_port=port,
            share=share,
            prevent_thread_lock=True,
            quiet=True,
            show_error=True,
            allowed_paths=[],
            # An upload's bytes: 16-bit RGBA at the pixel limit, uncompressed, plus headers.
            max_file_size=self.max_pixels * 8 + (1 << 20),
            ssr_mode=False,
            mcp_server=False,
            enable_monitoring=False,
        )
        return self.blocks.local_url

    @property
    def share_url(self) -> str | None:
        return self.blocks.share_url

    def block(self) -> None:
        """Wait while the server runs (in its thread); Ctrl-C raises KeyboardInterrupt here."""
        while self.blocks.is_running:
            time.sleep(0.2)

    def close(self) -> None:
        """Stop the server and delete the page's temporary folder."""
        try:
            self.blocks.close()
        finally:
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            for name, value in self._environment.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _path(item) -> str:
    """A file value's path: Gradio passes str paths, or objects with ``.name``/``path``."""
    if isinstance(item, str | os.PathLike):
        return str(item)
    if isinstance(item, dict):
        return item["path"]
    return getattr(item, "path", None) or item.name
