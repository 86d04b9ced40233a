"""Memory: how large the tiles may be, and what to do when a device runs out anyway.

The :class:`~upsampler.Upscaler` asks this module for a tile side (:func:`auto_tile`, from a
model's activation estimate and the memory free on the device) and runs its tiles through
:func:`with_memory_backoff`, which retries with fewer tiles per batch, then smaller tiles,
when the device reports that it is out of memory. Tiling itself (:mod:`.tiling`) knows
nothing of memory; this module knows nothing of images.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import torch

from upsampler.inference.tiling import plan_tiles
from upsampler.models.contract import UpsamplerModel

# Largest tile tried when none is given. On the CPU, with folded styles in channels-last, the
# time per pixel of one tile is nearly flat from 96 to 256 px (2 cores, us/px for 64/96/128/
# 192/256/384 px: nano 23.5/20.5/18.9/19.9/21.8/37.6, student 27.4/23.7/23.2/22.8/21.6/23.6;
# nano's attention grows quadratically beyond), while the share of pixels computed twice in
# the 16 px overlaps falls with the tile: 192 px.
PREFERRED_TILE = {"cpu": 192, "cuda": 512, "mps": 256}
# An image up to this side runs as one tile, no overlaps computed twice, when the model's work
# per pixel does not grow with the tile (no attention). On the CPU (2 cores, student preset,
# 224/256/320/384/448 px images, whole against the tiles above): 0.455/0.532/0.843/1.651/
# 2.330 s against 0.554/0.602/0.920/1.459/1.959 s; nano, whose attention grows
# quadratically, was 27% slower whole at 256 px.
SINGLE_TILE_LIMIT = {"cpu": 320}
TILE_CANDIDATES = (1024, 768, 512, 384, 256, 192, 128, 96, 64, 48, 32)
DEFAULT_OVERLAP = 16

T = TypeVar("T")


def estimate_tile_bytes(
    model: UpsamplerModel, dtype: torch.dtype, tile: int, batch_size: int = 1
) -> int:
    """A rough upper bound of the device memory one forward of ``batch_size`` tiles takes."""
    element = torch.finfo(dtype).bits // 8
    output = 3 * (tile * model.scale) ** 2 * 3  # hq, bicubic base, fp32 copy
    activations = model.activation_elements(tile)
    return int(1.5 * batch_size * element * (activations + output))


def available_bytes(device: torch.device) -> int:
    """Memory the tiles may use: 60% of free GPU memory, or 25% of available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(0.6 * free)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 4 * 2**30
    return int(0.25 * available)


def auto_tile(
    *,
    size_multiple: int,
    device_type: str,
    fits: Callable[[int], bool],
    height: int | None = None,
    width: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    constant_work_per_pixel: bool = False,
) -> int:
    """The tile side for an image of ``height x width`` (input pixels).

    The largest candidate up to the device's preferred size for which ``fits(tile)``; given
    the image size, the tile between two thirds of that and it that covers the image with the
    fewest pixels (a 256 px image takes 2 x 2 tiles of 136 px rather than 2 x 2 of 192). With
    ``constant_work_per_pixel`` (a model without attention), an image up to the device's
    :data:`SINGLE_TILE_LIMIT` that fits runs as one tile instead.
    """
    limit = SINGLE_TILE_LIMIT.get(device_type)
    if constant_work_per_pixel and limit and height is not None and width is not None:
        whole = -(-max(height, width) // size_multiple) * size_multiple
        if whole <= limit and fits(whole):
            return whole
    preferred = PREFERRED_TILE[device_type]
    candidates = [t for t in TILE_CANDIDATES if t <= preferred and t % size_multiple == 0]
    candidates = candidates or [max(size_multiple, preferred // size_multiple * size_multiple)]
    largest = next((t for t in candidates if fits(t)), candidates[-1])
    if height is None or width is None:
        return largest
    lowest = max(size_multiple, 2 * largest // 3 // size_multiple * size_multiple)

    def covered_pixels(tile: int) -> int:
        plan = plan_tiles(
            height,
            width,
            tile=tile,
            overlap=min(overlap, tile // 2),
            size_multiple=size_multiple,
            scale=1,
        )
        return plan.num_tiles * plan.tile_height * plan.tile_width

    return min(range(largest, lowest - 1, -size_multiple), key=lambda t: (covered_pixels(t), -t))


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    message = str(error).lower()
    return "out of memory" in message or "can't allocate memory" in message


def with_memory_backoff(
    run: Callable[[int, int], T],
    *,
    tile: int,
    batch_size: int,
    size_multiple: int,
    device: torch.device,
) -> T:
    """``run(tile, batch_size)``; after running out of memory, again with half the batch
    (the same output), then with half the tile, down to one tile of at least 16 px.

    Raises:
        RuntimeError: out of memory even with one tile of the smallest side.
    """
    while True:
        try:
            return run(tile, batch_size)
        except (torch.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if batch_size > 1:
                batch_size //= 2
            elif tile // 2 >= max(size_multiple, 16) and tile // 2 % size_multiple == 0:
                tile //= 2
            else:
                raise RuntimeError(
                    f"out of memory on {device} even with one {tile}px tile at a time; "
                    "use a smaller model, dtype or device"
                ) from error
