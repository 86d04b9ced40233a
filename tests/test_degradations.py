"""Degradation pipeline: stages, kernels, presets, configs, the pair pool (CPU, small sizes)."""

from __future__ import annotations

import io
import math
from itertools import pairwise

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from upsampler.degradations import (
    BlurStage,
    DegradationPipeline,
    FinalStage,
    JpegStage,
    NoiseStage,
    PairPool,
    ResizeStage,
    SincStage,
    add_gaussian_noise,
    add_poisson_noise,
    apply_stage,
    filter2d,
    jpeg_compress,
    parse_stages,
    sample_blur_kernels,
    unsharp_mask,
)
from upsampler.degradations.kernels import gaussian_kernels, sinc_kernels


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _photo_like(batch: int = 2, height: int = 48, width: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth gradients, a sharp edge and some fine texture: (B, 3, H, W) in [0, 1]."""
    generator = _generator(seed)
    y = torch.linspace(0, 1, height).view(1, 1, -1, 1)
    x = torch.linspace(0, 1, width).view(1, 1, 1, -1)
    base = torch.cat(
        [
            0.5 + 0.3 * torch.sin(12 * x + 3 * y),
            0.2 + 0.6 * (x > 0.5).float() + 0.0 * y,
            0.5 + 0.25 * torch.cos(9 * y) + 0.0 * x,
        ],
        dim=1,
    ).expand(batch, -1, -1, -1)
    texture = 0.08 * torch.rand(batch, 3, height, width, generator=generator)
    return (base + texture).clamp(0, 1)


def _laplacian_energy(images: torch.Tensor) -> float:
    laplacian = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    weight = laplacian.view(1, 1, 3, 3).repeat(3, 1, 1, 1).to(images.dtype)
    response = F.conv2d(images, weight, groups=3)[..., 4:-4, 4:-4]  # away from the borders
    return float(response.pow(2).mean())


# Every shape-keeping stage, with settings that make it act on every image.
SHAPE_KEEPING_STAGES = {
    "blur": BlurStage(),
    "blur_second_order": BlurStage(probability=0.8, sigma=(0.2, 1.5)),
    "noise": NoiseStage(),
    "gaussian_noise": NoiseStage(gaussian_probability=1.0),
    "poisson_noise": NoiseStage(gaussian_probability=0.0),
    "jpeg": JpegStage(),
    "sinc": SincStage(probability=1.0),
}


@pytest.mark.parametrize("name", sorted(SHAPE_KEEPING_STAGES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stage_keeps_shape_dtype_range_and_is_seeded(name, dtype):
    stage = SHAPE_KEEPING_STAGES[name]
    images = _photo_like(batch=3, height=40, width=56).to(dtype)

    def run(seed: int) -> torch.Tensor:
        return apply_stage(images, stage, target_size=(10, 14), generator=_generator(seed))

    first = run(0)
    assert first.shape == images.shape
    assert first.dtype == dtype
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    assert torch.equal(first, run(0)), "same seed must give the same output"
    assert not torch.equal(first, run(1)), "another seed must give another output"
    assert not torch.equal(first, images), "the stage must change the images"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_resize_stage_sizes_range_and_seed(dtype):
    images = _photo_like(batch=2, height=40, width=60).to(dtype)
    to_target = ResizeStage(up_down_keep=(0.0, 0.0, 1.0), relative_to="target")
    resized = apply_stage(images, to_target, target_size=(10, 15), generator=_generator(0))
    assert resized.shape == (2, 3, 10, 15) and resized.dtype == dtype
    assert float(resized.min()) >= 0.0 and float(resized.max()) <= 1.0

    # Real-ESRGAN's first resize: the factor is relative to the current size, drawn per batch.
    random_resize = ResizeStage()
    sizes = set()
    for seed in range(12):
        out = apply_stage(images, random_resize, target_size=(10, 15), generator=_generator(seed))
        again = apply_stage(images, random_resize, target_size=(10, 15), generator=_generator(seed))
        assert torch.equal(out, again)
        height, width = out.shape[-2:]
        assert 0.15 * 40 - 1 <= height <= 1.5 * 40 and 0.15 * 60 - 1 <= width <= 1.5 * 60
        sizes.add((height, width))
    assert len(sizes) > 3, "the resize factor must vary with the seed"
    assert any(h > 40 for h, _ in sizes) and any(h < 40 for h, _ in sizes), "both up and down"


def test_gaussian_noise_sigma_matches_request():
    grey = torch.full((4, 3, 64, 64), 0.5)
    for sigma in (5.0, 20.0):
        noisy = add_gaussian_noise(
            grey, torch.full((4,), sigma), torch.zeros(4, dtype=torch.bool), _generator(0)
        )
        measured = float((noisy - grey).std() * 255)
        assert measured == pytest.approx(sigma, rel=0.05)
        # Colour noise: channels independent.
        correlation = torch.corrcoef((noisy - grey)[:, :2].transpose(0, 1).flatten(1))[0, 1]
        assert abs(float(correlation)) < 0.05


def test_grey_noise_is_the_same_in_every_channel_and_stage_sigma_is_in_8bit_levels():
    grey = torch.full((2, 3, 64, 64), 0.5)
    noisy = add_gaussian_noise(
        grey, torch.full((2,), 10.0), torch.ones(2, dtype=torch.bool), _generator(0)
    )
    assert torch.equal(noisy[:, 0], noisy[:, 1]) and torch.equal(noisy[:, 1], noisy[:, 2])

    stage = NoiseStage(gaussian_probability=1.0, gaussian_sigma=(12.0, 12.0), gray_probability=0.0)
    noisy = apply_stage(grey, stage, target_size=(16, 16), generator=_generator(1))
    assert float((noisy - grey).std() * 255) == pytest.approx(12.0, rel=0.05)


def test_poisson_noise_scales_with_its_scale_and_intensity():
    # A gradient with 256 distinct levels: BasicSR's vals = 256, so the noise std at level v is
    # scale * sqrt(v / 256) (before clamping; mid-range values stay clear of 0 and 1).
    levels = torch.arange(256, dtype=torch.float32) / 255
    image = levels.view(1, 1, 16, 16).repeat(1, 3, 8, 8)  # (1, 3, 128, 128), all 256 levels
    mid = (image > 0.3) & (image < 0.7)

    def noise_std(scale: float) -> float:
        noisy = add_poisson_noise(
            image, torch.tensor([scale]), torch.zeros(1, dtype=torch.bool), _generator(0)
        )
        return float((noisy - image)[mid].std())

    expected = 0.5 * float(torch.sqrt(image[mid] / 256).pow(2).mean().sqrt())
    assert noise_std(0.5) == pytest.approx(expected, rel=0.1)
    assert noise_std(1.0) == pytest.approx(2 * noise_std(0.5), rel=0.1)


def test_blur_removes_high_frequencies_in_proportion_to_sigma():
    images = _photo_like(batch=1, height=64, width=64)
    energies = []
    for sigma in (0.3, 0.7, 1.2, 2.0, 3.0):
        stage = BlurStage(
            kernel_size=(21, 21),
            kernel_types=("iso",),
            kernel_probabilities=(1.0,),
            sigma=(sigma, sigma),
            sinc_probability=0.0,
        )
        blurred = apply_stage(images, stage, target_size=(16, 16), generator=_generator(0))
        energies.append(_laplacian_energy(blurred))
    assert all(a > b for a, b in pairwise(energies)), energies
    assert energies[-1] < 0.05 * _laplacian_energy(images)


def test_lower_jpeg_quality_gives_larger_error():
    images = _photo_like(batch=1, height=64, width=64)
    errors = [
        float((jpeg_compress(images, torch.tensor([q])) - images).pow(2).mean())
        for q in (10.0, 30.0, 60.0, 95.0)
    ]
    assert all(a > b for a, b in pairwise(errors)), errors
    # Per-image quality in one batch: the same image at two qualities.
    pair = jpeg_compress(images.repeat(2, 1, 1, 1), torch.tensor([10.0, 95.0]))
    assert (pair[0] - images[0]).pow(2).mean() > (pair[1] - images[0]).pow(2).mean()


def test_jpeg_handles_sizes_that_are_not_multiples_of_16():
    images = _photo_like(batch=2, height=37, width=23)
    compressed = jpeg_compress(images, torch.tensor([50.0, 80.0]))
    assert compressed.shape == images.shape
    assert float((compressed - images).abs().mean()) < 0.05


def test_gaussian_kernel_matches_closed_form_and_kernels_are_normalised():
    sigma = 1.7
    kernel = gaussian_kernels(
        torch.tensor([sigma]),
        torch.tensor([sigma]),
        torch.tensor([0.0]),
        torch.tensor([9]),
        size=21,
    )[0]
    axis = torch.arange(-4, 5, dtype=torch.float32)
    expected = torch.exp(-(axis.view(-1, 1) ** 2 + axis.view(1, -1) ** 2) / (2 * sigma**2))
    expected = expected / expected.sum()
    assert torch.allclose(kernel[6:15, 6:15], expected, atol=1e-6)
    assert float(kernel[:6].abs().sum()) == 0.0 and float(kernel[:, 15:].abs().sum()) == 0.0

    sinc = sinc_kernels(torch.tensor([math.pi / 3]), torch.tensor([13]), size=21)[0]
    assert float(sinc.sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(sinc.min()) < 0, "a sinc kernel rings (negative lobes)"
    assert int(sinc.argmax()) == 10 * 21 + 10


def test_sampled_blur_kernels_mix_types_per_image_and_are_seeded():
    settings = dict(
        kernel_size=(7, 21),
        kernel_types=BlurStage().kernel_types,
        kernel_probabilities=BlurStage().kernel_probabilities,
        sigma=(0.2, 3.0),
        generalized_beta=(0.5, 4.0),
        plateau_beta=(1.0, 2.0),
        sinc_probability=0.1,
    )
    kernels = sample_blur_kernels(32, generator=_generator(0), **settings)
    assert kernels.shape == (32, 21, 21)
    assert torch.allclose(kernels.sum(dim=(1, 2)), torch.ones(32), atol=1e-5)
    assert torch.equal(kernels, sample_blur_kernels(32, generator=_generator(0), **settings))
    assert not torch.equal(kernels, sample_blur_kernels(32, generator=_generator(1), **settings))
    distinct = {tuple(k.flatten().tolist()) for k in kernels}
    assert len(distinct) == 32, "every image draws its own kernel"
    anisotropic = [not torch.allclose(k, k.transpose(0, 1), atol=1e-6) for k in kernels]
    assert any(anisotropic) and not all(anisotropic)

    iso_only = dict(
        settings, kernel_types=("iso",), kernel_probabilities=(1.0,), sinc_probability=0
    )
    for kernel in sample_blur_kernels(8, generator=_generator(2), **iso_only):
        assert torch.allclose(kernel, kernel.transpose(0, 1), atol=1e-6)


def test_filter2d_applies_each_kernel_to_its_own_image():
    images = _photo_like(batch=2, height=32, width=32)
    identity = torch.zeros(1, 5, 5)
    identity[0, 2, 2] = 1
    box = torch.full((1, 5, 5), 1 / 25)
    out = filter2d(images, torch.cat([identity, box]))
    assert torch.allclose(out[0], images[0], atol=1e-6)
    reference = F.conv2d(
        F.pad(images[1:], (2, 2, 2, 2), mode="reflect"), box.expand(3, 1, 5, 5), groups=3
    )
    assert torch.allclose(out[1:], reference, atol=1e-6)


PRESET_SIZES = [
    ("realesrgan", 4),
    ("realesrgan", 8),
    ("bicubic", 4),
    ("bicubic", 8),
    ("diffusion", 4),
    ("diffusion", 8),
]


@pytest.mark.parametrize(("preset", "scale"), PRESET_SIZES)
def test_presets_give_the_exact_output_size_on_8bit_levels(preset, scale):
    pipeline = DegradationPipeline.from_preset(preset, scale=scale)
    hq = _photo_like(batch=2, height=scale * 37, width=scale * 23)
    seeds = range(4) if preset == "realesrgan" else range(1)  # several draws of the resize
    for seed in seeds:
        lq = pipeline(hq, generator=_generator(seed))
        assert lq.shape == (2, 3, 37, 23)
        assert lq.dtype == hq.dtype
        assert float(lq.min()) >= 0.0 and float(lq.max()) <= 1.0
        assert torch.allclose(lq * 255, (lq * 255).round(), atol=1e-4), "8-bit levels"


def test_bicubic_preset_is_antialiased_bicubic_and_deterministic():
    hq = _photo_like(batch=1, height=64, width=64)
    lq = DegradationPipeline.from_preset("bicubic", scale=4)(hq, generator=_generator(0))
    expected = F.interpolate(hq, size=(16, 16), mode="bicubic", antialias=True).clamp(0, 1)
    assert torch.allclose(lq, (expected * 255).round() / 255, atol=1e-6)


def test_realesrgan_pipeline_is_seeded_per_image_and_leaves_the_global_rng_alone():
    pipeline = DegradationPipeline.from_preset("realesrgan", scale=4)
    hq = _photo_like(batch=1, height=64, width=64).repeat(4, 1, 1, 1)
    state = torch.random.get_rng_state()
    first = pipeline(hq, generator=_generator(0))
    assert torch.equal(torch.random.get_rng_state(), state), "the global RNG must not be used"
    torch.manual_seed(1234)
    assert torch.equal(first, pipeline(hq, generator=_generator(0)))
    assert not torch.equal(first, pipeline(hq, generator=_generator(1)))
    # Identical inputs in one batch get different degradations.
    for i in range(1, 4):
        assert not torch.equal(first[0], first[i])


def test_pipeline_rejects_sizes_not_divisible_by_scale_and_bad_input():
    pipeline = DegradationPipeline.from_preset("realesrgan", scale=4)
    with pytest.raises(ValueError, match=r"93x64 \(HxW\) is not divisible by scale 4"):
        pipeline(torch.rand(1, 3, 93, 64), generator=_generator(0))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        pipeline(torch.rand(3, 64, 64), generator=_generator(0))
    with pytest.raises(ValueError, match="float"):
        pipeline(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), generator=_generator(0))
    with pytest.raises(ValueError, match="unknown degradation preset 'esrgan'"):
        DegradationPipeline.from_preset("esrgan")
    with pytest.raises(ValueError, match="scale must be a positive integer"):
        DegradationPipeline.from_preset("bicubic", scale=0)


def test_user_defined_stage_list_as_a_recipe_gives_it():
    stages = [
        {"type": "blur", "sigma": [0.5, 2], "kernel_types": ["iso"], "kernel_probabilities": [1]},
        {"type": "resize", "up_down_keep": [0, 1, 0], "scale": [0.5, 1]},
        {"type": "noise", "gaussian_probability": 1, "gaussian_sigma": [1, 5]},
        {"type": "jpeg", "quality": [60, 90]},
        {"type": "blur", "probability": 0.5, "sigma": [0.2, 1.0]},  # second order: a second entry
        {"type": "final", "sinc_probability": 0.0},
    ]
    pipeline = DegradationPipeline.from_config(stages, scale=4)
    assert [stage.type for stage in pipeline.stages] == [
        "blur", "resize", "noise", "jpeg", "blur", "final",
    ]  # fmt: skip
    assert pipeline.stages[0].sigma == (0.5, 2.0)
    lq = pipeline(_photo_like(batch=2, height=4 * 11, width=4 * 9), generator=_generator(0))
    assert lq.shape == (2, 3, 11, 9)
    rebuilt = DegradationPipeline.from_config(pipeline.to_config(), scale=4)
    assert rebuilt.stages == pipeline.stages
    realesrgan = DegradationPipeline.from_preset("realesrgan")
    assert DegradationPipeline.from_config(realesrgan.to_config()).stages == realesrgan.stages


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([{"type": "blurr"}], r"stage 1: unknown stage type 'blurr'; expected one of"),
        ([{"sigma": [1, 2]}], r"needs a 'type' key"),
        (
            [{"type": "blur", "probability": 1.5}],
            r"probability must be a probability in \[0, 1\], got 1.5",
        ),
        (
            [{"type": "noise", "gray_probability": -0.1}],
            r"gray_probability must be a probability in \[0, 1\]",
        ),
        (
            [{"type": "blur", "sigma_2": [0.2, 1.5]}],
            r"unknown key\(s\) \['sigma_2'\] for stage 'blur'",
        ),
        (
            [{"type": "blur", "sigma": [3, 0.2]}],
            r"sigma must be a \[low, high\] range with low <= high",
        ),
        ([{"type": "blur", "kernel_size": [8, 21]}], r"kernel_size must be odd"),
        (
            [{"type": "blur", "kernel_probabilities": [0.5] * 6}],
            r"kernel_probabilities must sum to 1",
        ),
        (
            [{"type": "blur", "kernel_types": ["box"], "kernel_probabilities": [1]}],
            r"kernel_types must be",
        ),
        ([{"type": "jpeg", "quality": [0, 95]}], r"quality must be >= 1.0"),
        ([{"type": "jpeg", "quality": "high"}], r"quality must be a list"),
        ([{"type": "resize", "scale": [1.2, 1.5]}], r"scale must be a range around 1"),
        ([{"type": "resize", "modes": ["lanczos"]}], r"modes must be a non-empty list"),
        ([{"type": "noise", "probability": True}], r"probability must be a number"),
        ([{"type": "final"}, {"type": "final", "colour": 1}], r"stage 2: unknown key"),
        ([{"type": "blur"}], r"stages must end at the output size"),
        ([{"type": "final"}, {"type": "resize"}], r"stages must end at the output size"),
    ],
)
def test_bad_configs_fail_with_a_clear_message(stages, message):
    with pytest.raises(ValueError, match=message):
        DegradationPipeline.from_config(stages, scale=4)


def test_parse_stages_rejects_a_table_instead_of_a_list():
    with pytest.raises(ValueError, match="stages must be a list of tables"):
        parse_stages({"type": "blur"})


def test_stage_probability_zero_leaves_images_alone_and_final_orders_both_ways():
    images = _photo_like(batch=4, height=32, width=32)
    for stage in (
        BlurStage(probability=0.0),
        NoiseStage(probability=0.0),
        JpegStage(probability=0.0),
    ):
        assert torch.equal(
            apply_stage(images, stage, target_size=(8, 8), generator=_generator(0)), images
        )
    # JPEG after the resize leaves 8x8 blocks at LQ scale; before it, they are resized away.
    # Both orders must be reachable, and the output is always the target size.
    jpeg_last = FinalStage(jpeg_first_probability=0.0, sinc_probability=0.0, modes=("area",))
    jpeg_first = FinalStage(jpeg_first_probability=1.0, sinc_probability=0.0, modes=("area",))
    a = apply_stage(images, jpeg_last, target_size=(16, 16), generator=_generator(0))
    b = apply_stage(images, jpeg_first, target_size=(16, 16), generator=_generator(0))
    assert a.shape == b.shape == (4, 3, 16, 16)
    assert not torch.equal(a, b)


def test_pool_mixes_pairs_across_batches_and_keeps_them_aligned():
    pool = PairPool(size=8)
    generator = _generator(0)
    seen_batches = []
    for batch_index in range(12):
        labels = torch.arange(4, dtype=torch.float32) + 10 * batch_index  # unique per pair
        hq = labels.view(4, 1, 1, 1).expand(4, 3, 8, 8).clone()
        lq = labels.view(4, 1, 1, 1).expand(4, 3, 2, 2).clone()
        out_lq, out_hq = pool(lq, hq, generator=generator)
        assert out_lq.shape == lq.shape and out_hq.shape == hq.shape
        assert torch.equal(out_lq[:, :, 0, 0], out_hq[:, :, 0, 0]), "pairs stay aligned"
        seen_batches.append({int(v) // 10 for v in out_hq[:, 0, 0, 0]})
    assert len(pool) == 8
    assert seen_batches[0] == {0} and seen_batches[1] == {1}, "passes through while filling"
    mixed = [batches for batches in seen_batches[2:] if len(batches) > 1]
    assert len(mixed) >= 5, f"batches must mix earlier batches: {seen_batches}"
    assert any(min(b) < i + 2 for i, b in enumerate(seen_batches[2:])), "older pairs come out"


def test_pool_is_seeded_and_checks_shapes():
    def run(seed: int) -> list[torch.Tensor]:
        pool, generator, outputs = PairPool(size=4), _generator(seed), []
        for i in range(6):
            batch = torch.full((2, 3, 4, 4), float(i)) + torch.arange(2.0).view(2, 1, 1, 1) / 10
            outputs.append(pool(batch[..., :2, :2], batch, generator=generator)[1])
        return outputs

    assert all(torch.equal(a, b) for a, b in zip(run(0), run(0), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(run(0), run(3), strict=True))
    pool = PairPool(size=4)
    pool(torch.zeros(2, 3, 2, 2), torch.zeros(2, 3, 8, 8), generator=_generator(0))
    with pytest.raises(ValueError, match="the pool holds"):
        pool(torch.zeros(2, 3, 3, 3), torch.zeros(2, 3, 12, 12), generator=_generator(0))
    with pytest.raises(ValueError, match="pool size must be >= 1"):
        PairPool(size=0)


def test_unsharp_mask_sharpens_edges_and_leaves_flat_areas():
    edge = torch.zeros(1, 3, 64, 64)
    edge[..., 32:] = 0.8
    soft = F.avg_pool2d(F.pad(edge, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    sharp = unsharp_mask(soft)
    assert sharp.shape == soft.shape and float(sharp.min()) >= 0 and float(sharp.max()) <= 1
    assert _laplacian_energy(sharp) > 1.2 * _laplacian_energy(soft)
    flat = torch.full((1, 3, 32, 32), 0.4)
    assert torch.allclose(unsharp_mask(flat), flat, atol=1e-6)

    pipeline = DegradationPipeline.from_preset("bicubic", scale=4)
    lq, target = pipeline.make_pair(soft, generator=_generator(0), sharpen=True)
    assert torch.equal(target, sharp) and lq.shape == (1, 3, 16, 16)
    lq, target = pipeline.make_pair(soft, generator=_generator(0))
    assert target is soft


def test_interpolation_mode_is_drawn_per_image():
    images = _photo_like(batch=1, height=40, width=40).repeat(8, 1, 1, 1)
    stage = ResizeStage(
        up_down_keep=(0.0, 1.0, 0.0), scale=(0.5, 1.0), modes=("nearest", "bicubic")
    )
    out = apply_stage(images, stage, target_size=(10, 10), generator=_generator(0))
    size = tuple(out.shape[-2:])
    nearest = F.interpolate(images[:1], size=size, mode="nearest")
    bicubic = F.interpolate(images[:1], size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    used = {"nearest" if torch.equal(o, nearest[0]) else "bicubic" for o in out}
    assert all(torch.equal(o, nearest[0]) or torch.allclose(o, bicubic[0]) for o in out)
    assert used == {"nearest", "bicubic"}


@pytest.mark.parametrize("quality", [15, 50, 90])
def test_jpeg_matches_a_real_encoder(quality):
    images = (_photo_like(batch=1, height=48, width=72) * 255).round() / 255
    pixels = (images[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    real = torch.from_numpy(decoded.copy()).permute(2, 0, 1)[None].float() / 255

    ours = jpeg_compress(images, torch.tensor([float(quality)]))
    assert torch.equal(ours, (ours * 255).round() / 255), "decoded to 8-bit levels"

    def rms(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).pow(2).mean().sqrt() * 255)

    assert rms(ours, images) == pytest.approx(rms(real, images), rel=0.1)
    assert rms(ours, real) < 0.4 * rms(real, images)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pipeline_runs_on_cuda_with_a_cuda_generator():
    pipeline = DegradationPipeline.from_preset("realesrgan", scale=4)
    hq = _photo_like(batch=4, height=64, width=64).cuda()
    first = pipeline(hq, generator=torch.Generator("cuda").manual_seed(0))
    assert first.device.type == "cuda" and first.shape == (4, 3, 16, 16)
    assert torch.equal(first, pipeline(hq, generator=torch.Generator("cuda").manual_seed(0)))
    # A CPU generator drives CUDA images too (its numbers are copied over).
    lq = pipeline(hq, generator=torch.Generator().manual_seed(0))
    assert lq.device.type == "cuda"
