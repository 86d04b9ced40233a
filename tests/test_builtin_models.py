"""The released models: inside the package, loadable offline, small, and scoring as recorded.

These run the real shipped weights, so they catch a broken export, a config that no longer
matches the code, or a change to the generator that silently ruins trained models.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from upsampler import GigaGANUpsampler, Upscaler
from upsampler.evaluation.evaluate import evaluate
from upsampler.evaluation.methods import interpolation_method, upscaler_method
from upsampler.losses.lpips_weights import default_weights_dir, missing_weight_files
from upsampler.models.registry import BUILTIN_MODELS, builtin_path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "images"
RELEASES = ["nano-4x", "nano-4x-psnr"]


@pytest.mark.parametrize("name", RELEASES)
def test_release_ships_inside_the_package(name):
    folder = builtin_path(name)
    weights = folder / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size < 25 * 2**20
    config = json.loads((folder / "config.json").read_text())
    assert config["scale"] == BUILTIN_MODELS[name].scale
    assert config["text_conditioning"] is BUILTIN_MODELS[name].text_conditioning
    # The listing's preset is the architecture the weights were saved with.
    builtin = BUILTIN_MODELS[name]
    preset = GigaGANUpsampler.preset_config(builtin.preset, scale=builtin.scale)
    assert {key: config[key] for key in preset if key in config} == {
        key: value for key, value in preset.items() if key in config
    }
    assert "_name_or_path" not in config  # no path of the machine that trained it
    card = (folder / "README.md").read_text()
    for heading in ("## Training", "## Metrics", "## Licence", "## Limitations"):
        assert heading in card, heading

    upscaler = Upscaler.from_pretrained(name, device="cpu")
    image = Image.open(EXAMPLES / "skyline.png")
    output = upscaler.upscale(image, seed=0)
    assert output.size == (4 * image.width, 4 * image.height)
    assert output.mode == "RGB"


# `upsampler eval examples/images -m nano-4x-psnr -m nano-4x -d DEGRADATION` when released:
# (PSNR-Y, LPIPS-alex) means over the example photos, for each input degradation.
RECORDED = {
    "bicubic": {
        "bicubic": (26.35, 0.4899),
        "nano-4x-psnr": (27.52, 0.3804),
        "nano-4x": (24.93, 0.2539),
    },
    "realesrgan": {
        "bicubic": (22.44, 0.7436),
        "nano-4x-psnr": (22.05, 0.7056),
        "nano-4x": (21.93, 0.4326),
    },
}


@pytest.mark.parametrize("degradation", sorted(RECORDED))
def test_releases_score_as_recorded_on_example_photos(degradation):
    if missing_weight_files():
        pytest.skip(
            f"real LPIPS weights are not prepared in {default_weights_dir()}: run "
            "`upsampler prepare-lpips` (`make test` does it with --if-missing)"
        )
    methods = [interpolation_method("bicubic", scale=4)] + [
        upscaler_method(name, scale=4, device="cpu") for name in RELEASES
    ]
    report = evaluate(EXAMPLES, methods, degradation=degradation, seed=0, device="cpu")
    scores = {method.name: method for method in report.methods}
    # A regression check: the tolerances leave room for float differences between machines,
    # not for a worse model (a retrained release updates RECORDED and its model card).
    for name, (psnr, lpips) in RECORDED[degradation].items():
        assert scores[name].psnr == pytest.approx(psnr, abs=0.05), name
        assert scores[name].lpips == pytest.approx(lpips, abs=0.005), name
    # What each release is for: the PSNR model is more faithful than bicubic on clean inputs;
    # the perceptual model looks much closer to the photos than bicubic on degraded ones.
    bicubic = scores["bicubic"]
    if degradation == "bicubic":
        assert scores["nano-4x-psnr"].psnr > bicubic.psnr + 0.5
    else:
        assert scores["nano-4x"].lpips < 0.65 * bicubic.lpips
