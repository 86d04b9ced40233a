"""Frozen open_clip text towers (the default text encoder of the paper's text branch).

GigaGAN (Kang et al., 2023, Sec. 3.1) conditions on the per-token embeddings of a frozen
CLIP text encoder *and* on its pooled embedding. We return both in the same space: every
token goes through ``ln_final`` and ``text_projection``, exactly like the token that CLIP
pools (the EOT token), so ``pooled`` equals ``tokens`` at the EOT position.

Weights come from a local checkpoint (safetensors, or a pickle read with
``weights_only=True``) or from an open_clip pretrained tag (a hub download, which fails
offline with :class:`TextEncoderUnavailableError`). The model is always built with
``pretrained=None`` and filled by us, so no checkpoint is ever unpickled unsafely.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from upsampler.text.base import TextEmbeddings, TextEncoder, TextEncoderUnavailableError

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
# Parameters that only matter for image-text logits, not for the text tower.
_NON_TEXT_KEYS = ("logit_scale", "logit_bias")


def import_open_clip():
    """The ``open_clip`` module, or :class:`TextEncoderUnavailableError` saying how to install it
    (it is in the ``text`` extra, not in the base install)."""
    try:
        import open_clip
    except ImportError as error:
        raise TextEncoderUnavailableError(
            f"OpenCLIP (text encoders, CLIP loss) needs the package open_clip_torch ({error}): "
            "pip install 'upsampler[text]'"
        ) from error
    return open_clip


class OpenCLIPTextEncoder(TextEncoder):
    """The text tower of an open_clip model, frozen.

    Args:
        model_name: an open_clip architecture (``"ViT-B-32"``, or one registered with
            ``open_clip.add_model_config``), or the path of a JSON architecture config
            (``{"embed_dim": ..., "vision_cfg": ..., "text_cfg": ...}``), registered here.
        pretrained: an open_clip pretrained tag (``"laion2b_s34b_b79k"``; needs a hub
            download) or the path of a local checkpoint (``.safetensors``, or
            ``.bin``/``.pt``/``.pth`` read with ``torch.load(weights_only=True)``).
        device: where the text tower runs and where embeddings are returned.
        random_weights: build the architecture with random weights (for tests). Without it,
            ``pretrained`` is required: random weights are never a silent fallback.

    ``encode(texts)`` returns ``tokens (B, T, D)``, ``pooled (B, D)`` and ``mask (B, T)``,
    with ``T`` the tokenizer's context length (77 for CLIP) and ``D`` the CLIP embed dim.
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | None = None,
        *,
        device: torch.device | str = "cpu",
        random_weights: bool = False,
    ) -> None:
        if pretrained is None and not random_weights:
            raise TextEncoderUnavailableError(
                f"OpenCLIPTextEncoder({model_name!r}) needs weights: pass pretrained= an open_clip "
                "tag (downloaded from the hub) or the path of a local checkpoint "
                "(.safetensors/.bin/.pt). Random weights are only built with random_weights=True "
                "(meant for tests)."
            )
        if pretrained is not None and random_weights:
            raise ValueError("pass either pretrained= or random_weights=True, not both")

        open_clip = import_open_clip()

        self.model_name = _resolve_model_name(model_name)
        self.device = torch.device(device)

        checkpoint = None
        if pretrained is not None:
            checkpoint = _resolve_checkpoint(self.model_name, pretrained)

        self.tokenizer = _tokenizer(self.model_name)
        with _quiet_random_init_warning():
            model = open_clip.create_model(self.model_name, pretrained=None, device="cpu")
        # Only the text tower is ever used; dropping the image tower halves the memory.
        model.visual = None
        if checkpoint is not None:
            _load_text_weights(model, checkpoint)
        model.requires_grad_(False)
        self.model = model.eval().to(self.device)

        self._text_tower = _text_tower(model, self.model_name)
        self.pad_id = _pad_id(self.tokenizer)
        self.context_length = int(self.tokenizer.context_length)
        self.dim = _output_dim(self._text_tower)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> TextEmbeddings:
        """Embed prompts: tokens (B, T, D), pooled (B, D) and mask (B, T), T = context length."""
        if isinstance(texts, str):
            texts = [texts]
        ids = self.tokenizer(list(texts)).to(self.device)  # (B, T)

        captured: list[torch.Tensor] = []
        hook = self._text_tower.ln_final.register_forward_hook(
            lambda _module, _inputs, output: captured.append(output)
        )
        try:
            pooled = self.model.encode_text(ids, normalize=False)  # (B, D)
        finally:
            hook.remove()
        if len(captured) != 1 or captured[0].ndim != 3:
            raise RuntimeError(
                f"expected ln_final to run once on (B, T, width) tokens in {self.model_name}, "
                f"got {[tuple(c.shape) for c in captured]}"
            )
        tokens = _project(captured[0], self._text_tower.text_projection)  # (B, T, D)
        return TextEmbeddings(tokens=tokens.float(), pooled=pooled.float(), mask=ids != self.pad_id)

    def __repr__(self) -> str:
        return f"OpenCLIPTextEncoder({self.model_name!r}, dim={self.dim}, device={self.device})"


def _resolve_model_name(model_name: str) -> str:
    """Return a registered open_clip architecture name, registering a JSON config path."""
    open_clip = import_open_clip()

    if model_name.startswith(("hf-hub:", "local-dir:")):
        raise ValueError(
            f"model_name {model_name!r}: schemas are not supported; pass the architecture name "
            "(or the path of its JSON config) and the checkpoint path as pretrained="
        )
    if model_name.endswith(".json"):
        path = Path(model_name)
        if not path.is_file():
            raise FileNotFoundError(f"open_clip model config not found: {path}")
        config = json.loads(path.read_text())
        missing = [key for key in ("embed_dim", "vision_cfg", "text_cfg") if key not in config]
        if missing:
            raise ValueError(f"{path} is not an open_clip model config: missing keys {missing}")
        open_clip.add_model_config(path)  # registered under the file's stem
        return path.stem
    if open_clip.get_model_config(model_name) is None:
        raise ValueError(
            f"unknown open_clip architecture {model_name!r}; pass a JSON config path or one of "
            f"open_clip.list_models(), e.g. {open_clip.list_models()[:5]}"
        )
    return model_name


@contextlib.contextmanager
def _quiet_random_init_warning() -> Iterator[None]:
    """Hide open_clip's "initialized randomly" warning: we fill the weights ourselves."""

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")

    root = logging.getLogger()  # open_clip logs through the root logger
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _tokenizer(model_name: str):
    """open_clip's tokenizer for ``model_name``; Hugging Face-based ones may need the hub."""
    open_clip = import_open_clip()

    try:
        return open_clip.get_tokenizer(model_name)
    except Exception as error:  # HF tokenizers fail with OSError, HTTP or offline errors
        raise TextEncoderUnavailableError(
            f"could not load the tokenizer of open_clip {model_name!r} "
            f"({type(error).__name__}: {error}); its Hugging Face tokenizer must be in the local "
            "Hugging Face cache (download it elsewhere and copy the cache, or set HF_HOME)"
        ) from error


def _resolve_checkpoint(model_name: str, pretrained: str) -> Path:
    """A local checkpoint file for ``pretrained`` (a path, or a tag fetched from the hub)."""
    open_clip = import_open_clip()

    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not tag_cfg:
        path = Path(pretrained).expanduser()
        if path.is_file():
            return path
        known = open_clip.list_pretrained_tags_by_model(model_name)
        raise TextEncoderUnavailableError(
            f"open_clip checkpoint not found: {str(path)!r} is neither an existing file nor a "
            f"pretrained tag of {model_name!r} (known tags: {known})"
        )
    source = tag_cfg.get("hf_hub") or tag_cfg.get("url") or "?"
    try:
        # Goes through huggingface_hub (or a URL), so an already cached file works offline.
        return Path(open_clip.download_pretrained(tag_cfg))
    except Exception as error:  # hub errors come in many types; all mean "not available"
        raise TextEncoderUnavailableError(
            f"could not fetch open_clip weights {model_name!r} / {pretrained!r} from {source} "
            f"({type(error).__name__}: {error}). Offline, download the checkpoint elsewhere "
            f"(e.g. open_clip_pytorch_model.bin or open_clip_model.safetensors from "
            f"https://huggingface.co/{source.rstrip('/')}), copy it here and pass its local file "
            f"path: OpenCLIPTextEncoder({model_name!r}, pretrained='/path/to/checkpoint'). "
            "Set HF_HUB_OFFLINE=1 to fail at once instead of retrying the hub."
        ) from error


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint safely: safetensors, or a pickle with ``weights_only=True``.

    Unwraps ``{"state_dict": ...}`` and strips DDP's ``module.`` prefix.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state_dict = load_file(str(path), device="cpu")
    elif path.suffix in _PICKLE_SUFFIXES:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    else:
        raise ValueError(
            f"unsupported checkpoint format {path.suffix!r} ({path}); use .safetensors or "
            f"one of {_PICKLE_SUFFIXES}"
        )
    if isinstance(state_dict, dict) and isinstance(state_dict.get("state_dict"), dict):
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, dict):
        raise ValueError(f"{path} does not hold a state dict, got {type(state_dict).__name__}")
    return {
        (key[len("module.") :] if key.startswith("module.") else key): value
        for key, value in state_dict.items()
    }


def _load_text_weights(model: nn.Module, path: Path) -> None:
    """Load the text-tower weights of a full open_clip checkpoint (image weights ignored)."""
    from open_clip.model import convert_to_custom_text_state_dict

    state_dict = read_state_dict(path)
    # Old checkpoints of custom-text models keep the text tower at the top level.
    if "positional_embedding" in state_dict and not hasattr(model, "positional_embedding"):
        state_dict = convert_to_custom_text_state_dict(state_dict)
    state_dict = {
        key: value
        for key, value in state_dict.items()
        if not key.startswith("visual.") and key not in _NON_TEXT_KEYS
    }
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise ValueError(f"checkpoint {path} does not fit this architecture: {error}") from error
    missing = [key for key in result.missing_keys if key not in _NON_TEXT_KEYS]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"checkpoint {path} does not fit this architecture: missing text keys {missing[:8]}, "
            f"unexpected keys {result.unexpected_keys[:8]}"
        )


def _text_tower(model: nn.Module, model_name: str) -> nn.Module:
    """The module that owns ``ln_final`` and ``text_projection`` (CLIP or CustomTextCLIP)."""
    tower = getattr(model, "text", model)
    if not isinstance(getattr(tower, "ln_final", None), nn.Module):
        raise ValueError(
            f"{model_name!r} has a text tower without ln_final (e.g. a Hugging Face text model); "
            "use the transformers backend for it"
        )
    if getattr(tower, "cls_emb", None) is not None:
        raise ValueError(f"{model_name!r} pools an appended CLS token (CoCa); not supported")
    return tower


def _project(tokens: torch.Tensor, projection: nn.Module | torch.Tensor | None) -> torch.Tensor:
    """Apply open_clip's text projection (a matrix, an nn.Linear, or none) to (B, T, W)."""
    if projection is None:
        return tokens
    if isinstance(projection, nn.Linear):
        return projection(tokens)
    return tokens @ projection


def _output_dim(tower: nn.Module) -> int:
    projection = tower.text_projection
    if projection is None:
        return int(tower.ln_final.normalized_shape[0])
    if isinstance(projection, nn.Linear):
        return int(projection.out_features)
    return int(projection.shape[1])


def _pad_id(tokenizer: object) -> int:
    # open_clip's SimpleTokenizer pads with 0; HF-based tokenizers know their own pad id.
    pad_id = getattr(getattr(tokenizer, "tokenizer", None), "pad_token_id", None)
    return 0 if pad_id is None else int(pad_id)
