"""The web page of ``upsampler serve``, driven through its API with gradio_client: the app runs in
this process on a free port with a tiny model (the browser test is tests/test_ui_browser.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from PIL import Image
from typer.testing import CliRunner

from conftest import TEXT_EMBED_DIM, tiny_generator
from upsampler.text.base import TextEmbeddings, TextEncoder
from upsampler.ui.app import Page
from upsampler.ui.jobs import ModelShelf, UpscaleRequest, upscale_files
from upsampler_cli.app import app as cli

MAX_PIXELS = 48 * 48
# Gradio's queue calls pandas in ways pandas 3 deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def page(model_dir, one_thread):
    page = Page(ModelShelf([str(model_dir)], builtins=False), max_pixels=MAX_PIXELS)
    page.launch(port=free_port())
    yield page
    page.close()
    assert not page.workdir.exists(), "the page's temporary folder outlived it"


@pytest.fixture(scope="module")
def client(page, tmp_path_factory) -> Client:
    downloads = tmp_path_factory.mktemp("downloads")
    return Client(page.blocks.local_url, verbose=False, download_files=str(downloads))


def _request(client, files, model_dir, **overrides):
    arguments = dict(
        files=[handle_file(str(path)) for path in files],
        pasted=None,
        model=str(model_dir),
        scale=4,
        seed=0,
        prompt="",
        truncation=1,
        strength=1,
        tile=0,
        dtype="auto",
        device="cpu",
        output_format="same",
    )
    arguments.update(overrides)
    return arguments


def _image(path: Path, size: tuple[int, int], mode: str, seed: int = 0) -> Path:
    channels = len(mode)
    array = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), np.uint8)
    Image.fromarray(array, mode).save(path)
    return path


def test_one_rgba_image_comes_back_4x_with_its_alpha(client, model_dir, tmp_path):
    source = _image(tmp_path / "sticker.png", (24, 16), "RGBA")
    comparison, info, download = client.predict(
        **_request(client, [source], model_dir), api_name="/upscale"
    )
    with Image.open(download) as result:
        assert (result.size, result.mode, result.format) == ((96, 64), "RGBA", "PNG")
    assert Path(download).name == "sticker_4x.png"
    assert info.startswith("96x64 from 24x16 (RGBA)")
    before, after = comparison
    with Image.open(before) as shown_before, Image.open(after) as shown_after:
        assert shown_before.size == shown_after.size == (96, 64)


def test_the_input_format_is_kept_or_png_asked(client, model_dir, tmp_path):
    source = tmp_path / "photo.jpg"
    Image.fromarray(np.full((16, 16, 3), 120, np.uint8)).save(source, quality=90)
    _, _, same = client.predict(
        **_request(client, [source], model_dir, scale=2), api_name="/upscale"
    )
    _, _, png = client.predict(
        **_request(client, [source], model_dir, output_format="png"), api_name="/upscale"
    )
    with Image.open(same) as as_jpeg, Image.open(png) as as_png:
        assert (as_jpeg.format, as_jpeg.size) == ("JPEG", (32, 32))
        assert (as_png.format, as_png.size) == ("PNG", (64, 64))


def test_a_batch_comes_back_as_a_zip(client, model_dir, tmp_path):
    sources = [_image(tmp_path / f"{name}.png", (16, 8), "RGB") for name in ("a", "b")]
    _, info, download = client.predict(**_request(client, sources, model_dir), api_name="/upscale")
    assert info.startswith("2 images")
    with zipfile.ZipFile(download) as archive:
        assert sorted(archive.namelist()) == ["a_4x.png", "b_4x.png"]


def test_an_image_over_the_pixel_limit_gets_the_limit_message(client, model_dir, tmp_path):
    big = _image(tmp_path / "big.png", (64, 48), "RGB")
    with pytest.raises(
        Exception, match=r"big.png: 64x48 = 3,072 pixels is over the limit of 2,304"
    ):
        client.predict(**_request(client, [big], model_dir), api_name="/upscale")


def test_two_simultaneous_requests_both_finish(client, model_dir, tmp_path):
    sources = [_image(tmp_path / f"{index}.png", (24, 24), "RGB", index) for index in range(2)]
    jobs = [
        client.submit(**_request(client, [source], model_dir), api_name="/upscale")
        for source in sources
    ]
    for job in jobs:
        _, _, download = job.result(timeout=120)
        with Image.open(download) as result:
            assert result.size == (96, 96)


def test_a_pasted_image_is_upscaled_too(client, model_dir, tmp_path):
    pasted = handle_file(str(_image(tmp_path / "image.png", (8, 8), "RGB")))
    _, info, download = client.predict(
        **_request(client, [], model_dir, pasted=pasted), api_name="/upscale"
    )
    with Image.open(download) as result:
        assert result.size == (32, 32)
    with pytest.raises(Exception, match="no image given"):
        client.predict(**_request(client, [], model_dir), api_name="/upscale")


def test_old_outputs_are_pruned(page):
    old = page.upload_dir / "outputs" / "old-request"
    old.mkdir(parents=True)
    (old / "a.png").write_bytes(b"x")
    os.utime(old, (0, 0))
    page.prune()
    assert not old.exists()


def test_the_page_serves_no_file_outside_its_folder(page):
    repository_file = Path(__file__).resolve().parents[1] / "pyproject.toml"
    for path in (repository_file, Path("/etc/hostname")):
        response = httpx.get(f"{page.blocks.local_url}gradio_api/file={path}")
        assert response.status_code == 403, path
    assert page.workdir.is_relative_to(Path(tempfile.gettempdir()).resolve())


# ------------------------------------------------------------------ text-conditioned models


class ToyTextEncoder(TextEncoder):
    """Embeddings from the prompt's characters: different prompts, different embeddings."""

    dim = TEXT_EMBED_DIM

    def encode(self, texts):
        length = max(len(text) for text in texts) + 1
        tokens = torch.zeros(len(texts), length, self.dim)
        mask = torch.zeros(len(texts), length, dtype=torch.bool)
        for row, text in enumerate(texts):
            generator = torch.Generator().manual_seed(sum(map(ord, text)))
            tokens[row, : len(text) + 1] = torch.randn(len(text) + 1, self.dim, generator=generator)
            mask[row, : len(text) + 1] = True
        return TextEmbeddings(tokens=tokens, pooled=tokens[:, 0].clone(), mask=mask)


def test_a_text_model_shows_the_prompt_and_its_strength_steers_it(tmp_path, one_thread):
    folder = tmp_path / "text-model"
    tiny_generator(scale=4, text_conditioning=True).save_pretrained(folder)
    with pytest.raises(ValueError, match="text-conditioned: give a text encoder"):
        ModelShelf([str(folder)], builtins=False)
    shelf = ModelShelf([str(folder)], text_encoder=ToyTextEncoder(), builtins=True)
    assert shelf.choices[str(folder)].text_conditioning
    assert not shelf.choices["nano-4x"].text_conditioning

    page = Page(shelf, max_pixels=MAX_PIXELS)
    try:
        prompt, controls, scale = page._on_model(str(folder))
        assert prompt["visible"] and controls["visible"] and scale["value"] == 4
        prompt, controls, _ = page._on_model("nano-4x")
        assert not prompt["visible"] and not controls["visible"]
    finally:
        page.close()

    source = _image(tmp_path / "in.png", (16, 16), "RGB")

    def run(name: str, **settings) -> np.ndarray:
        request = UpscaleRequest(model=str(folder), device="cpu", **settings)
        (result,) = upscale_files(shelf, [source], request, tmp_path / name, max_pixels=MAX_PIXELS)
        return np.asarray(Image.open(result.output), dtype=np.float32)

    empty = run("empty", prompt="")
    prompted = run("prompted", prompt="a red brick wall")
    off = run("off", prompt="a red brick wall", text_strength=0.0)
    assert np.abs(prompted - empty).max() > 0
    half = run("half", prompt="a red brick wall", text_strength=0.5)
    np.testing.assert_array_equal(off, empty)
    assert 0 < np.abs(half - empty).mean() < np.abs(prompted - empty).mean() * 2


def test_serve_without_gradio_says_how_to_install_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a)
    )
    outcome = CliRunner().invoke(cli, ["serve"])
    assert outcome.exit_code == 2
    assert "pip install 'upsampler[ui]'" in outcome.output


def test_serve_runs_the_page_and_a_stop_deletes_its_folder(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [Path(sys.executable).parent / "upsampler", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        started = server.stdout.readline()
        assert started.startswith(f"upsampler page on http://127.0.0.1:{port}/"), started
        assert "nano-4x" in started
        workdir = Path(server.stdout.readline().split(" in ", 1)[1].split(" (")[0])
        assert workdir.is_dir()
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
        assert page.status_code == 200 and "upsampler" in page.text
    finally:
        server.send_signal(signal.SIGTERM)
        rest, _ = server.communicate(timeout=60)
    assert server.returncode == 0, rest
    assert not workdir.exists()
