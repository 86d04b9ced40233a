"""Community super-resolution checkpoints (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, SPAN, ...) run
through the engine, by way of ``spandrel``.

spandrel recognises an architecture from the keys and shapes of a state dict and builds it with
its hyperparameters; its model descriptor states the contract we need (scale, size rule,
half/bf16 support, channel counts). :class:`SpandrelUpsampler` wraps a descriptor so that the
:class:`~upsampler.Upscaler` runs it like our own models: tiled and blended, any image size,
16-bit and alpha kept. These networks take no text and no style noise.

Files are read by us, never by spandrel's own loader: safetensors, or a pickle with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers.
A checkpoint that needs arbitrary code to unpickle is refused with the way out (convert it to
safetensors on a machine where you trust it).

    model = load_spandrel_file("4x-UltraSharp.safetensors")
    model.scale, model.architecture        # 4, "ESRGAN"
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from upsampler.io.tensors import LUMA
from upsampler.models.generator import UpsamplerOutput

# Suffixes of single-file checkpoints (a folder with config.json is a save_pretrained model).
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")


class CheckpointError(ValueError):
    """A single-file checkpoint that cannot be used: unreadable, unsafe to unpickle, or of an
    architecture spandrel does not know."""


class SpandrelUnavailableError(ImportError):
    """spandrel is not installed (it is a dependency of the package: reinstall it)."""


def is_checkpoint_file(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_file() and path.suffix.lower() in CHECKPOINT_SUFFIXES


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, read without running any code from it.

    Raises:
        CheckpointError: unreadable or corrupt file, a pickle that holds more than tensors and
            plain containers, or an unknown suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(
                f"{path}: not a readable safetensors file ({error}); the file may be truncated "
                "or corrupt: download it again"
            ) from error
    if suffix in (".pth", ".pt", ".ckpt", ".bin"):
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # UnpicklingError, zip errors of a truncated file, EOFError
            unsafe = "weights_only" in str(error) or "Unsupported global" in str(error)
            reason = (
                "it needs code to be run to unpickle (torch.load(weights_only=True) refuses "
                "it); convert it to .safetensors on a machine where you trust the file"
                if unsafe
                else f"it is not a readable PyTorch checkpoint ({error.__class__.__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}); it may be truncated"
            )
            raise CheckpointError(f"{path}: {reason}") from error
        return _unwrap(loaded, path)
    raise CheckpointError(
        f"{path}: unsupported model file {suffix!r}; expected one of {', '.join(CHECKPOINT_SUFFIXES)}"
    )


def _unwrap(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    """Training checkpoints nest the weights ('params_ema', 'state_dict', ...): spandrel's
    canonicalize_state_dict finds them; here we only check that there are tensors at all."""
    if not isinstance(loaded, dict) or not loaded:
        raise CheckpointError(f"{path}: holds no state dict (got {type(loaded).__name__})")
    return loaded


class SpandrelUpsampler(nn.Module):
    """A spandrel model descriptor behind the engine's model contract.

    Args:
        descriptor: a ``spandrel.ImageModelDescriptor`` of a super-resolution model.
        source: where it came from (a path or Hub id), for ``upsampler info``.

    Grey (1-channel) models get the luma of the RGB input and their output is repeated to
    three channels; RGBA (4-channel) models get an opaque alpha (the engine upscales alpha on
    its own). Output is clamped to [0, 1] by spandrel.
    """

    def __init__(self, descriptor, *, source: str = ""):
        super().__init__()
        self.descriptor = descriptor
        self.network = descriptor.model  # registered, so .to() and .parameters() reach it
        self.source = source

    # ---------------------------------------------------------------- the contract

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)

    @property
    def size_multiple(self) -> int:
        return max(1, int(self.descriptor.size_requirements.multiple_of))

    @property
    def min_size(self) -> int:
        return max(1, int(self.descriptor.size_requirements.minimum))

    @property
    def text_conditioning(self) -> bool:
        return False

    @property
    def uses_styles(self) -> bool:
        return False

    @property
    def architecture(self) -> str:
        return self.descriptor.architecture.name

    @property
    def input_channels(self) -> int:
        return int(self.descriptor.input_channels)

    @property
    def config(self) -> dict:
        return {}

    def supports_dtype(self, dtype: torch.dtype) -> bool:
        if dtype == torch.float16:
            return bool(self.descriptor.supports_half)
        if dtype == torch.bfloat16:
            return bool(self.descriptor.supports_bfloat16)
        return dtype == torch.float32

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.network.parameters())

    def activation_elements(self, tile: int) -> float:
        """A rough count of activation elements for one ``tile`` x ``tile`` input.

        Architectures differ too much to model each one: take the widest convolution's output
        channels at the input resolution, times a depth factor of 4 live maps, plus the output;
        transformer models (SwinIR, HAT, DAT) are bounded by their window attention, which this
        overestimates rather than under.
        """
        widths = [m.out_channels for m in self.network.modules() if isinstance(m, nn.Conv2d)]
        width = max(widths, default=64)
        return float(4 * width * tile * tile + 3 * (tile * self.scale) ** 2)

    #: no noise on the input
    input_noise_std = 0.0

    def image_styles(self, text: object, *, generator: object, truncation_psi: float = 1.0):
        """None: no style noise, the same input always gives the same output."""
        return None

    def interpolated_input(self, lq: torch.Tensor, size: tuple[int, int]) -> None:
        """None: whatever residual the architecture has is inside its forward."""
        return None

    def forward(
        self,
        lq: torch.Tensor,
        text: object = None,
        *,
        ws: torch.Tensor | None = None,
        add_input: bool = True,
    ) -> UpsamplerOutput:
        """lq: (B, 3, H, W) in [0, 1] -> hq (B, 3, scale*H, scale*W) in [0, 1].

        ``text`` and ``ws`` must be None (these models take neither); ``add_input`` is
        ignored: they have no separate input residual.
        """
        if text is not None:
            raise ValueError(f"{self.architecture} models take no text")
        channels = self.input_channels
        x = lq
        if channels == 1:
            luma = torch.tensor(LUMA, dtype=lq.dtype, device=lq.device)[None, :, None, None]
            x = (lq * luma).sum(dim=1, keepdim=True)
        elif channels == 4:
            x = torch.cat([lq, torch.ones_like(lq[:, :1])], dim=1)
        elif channels != 3:
            raise ValueError(f"{self.architecture} takes {channels} channels: not an image model")
        hq = self.descriptor(x)
        if hq.shape[1] == 1:
            hq = hq.expand(-1, 3, -1, -1)
        elif hq.shape[1] == 4:
            hq = hq[:, :3]
        return UpsamplerOutput(hq=hq)


def from_state_dict(
    state_dict: dict[str, torch.Tensor], *, source: str = "a state dict"
) -> SpandrelUpsampler:
    """Build the model that spandrel recognises in ``state_dict``.

    Raises:
        SpandrelUnavailableError: spandrel is not installed.
        CheckpointError: no known architecture, or not a single-image super-resolution model.
    """
    try:
        import spandrel
    except ImportError as error:
        raise SpandrelUnavailableError(
            "loading community checkpoints needs the package spandrel: `pip install spandrel`"
        ) from error
    state_dict = spandrel.canonicalize_state_dict(state_dict)
    try:
        descriptor = spandrel.ModelLoader(device="cpu").load_from_state_dict(state_dict)
    except spandrel.UnsupportedModelError as error:
        raise CheckpointError(
            f"{source}: not an architecture spandrel knows (it recognises ESRGAN/Real-ESRGAN, "
            "SwinIR, HAT, DAT, SPAN, Real-ESRGAN compact and many more); is it a "
            "super-resolution model?"
        ) from error
    except (RuntimeError, KeyError, ValueError, TypeError) as error:
        raise CheckpointError(
            f"{source}: spandrel recognised the keys but could not build the model ({error})"
        ) from error
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise CheckpointError(f"{source}: {descriptor.architecture.name} is not an image model")
    if descriptor.input_channels not in (1, 3, 4):
        raise CheckpointError(
            f"{source}: {descriptor.architecture.name} takes {descriptor.input_channels} "
            "channels; only grey, RGB and RGBA models can run here"
        )
    return SpandrelUpsampler(descriptor.eval(), source=source)


def load_spandrel_file(path: str | os.PathLike) -> SpandrelUpsampler:
    """A community checkpoint file (.safetensors, .pth, .pt, .ckpt, .bin) as an engine model."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no model file {path}")
    return from_state_dict(read_state_dict(path), source=str(path))
