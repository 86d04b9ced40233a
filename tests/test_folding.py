"""Folded styles: an image's modulated kernels computed once give what the per-sample path gives."""

from __future__ import annotations

import pytest
import torch

from conftest import random_text, tiny_generator
from upsampler import AuraSRUpsampler, GigaGANUpsampler, Upscaler
from upsampler.models.aurasr_checkpoint import config_from_aurasr
from upsampler.models.folding import folded_styles, is_folded, style_convs, unfolded

pytestmark = pytest.mark.usefixtures("one_thread")


def with_styles_that_matter(model: torch.nn.Module) -> torch.nn.Module:
    """A trained model's styles move its kernels far more than a new one's (initialised close
    to a plain convolution): perturb every weight so that a wrong kernel cannot pass."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def tiny_aurasr() -> AuraSRUpsampler:
    config = {
        "style_network": {"dim_in": 16, "dim_out": 16, "depth": 2},
        "dim": 4,
        "image_size": 64,
        "input_image_size": 16,
        "self_attn_heads": 2,
        "self_attn_dim_head": 8,
        "attn_depths": [1, 1, 1, 1, 2],
        "mid_attn_depth": 1,
        "num_conv_kernels": 2,
    }
    torch.manual_seed(0)
    return AuraSRUpsampler(**config_from_aurasr(config))


MODELS = {
    "gigagan": lambda: tiny_generator(),
    "gigagan-text": lambda: tiny_generator(text_conditioning=True),
    "nano": lambda: GigaGANUpsampler.from_preset("nano"),
    "student": lambda: GigaGANUpsampler.from_preset("student"),
    "student-8x-text": lambda: GigaGANUpsampler.from_preset(
        "student", scale=8, text_conditioning=True, text_embed_dim=12
    ),
    "aurasr": tiny_aurasr,
}


@pytest.mark.parametrize("name", MODELS)
def test_folded_forward_matches_the_per_sample_path(name):
    model = with_styles_that_matter(MODELS[name]())
    text = random_text(1) if model.text_conditioning else None
    ws = model.image_styles(text, generator=torch.Generator().manual_seed(7))
    lq = torch.rand(3, 3, 2 * model.min_size, 3 * model.min_size)
    batch_text = None if text is None else text.index([0, 0, 0])
    batch_ws = ws.expand(3, *ws.shape[1:])
    with torch.no_grad():
        expected = model(lq, batch_text, ws=batch_ws, add_input=False).hq
        with folded_styles(model, ws, text) as folded:
            assert folded and is_folded(model)
            got = model(lq, batch_text, ws=batch_ws, add_input=False).hq
        assert not is_folded(model)  # the context restores the per-sample path
        after = model(lq, batch_text, ws=batch_ws, add_input=False).hq
    assert (expected - got).abs().max() <= 1e-5
    assert torch.equal(after, expected)
    # The check can fail: another image's styles give another output.
    other = model.image_styles(text, generator=torch.Generator().manual_seed(8))
    with torch.no_grad(), folded_styles(model, other, text):
        assert (
            model(lq, batch_text, ws=batch_ws, add_input=False).hq - expected
        ).abs().max() > 1e-3


def test_the_folded_layers_run_plain_convolutions_once_per_image(monkeypatch):
    model = with_styles_that_matter(tiny_generator())
    ws = model.image_styles(None, generator=torch.Generator().manual_seed(0))
    calls = []
    for conv in style_convs(model):
        original = conv.sample_kernels

        def counted(*styles, original=original):
            calls.append(styles[0].shape[0])
            return original(*styles)

        monkeypatch.setattr(conv, "sample_kernels", counted)
    with torch.no_grad(), folded_styles(model, ws):
        recorded = len(calls)
        for _ in range(3):
            model(torch.rand(2, 3, 16, 16), ws=ws.expand(2, -1, -1))
    assert recorded == len(style_convs(model)) and calls == [1] * recorded


def test_unfolded_runs_the_per_sample_path_inside_a_folded_context():
    model = with_styles_that_matter(tiny_generator())
    ws = model.image_styles(None, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), folded_styles(model, ws):
        kernels = [conv.folded_weight for conv in style_convs(model)]
        with unfolded(model):
            assert not is_folded(model)
        assert [conv.folded_weight for conv in style_convs(model)] == kernels


def test_folding_twice_is_an_error_and_models_without_styles_run_unchanged():
    model = tiny_generator().eval()
    ws = model.image_styles(None, generator=torch.Generator().manual_seed(0))
    with (
        folded_styles(model, ws),
        pytest.raises(RuntimeError, match="already folded"),
        folded_styles(model, ws),
    ):
        pass
    assert not is_folded(model)
    with folded_styles(model, None) as folded:
        assert not folded and not is_folded(model)


@pytest.mark.parametrize("name", ["gigagan-text", "aurasr"])
def test_the_upscaler_folds_by_default_with_the_same_output(name):
    model = with_styles_that_matter(MODELS[name]())
    prompt = random_text(1) if model.text_conditioning else None
    lq = torch.rand(1, 3, 40, 56)
    per_sample = Upscaler(model, device="cpu", fold_styles=False, channels_last=False)
    expected = per_sample.upscale(lq, prompt, seed=2, tile=32, batch_size=2)
    # What "auto" chooses on the CPU: fp32 (no bf16 units measured faster), folded kernels,
    # channels-last, the torch backend; it must agree with the fp32 per-sample path.
    folded = Upscaler(model, device="cpu")
    assert folded.dtype == torch.float32 and folded.backend == "torch"
    assert folded.fold_styles and folded.channels_last
    got = folded.upscale(lq, prompt, seed=2, tile=32, batch_size=2)
    assert (got - expected).abs().max() <= 1e-5
    assert not is_folded(model)


@pytest.mark.parametrize("channels", [(8, 4), (6, 6)])  # with and without a 1x1 skip
def test_an_upsampling_block_runs_its_first_convolution_at_the_input_resolution(channels):
    from upsampler.models.layers import ModulatedResBlock

    torch.manual_seed(0)
    block = with_styles_that_matter(ModulatedResBlock(*channels, style_dim=8, num_kernels=2))
    ws = torch.randn(1, 2, 8)
    x = torch.randn(2, channels[0], 5, 7)
    upsampled = torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
    with torch.no_grad():
        expected = block(upsampled, ws.expand(2, -1, -1))
        block.conv1._recording = block.conv2._recording = True
        block(upsampled[:1], ws)
        block.conv1._recording = block.conv2._recording = False
        block.finish_folding()
        got = block.forward_upsampled(x)
        for memory_format in (torch.channels_last, torch.contiguous_format):
            again = block.forward_upsampled(x.contiguous(memory_format=memory_format))
            assert (again - got).abs().max() <= 1e-6  # either layout, to float rounding
    assert got.shape == expected.shape == (2, channels[1], 10, 14)
    assert (got - expected).abs().max() <= 1e-5


def test_the_generator_upsamples_inside_its_folded_blocks(monkeypatch):
    from upsampler.models.layers import ModulatedResBlock

    model = with_styles_that_matter(tiny_generator())
    ws = model.image_styles(None, generator=torch.Generator().manual_seed(0))
    calls = []
    original = ModulatedResBlock.forward_upsampled

    def counted(self, x):
        calls.append(tuple(x.shape[-2:]))
        return original(self, x)

    monkeypatch.setattr(ModulatedResBlock, "forward_upsampled", counted)
    with torch.no_grad(), folded_styles(model, ws):
        model(torch.rand(1, 3, 16, 16), ws=ws)
    assert calls == [(16, 16), (32, 32)]  # the 2x and 4x stages above the input resolution
