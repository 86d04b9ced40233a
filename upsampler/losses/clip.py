"""Optional CLIP loss: pull the output's CLIP image embedding towards its prompt's text embedding.

GigaGAN adds this on the generator (Sec. 3.4, "CLIP contrastive loss") when CLIP is at hand.
It needs a full CLIP model with real weights from a local file; there is no random fallback.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from upsampler.text.base import TextEncoderUnavailableError

# CLIP's preprocessing statistics (OpenAI), applied after resizing to the model's input size.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipLoss(nn.Module):
    """1 - cosine(CLIP_image(hq), CLIP_text(prompt)), averaged over the batch.

    hq: (B, 3, H, W) in [0, 1]; prompts: B strings.
    """

    def __init__(self, model_name: str, weights: str | Path, *, random_weights: bool = False):
        super().__init__()
        from upsampler.text.open_clip_backend import import_open_clip, read_state_dict

        open_clip = import_open_clip()
        model = open_clip.create_model(model_name, pretrained=None)
        if not random_weights:
            weights = Path(weights)
            if not weights.is_file():
                raise TextEncoderUnavailableError(
                    f"CLIP weights for the CLIP loss not found at {weights}: download the open_clip "
                    f"checkpoint of {model_name} on a connected machine and give its path as loss.clip_weights"
                )
            model.load_state_dict(read_state_dict(weights))
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        size = model.visual.image_size
        self.image_size = tuple(size) if isinstance(size, tuple | list) else (size, size)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN)[None, :, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD)[None, :, None, None], persistent=False)

    def forward(self, hq: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        images = F.interpolate(
            hq.float(), size=self.image_size, mode="bicubic", antialias=True, align_corners=False
        )
        images = (images.clamp(0, 1) - self.mean) / self.std
        image_features = F.normalize(self.model.encode_image(images), dim=-1)
        with torch.no_grad():
            tokens = self.tokenizer(prompts).to(hq.device)
            text_features = F.normalize(self.model.encode_text(tokens), dim=-1)
        return (1.0 - (image_features * text_features).sum(-1)).mean()
