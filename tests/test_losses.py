"""R1, the pyramid loss and the CLIP loss on tiny inputs whose values are worked out by hand.

CPU, offline: the CLIP loss runs on a random open_clip model built from a tiny config, and on a
stand-in whose embeddings are colours.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from upsampler.losses.clip import CLIP_MEAN, CLIP_STD, ClipLoss
from upsampler.losses.gan import pyramid_loss, r1_penalty
from upsampler.text.base import TextEncoderUnavailableError

pytestmark = pytest.mark.usefixtures("one_thread")


# --- R1 -----------------------------------------------------------------------------------------


def test_r1_of_a_linear_discriminator_is_the_squared_norm_of_its_weights():
    # D is linear in its inputs, so its gradient w.r.t. each image is its weights, whatever the
    # image: R1 = sum over levels of ||w||^2, for every image of the batch.
    # Level 0: a 1x1 convolution with channel weights (1, 2, 2) -> a 4x4 patch map of logits;
    #   every pixel's gradient is (1, 2, 2): 16 pixels * 9 = 144.
    # Level 1: one logit per image, 0.5 * the sum of its 3x2x2 values: 12 * 0.25 = 3.
    generator = torch.Generator().manual_seed(0)
    real = [
        torch.rand(2, 3, 4, 4, generator=generator).requires_grad_(True),
        torch.rand(2, 3, 2, 2, generator=generator).requires_grad_(True),
    ]
    channel_weights = torch.tensor([1.0, 2.0, 2.0]).view(1, 3, 1, 1)
    logits = [
        F.conv2d(real[0], channel_weights),  # (2, 1, 4, 4)
        0.5 * real[1].sum(dim=(1, 2, 3)),  # (2,)
    ]
    penalty = r1_penalty(logits, real)
    assert penalty.shape == ()
    torch.testing.assert_close(penalty, torch.tensor(147.0), rtol=0, atol=1e-4)


def test_r1_is_the_batch_mean_and_differentiable_in_the_discriminator():
    # D(x) = a/2 * ||x||^2 per image: its gradient is a * x, so R1 = a^2 * mean_b ||x_b||^2.
    # Image 0 is all ones (||x||^2 = 12), image 1 all twos (48): the mean is 30; with a = 0.5,
    # R1 = 7.5. R1 regularises D, so it must be differentiable in D's parameters (create_graph):
    # dR1/da = 2a * 30 = 30.
    a = torch.tensor(0.5, requires_grad=True)
    real = torch.stack([torch.ones(3, 2, 2), torch.full((3, 2, 2), 2.0)]).requires_grad_(True)
    logits = a / 2 * real.pow(2).sum(dim=(1, 2, 3))
    penalty = r1_penalty([logits], [real])
    torch.testing.assert_close(penalty, torch.tensor(7.5), rtol=0, atol=1e-6)
    penalty.backward()
    torch.testing.assert_close(a.grad, torch.tensor(30.0), rtol=0, atol=1e-5)


def test_r1_needs_the_images_the_logits_came_from():
    real = torch.rand(1, 3, 2, 2)  # not requiring grad: no gradient to penalise
    with pytest.raises(RuntimeError):
        r1_penalty([real.sum(dim=(1, 2, 3))], [real])


# --- pyramid loss -------------------------------------------------------------------------------

# A 4x4 target and its area averages: 2x2 blocks [[2, 6], [8, 0]], the whole image 4.
HQ = torch.tensor(
    [[0.0, 2.0, 4.0, 6.0], [2.0, 4.0, 6.0, 8.0], [8.0, 8.0, 0.0, 0.0], [8.0, 8.0, 0.0, 0.0]]
).view(1, 1, 4, 4)


def hand_pyramid() -> list[torch.Tensor]:
    """Levels 1x1, 2x2 and the 4x4 output: 1 off everywhere at 1x1, one pixel 1 off at 2x2."""
    return [
        torch.tensor([[[[5.0]]]], requires_grad=True),
        torch.tensor([[[[2.0, 6.0], [8.0, 1.0]]]], requires_grad=True),
        torch.full((1, 1, 4, 4), 100.0, requires_grad=True),  # the output: not this loss's
    ]


def test_pyramid_loss_is_the_mean_l1_of_the_levels_below_the_output():
    pyramid = hand_pyramid()
    loss = pyramid_loss(pyramid, HQ)
    # Level 1x1: |5 - 4| = 1. Level 2x2: mean(0, 0, 0, 1) = 0.25. Mean over the levels: 0.625.
    torch.testing.assert_close(loss, torch.tensor(0.625), rtol=0, atol=1e-6)
    loss.backward()
    # d/d level: sign(difference) / (pixels in the level) / (number of levels).
    torch.testing.assert_close(pyramid[0].grad, torch.tensor([[[[0.5]]]]))
    torch.testing.assert_close(pyramid[1].grad, torch.tensor([[[[0.0, 0.0], [0.0, 0.125]]]]))
    assert pyramid[2].grad is None  # the output level is the reconstruction loss's


def test_pyramid_loss_charbonnier_and_a_pyramid_of_one_level():
    eps = 1e-3
    loss = pyramid_loss(hand_pyramid(), HQ, kind="charbonnier")
    one = math.sqrt(1 + eps**2)  # a difference of 1; the others are 0 and cost eps each
    expected = (one + (3 * eps + one) / 4) / 2
    torch.testing.assert_close(loss, torch.tensor(expected), rtol=0, atol=1e-6)
    # Only the output: nothing below it to compare.
    assert pyramid_loss([HQ.clone()], HQ).item() == 0.0
    with pytest.raises(ValueError, match="'l1' or 'charbonnier'"):
        pyramid_loss(hand_pyramid(), HQ, kind="l2")


def test_pyramid_loss_matches_average_pooling_on_a_random_batch():
    # Area downscaling by whole factors is average pooling, an independent oracle.
    generator = torch.Generator().manual_seed(0)
    hq = torch.rand(2, 3, 16, 16, generator=generator)
    pyramid = [torch.rand(2, 3, side, side, generator=generator) for side in (4, 8, 16)]
    expected = torch.stack(
        [
            (pyramid[0] - F.avg_pool2d(hq, 4)).abs().mean(),
            (pyramid[1] - F.avg_pool2d(hq, 2)).abs().mean(),
        ]
    ).mean()
    torch.testing.assert_close(pyramid_loss(pyramid, hq), expected, rtol=0, atol=1e-6)


# --- CLIP loss ----------------------------------------------------------------------------------

CLIP_NAME = "upsampler-test-clip-loss"
COLOURS = {
    "red": (1.0, -1.0, -1.0),
    "green": (-1.0, 1.0, -1.0),
    "blue": (-1.0, -1.0, 1.0),
}


class ColourCLIP(nn.Module):
    """A stand-in for CLIP: an image's embedding is its mean colour minus grey (after undoing
    CLIP's normalisation), a text's is its colour's direction in COLOURS."""

    def __init__(self) -> None:
        super().__init__()
        self.image_shapes: list[tuple[int, ...]] = []

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        self.image_shapes.append(tuple(images.shape))
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        return (images * std + mean).mean(dim=(2, 3)) - 0.5

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.tensor([list(COLOURS.values())[int(token)] for token in tokens[:, 0]])


@pytest.fixture(scope="module")
def clip_loss(tmp_path_factory) -> ClipLoss:
    """A ClipLoss over a random open_clip model of a tiny registered config."""
    import open_clip

    config = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }  # fmt: skip
    path = tmp_path_factory.mktemp("open_clip") / f"{CLIP_NAME}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    torch.manual_seed(0)
    return ClipLoss(CLIP_NAME, "", random_weights=True)


@pytest.fixture
def colour_loss(clip_loss) -> ClipLoss:
    """The ClipLoss with the colour stand-in instead of its CLIP, at an 8x8 input size."""
    # A copy of everything but the model and tokenizer (replaced below; copying them is slow).
    skip = {id(clip_loss.model): None, id(clip_loss.tokenizer): None}
    loss = copy.deepcopy(clip_loss, memo=skip)
    loss.model = ColourCLIP()
    loss.tokenizer = lambda prompts: torch.tensor([[list(COLOURS).index(p)] for p in prompts])
    loss.image_size = (8, 8)
    return loss


def flat(*colours: tuple[float, float, float], size: int = 16) -> torch.Tensor:
    """(B, 3, size, size): one flat colour per image."""
    return torch.tensor(colours).view(len(colours), 3, 1, 1).expand(-1, -1, size, size).clone()


def test_clip_loss_is_zero_for_a_match_and_one_minus_the_cosine_otherwise(colour_loss):
    # A red image's embedding is (0.5, -0.5, -0.5): the direction of "red", cosine 1, loss 0.
    # "green" is (-1, 1, -1): cosine (-0.5 - 0.5 + 0.5) / (sqrt(0.75) * sqrt(3)) = -1/3,
    # loss 4/3. The batch's loss is the mean of its images'.
    red = flat((1.0, 0.0, 0.0))
    torch.testing.assert_close(colour_loss(red, ["red"]), torch.tensor(0.0), rtol=0, atol=1e-5)
    torch.testing.assert_close(colour_loss(red, ["green"]), torch.tensor(4 / 3), atol=1e-5, rtol=0)
    both = colour_loss(flat((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)), ["red", "green"])
    torch.testing.assert_close(both, torch.tensor((0 + 4 / 3) / 2), rtol=0, atol=1e-5)
    # The images reach the model resized to its input size.
    assert set(colour_loss.model.image_shapes) == {(1, 3, 8, 8), (2, 3, 8, 8)}


def test_clip_loss_pulls_the_image_towards_its_prompt(colour_loss):
    hq = flat((1.0, 0.0, 0.0)).mul(0.8).add(0.1).requires_grad_(True)  # reddish, inside [0, 1]
    loss = colour_loss(hq, ["green"])
    loss.backward()
    # More green, less red lowers the loss: the gradient says so at every pixel.
    assert (hq.grad[:, 1] < 0).all() and (hq.grad[:, 0] > 0).all()
    stepped = (hq - 0.05 * hq.grad / hq.grad.abs().max()).detach()
    assert colour_loss(stepped, ["green"]) < loss


def test_random_tiny_clip_loss_is_bounded_and_trains_only_the_image(clip_loss):
    assert clip_loss.image_size == (32, 32)
    hq = torch.rand(2, 3, 48, 40, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss = clip_loss(hq, ["a red fox", "a blue car"])
    assert loss.shape == () and 0.0 <= loss.item() <= 2.0
    loss.backward()
    assert hq.grad is not None and hq.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in clip_loss.model.parameters())
    # The prompt matters.
    assert clip_loss(hq, ["a red fox", "a red fox"]).item() != pytest.approx(loss.item(), abs=1e-6)


def test_clip_loss_reads_its_weights_file_and_refuses_a_missing_one(clip_loss, tmp_path):
    weights = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in clip_loss.model.state_dict().items()}, str(weights))
    loaded = ClipLoss(CLIP_NAME, weights)
    hq = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loaded(hq, ["a fox"]), clip_loss(hq, ["a fox"]), rtol=0, atol=1e-6)
    with pytest.raises(TextEncoderUnavailableError, match="not found"):
        ClipLoss(CLIP_NAME, tmp_path / "missing.safetensors")
