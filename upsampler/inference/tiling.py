"""Tiling as pure functions: plan, pad, split, blend. No model in here.

A convolutional upsampler sees only a window of its input, so a large image can be upscaled in
overlapping tiles that are blended back together. Three things make the seams disappear:

* **Overlap.** Neighbouring tiles share ``overlap`` input pixels.
* **Context.** In the shared band, the outermost ``context`` pixels of each tile get weight 0:
  they are there only so the pixels inside see real neighbours instead of the zero padding of
  the convolutions (the usual cause of tile seams, as in Real-ESRGAN's ``tile_pad``).
* **Smooth weights.** Across the rest of the band the weight of one tile falls from 1 to 0 along
  a raised cosine while its neighbour's rises, so there is no step anywhere.

Weights are separable and normalised per axis (they sum to 1 at every pixel), and the blend
accumulates in float64, so tiles that agree give back exactly their common value: with a
nearest-neighbour "model", tiled and untiled outputs are identical (the tiling oracle of the
tests). A GigaGAN model is not exactly tile-invariant (its attention and group norms see the
whole tile), which is why tiles overlap and blend instead of being butted together.

Shapes: ``lq`` is (B, C, H, W); a tile is (B, C, tile_height, tile_width); ``hq`` tiles are
(B, C, scale * tile_height, scale * tile_width). Values are whatever the caller uses ([0, 1]).

Tile sides are multiples of the model's ``size_multiple``; tiles lie inside the image, the last
one along each axis flush with its end. Only an image side shorter than one tile is padded (by
reflection, or replication when the side is too short to reflect) up to the next multiple of
``size_multiple``, and the padding is cropped off the output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

PAD_MODES = ("reflect", "replicate")


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one image lie.

    height, width: the input size.
    padded_height, padded_width: the size after padding (only sides shorter than a tile grow).
    tile_height, tile_width: the size of every tile, in input pixels (multiples of
        ``size_multiple``; smaller than the requested tile only for sides shorter than it).
    ys, xs: the top and left input coordinates of the tile rows and columns.
    overlap: the requested overlap; actual overlaps can be larger, never smaller.
    context: input pixels at each shared edge that are context only (blend weight 0).
    scale: output pixels per input pixel.
    """

    height: int
    width: int
    padded_height: int
    padded_width: int
    tile_height: int
    tile_width: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    overlap: int
    context: int
    scale: int

    @property
    def num_tiles(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def output_size(self) -> tuple[int, int]:
        """(scale * height, scale * width): the size of the blended, cropped output."""
        return self.scale * self.height, self.scale * self.width

    def origins(self) -> list[tuple[int, int]]:
        """(y, x) input coordinates of every tile, row-major (the order of split and blend)."""
        return [(y, x) for y in self.ys for x in self.xs]


def _starts(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Tile starts along one axis: evenly spread, first at 0, last flush with the end."""
    if length <= tile:
        return (0,)
    count = math.ceil((length - overlap) / (tile - overlap))
    count = max(count, 2)
    step = (length - tile) / (count - 1)
    return tuple(round(i * step) for i in range(count))


def plan_tiles(
    height: int,
    width: int,
    *,
    tile: int | tuple[int, int],
    overlap: int,
    size_multiple: int,
    scale: int,
    context: int | None = None,
    min_side: int | None = None,
) -> TilePlan:
    """Plan the tiles of a ``height x width`` image.

    Args:
        tile: tile side in input pixels (or (height, width)); a multiple of ``size_multiple``.
            Sides of the image shorter than it get a single, smaller tile.
        overlap: input pixels shared by neighbouring tiles, 0 <= overlap < tile.
        size_multiple: the model's input sides must be multiples of this.
        scale: the model's upscaling factor.
        context: input pixels of each shared edge used as context only (weight 0); by default
            a quarter of the overlap. Must leave at least one pixel to blend over:
            ``2 * context < overlap`` unless both are 0.
        min_side: sides shorter than this are padded up to it (a multiple of
            ``size_multiple``; default ``size_multiple``): some models need more than one pixel
            at their lowest resolution (group norms over a 1x1 map).
    """
    if height < 1 or width < 1:
        raise ValueError(f"image must be at least 1x1, got {height}x{width}")
    if size_multiple < 1:
        raise ValueError(f"size_multiple must be >= 1, got {size_multiple}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    tile_height, tile_width = (tile, tile) if isinstance(tile, int) else tile
    for side in (tile_height, tile_width):
        if side < size_multiple or side % size_multiple:
            raise ValueError(
                f"tile must be a positive multiple of {size_multiple} for this model, got {side}"
            )
    if not 0 <= overlap < min(tile_height, tile_width):
        raise ValueError(
            f"tile overlap must be in [0, {min(tile_height, tile_width)}), got {overlap}"
        )
    if context is None:
        context = overlap // 4
    if context < 0 or (overlap > 0 and 2 * context >= overlap):
        raise ValueError(
            f"context must be in [0, overlap / 2) = [0, {overlap / 2:g}), got {context}"
        )

    min_side = size_multiple if min_side is None else min_side
    if min_side % size_multiple or min_side > min(tile_height, tile_width):
        raise ValueError(
            f"min_side must be a multiple of {size_multiple} no larger than the tile, got {min_side}"
        )

    def axis(length: int, tile_side: int) -> tuple[int, int, tuple[int, ...]]:
        if length < tile_side:  # one tile, padded up to the next multiple
            side = max(math.ceil(length / size_multiple) * size_multiple, min_side)
            return side, side, (0,)
        return length, tile_side, _starts(length, tile_side, overlap)

    padded_height, tile_height, ys = axis(height, tile_height)
    padded_width, tile_width, xs = axis(width, tile_width)
    return TilePlan(
        height=height,
        width=width,
        padded_height=padded_height,
        padded_width=padded_width,
        tile_height=tile_height,
        tile_width=tile_width,
        ys=ys,
        xs=xs,
        overlap=overlap,
        context=context,
        scale=scale,
    )


def pad(lq: torch.Tensor, plan: TilePlan, mode: str = "reflect") -> torch.Tensor:
    """Pad ``lq`` (B, C, H, W) at the bottom and right to (B, C, padded_height, padded_width).

    ``reflect`` mirrors the image without repeating the edge row; a side too short to mirror
    (padding >= its length) falls back to ``replicate``.
    """
    if mode not in PAD_MODES:
        raise ValueError(f"pad mode must be one of {PAD_MODES}, got {mode!r}")
    if tuple(lq.shape[-2:]) != (plan.height, plan.width):
        raise ValueError(
            f"lq is {tuple(lq.shape[-2:])} but the plan is for {(plan.height, plan.width)}"
        )
    pad_bottom = plan.padded_height - plan.height
    pad_right = plan.padded_width - plan.width
    if not pad_bottom and not pad_right:
        return lq
    # F.pad's reflect/replicate modes want a float tensor; cast back afterwards. Each axis is
    # padded on its own, so a side too short to mirror does not stop the other from mirroring.
    padded = lq.float()
    for amount, length, pads in (
        (pad_bottom, plan.height, (0, 0, 0, pad_bottom)),
        (pad_right, plan.width, (0, pad_right, 0, 0)),
    ):
        if amount:
            axis_mode = "replicate" if mode == "reflect" and amount >= length else mode
            padded = F.pad(padded, pads, mode=axis_mode)
    return padded.to(lq.dtype)


def split(lq_padded: torch.Tensor, plan: TilePlan) -> list[torch.Tensor]:
    """The tiles of a padded image, row-major: views (no copies), each (B, C, th, tw)."""
    if tuple(lq_padded.shape[-2:]) != (plan.padded_height, plan.padded_width):
        raise ValueError(
            f"expected a padded image of {(plan.padded_height, plan.padded_width)}, "
            f"got {tuple(lq_padded.shape[-2:])}; call pad() first"
        )
    th, tw = plan.tile_height, plan.tile_width
    return [lq_padded[..., y : y + th, x : x + tw] for y, x in plan.origins()]


def _axis_weights(
    starts: Sequence[int], tile: int, padded: int, context: int, scale: int
) -> list[torch.Tensor]:
    """Per-tile 1-D blend weights along one axis, at output resolution, summing to 1.

    Returns one float64 vector of length ``scale * tile`` per start.
    """
    weights = _raw_axis_weights(starts, tile, context, scale)
    total = _coverage(starts, weights, padded, scale)
    if (total <= 0).any():
        # Tiles packed so densely that context margins meet: blend without margins instead
        # (a raised cosine with the half-pixel offset is never exactly 0).
        weights = _raw_axis_weights(starts, tile, 0, scale)
        total = _coverage(starts, weights, padded, scale)
    # Normalise so the weights of all tiles sum to 1 (up to float64 rounding) at every output
    # position; three tiles can overlap when the last tile is flush with the end.
    return [
        weight / total[scale * start : scale * start + scale * tile]
        for start, weight in zip(starts, weights, strict=True)
    ]


def _coverage(
    starts: Sequence[int], weights: Sequence[torch.Tensor], padded: int, scale: int
) -> torch.Tensor:
    total = torch.zeros(scale * padded, dtype=torch.float64)
    for start, weight in zip(starts, weights, strict=True):
        total[scale * start : scale * start + len(weight)] += weight
    return total


def _raw_axis_weights(
    starts: Sequence[int], tile: int, context: int, scale: int
) -> list[torch.Tensor]:
    side = scale * tile
    weights = []
    for index, start in enumerate(starts):
        weight = torch.ones(side, dtype=torch.float64)
        # Shared band with the previous tile (its end minus our start), and with the next one.
        bands = []
        if index > 0:
            bands.append(("head", starts[index - 1] + tile - start))
        if index + 1 < len(starts):
            bands.append(("tail", start + tile - starts[index + 1]))
        for where, shared in bands:
            length = scale * shared
            margin = scale * min(context, max(shared - 1, 0) // 2)
            ramp_length = max(length - 2 * margin, 1)
            position = torch.arange(length, dtype=torch.float64)
            # Raised cosine from 0 to 1 over the band, flat 0 in the context margin; the
            # half-pixel offset makes a tile's ramp and its neighbour's mirror sum to 1.
            u = ((position - margin + 0.5) / ramp_length).clamp(0.0, 1.0)
            ramp = 0.5 - 0.5 * torch.cos(math.pi * u)
            if where == "head":
                weight[:length] *= ramp
            else:
                weight[side - length :] *= ramp.flip(0)
        weights.append(weight)
    return weights


def blend_weights(plan: TilePlan) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Separable blend weights: (row weights per tile row, column weights per tile column).

    The weight of tile (i, j) at output pixel (y, x) is ``rows[i][y] * cols[j][x]``; float64,
    lengths ``scale * tile_height`` and ``scale * tile_width``; they sum to 1 over all tiles.
    """
    rows = _axis_weights(plan.ys, plan.tile_height, plan.padded_height, plan.context, plan.scale)
    cols = _axis_weights(plan.xs, plan.tile_width, plan.padded_width, plan.context, plan.scale)
    return rows, cols


class TileBlender:
    """Blends ``hq`` tiles, given in row-major order, into the cropped output.

    Streams one row of tiles at a time: only a float64 band as tall as one output tile is kept
    besides the float32 output, so memory stays bounded for any image height.

    Use ``add(hq_tile)`` for every tile in :meth:`TilePlan.origins` order, then ``result()``:
    (B, C, scale * height, scale * width), float32 on the CPU.
    """

    def __init__(self, plan: TilePlan, batch: int, channels: int):
        self.plan = plan
        self.rows, self.cols = blend_weights(plan)
        out_height, out_width = plan.output_size
        self.output = torch.empty(batch, channels, out_height, out_width, dtype=torch.float32)
        self._band_shape = (
            batch,
            channels,
            plan.scale * plan.tile_height,
            plan.scale * plan.padded_width,
        )
        self._band = torch.zeros(self._band_shape, dtype=torch.float64)
        self._next = 0  # index of the next tile expected

    def add(self, hq_tile: torch.Tensor) -> None:
        """Add the next tile's output: (B, C, scale * tile_height, scale * tile_width)."""
        plan, s = self.plan, self.plan.scale
        if self._next >= plan.num_tiles:
            raise ValueError(f"all {plan.num_tiles} tiles were already added")
        expected = (*self._band_shape[:2], s * plan.tile_height, s * plan.tile_width)
        if tuple(hq_tile.shape) != expected:
            raise ValueError(f"hq tile must be {expected}, got {tuple(hq_tile.shape)}")
        row, col = divmod(self._next, len(plan.xs))
        x = s * plan.xs[col]
        weight = self.rows[row][:, None] * self.cols[col][None, :]
        self._band[..., x : x + s * plan.tile_width] += hq_tile.detach().cpu().double() * weight
        self._next += 1
        if col == len(plan.xs) - 1:
            self._finish_row(row)

    def _finish_row(self, row: int) -> None:
        plan, s = self.plan, self.plan.scale
        top = s * plan.ys[row]
        # Output rows above the next tile row's top receive no more contributions.
        end = s * plan.ys[row + 1] if row + 1 < len(plan.ys) else top + s * plan.tile_height
        out_height, out_width = plan.output_size
        stop = min(end, out_height)
        if stop > top:
            self.output[..., top:stop, :] = self._band[..., : stop - top, :out_width].float()
        # Shift the unfinished rows to the top of the band for the next tile row.
        keep = top + s * plan.tile_height - end
        band = torch.zeros(self._band_shape, dtype=torch.float64)
        if keep > 0:
            band[..., :keep, :] = self._band[..., end - top :, :]
        self._band = band

    def result(self) -> torch.Tensor:
        if self._next != self.plan.num_tiles:
            raise ValueError(f"only {self._next} of {self.plan.num_tiles} tiles were added")
        return self.output


def blend(hq_tiles: Sequence[torch.Tensor], plan: TilePlan) -> torch.Tensor:
    """Blend all ``hq`` tiles (row-major) into (B, C, scale * height, scale * width), float32."""
    if len(hq_tiles) != plan.num_tiles:
        raise ValueError(f"the plan has {plan.num_tiles} tiles, got {len(hq_tiles)}")
    batch, channels = hq_tiles[0].shape[:2]
    blender = TileBlender(plan, batch, channels)
    for hq_tile in hq_tiles:
        blender.add(hq_tile)
    return blender.result()


def batches(items: Sequence, batch_size: int) -> Iterator[Sequence]:
    """Consecutive chunks of at most ``batch_size`` items."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


def tiled_apply(
    lq: torch.Tensor,
    fn: Callable[[torch.Tensor], torch.Tensor],
    plan: TilePlan,
    *,
    batch_size: int = 1,
    pad_mode: str = "reflect",
    on_tiles: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Run ``fn`` over the tiles of one image and blend: the whole tiling engine in one call.

    Args:
        lq: (1, C, H, W), on any device (usually the CPU: only tiles need to move).
        fn: maps a batch of tiles (N, C, th, tw) to (N, C, scale * th, scale * tw); it is
            where the caller moves tiles to its device and back.
        plan: from :func:`plan_tiles` for this image's size.
        batch_size: tiles per call of ``fn``.
        on_tiles: called with (tiles done, tiles in all) after every batch.

    Returns:
        (1, C, scale * H, scale * W) float32 on the CPU.
    """
    if lq.ndim != 4 or lq.shape[0] != 1:
        raise ValueError(f"lq must be one image (1, C, H, W), got shape {tuple(lq.shape)}")
    tiles = split(pad(lq, plan, pad_mode), plan)
    blender = TileBlender(plan, 1, lq.shape[1])
    done = 0
    for chunk in batches(tiles, batch_size):
        hq = fn(torch.cat(list(chunk)))
        expected = (
            len(chunk),
            lq.shape[1],
            plan.scale * plan.tile_height,
            plan.scale * plan.tile_width,
        )
        if tuple(hq.shape) != expected:
            raise ValueError(f"fn must return {expected}, got {tuple(hq.shape)}")
        for hq_tile in hq.split(1):
            blender.add(hq_tile)
        done += len(chunk)
        if on_tiles is not None:
            on_tiles(done, plan.num_tiles)
    return blender.result()
