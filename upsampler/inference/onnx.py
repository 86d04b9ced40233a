"""ONNX: a model frozen at one style is a plain CNN. Export it, and run such graphs with ONNX Runtime.

    export_onnx(load_model("nano-4x"), "nano-4x.onnx", seed=0)       # lq (B,3,H,W) -> hq
    Upscaler.from_pretrained("nano-4x.onnx")                         # the graph, tiled as ever
    Upscaler.from_pretrained("nano-4x", backend="onnxruntime")       # per-image styles, exported

With an image's styles folded into its kernels (:mod:`upsampler.models.folding`) a GigaGAN
or AuraSR upsampler is convolutions, attention and resizes with constant weights: a graph that
other runtimes (ONNX Runtime, OpenVINO, TensorRT, ComfyUI nodes, mobile runtimes) run without
this package. The exported graph takes ``lq`` (B, 3, H, W) float32 in [0, 1], with H and W
multiples of the model's size multiple, and gives the full ``hq`` (the bicubic residual
included, not clamped). The style is fixed at export: the ``z`` of ``seed`` (as ``upsampler
upscale --seed`` draws it) and ``truncation_psi``, and for a text-conditioned model one prompt,
whose tokens become constants. What the engine needs to tile it (scale, size multiple, input
noise) is stored in the graph's metadata.

Two ways to run graphs here, both behind the :class:`~upsampler.Upscaler` (tiling, alpha and
I/O unchanged): :class:`OnnxUpsampler` runs an exported file; :class:`OnnxRuntimeBackend`
runs a PyTorch model through ONNX Runtime, exporting each image's style on first use (one
export per distinct style: a run with one seed and one prompt exports once). ONNX Runtime
runs on the CPU here; it needs ``pip install 'upsampler[onnx]'``.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from upsampler.models.folding import folded_styles, style_convs
from upsampler.models.generator import UpsamplerOutput
from upsampler.text.base import TextEmbeddings

#: prefix of the keys this package writes into a graph's metadata
METADATA_PREFIX = "upsampler."
OPSET = 17
#: ONNX Runtime sessions kept per backend (one per distinct image style)
SESSION_CACHE = 2


def require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(
            "ONNX Runtime is not installed: pip install 'upsampler[onnx]' (or onnxruntime)"
        ) from error
    return onnxruntime


class _Frozen(nn.Module):
    """``model`` at one style (and one prompt): lq -> hq, the module ONNX traces."""

    def __init__(
        self,
        model: nn.Module,
        ws: torch.Tensor | None,
        text: TextEmbeddings | None,
        *,
        add_input: bool,
    ):
        super().__init__()
        self.model = model
        self.ws = None if ws is None else ws.detach()
        self.text = None
        if text is not None:
            self.text = TextEmbeddings(text.tokens.detach(), text.pooled.detach(), text.mask)
        self.add_input = add_input

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        batch = lq.shape[0]
        ws = None if self.ws is None else self.ws.expand(batch, *self.ws.shape[1:])
        text = None
        if self.text is not None:
            text = TextEmbeddings(
                tokens=self.text.tokens.expand(batch, -1, -1),
                pooled=self.text.pooled.expand(batch, -1),
                mask=self.text.mask.expand(batch, -1),
            )
        return self.model(lq, text, ws=ws, add_input=self.add_input).hq


def _trace(model: nn.Module, ws: torch.Tensor | None, text: TextEmbeddings | None) -> bytes:
    """The ONNX graph (dynamic batch and size, float32) of ``model`` at styles ``ws``; the
    caller folds ``model`` to them first, so the kernels are constants of the graph."""
    side = 2 * model.min_size
    buffer = io.BytesIO()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every shape check it records as a constant (input checks).
        warnings.simplefilter("ignore")
        # The text transformer's fused inference kernel has no ONNX form; its plain ops do.
        torch.backends.mha.set_fastpath_enabled(False)
        training = model.training
        try:
            # Exported in eval mode; the exporter then puts the module tree back in the mode of
            # the module it was given, so that mode must be the model's own.
            torch.onnx.export(
                _Frozen(model, ws, text, add_input=True).train(training),
                (torch.rand(1, 3, side, side),),
                buffer,
                input_names=["lq"],
                output_names=["hq"],
                dynamic_axes={
                    "lq": {0: "batch", 2: "height", 3: "width"},
                    "hq": {0: "batch", 2: "out_height", 3: "out_width"},
                },
                opset_version=OPSET,
                dynamo=False,
            )
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
            model.train(training)
    return buffer.getvalue()


def _with_metadata(graph: bytes, metadata: dict[str, str]) -> bytes:
    import onnx

    proto = onnx.load_from_string(graph)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, value
    return proto.SerializeToString()


def _contract_metadata(model: nn.Module) -> dict[str, str]:
    """What the engine needs to tile a graph, from the model it was exported from."""
    return {
        "scale": str(model.scale),
        "size_multiple": str(model.size_multiple),
        "min_size": str(model.min_size),
        "input_noise_std": repr(float(model.input_noise_std)),
        # Activation memory per input pixel at a 256 px tile, for the engine's tile sizing.
        "activation_elements_per_pixel": repr(model.activation_elements(256) / 256**2),
    }


def _session(graph: bytes) -> Any:
    onnxruntime = require_onnxruntime()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def _run(session: Any, lq: torch.Tensor) -> torch.Tensor:
    array = lq.detach().to("cpu", torch.float32).contiguous().numpy()
    (hq,) = session.run(["hq"], {"lq": array})
    return torch.from_numpy(hq).to(lq.device)


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote: the file, its size, and the largest difference between
    ONNX Runtime's output and PyTorch's on a random input (None when not verified)."""

    path: Path
    bytes: int
    max_difference: float | None


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    seed: int = 0,
    truncation_psi: float = 1.0,
    text: TextEmbeddings | None = None,
    source: str = "",
    verify: bool = True,
) -> OnnxExport:
    """Write ``model`` frozen at one style as an ONNX graph at ``path`` (atomically).

    Args:
        model: any model of the engine's contract (its copy is exported in float32 on the CPU;
            ``model`` itself is not changed).
        seed: the seed of the style noise z, drawn as the Upscaler draws an image's z.
        truncation_psi: 1 for the full variety, 0 for the mean style (GigaGAN).
        text: one prompt's embeddings, for a text-conditioned model (required there).
        source: the model's name or path, recorded in the metadata.
        verify: run the graph with ONNX Runtime on a random input and report the largest
            difference from PyTorch (needs onnxruntime).

    Raises:
        ValueError: text missing for a text-conditioned model, or given to another.
        ImportError: ``onnx`` (or, with ``verify``, ``onnxruntime``) is not installed.
    """
    import copy

    try:
        import onnx  # noqa: F401
    except ImportError as error:
        raise ImportError("ONNX export needs onnx: pip install 'upsampler[onnx]'") from error
    if model.text_conditioning and text is None:
        raise ValueError("this model is text-conditioned: give the prompt's text embeddings")
    if not model.text_conditioning and text is not None:
        raise ValueError("this model is unconditional: text must be None")
    if text is not None and len(text) != 1:
        raise ValueError(f"one prompt is frozen into a graph, got {len(text)}")
    model = nn.Module.to(copy.deepcopy(model), device="cpu", dtype=torch.float32).eval()
    ws = None
    if model.uses_styles:
        generator = torch.Generator().manual_seed(seed)
        ws = model.image_styles(text, generator=generator, truncation_psi=truncation_psi)
    metadata = _contract_metadata(model)
    metadata.update(
        source=source,
        seed=str(seed) if model.uses_styles else "",
        truncation_psi=repr(float(truncation_psi)) if model.uses_styles else "",
    )
    with folded_styles(model, ws, text):
        graph = _with_metadata(_trace(model, ws, text), metadata)
        if verify:
            side = 3 * model.min_size
            lq = torch.rand(2, 3, side, 2 * side, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                expected = _Frozen(model, ws, text, add_input=True)(lq)

    from upsampler.io.files import atomic_output

    path = Path(path).expanduser()
    with atomic_output(path) as temporary:
        temporary.write_bytes(graph)
    difference = None
    if verify:
        difference = float((_run(_session(graph), lq) - expected).abs().max())
    return OnnxExport(path=path, bytes=len(graph), max_difference=difference)


class _GraphModel(nn.Module):
    """What both ways of running ONNX graphs share: float32 only (graphs are exported in it),
    and the bicubic residual inside the graph, so the engine adds none."""

    def supports_dtype(self, dtype: torch.dtype) -> bool:
        return dtype == torch.float32

    def interpolated_input(self, lq: torch.Tensor, size: tuple[int, int]) -> None:
        return None


class OnnxUpsampler(_GraphModel):
    """An exported graph (:func:`export_onnx`) run by ONNX Runtime, as a model of the engine's
    contract: ``Upscaler.from_pretrained("model.onnx")`` tiles it like any other model.

    Its style and prompt are fixed in the graph: it takes no text and no styles, and the
    ``--seed`` of a run has no effect on it. ONNX Runtime runs it in float32 on the CPU.
    """

    uses_styles = False
    text_conditioning = False

    def __init__(self, session: Any, metadata: dict[str, str], path: Path | None = None):
        super().__init__()
        missing = [
            key
            for key in ("scale", "size_multiple", "min_size", "activation_elements_per_pixel")
            if key not in metadata
        ]
        if missing:
            raise ValueError(
                f"{path or 'this graph'} was not exported by upsampler (its metadata lacks "
                f"{', '.join(METADATA_PREFIX + key for key in missing)}); export it with "
                "`upsampler export-onnx`"
            )
        self.session = session
        self.metadata = metadata
        self.path = path

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> OnnxUpsampler:
        from upsampler.models.registry import ModelWeightsError

        path = Path(path).expanduser()
        graph = path.read_bytes()
        require_onnxruntime()
        try:
            session = _session(graph)
        except Exception as error:  # onnxruntime's own exception types: a broken graph
            raise ModelWeightsError(f"{path} is not a readable ONNX graph: {error}") from error
        props = session.get_modelmeta().custom_metadata_map
        metadata = {
            key[len(METADATA_PREFIX) :]: value
            for key, value in props.items()
            if key.startswith(METADATA_PREFIX)
        }
        return cls(session, metadata, path)

    def num_parameters(self) -> int | None:
        """The weights the graph holds (its initializers' elements: the folded kernels, not the
        parameters of the model it was exported from); None without ``onnx`` or a file."""
        try:
            import onnx
        except ImportError:
            return None
        if self.path is None:
            return None
        graph = onnx.load(str(self.path), load_external_data=False).graph
        # The folded kernels are traced as constants: Constant nodes as well as initializers.
        tensors = list(graph.initializer) + [
            attribute.t
            for node in graph.node
            if node.op_type == "Constant"
            for attribute in node.attribute
            if attribute.name == "value"
        ]
        return sum(math.prod(tensor.dims) for tensor in tensors)

    @property
    def scale(self) -> int:
        return int(self.metadata["scale"])

    @property
    def size_multiple(self) -> int:
        return int(self.metadata["size_multiple"])

    @property
    def min_size(self) -> int:
        return int(self.metadata["min_size"])

    @property
    def input_noise_std(self) -> float:
        return float(self.metadata.get("input_noise_std", "0"))

    def activation_elements(self, tile: int) -> float:
        return float(self.metadata["activation_elements_per_pixel"]) * tile * tile

    def image_styles(
        self,
        text: TextEmbeddings | None,
        *,
        generator: torch.Generator,
        truncation_psi: float = 1.0,
    ) -> None:
        return None

    def forward(
        self,
        lq: torch.Tensor,
        text: TextEmbeddings | None = None,
        *,
        ws: torch.Tensor | None = None,
        add_input: bool = True,
    ) -> UpsamplerOutput:
        if text is not None:
            raise ValueError("an exported graph has its prompt built in: text must be None")
        return UpsamplerOutput(hq=_run(self.session, lq))


def _delegated(name: str) -> property:
    """A read-only property giving the wrapped model's attribute ``name``."""
    return property(lambda self: getattr(self.model, name), doc=f"The wrapped model's {name}.")


class OnnxRuntimeBackend(_GraphModel):
    """A PyTorch model run by ONNX Runtime behind the engine's contract
    (``Upscaler(model, backend="onnxruntime")``).

    The engine folds each image's styles into the model (:func:`folded_styles`); the first
    forward at a style exports the folded model to a graph in memory and opens a session, which
    later tiles (and images of the same style) reuse. Models without styles are exported once.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        require_onnxruntime()
        self.model = model
        self._convs = style_convs(model)  # looked up once, not on every tile
        self._sessions: OrderedDict[str, Any] = OrderedDict()

    scale = _delegated("scale")
    size_multiple = _delegated("size_multiple")
    min_size = _delegated("min_size")
    text_conditioning = _delegated("text_conditioning")
    uses_styles = _delegated("uses_styles")
    input_noise_std = _delegated("input_noise_std")

    def activation_elements(self, tile: int) -> float:
        return self.model.activation_elements(tile)

    def image_styles(
        self,
        text: TextEmbeddings | None,
        *,
        generator: torch.Generator,
        truncation_psi: float = 1.0,
    ) -> torch.Tensor | None:
        return self.model.image_styles(text, generator=generator, truncation_psi=truncation_psi)

    def forward(
        self,
        lq: torch.Tensor,
        text: TextEmbeddings | None = None,
        *,
        ws: torch.Tensor | None = None,
        add_input: bool = True,
    ) -> UpsamplerOutput:
        convs = self._convs
        if self.model.uses_styles and not (convs and all(conv.is_folded for conv in convs)):
            # The folding probe (recording the kernels), or a model called outside the engine.
            return self.model(lq, text, ws=ws, add_input=add_input)
        one_ws = None if ws is None else ws[:1]
        one_text = None if text is None else text.index([0])
        key = _style_key(one_ws, one_text)
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = _session(_trace(self.model, one_ws, one_text))
            while len(self._sessions) > SESSION_CACHE:
                self._sessions.popitem(last=False)
        self._sessions.move_to_end(key)
        return UpsamplerOutput(hq=_run(session, lq))


def _style_key(ws: torch.Tensor | None, text: TextEmbeddings | None) -> str:
    """A digest of one image's styles and prompt: equal for equal graphs."""
    parts = [] if ws is None else [ws]
    if text is not None:
        parts += [text.tokens, text.pooled, text.mask]
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()
