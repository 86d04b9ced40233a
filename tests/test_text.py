"""Text encoders on tiny random architectures: CPU, offline, seeded."""

from __future__ import annotations

import json
import socket
import time

import pytest
import torch

from upsampler.text import (
    BACKENDS,
    OpenCLIPTextEncoder,
    TextEmbeddings,
    TextEncoderUnavailableError,
    TransformersTextEncoder,
    encode_texts,
    load_text_encoder,
    masked_mean,
)

PROMPTS = ["a photo of a cat", "", "word " * 100]  # normal, empty, longer than the context


def tiny_clip_config(*, custom_text: bool = False) -> dict:
    text_cfg = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
    if custom_text:
        text_cfg["proj_bias"] = True  # text_projection becomes an nn.Linear
    config = {
        "embed_dim": 24,
        "vision_cfg": {
            "image_size": 32,
            "layers": 1,
            "width": 32,
            "head_width": 16,
            "patch_size": 16,
        },
        "text_cfg": text_cfg,
    }
    if custom_text:
        config["custom_text"] = True
    return config


@pytest.fixture(scope="module")
def clip_config_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("open_clip") / "upsampler-test-tiny-clip.json"
    path.write_text(json.dumps(tiny_clip_config()))
    return str(path)


@pytest.fixture(scope="module")
def clip_encoder(clip_config_path) -> OpenCLIPTextEncoder:
    torch.manual_seed(0)
    return OpenCLIPTextEncoder(clip_config_path, random_weights=True)


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Make any hub access fail at once: offline mode, an empty cache, no sockets."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the environment at import time, so patch its constants too.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# --- open_clip -----------------------------------------------------------------------------


def test_open_clip_shapes_and_mask(clip_encoder):
    embeddings = clip_encoder.encode(PROMPTS)

    assert clip_encoder.dim == 24
    assert embeddings.tokens.shape == (3, 77, 24)
    assert embeddings.pooled.shape == (3, 24)
    # <start> a photo of a cat <end> = 7; "" = <start><end>; the long prompt fills 77.
    assert embeddings.mask.sum(dim=1).tolist() == [7, 2, 77]
    # real tokens come first, then padding
    assert embeddings.mask[0, :7].all() and not embeddings.mask[0, 7:].any()


def test_open_clip_tokens_and_pooled_share_the_clip_space(clip_encoder):
    model = clip_encoder.model
    ids = clip_encoder.tokenizer(PROMPTS)
    embeddings = clip_encoder.encode(PROMPTS)

    with torch.no_grad():
        reference_pooled = model.encode_text(ids, normalize=False)
        # Oracle for every token: CLIP's text path with the projection applied per token.
        x = model.token_embedding(ids) + model.positional_embedding
        x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
        reference_tokens = x @ model.text_projection

    eot = ids.argmax(dim=-1)  # CLIP pools the <end> token, the largest id
    assert eot.tolist() == [6, 1, 76]
    torch.testing.assert_close(embeddings.pooled, reference_pooled)
    torch.testing.assert_close(embeddings.tokens, reference_tokens)
    torch.testing.assert_close(embeddings.tokens[torch.arange(3), eot], embeddings.pooled)
    # and the pooled token is not just any token
    assert not torch.allclose(embeddings.tokens[0, 1], embeddings.pooled[0])


def test_open_clip_is_frozen_deterministic_and_text_only(clip_encoder):
    first = clip_encoder.encode(["a red car"])
    second = clip_encoder(["a red car"])

    assert torch.equal(first.tokens, second.tokens)
    assert torch.equal(first.pooled, second.pooled)
    assert not first.tokens.requires_grad
    assert not any(p.requires_grad for p in clip_encoder.model.parameters())
    assert not clip_encoder.model.training
    assert clip_encoder.model.visual is None
    assert not any(name.startswith("visual.") for name in clip_encoder.model.state_dict())


def test_open_clip_linear_projection_and_registered_name(tmp_path):
    import open_clip

    path = tmp_path / "upsampler-test-tiny-custom-text.json"
    path.write_text(json.dumps(tiny_clip_config(custom_text=True)))
    open_clip.add_model_config(path)

    torch.manual_seed(1)
    encoder = OpenCLIPTextEncoder("upsampler-test-tiny-custom-text", random_weights=True)
    assert isinstance(encoder.model.text.text_projection, torch.nn.Linear)
    embeddings = encoder.encode(PROMPTS[:2])
    ids = encoder.tokenizer(PROMPTS[:2])

    with torch.no_grad():
        reference_pooled = encoder.model.encode_text(ids, normalize=False)
    assert embeddings.tokens.shape == (2, 77, 24)
    torch.testing.assert_close(embeddings.pooled, reference_pooled)
    torch.testing.assert_close(embeddings.tokens[torch.arange(2), ids.argmax(-1)], reference_pooled)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_open_clip_checkpoint_round_trip(clip_config_path, tmp_path, suffix):
    import open_clip
    from safetensors.torch import save_file

    name = "upsampler-test-tiny-clip"  # registered by clip_config_path
    torch.manual_seed(123)
    full_model = open_clip.create_model(name).eval()  # a whole CLIP, image tower included
    state_dict = {k: v.contiguous() for k, v in full_model.state_dict().items()}
    checkpoint = tmp_path / f"clip{suffix}"
    if suffix == ".safetensors":
        save_file(state_dict, str(checkpoint))
    else:
        torch.save({"state_dict": state_dict}, checkpoint)

    loaded = OpenCLIPTextEncoder(clip_config_path, pretrained=str(checkpoint))
    embeddings = loaded.encode(PROMPTS)
    with torch.no_grad():
        reference = full_model.encode_text(loaded.tokenizer(PROMPTS), normalize=False)

    # (not bit-exact: a frozen nn.MultiheadAttention takes PyTorch's fused inference path)
    torch.testing.assert_close(embeddings.pooled, reference)
    torch.manual_seed(0)  # different seed from the checkpoint: loading must have happened
    random = OpenCLIPTextEncoder(clip_config_path, random_weights=True).encode(PROMPTS)
    assert not torch.allclose(random.pooled, embeddings.pooled)


def test_open_clip_text_only_state_dict_round_trip_is_exact(
    clip_encoder, clip_config_path, tmp_path
):
    from safetensors.torch import save_file

    path = tmp_path / "text_tower.safetensors"
    save_file({k: v.contiguous() for k, v in clip_encoder.model.state_dict().items()}, str(path))
    loaded = OpenCLIPTextEncoder(clip_config_path, pretrained=str(path))

    expected, actual = clip_encoder.encode(PROMPTS), loaded.encode(PROMPTS)
    assert torch.equal(actual.tokens, expected.tokens)
    assert torch.equal(actual.pooled, expected.pooled)
    assert torch.equal(actual.mask, expected.mask)


def test_open_clip_wrong_architecture_checkpoint_is_rejected(clip_config_path, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"token_embedding.weight": torch.zeros(10, 8)}, str(path))
    with pytest.raises(ValueError, match="does not fit this architecture"):
        OpenCLIPTextEncoder(clip_config_path, pretrained=str(path))


def test_open_clip_missing_weights_are_loud(clip_config_path, tmp_path):
    missing = tmp_path / "nowhere" / "clip.safetensors"
    with pytest.raises(TextEncoderUnavailableError, match="nowhere/clip.safetensors"):
        OpenCLIPTextEncoder(clip_config_path, pretrained=str(missing))
    with pytest.raises(TextEncoderUnavailableError, match="random_weights=True"):
        OpenCLIPTextEncoder(clip_config_path)
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        OpenCLIPTextEncoder("No-Such-CLIP", random_weights=True)


def test_open_clip_hub_tag_offline_names_the_fix(no_network):
    start = time.perf_counter()
    with pytest.raises(TextEncoderUnavailableError) as error:
        OpenCLIPTextEncoder("ViT-B-32", "laion2b_s34b_b79k")
    assert time.perf_counter() - start < 10  # no hub retries with back-off

    message = str(error.value)
    assert "'ViT-B-32'" in message and "'laion2b_s34b_b79k'" in message
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in message
    assert "local file path" in message


# --- transformers --------------------------------------------------------------------------

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "cat", "red", "car"]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> str:
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny_bert")
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    BertTokenizer(vocab={token: i for i, token in enumerate(VOCAB)}).save_pretrained(folder)
    return str(folder)


def test_transformers_saved_weights(bert_dir):
    from transformers import AutoModel

    encoder = TransformersTextEncoder(bert_dir, max_length=16)
    embeddings = encoder.encode(["a photo of a cat", "red car", ""])

    assert encoder.dim == 32
    assert embeddings.tokens.shape == (3, 16, 32)
    assert embeddings.pooled.shape == (3, 32)
    # [CLS] a photo of a cat [SEP] = 7, [CLS] red car [SEP] = 4, [CLS] [SEP] = 2
    assert embeddings.mask.sum(dim=1).tolist() == [7, 4, 2]
    assert not any(p.requires_grad for p in encoder.model.parameters())

    reference_model = AutoModel.from_pretrained(bert_dir).eval()
    inputs = encoder.tokenizer(
        ["a photo of a cat"], padding="max_length", max_length=16, return_tensors="pt"
    )
    with torch.no_grad():
        reference = reference_model(**inputs).last_hidden_state[0]
    torch.testing.assert_close(embeddings.tokens[0], reference)
    torch.testing.assert_close(embeddings.pooled[1], embeddings.tokens[1, :4].mean(dim=0))
    torch.testing.assert_close(embeddings.pooled[2], embeddings.tokens[2, :2].mean(dim=0))

    again = encoder.encode(["a photo of a cat"])
    assert torch.equal(again.tokens[0], embeddings.tokens[0])


def test_transformers_random_weights_keep_the_tokenizer(bert_dir):
    saved = TransformersTextEncoder(bert_dir, max_length=16).encode(["red car"])
    torch.manual_seed(7)
    random = TransformersTextEncoder(bert_dir, max_length=16, random_weights=True)
    embeddings = random.encode(["red car"])

    assert embeddings.tokens.shape == (1, 16, 32)
    assert torch.equal(embeddings.mask, saved.mask)
    assert not torch.allclose(embeddings.tokens, saved.tokens)


def test_transformers_missing_model_and_bad_length(bert_dir, tmp_path):
    missing = tmp_path / "no_model_here"
    with pytest.raises(TextEncoderUnavailableError, match="no_model_here") as error:
        TransformersTextEncoder(str(missing))
    assert "pass its path" in str(error.value)
    with pytest.raises(ValueError, match="exceeds the 128 positions"):
        TransformersTextEncoder(bert_dir, max_length=200)


def test_masked_mean_ignores_padding():
    tokens = torch.tensor(
        [[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [0.0, 0.0], [1.0, 1.0]]]
    )
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert masked_mean(tokens, mask).tolist() == [[2.0, 3.0], [0.0, 0.0]]


# --- the package entry points --------------------------------------------------------------


def test_load_text_encoder_caches_per_arguments(bert_dir):
    first = load_text_encoder("transformers", bert_dir)
    assert load_text_encoder("transformers", bert_dir) is first
    assert isinstance(first, TransformersTextEncoder)
    assert load_text_encoder("transformers", bert_dir, random_weights=True) is not first


def test_load_text_encoder_rejects_unknown_backend_and_stray_pretrained(bert_dir):
    with pytest.raises(ValueError, match="open_clip") as error:
        load_text_encoder("clip", "ViT-B-32")
    assert all(name in str(error.value) for name in BACKENDS)
    with pytest.raises(ValueError, match="pretrained must be None"):
        load_text_encoder("transformers", bert_dir, "weights.bin")


def test_encode_texts_passes_embeddings_through(clip_encoder):
    precomputed = TextEmbeddings(
        tokens=torch.randn(2, 5, 8),
        pooled=torch.randn(2, 8),
        mask=torch.ones(2, 5, dtype=torch.bool),
    )
    assert encode_texts(precomputed, None) is precomputed
    assert clip_encoder(precomputed) is precomputed

    single = encode_texts("a photo of a cat", clip_encoder)
    assert single.tokens.shape == (1, 77, 24)
    torch.testing.assert_close(single.pooled, clip_encoder.encode(PROMPTS).pooled[:1])
    with pytest.raises(ValueError, match="no text encoder"):
        encode_texts(["a cat"], None)
