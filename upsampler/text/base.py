"""The contract between text encoders and the models.

A text encoder turns prompts into :class:`TextEmbeddings`; the generator and the
discriminator only ever see embeddings, so no model owns (or downloads) a text encoder.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch


class TextEncoderUnavailableError(RuntimeError):
    """The weights of a text encoder cannot be found locally (and were not downloaded)."""


@dataclass
class TextEmbeddings:
    """Frozen text-encoder output for a batch of prompts.

    tokens: (B, T, D) per-token embeddings.
    pooled: (B, D) one global embedding per prompt, in the same space as ``tokens``.
    mask:   (B, T) bool, True where a token is real (not padding).
    """

    tokens: torch.Tensor
    pooled: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self) -> None:
        if self.tokens.ndim != 3:
            raise ValueError(f"tokens must be (B, T, D), got shape {tuple(self.tokens.shape)}")
        batch, length, dim = self.tokens.shape
        if tuple(self.pooled.shape) != (batch, dim):
            raise ValueError(
                f"pooled must be (B, D) = {(batch, dim)}, got {tuple(self.pooled.shape)}"
            )
        if tuple(self.mask.shape) != (batch, length):
            raise ValueError(
                f"mask must be (B, T) = {(batch, length)}, got {tuple(self.mask.shape)}"
            )
        if self.mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor, got {self.mask.dtype}")

    @property
    def dim(self) -> int:
        return self.tokens.shape[-1]

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """Move tokens and pooled to ``device``/``dtype`` (the mask stays bool)."""
        return TextEmbeddings(
            tokens=self.tokens.to(device=device, dtype=dtype),
            pooled=self.pooled.to(device=device, dtype=dtype),
            mask=self.mask.to(device=device),
        )

    def index(self, indices: torch.Tensor | Sequence[int]) -> TextEmbeddings:
        """Select (or repeat) prompts by index, e.g. to expand one prompt over its tiles."""
        indices = torch.as_tensor(indices, dtype=torch.long, device=self.tokens.device)
        return TextEmbeddings(self.tokens[indices], self.pooled[indices], self.mask[indices])

    @staticmethod
    def cat(items: Sequence[TextEmbeddings]) -> TextEmbeddings:
        """Concatenate along the batch; token lengths must match."""
        return TextEmbeddings(
            tokens=torch.cat([e.tokens for e in items]),
            pooled=torch.cat([e.pooled for e in items]),
            mask=torch.cat([e.mask for e in items]),
        )


class TextEncoder(ABC):
    """A frozen text encoder: ``encode(["a photo of a cat"]) -> TextEmbeddings``."""

    #: width D of ``tokens`` and ``pooled``
    dim: int

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> TextEmbeddings:
        """Embed a batch of prompts (no gradients; the encoder is never trained)."""

    def __call__(self, texts: str | Sequence[str] | TextEmbeddings) -> TextEmbeddings:
        return encode_texts(texts, self)


def encode_texts(
    texts: str | Sequence[str] | TextEmbeddings, encoder: TextEncoder | None
) -> TextEmbeddings:
    """Accept prompts or precomputed embeddings wherever texts are accepted.

    Precomputed :class:`TextEmbeddings` pass through untouched; prompts need ``encoder``.
    """
    if isinstance(texts, TextEmbeddings):
        return texts
    if isinstance(texts, str):
        texts = [texts]
    if encoder is None:
        raise ValueError(
            "prompts were given but no text encoder is loaded; pass precomputed "
            "TextEmbeddings or load one with upsampler.text.load_text_encoder(...)"
        )
    return encoder.encode(list(texts))
