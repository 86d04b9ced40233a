from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import random_text, tiny_discriminator
from upsampler import GigaGANDiscriminator


def pyramid_of(image: torch.Tensor, levels: int) -> list[torch.Tensor]:
    return [image] + [F.avg_pool2d(image, 2**i) for i in range(1, levels)]


@pytest.mark.parametrize("text_conditioning", [False, True])
def test_one_prediction_per_scale(text_conditioning):
    discriminator = tiny_discriminator(text_conditioning=text_conditioning)
    lq = torch.rand(2, 3, 8, 12)
    images = pyramid_of(torch.rand(2, 3, 32, 48), 3)
    text = random_text(2) if text_conditioning else None
    logits = discriminator(images, lq, text)
    assert [tuple(logit.shape) for logit in logits] == [
        (2, 1, 32, 48),
        (2, 1, 16, 24),
        (2, 1, 8, 12),
    ]
    # The full-resolution image alone also gets a prediction at every scale.
    assert len(discriminator(images[0], lq, text)) == 3


def test_text_projection_changes_the_verdict():
    discriminator = tiny_discriminator(text_conditioning=True)
    lq = torch.rand(2, 3, 8, 8)
    images = pyramid_of(torch.rand(2, 3, 32, 32), 3)
    a = discriminator(images, lq, random_text(2, seed=0))
    b = discriminator(images, lq, random_text(2, seed=1))
    assert all((x - y).abs().max() > 1e-6 for x, y in zip(a, b, strict=True))
    with pytest.raises(ValueError, match="text-conditioned"):
        discriminator(images, lq)


def test_unconditional_mode_has_no_text_parameters():
    discriminator = tiny_discriminator(text_conditioning=False)
    assert not any("text" in name for name, _ in discriminator.named_parameters())


def test_every_discriminator_parameter_gets_a_gradient():
    discriminator = tiny_discriminator(text_conditioning=True)
    lq = torch.rand(2, 3, 8, 8)
    real = pyramid_of(torch.rand(2, 3, 32, 32), 3)
    fake = pyramid_of(torch.rand(2, 3, 32, 32), 3)
    text = random_text(2)
    loss = sum(F.softplus(-logit).mean() for logit in discriminator(real, lq, text))
    loss = loss + sum(F.softplus(logit).mean() for logit in discriminator(fake, lq, text))
    loss.backward()
    missing = [
        n
        for n, p in discriminator.named_parameters()
        if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert missing == []


def test_save_pretrained_round_trip(tmp_path):
    discriminator = tiny_discriminator(text_conditioning=True).eval()
    lq = torch.rand(2, 3, 8, 8)
    images = pyramid_of(torch.rand(2, 3, 32, 32), 3)
    text = random_text(2)
    discriminator.save_pretrained(tmp_path)
    loaded = GigaGANDiscriminator.from_pretrained(tmp_path)
    with torch.no_grad():
        for a, b in zip(discriminator(images, lq, text), loaded(images, lq, text), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bad_inputs_fail_clearly():
    discriminator = tiny_discriminator()
    lq = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="multiples of 4"):
        discriminator(torch.rand(1, 3, 30, 32), lq)
    with pytest.raises(ValueError, match="pyramid level 1"):
        discriminator([torch.rand(1, 3, 32, 32), torch.rand(1, 3, 8, 8)], lq)
    with pytest.raises(ValueError, match="pass lq"):
        discriminator(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="1 to 3 pyramid levels"):
        discriminator(pyramid_of(torch.rand(1, 3, 32, 32), 4), lq)
    without_lq = tiny_discriminator(lq_conditioning=False)
    assert len(without_lq(torch.rand(1, 3, 32, 32))) == 3
