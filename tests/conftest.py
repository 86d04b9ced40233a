"""Tiny models and inputs shared by the tests: a few channels, two or three levels, CPU only."""

from __future__ import annotations

import pytest
import torch

from upsampler import GigaGANDiscriminator, GigaGANUpsampler, TextEmbeddings

TEXT_EMBED_DIM = 12


def tiny_generator(
    scale: int = 4, text_conditioning: bool = False, **overrides
) -> GigaGANUpsampler:
    config = dict(
        scale=scale,
        encoder_channels=[8, 16, 16],
        upsample_channels=[16, 8, 8],
        blocks_per_level=1,
        num_kernels=2,
        z_dim=8,
        style_dim=16,
        mapping_layers=2,
        attention_levels=[2],
        attention_heads=2,
        text_conditioning=text_conditioning,
        text_embed_dim=TEXT_EMBED_DIM,
        text_dim=16,
        text_layers=1,
        text_heads=2,
    )
    config.update(overrides)
    torch.manual_seed(0)
    return GigaGANUpsampler(**config)


def tiny_discriminator(text_conditioning: bool = False, **overrides) -> GigaGANDiscriminator:
    config = dict(
        channels=[8, 16, 16],
        blocks_per_level=1,
        lq_conditioning=True,
        text_conditioning=text_conditioning,
        text_embed_dim=TEXT_EMBED_DIM,
        text_dim=8,
    )
    config.update(overrides)
    torch.manual_seed(1)
    return GigaGANDiscriminator(**config)


def random_text(batch: int, length: int = 5, seed: int = 0) -> TextEmbeddings:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(batch, length, TEXT_EMBED_DIM, generator=generator)
    # Real prompts have different lengths: mask out a different tail in each row.
    lengths = torch.arange(batch) % length + 1
    mask = torch.arange(length)[None] < lengths[:, None]
    return TextEmbeddings(tokens=tokens, pooled=tokens[:, 0].clone(), mask=mask)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny 4x generator saved as a model folder named ``tiny-4x``, as ``--model`` takes it."""
    folder = tmp_path_factory.mktemp("models") / "tiny-4x"
    tiny_generator(scale=4).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests on one torch thread: tiny models gain nothing from threads, and on a
    shared 2-core machine two processes that each spin two OpenMP threads slow each other down
    10-100 times (measured here)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def lq() -> torch.Tensor:
    return torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(0))
