from __future__ import annotations

import pytest
import torch

from conftest import TEXT_EMBED_DIM, random_text, tiny_discriminator, tiny_generator
from upsampler import GigaGANUpsampler


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("scale", [4, 8])
@pytest.mark.parametrize("text_conditioning", [False, True])
@pytest.mark.parametrize("size", [(16, 16), (16, 24), (36, 12)])
def test_forward_shapes_and_pyramid(scale, text_conditioning, size):
    model = tiny_generator(scale=scale, text_conditioning=text_conditioning).eval()
    height, width = size
    lq = torch.rand(2, 3, height, width)
    text = random_text(2) if text_conditioning else None
    with torch.no_grad():
        out = model(lq, text, generator=seeded(0), return_pyramid=True)
    assert out.hq.shape == (2, 3, scale * height, scale * width)
    assert torch.isfinite(out.hq).all()
    # 3 encoder levels: the pyramid starts at 1/4 of the input and doubles up to the output.
    expected = [(height * 2**i // 4, width * 2**i // 4) for i in range(2 + int(scale).bit_length())]
    assert [tuple(p.shape[-2:]) for p in out.pyramid] == expected
    assert model.pyramid_sizes(height, width) == expected
    assert out.pyramid[-1] is out.hq
    with torch.no_grad():
        assert model(lq, text, generator=seeded(0)).pyramid is None


def test_asymmetric_unet_has_log2_scale_more_upsampling_stages():
    for scale, extra in [(4, 2), (8, 3)]:
        model = tiny_generator(scale=scale)
        downsampling = len(model.downsamples)
        upsampling = len(model.decoder_blocks) - 1
        assert downsampling == 2
        assert upsampling - downsampling == extra


def test_residual_input_starts_from_interpolation():
    """With the RGB heads zeroed, the output is exactly the bicubic upsample of the input."""
    model = tiny_generator().eval()
    for to_rgb in model.to_rgb:
        torch.nn.init.zeros_(to_rgb.conv.weight)
    lq = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        hq = model(lq, generator=seeded(0)).hq
    expected = torch.nn.functional.interpolate(lq, scale_factor=4, mode="bicubic")
    torch.testing.assert_close(hq, expected)


def test_seed_controls_output(lq):
    model = tiny_generator().eval()
    with torch.no_grad():
        a = model(lq, generator=seeded(0)).hq
        b = model(lq, generator=seeded(0)).hq
        c = model(lq, generator=seeded(1)).hq
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 1e-4


def test_truncation_psi_zero_ignores_z(lq):
    model = tiny_generator().eval()
    model.w_avg.normal_()  # a non-trivial mean style
    with torch.no_grad():
        a = model(lq, generator=seeded(0), truncation_psi=0.0).hq
        b = model(lq, generator=seeded(1), truncation_psi=0.0).hq
        c = model(lq, generator=seeded(1), truncation_psi=0.5).hq
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-4


def test_w_avg_tracks_styles_in_training():
    model = tiny_generator().train()
    before = model.w_avg.clone()
    model(torch.rand(2, 3, 16, 16), generator=seeded(0))
    assert not torch.equal(before, model.w_avg)
    model.eval()
    after = model.w_avg.clone()
    with torch.no_grad():
        model(torch.rand(2, 3, 16, 16), generator=seeded(0))
    assert torch.equal(after, model.w_avg)


def test_style_mixing(lq):
    model = tiny_generator().eval()
    z1 = model.sample_z(2, seeded(0))
    z2 = model.sample_z(2, seeded(1))
    with torch.no_grad():
        only_1 = model(lq, z=z1).hq
        only_2 = model(lq, z=z2).hq
        none_mixed = model(lq, z=z1, mix_z=z2, mix_cutoff=model.num_styles).hq
        all_mixed = model(lq, z=z1, mix_z=z2, mix_cutoff=0).hq
        half = model(lq, z=z1, mix_z=z2, mix_cutoff=model.num_styles // 2).hq
    torch.testing.assert_close(none_mixed, only_1)
    torch.testing.assert_close(all_mixed, only_2)
    assert (half - only_1).abs().max() > 1e-5 and (half - only_2).abs().max() > 1e-5
    with pytest.raises(ValueError, match="mix_cutoff"):
        model(lq, z=z1, mix_z=z2)


def test_shared_ws_make_output_independent_of_z(lq):
    model = tiny_generator().eval()
    ws = model.styles(2, generator=seeded(3))
    with torch.no_grad():
        a = model(lq, ws=ws, generator=seeded(0)).hq
        b = model(lq, ws=ws, generator=seeded(1)).hq
    torch.testing.assert_close(a, b)


def test_text_changes_output_and_is_required(lq):
    model = tiny_generator(text_conditioning=True).eval()
    with torch.no_grad():
        a = model(lq, random_text(2, seed=0), generator=seeded(0)).hq
        b = model(lq, random_text(2, seed=1), generator=seeded(0)).hq
    assert (a - b).abs().max() > 1e-5
    with pytest.raises(ValueError, match="text-conditioned"):
        model(lq, generator=seeded(0))
    with pytest.raises(ValueError, match="3 text embeddings for a batch of 2"):
        model(lq, random_text(3))


def test_unconditional_variant_has_no_text_parameters():
    unconditional = tiny_generator(text_conditioning=False)
    conditional = tiny_generator(text_conditioning=True)
    assert unconditional.text_transformer is None
    names = [name for name, _ in unconditional.named_parameters()]
    assert not any("text" in name or "cross" in name or "kv_cross" in name for name in names)
    assert sum(p.numel() for p in conditional.parameters()) > sum(
        p.numel() for p in unconditional.parameters()
    )


@pytest.mark.parametrize("text_conditioning", [False, True])
def test_save_pretrained_round_trip(tmp_path, lq, text_conditioning):
    model = tiny_generator(text_conditioning=text_conditioning).eval()
    model.w_avg.normal_()  # buffers travel too
    text = random_text(2) if text_conditioning else None
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").exists()
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = GigaGANUpsampler.from_pretrained(tmp_path).eval()
    assert loaded.config.text_conditioning == text_conditioning
    assert loaded.config.encoder_channels == [8, 16, 16]
    with torch.no_grad():
        expected = model(lq, text, generator=seeded(0), truncation_psi=0.7).hq
        actual = loaded(lq, text, generator=seeded(0), truncation_psi=0.7).hq
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_every_generator_parameter_gets_a_gradient():
    generator_model = tiny_generator(text_conditioning=True).train()
    discriminator = tiny_discriminator(text_conditioning=True)
    lq = torch.rand(2, 3, 16, 16)
    hq = torch.rand(2, 3, 64, 64)
    text = random_text(2)
    out = generator_model(lq, text, generator=seeded(0), return_pyramid=True)
    pyramid = out.pyramid[::-1]  # full resolution first
    logits = discriminator(pyramid[: discriminator.num_scales], lq, text)
    adversarial = sum(torch.nn.functional.softplus(-logit).mean() for logit in logits)
    targets = [
        torch.nn.functional.interpolate(hq, size=p.shape[-2:], mode="area") for p in out.pyramid
    ]
    reconstruction = sum((p - t).abs().mean() for p, t in zip(out.pyramid, targets, strict=True))
    (adversarial + reconstruction).backward()
    missing = [
        n
        for n, p in generator_model.named_parameters()
        if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert missing == []


def test_bad_inputs_fail_clearly():
    model = tiny_generator()
    with pytest.raises(ValueError, match="multiples of 4.*got 18x16"):
        model(torch.rand(1, 3, 18, 16))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="scale must be one of"):
        tiny_generator(scale=3)
    with pytest.raises(
        ValueError, match="unknown preset 'huge'; choose one of nano, small, base, giga"
    ):
        GigaGANUpsampler.from_preset("huge")
    with pytest.raises(ValueError, match="attention_levels"):
        tiny_generator(attention_levels=[5])
    with pytest.raises(TypeError):
        GigaGANUpsampler(scal=4)  # a typo is an error, not a silently ignored keyword


def test_wrong_text_width_fails_clearly(lq):
    model = tiny_generator(text_conditioning=True)
    from upsampler import TextEmbeddings

    text = TextEmbeddings(
        torch.randn(2, 3, 7), torch.randn(2, 7), torch.ones(2, 3, dtype=torch.bool)
    )
    with pytest.raises(ValueError, match="width 7.*text_embed_dim=12"):
        model(lq, text)


def test_presets():
    assert GigaGANUpsampler.preset_names()[:4] == ["nano", "small", "base", "giga"]
    assert GigaGANUpsampler.preset_parameter_count("nano") <= 3_000_000
    assert GigaGANUpsampler.preset_parameter_count("nano", text_conditioning=True) <= 3_000_000
    assert GigaGANUpsampler.preset_parameter_count("giga", scale=8) >= 500_000_000
    counts = [GigaGANUpsampler.preset_parameter_count(n) for n in ["nano", "small", "base", "giga"]]
    assert counts == sorted(counts)
    model = GigaGANUpsampler.from_preset("nano", scale=8).eval()
    assert model.scale == 8 and model.size_multiple == 4
    with torch.no_grad():
        assert model(torch.rand(1, 3, 8, 12), generator=seeded(0)).hq.shape == (1, 3, 64, 96)


def test_untrained_output_stays_close_to_interpolation():
    """Small RGB heads at initialisation: training starts near bicubic, not from unit-size noise."""
    model = GigaGANUpsampler.from_preset("nano").eval()
    lq = torch.rand(1, 3, 32, 32, generator=seeded(0))
    with torch.no_grad():
        hq = model(lq, generator=seeded(0)).hq
    bicubic = torch.nn.functional.interpolate(lq, scale_factor=4, mode="bicubic")
    assert (hq - bicubic).abs().mean() < 0.1


def test_untrained_styles_barely_move_the_channel_scales():
    # At StyleGAN2's unit gain a random z moves every channel scale by about +-1, which made an
    # untrained upsampler's colours depend on z; the small initial gain keeps them near 1.
    from upsampler.models.layers import AdaptiveModulatedConv2d

    model = GigaGANUpsampler.from_preset("nano", scale=4)
    w = model.mapping(model.sample_z(64, seeded(0)))
    convs = [m for m in model.modules() if isinstance(m, AdaptiveModulatedConv2d)]
    assert convs
    with torch.no_grad():
        for conv in convs:
            scales = conv.modulation(w)
            assert (scales - 1).abs().mean() < 0.2, (scales - 1).abs().mean()
            assert scales.std(dim=0).mean() > 0.01  # z still has an effect to build on


def test_upsample_blocks_default_keeps_every_existing_model():
    """Leaving upsample_blocks out (as every config.json written before it does) builds the same
    modules as giving upsample_blocks=blocks_per_level, so shipped checkpoints still load."""
    for blocks in (1, 2):
        implicit = tiny_generator(blocks_per_level=blocks)
        explicit = tiny_generator(blocks_per_level=blocks, upsample_blocks=blocks)
        assert implicit.config.upsample_blocks is None
        assert implicit.state_dict().keys() == explicit.state_dict().keys()
        assert implicit.num_styles == explicit.num_styles


def test_upsample_blocks_thins_only_the_stages_above_the_input():
    model = tiny_generator(blocks_per_level=3, upsample_blocks=1)
    levels = model.num_levels
    assert [len(blocks) for blocks in model.encoder_blocks] == [3] * levels
    assert [len(blocks) for blocks in model.decoder_blocks] == [3] * levels + [1, 1]
    with torch.no_grad():
        assert model(torch.rand(1, 3, 16, 16), generator=seeded(0)).hq.shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="upsample_blocks must be >= 1, got 0"):
        tiny_generator(upsample_blocks=0)


def count_flops(model: torch.nn.Module, size: int) -> tuple[int, dict]:
    """FLOPs (a multiply-add counts 2) of one forward of a ``size x size`` input, in total and per
    module, counted from shapes on the meta device: exact, instant and allocation-free."""
    from torch.utils.flop_counter import FlopCounterMode

    lq = torch.zeros(1, 3, size, size, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        if isinstance(model, GigaGANUpsampler):
            model(lq, z=torch.zeros(1, model.config.z_dim, device="meta"))
        else:
            model(lq)
    return counter.get_total_flops(), counter.get_flop_counts()


@pytest.mark.parametrize("text_conditioning", [False, True])
def test_student_preset_runs_at_4x(one_thread, text_conditioning):
    model = GigaGANUpsampler.from_preset(
        "student", scale=4, text_conditioning=text_conditioning, text_embed_dim=TEXT_EMBED_DIM
    ).eval()
    assert model.size_multiple == 1  # one level: every input size works, no padding
    lq = torch.rand(2, 3, 12, 20, generator=seeded(0))
    text = random_text(2) if text_conditioning else None
    with torch.no_grad():
        out = model(lq, text, generator=seeded(0), return_pyramid=True)
    assert out.hq.shape == (2, 3, 48, 80)
    assert torch.isfinite(out.hq).all()
    # The RGB pyramid for the discriminator: input resolution, 2x, 4x.
    assert [tuple(p.shape[-2:]) for p in out.pyramid] == [(12, 20), (24, 40), (48, 80)]
    if text_conditioning:
        with torch.no_grad():
            other = model(lq, random_text(2, seed=1), generator=seeded(0)).hq
        assert (other - out.hq).abs().max() > 0  # the prompt reaches the output (through w)
    # Untrained, it starts near bicubic, like every preset (small RGB heads).
    bicubic = torch.nn.functional.interpolate(lq, scale_factor=4, mode="bicubic")
    assert (out.hq - bicubic).abs().mean() < 0.1


def test_student_preset_budget_and_where_its_compute_is():
    """At most 1/16 of RRDBNet's (Real-ESRGAN x4plus) FLOPs for 256x256 -> 1024x1024, and, unlike
    nano, most of them at the input resolution, where a distilled RRDBNet does all its work."""
    from spandrel.architectures.ESRGAN import ESRGAN as RRDBNet  # x4plus size by default

    with torch.device("meta"):
        student = GigaGANUpsampler.from_preset("student", scale=4)
        reference = RRDBNet()
    student_flops, per_module = count_flops(student, 256)
    reference_flops, _ = count_flops(reference, 256)
    assert 0 < student_flops <= reference_flops / 16
    # The residual blocks at the input resolution (level 0 of the encoder and of the decoder).
    trunk = [
        sum(per_module[f"GigaGANUpsampler.{part}.0.{index}"].values())
        for part in ("encoder_blocks", "decoder_blocks")
        for index in range(len(student.encoder_blocks[0]))
    ]
    assert sum(trunk) >= 0.75 * student_flops
