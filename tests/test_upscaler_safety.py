"""Nothing lost, nothing silently wrong: model folders whose weights do not match their config."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import tiny_generator
from upsampler import Upscaler
from upsampler.inference import ModelUnavailableError, ModelWeightsError
from upsampler.inference.upscaler import load_upsampler

pytestmark = pytest.mark.usefixtures("one_thread")
WEIGHTS = "diffusion_pytorch_model.safetensors"


# ---------------------------------------------------------------------- model loading


@pytest.fixture
def saved(tmp_path):
    tiny_generator().save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def rewrite_weights(folder, edit) -> None:
    path = folder / WEIGHTS
    save_file(edit(load_file(path)), path)


def test_missing_keys_are_an_error_not_random_weights(saved):
    # diffusers fills missing tensors with random values and logs a line.
    rewrite_weights(saved, lambda weights: {k: v for k, v in weights.items() if "decoder" not in k})
    with pytest.raises(ModelWeightsError) as error:
        load_upsampler(saved)
    message = str(error.value)
    assert str(saved / WEIGHTS) in message and "do not match" in message
    assert "missing keys decoder_attention.2." in message and " more)" in message
    assert "saved from another model" in message and "upsampler export" in message
    assert isinstance(error.value, ModelUnavailableError)


def test_wrong_shapes_and_unexpected_keys_name_the_tensors(saved):
    def edit(weights):
        weights["stem.weight"] = weights["stem.weight"][:4]
        weights["extra.weight"] = torch.zeros(2)
        return weights

    rewrite_weights(saved, edit)
    with pytest.raises(ModelWeightsError) as error:
        Upscaler.from_pretrained(saved, device="cpu")
    message = str(error.value)
    assert "unexpected keys extra.weight" in message
    assert "wrong shapes stem.weight [4, 3, 3, 3] (config.json: [8, 3, 3, 3])" in message
    assert "ignore_mismatched_sizes" not in message


@pytest.mark.parametrize("keep", [0.5, 0.99, 0.0])
def test_a_truncated_weights_file_names_the_file(saved, keep):
    path = saved / WEIGHTS
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelWeightsError, match="is not a readable safetensors file") as error:
        load_upsampler(saved)
    assert str(path) in str(error.value) and "truncated or corrupt" in str(error.value)


def test_weights_under_another_name_and_bad_configs(saved):
    (saved / WEIGHTS).rename(saved / "model.safetensors")
    with pytest.raises(ModelWeightsError, match=f"no {WEIGHTS}.*model.safetensors"):
        load_upsampler(saved)
    (saved / "model.safetensors").rename(saved / WEIGHTS)
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "scale": 3}))
    with pytest.raises(ModelWeightsError, match="does not describe a GigaGANUpsampler"):
        load_upsampler(saved)


def test_sharded_folders_load_and_are_checked(tmp_path):
    model = tiny_generator()
    model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    shards = sorted((tmp_path / "sharded").glob("*.safetensors"))
    assert len(shards) > 1
    loaded = load_upsampler(tmp_path / "sharded")
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.parameters(), model.parameters(), strict=True)
    )
    for shard in shards:
        weights = load_file(shard)
        if "stem.weight" in weights:
            save_file({**weights, "stem.weight": torch.zeros(1)}, shard)
    with pytest.raises(ModelWeightsError, match=rf"the {len(shards)} shards in .*wrong shapes"):
        load_upsampler(tmp_path / "sharded")


def test_aurasr_weights_that_do_not_match_name_the_tensors_as_in_the_file(tmp_path):
    aura_sr = pytest.importorskip("aura_sr")
    from upsampler.models.aurasr_checkpoint import AuraSRFormatError

    config = {
        "style_network": {"dim_in": 128, "dim_out": 16, "depth": 2},
        "dim": 4,
        "image_size": 64,
        "input_image_size": 16,
        "self_attn_heads": 2,
        "self_attn_dim_head": 8,
        "attn_depths": [1, 1, 1, 1, 2],
        "mid_attn_depth": 1,
        "num_conv_kernels": 2,
    }
    torch.manual_seed(0)
    weights = aura_sr.UnetUpsampler(**config).state_dict()
    weights = {key: tensor.contiguous() for key, tensor in weights.items()}
    del weights["final_to_rgb.weight"]
    weights["init_conv.weight"] = weights["init_conv.weight"][:2]
    save_file(weights, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(AuraSRFormatError) as error:
        load_upsampler(tmp_path)
    message = str(error.value)
    assert "missing keys (as converted) to_rgb.weight" in message
    assert "wrong shapes init_conv.weight [2, 3, 7, 7] (config.json: [8, 3, 7, 7])" in message
    assert "download both files again" in message
