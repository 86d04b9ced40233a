"""A seam measure for tiled upscaling: how much larger the jumps across tile borders are than
the jumps between any other neighbouring pixels.

A tile seam is a line where neighbouring output pixels come from different tiles that disagree
(each saw zero padding, or its own style, at that edge), so the intensity jumps across it are
larger than elsewhere in the image. :func:`seam_ratio` is the mean absolute jump across the
given borders over the mean absolute jump at the other positions in the same phase: about 1
when the borders cannot be told apart from the rest of the image, above 1 where they show.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

__all__ = ["grid_borders", "seam_ratio", "tile_borders"]


def grid_borders(length: int, period: int, offset: int = 0) -> list[int]:
    """Borders of tiles butted every ``period`` pixels from ``offset``: ``offset + k * period``
    strictly inside ``(0, length)``."""
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    first = offset % period or period
    return list(range(first, length, period))


def tile_borders(starts: Iterable[int], tile: int, length: int, scale: int = 1) -> list[int]:
    """Output coordinates where a tile of side ``tile`` starting at each of ``starts`` (input
    pixels) begins or ends, strictly inside the ``scale * length`` output."""
    edges = {scale * start for start in starts} | {scale * (start + tile) for start in starts}
    return sorted(edge for edge in edges if 0 < edge < scale * length)


def seam_ratio(
    images: torch.Tensor, rows: Sequence[int], cols: Sequence[int], *, period: int = 1
) -> float:
    """Mean |jump| across the borders over the mean |jump| between all other neighbours.

    Args:
        images: (B, C, H, W) or (C, H, W), any range (the ratio does not depend on it).
        rows: border rows: the jump between rows ``r - 1`` and ``r`` is a border jump.
        cols: border columns, likewise.
        period: compare only with jumps at the borders' positions modulo ``period``. A network
            that upsamples by nearest neighbour and convolution leaves a fixed pattern of
            period ``scale`` in its output (strong with random weights), which would otherwise
            make every grid of multiples of ``scale`` look special; pass ``scale`` there.

    Returns:
        The ratio, averaged over channels and images: 1 when borders look like anywhere else.
    """
    images = images.double()
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) or (C, H, W), got {tuple(images.shape)}")
    height, width = images.shape[-2:]
    if bad := [r for r in rows if not 0 < r < height] + [c for c in cols if not 0 < c < width]:
        raise ValueError(f"borders {bad} lie outside the {height}x{width} image")
    if not rows and not cols:
        raise ValueError("no borders given")
    vertical = (images[..., 1:, :] - images[..., :-1, :]).abs()  # jump into row r at r - 1
    horizontal = (images[..., :, 1:] - images[..., :, :-1]).abs()
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")

    def masks(length: int, borders: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(is a border, is a non-border jump in a border's phase) per jump position."""
        position = torch.arange(1, length)  # jump k lies between pixels k - 1 and k
        border = torch.zeros(length - 1, dtype=torch.bool)
        border[[b - 1 for b in borders]] = True
        phases = torch.tensor(sorted({b % period for b in borders}), dtype=torch.long)
        in_phase = (position[:, None] % period == phases[None]).any(dim=1)
        return border, in_phase & ~border

    row_border, row_inside = masks(height, rows)
    col_border, col_inside = masks(width, cols)
    border = torch.cat(
        [vertical[..., row_border, :].flatten(), horizontal[..., col_border].flatten()]
    )
    inside = torch.cat(
        [vertical[..., row_inside, :].flatten(), horizontal[..., col_inside].flatten()]
    )
    if inside.numel() == 0:
        raise ValueError(
            f"every position in the borders' phase (period {period}) is a border: use a larger "
            "image or a smaller period"
        )
    return float(border.mean() / inside.mean())
