"""PSNR, SSIM (against scikit-image when installed) and the Y channel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from upsampler.evaluation.metrics import lpips_distance, psnr, rgb_to_y, ssim


def _photo(seed: int = 0, height: int = 48, width: int = 64) -> torch.Tensor:
    """A real photo crop from scikit-image if installed, else a smooth random texture."""
    try:
        from skimage import data

        array = data.astronaut()[100 : 100 + height, 150 : 150 + width] / 255.0
        return torch.from_numpy(array).permute(2, 0, 1)[None].float()
    except ImportError:
        generator = torch.Generator().manual_seed(seed)
        coarse = torch.rand(1, 3, height // 8, width // 8, generator=generator)
        return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic").clamp(
            0, 1
        )


def _noisy(image: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(seed))
    return (image + sigma * noise).clamp(0, 1)


def test_rgb_to_y_is_bt601_studio_swing():
    black, white = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    torch.testing.assert_close(rgb_to_y(black), torch.full((1, 1, 2, 2), 16 / 255))
    torch.testing.assert_close(rgb_to_y(white), torch.full((1, 1, 2, 2), 235 / 255))
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(rgb_to_y(red), torch.full((1, 1, 1, 1), (16 + 65.481) / 255))


def test_psnr_known_values():
    zeros, tenth = torch.zeros(2, 3, 16, 16), torch.full((2, 3, 16, 16), 0.1)
    # RGB: MSE = 0.01 -> exactly 20 dB.
    torch.testing.assert_close(
        psnr(tenth, zeros, y_channel=False), torch.full((2,), 20.0, dtype=torch.float64)
    )
    # Y: the difference shrinks to 0.1 * 219 / 255.
    expected = -20 * math.log10(0.1 * 219 / 255)
    torch.testing.assert_close(psnr(tenth, zeros), torch.full((2,), expected, dtype=torch.float64))
    assert psnr(zeros, zeros).isinf().all()


def test_crop_border_ignores_the_edges():
    image = _photo()
    damaged = image.clone()
    damaged[..., :4, :] = 1 - damaged[..., :4, :]
    damaged[..., :, -4:] = 0
    assert math.isfinite(psnr(damaged, image).item())
    assert psnr(damaged, image, crop_border=4).isinf().all()
    assert ssim(damaged, image).item() < 0.99
    assert ssim(damaged, image, crop_border=4).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="leaves nothing"):
        psnr(image, image, crop_border=24)


def test_ssim_is_one_for_identical_and_falls_with_noise():
    image = _photo()
    assert ssim(image, image).item() == pytest.approx(1.0, abs=1e-12)
    values = [ssim(_noisy(image, sigma), image).item() for sigma in (0.01, 0.05, 0.2)]
    assert values == sorted(values, reverse=True) and values[-1] < 0.8, values
    psnrs = [psnr(_noisy(image, sigma), image).item() for sigma in (0.01, 0.05, 0.2)]
    assert psnrs == sorted(psnrs, reverse=True), psnrs


def test_batch_gives_one_value_per_image():
    image = _photo()
    batch = torch.cat([_noisy(image, 0.02), _noisy(image, 0.1)])
    references = torch.cat([image, image])
    per_image = ssim(batch, references)
    assert per_image.shape == (2,)
    assert per_image[0].item() == pytest.approx(ssim(batch[:1], image).item())
    assert per_image[1].item() == pytest.approx(ssim(batch[1:], image).item())
    assert psnr(batch, references).shape == (2,)


@pytest.mark.parametrize("y_channel", [True, False])
@pytest.mark.parametrize("crop_border", [0, 4])
def test_ssim_and_psnr_match_scikit_image(y_channel, crop_border):
    metrics = pytest.importorskip("skimage.metrics", reason="scikit-image is the reference")
    image = _photo(height=64, width=80)
    # A real distortion: noise plus a one-pixel shift of part of the image.
    distorted = _noisy(image, 0.04)
    distorted[..., 10:30, 10:40] = image[..., 11:31, 10:40]

    def as_numpy(t: torch.Tensor) -> np.ndarray:
        t = t.double()
        if crop_border:
            t = t[..., crop_border:-crop_border, crop_border:-crop_border]
        return (rgb_to_y(t)[0, 0] if y_channel else t[0]).numpy()

    reference, test = as_numpy(image), as_numpy(distorted)
    expected_ssim = metrics.structural_similarity(
        test,
        reference,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=None if y_channel else 0,
    )
    expected_psnr = metrics.peak_signal_noise_ratio(reference, test, data_range=1.0)
    got_ssim = ssim(distorted, image, crop_border=crop_border, y_channel=y_channel).item()
    got_psnr = psnr(distorted, image, crop_border=crop_border, y_channel=y_channel).item()
    assert got_ssim == pytest.approx(expected_ssim, abs=1e-10)
    assert got_psnr == pytest.approx(expected_psnr, abs=1e-10)


def test_shape_errors_are_loud():
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 17))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        ssim(torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 3, 10, 30), torch.zeros(1, 3, 10, 30))


def test_lpips_distance_without_weights_names_the_command(tmp_path):
    image = _photo()
    with pytest.raises(FileNotFoundError, match="upsampler prepare-lpips"):
        lpips_distance(image, image, weights_dir=tmp_path)
