"""ONNX export and the ONNX Runtime paths agree with PyTorch; bad graphs fail clearly."""

from __future__ import annotations

import pytest
import torch
from test_folding import tiny_aurasr, with_styles_that_matter
from typer.testing import CliRunner

from conftest import random_text, tiny_generator
from upsampler import Upscaler
from upsampler.models.loading import load_model
from upsampler.models.registry import ModelWeightsError
from upsampler_cli.app import app

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytestmark = pytest.mark.usefixtures("one_thread")

from upsampler.inference.onnx import OnnxRuntimeBackend, OnnxUpsampler, export_onnx  # noqa: E402

MODELS = {
    "gigagan": lambda: tiny_generator(),
    "gigagan-text": lambda: tiny_generator(text_conditioning=True),
    "aurasr": tiny_aurasr,
}


@pytest.mark.parametrize("name", MODELS)
def test_the_exported_graph_matches_pytorch_at_any_size(name, tmp_path):
    model = with_styles_that_matter(MODELS[name]())
    text = random_text(1) if model.text_conditioning else None
    result = export_onnx(model, tmp_path / "model.onnx", seed=3, text=text)
    assert result.max_difference is not None and result.max_difference <= 1e-4
    graph = OnnxUpsampler.from_file(result.path)
    assert (graph.scale, graph.size_multiple) == (model.scale, model.size_multiple)
    # Another size and batch than at export: height and width are dynamic.
    lq = torch.rand(3, 3, 5 * model.size_multiple, 7 * model.size_multiple)
    ws = model.image_styles(text, generator=torch.Generator().manual_seed(3))
    batch_text = None if text is None else text.index([0, 0, 0])
    with torch.no_grad():
        expected = model(lq, batch_text, ws=ws.expand(3, *ws.shape[1:])).hq
    assert (graph(lq).hq - expected).abs().max() <= 1e-4
    # The style is frozen: another seed's output differs from the graph's.
    other = model.image_styles(text, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        moved = model(lq, batch_text, ws=other.expand(3, *other.shape[1:])).hq
    assert (graph(lq).hq - moved).abs().max() > 1e-3


def test_an_exported_file_upscales_like_the_model_through_the_upscaler(tmp_path):
    model = with_styles_that_matter(tiny_generator())
    export_onnx(model, tmp_path / "model.onnx", seed=5, verify=False)
    loaded = load_model(tmp_path / "model.onnx")
    assert isinstance(loaded, OnnxUpsampler)
    # The graph holds the folded kernels and biases of every convolution (the mapping network,
    # kernel banks and modulation weights are gone), as constants; the upsampling blocks' first
    # kernels as transposed 4x4 kernels (for one 3x3) and a few shapes add some.
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    folded = [m for m in model.modules() if hasattr(m, "sample_kernels")]
    kernels = sum(
        c.weight.numel() + (c.bias.numel() if c.bias is not None else 0) for c in convolutions
    )
    from upsampler.models.folding import folded_styles

    ws = model.image_styles(None, generator=torch.Generator().manual_seed(5))
    with folded_styles(model, ws):
        kernels += sum(
            c.folded_weight.numel() + (0 if c.folded_bias is None else c.folded_bias.numel())
            for c in folded
        )
    assert kernels <= loaded.num_parameters() <= 1.25 * kernels
    assert sum(p.numel() for p in loaded.parameters()) == 0
    image = torch.rand(1, 3, 37, 50)
    expected = Upscaler(model, device="cpu").upscale(image, seed=5, tile=16)
    got = Upscaler(loaded, device="cpu").upscale(image, seed=5, tile=16)
    assert got.shape == expected.shape == (1, 3, 148, 200)
    assert (got - expected).abs().max() <= 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_the_onnxruntime_backend_agrees_with_torch_and_exports_once_per_style(name):
    model = with_styles_that_matter(MODELS[name]())
    prompt = random_text(1) if model.text_conditioning else None
    image = torch.rand(1, 3, 40, 56)
    torch_out = Upscaler(model, device="cpu").upscale(image, prompt, seed=2, tile=32)
    upscaler = Upscaler(model, backend="onnxruntime")
    assert isinstance(upscaler.model, OnnxRuntimeBackend)
    assert upscaler.device.type == "cpu" and upscaler.dtype == torch.float32
    got = upscaler.upscale(image, prompt, seed=2, tile=32)
    assert (got - torch_out).abs().max() <= 1e-4
    assert len(upscaler.model._sessions) == 1  # every tile of the image shared one graph
    upscaler.upscale(image, prompt, seed=2, tile=32)
    assert len(upscaler.model._sessions) == 1
    upscaler.upscale(image, prompt, seed=9, tile=32)
    assert len(upscaler.model._sessions) == 2


def test_the_onnxruntime_backend_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="runs on the CPU"):
        Upscaler(tiny_generator(), backend="onnxruntime", device="cuda")
    with pytest.raises(ValueError, match="fold"):
        Upscaler(tiny_generator(), backend="onnxruntime", fold_styles=False)
    with pytest.raises(ValueError, match="backend must be one of"):
        Upscaler(tiny_generator(), backend="tensorrt")
    with pytest.raises(ValueError, match="not run correctly in bfloat16; use one of float32"):
        Upscaler(tiny_generator(), backend="onnxruntime", dtype="bf16")


def test_broken_and_foreign_graphs_fail_clearly(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelWeightsError, match="not a readable ONNX graph"):
        load_model(broken)
    import onnx
    from onnx import TensorProto, helper

    identity = helper.make_graph(
        [helper.make_node("Identity", ["lq"], ["hq"])],
        "foreign",
        [helper.make_tensor_value_info("lq", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("hq", TensorProto.FLOAT, None)],
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(identity), foreign)
    with pytest.raises(ValueError, match="not exported by upsampler.*export-onnx"):
        load_model(foreign)


def test_export_cli_writes_a_graph_that_upscale_runs(tmp_path):
    model = with_styles_that_matter(tiny_generator())
    model.save_pretrained(tmp_path / "model")
    runner = CliRunner()
    graph = tmp_path / "out" / "model.onnx"
    result = runner.invoke(app, ["export-onnx", str(tmp_path / "model"), "-o", str(graph)])
    assert result.exit_code == 0, result.output
    assert graph.is_file() and "max abs difference" in result.output
    difference = float(result.output.split("max abs difference")[1].split()[0])
    assert difference <= 1e-4
    # An existing file is kept unless --overwrite; a name without .onnx is refused.
    before = graph.read_bytes()
    again = runner.invoke(app, ["export-onnx", str(tmp_path / "model"), "-o", str(graph)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert graph.read_bytes() == before
    wrong = runner.invoke(app, ["export-onnx", str(tmp_path / "model"), "-o", str(tmp_path / "m")])
    assert wrong.exit_code == 2 and ".onnx" in wrong.output
    assert [p.name for p in graph.parent.iterdir()] == ["model.onnx"]  # no temporary left

    from PIL import Image

    source = tmp_path / "in" / "a.png"
    source.parent.mkdir()
    Image.new("RGB", (20, 12), (200, 40, 90)).save(source)
    for args in (["-m", str(graph)], ["-m", str(tmp_path / "model"), "--backend", "onnxruntime"]):
        out = tmp_path / f"up-{len(args)}"
        result = runner.invoke(
            app, ["upscale", str(source), "-o", str(out), *args, "--no-progress"]
        )
        assert result.exit_code == 0, result.output
        assert Image.open(out / "a.png").size == (80, 48)
