"""The training-pair pool: mixes degraded pairs across batches.

Real-ESRGAN keeps a queue of 180 pairs (``_dequeue_and_enqueue`` in
``realesrgan/models/realesrgan_model.py``): its pipeline draws some degradation choices once
per batch (here: the random resize factor, because a batch must keep one size), so without
the pool every image of a training batch would share them. The pool fills with the first
batches (passing them through unchanged, as Real-ESRGAN does); once full, each incoming batch
is swapped with randomly chosen pairs from the pool.
"""

from __future__ import annotations

import torch

__all__ = ["PairPool"]


class PairPool:
    """A queue of ``size`` (lq, hq) pairs that returns batches mixed across earlier batches.

    ``pool.exchange(lq, hq, generator=g) -> (lq, hq)`` (or ``pool(lq, hq, generator=g)``) with lq: (B, C, h, w) and hq: (B, C, H, W) of the
    same sizes on every call; ``B <= size``. The pool's tensors are allocated on the first call,
    on the incoming batch's device and dtype (``size`` pairs: budget its memory).
    Swapping B random slots is the same in distribution as Real-ESRGAN's shuffle-then-take-the-
    first-B, without copying the whole pool on every step.
    """

    def __init__(self, size: int = 180) -> None:
        if size < 1:
            raise ValueError(f"pool size must be >= 1, got {size}")
        self.size = size
        self._lq: torch.Tensor | None = None
        self._hq: torch.Tensor | None = None
        self._filled = 0

    def __len__(self) -> int:
        """How many pairs the pool holds now."""
        return self._filled

    def reset(self) -> None:
        """Empty the pool (and free its memory)."""
        self._lq = self._hq = None
        self._filled = 0

    def _check(self, lq: torch.Tensor, hq: torch.Tensor) -> None:
        if lq.shape[0] != hq.shape[0]:
            raise ValueError(f"lq and hq batch sizes differ: {lq.shape[0]} vs {hq.shape[0]}")
        if self._lq is None or self._hq is None:
            return
        if lq.shape[1:] != self._lq.shape[1:] or hq.shape[1:] != self._hq.shape[1:]:
            raise ValueError(
                f"the pool holds lq {tuple(self._lq.shape[1:])} and hq {tuple(self._hq.shape[1:])}"
                f" pairs, got lq {tuple(lq.shape[1:])} and hq {tuple(hq.shape[1:])}"
            )

    def state_dict(self) -> dict[str, torch.Tensor | int | None]:
        """The pool's contents, to resume training with the same pool."""
        return {"size": self.size, "filled": self._filled, "lq": self._lq, "hq": self._hq}

    def load_state_dict(self, state: dict[str, torch.Tensor | int | None]) -> None:
        if state["size"] != self.size:
            raise ValueError(f"the saved pool holds {state['size']} pairs, this one {self.size}")
        self._filled = int(state["filled"])  # type: ignore[arg-type]
        self._lq = state["lq"]  # type: ignore[assignment]
        self._hq = state["hq"]  # type: ignore[assignment]

    def __call__(
        self, lq: torch.Tensor, hq: torch.Tensor, *, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as :meth:`exchange`."""
        return self.exchange(lq, hq, generator=generator)

    @torch.no_grad()
    def exchange(
        self, lq: torch.Tensor, hq: torch.Tensor, *, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Put a batch in, get a batch of the same size out (mixed once the pool is full).

        lq: (B, C, h, w), hq: (B, C, H, W). While the pool fills, the batch itself comes back.
        """
        self._check(lq, hq)
        batch = lq.shape[0]
        if self._lq is None or self._hq is None:
            self._lq = lq.new_empty(self.size, *lq.shape[1:])
            self._hq = hq.new_empty(self.size, *hq.shape[1:])
        if self._filled < self.size:
            stored = min(batch, self.size - self._filled)
            self._lq[self._filled : self._filled + stored] = lq[:stored]
            self._hq[self._filled : self._filled + stored] = hq[:stored]
            self._filled += stored
            return lq, hq
        if batch > self.size:
            raise ValueError(f"a batch of {batch} is larger than the pool ({self.size})")
        order = torch.randperm(self.size, generator=generator, device=generator.device)
        slots = order[:batch].to(self._lq.device)
        out_lq, out_hq = self._lq[slots], self._hq[slots]  # advanced indexing copies
        self._lq[slots] = lq
        self._hq[slots] = hq
        return out_lq, out_hq
