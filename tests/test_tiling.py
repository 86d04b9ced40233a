"""The tiling engine against exact oracles: no model, just pure functions."""

from __future__ import annotations

import pytest
import torch

from upsampler.inference.tiling import (
    TileBlender,
    blend,
    blend_weights,
    pad,
    plan_tiles,
    split,
    tiled_apply,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def nearest(scale: int):
    """A "model" that makes every pixel a scale x scale block: tiling must not change it."""

    def model(lq: torch.Tensor) -> torch.Tensor:
        return lq.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)

    return model


SIZES = [(1, 1), (3, 5), (7, 64), (17, 33), (64, 64), (65, 127), (100, 37)]


@pytest.mark.parametrize(("height", "width"), SIZES)
@pytest.mark.parametrize(("tile", "overlap"), [(8, 0), (8, 3), (16, 0), (16, 5), (16, 8), (24, 11)])
def test_nearest_neighbour_oracle_tiled_equals_untiled(height, width, tile, overlap):
    lq = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(height * width))
    plan = plan_tiles(height, width, tile=tile, overlap=overlap, size_multiple=4, scale=4)
    hq = tiled_apply(lq, nearest(4), plan, batch_size=3)
    assert hq.shape == (1, 3, 4 * height, 4 * width)
    assert torch.equal(hq, nearest(4)(lq))


@pytest.mark.parametrize("scale", [2, 8])
@pytest.mark.parametrize("context", [0, 1, 3])
def test_oracle_other_scales_multiples_and_contexts(scale, context):
    lq = torch.rand(1, 3, 45, 83, generator=torch.Generator().manual_seed(scale))
    plan = plan_tiles(45, 83, tile=16, overlap=8, size_multiple=8, scale=scale, context=context)
    assert torch.equal(tiled_apply(lq, nearest(scale), plan), nearest(scale)(lq))


def test_plan_tiles_lie_inside_and_overlap_enough():
    plan = plan_tiles(100, 250, tile=32, overlap=8, size_multiple=8, scale=4)
    assert (plan.tile_height, plan.tile_width) == (32, 32)
    for starts, length in ((plan.ys, 100), (plan.xs, 250)):
        assert starts[0] == 0 and starts[-1] + 32 == length  # first at 0, last flush
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        assert all(32 - gap >= 8 for gap in gaps)  # overlap never below the requested one
    assert len(split(pad(torch.zeros(1, 3, 100, 250), plan), plan)) == plan.num_tiles


def test_image_smaller_than_a_tile_is_one_padded_tile():
    plan = plan_tiles(5, 13, tile=64, overlap=16, size_multiple=8, scale=4)
    assert plan.num_tiles == 1
    assert (plan.padded_height, plan.padded_width) == (8, 16)
    assert (plan.tile_height, plan.tile_width) == (8, 16)
    assert plan.output_size == (20, 52)


def test_pad_reflects_and_falls_back_to_replicate():
    lq = torch.arange(6.0).reshape(1, 1, 2, 3)
    padded = pad(lq, plan_tiles(2, 3, tile=8, overlap=0, size_multiple=4, scale=1))
    # Width 3 -> 4 reflects (column 1 again); height 2 -> 4 cannot reflect 2 rows: replicate.
    assert padded[0, 0, 0].tolist() == [0.0, 1.0, 2.0, 1.0]
    assert padded[0, 0, 3].tolist() == padded[0, 0, 1].tolist() == [3.0, 4.0, 5.0, 4.0]


@pytest.mark.parametrize(("height", "tile", "overlap"), [(200, 32, 8), (70, 32, 15), (33, 32, 4)])
def test_weights_sum_to_one_and_skip_context(height, tile, overlap):
    plan = plan_tiles(height, 16, tile=tile, overlap=overlap, size_multiple=1, scale=2)
    rows, _ = blend_weights(plan)
    total = torch.zeros(2 * height, dtype=torch.float64)
    for start, weight in zip(plan.ys, rows, strict=True):
        total[2 * start : 2 * start + len(weight)] += weight
        assert (weight >= 0).all()
    assert torch.allclose(total, torch.ones_like(total), atol=1e-12)
    # Image borders belong to the border tiles alone; interior edges are context (weight 0).
    assert rows[0][0] == 1 and rows[-1][-1] == 1
    if plan.context:
        assert (rows[0][-2 * plan.context :] == 0).all()
        assert (rows[1][: 2 * plan.context] == 0).all()


def test_blend_has_no_seams_between_disagreeing_tiles():
    # Each tile outputs its own constant: a butted seam would jump by the full difference.
    plan = plan_tiles(64, 64, tile=32, overlap=16, size_multiple=8, scale=4)
    tiles = [torch.full((1, 1, 128, 128), float(index)) for index in range(plan.num_tiles)]
    hq = blend(tiles, plan)
    largest_tile_difference = plan.num_tiles - 1
    step = max(hq.diff(dim=-1).abs().max(), hq.diff(dim=-2).abs().max())
    assert step < 0.1 * largest_tile_difference
    butted = plan_tiles(64, 64, tile=32, overlap=0, size_multiple=8, scale=4)
    hard = blend([torch.full((1, 1, 128, 128), float(i)) for i in range(4)], butted)
    assert hard.diff(dim=-1).abs().max() == 1.0  # the test can see a seam when there is one


def test_blender_checks_order_and_count():
    plan = plan_tiles(16, 16, tile=8, overlap=0, size_multiple=8, scale=2)
    blender = TileBlender(plan, 1, 3)
    with pytest.raises(ValueError, match="hq tile must be"):
        blender.add(torch.zeros(1, 3, 8, 8))
    blender.add(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="only 1 of 4 tiles"):
        blender.result()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(tile=100, overlap=0, size_multiple=8), "tile must be a positive multiple of 8"),
        (dict(tile=32, overlap=32, size_multiple=8), r"tile overlap must be in \[0, 32\)"),
        (dict(tile=32, overlap=8, size_multiple=8, context=4), "context must be in"),
    ],
)
def test_plan_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_tiles(50, 50, scale=4, **kwargs)


def test_tiled_apply_checks_the_function_output():
    plan = plan_tiles(16, 16, tile=8, overlap=0, size_multiple=8, scale=4)
    with pytest.raises(ValueError, match="fn must return"):
        tiled_apply(torch.zeros(1, 3, 16, 16), nearest(2), plan)
