"""Which device and which precision a model runs in.

    device = resolve_device("auto")                       # CUDA, then MPS, then the CPU
    dtype = resolve_dtype("auto", device, model)           # the fastest precision both allow

A precision must be supported by the device (no fp16 on the CPU) and by the model (some
community architectures give wrong output in fp16 or bf16; their loaders say so through the
model contract's ``supports_dtype``). "auto" takes the device's preferred precision and steps
down to one the model supports, fp32 at the end; a precision asked for by name that either
cannot run is an error that lists those that can.
"""

from __future__ import annotations

import torch

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto" -> CUDA if available, else MPS if available, else CPU; anything else as given."""
    if str(device) != "auto":
        try:
            device = torch.device(device)
        except RuntimeError:  # torch's message lists every device type it knows
            raise ValueError(
                f"device must be auto, cpu, cuda, cuda:N or mps, got {str(device)!r}"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' asked for, but torch sees no CUDA GPU")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError("device 'mps' asked for, but torch sees no MPS device")
        if device.type not in ("cpu", "cuda", "mps"):
            raise ValueError(f"device must be cpu, cuda or mps, got {device}")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def supported_dtypes(device: torch.device) -> tuple[torch.dtype, ...]:
    """The precisions the Upscaler runs in on ``device`` (fp16 never on the CPU)."""
    if device.type == "cuda":
        bf16 = (torch.bfloat16,) if torch.cuda.is_bf16_supported() else ()
        return (torch.float32, torch.float16, *bf16)
    if device.type == "mps":
        return (torch.float32, torch.float16)
    return (torch.float32, torch.bfloat16)


def resolve_dtype(
    dtype: str | torch.dtype, device: torch.device, model: object | None = None
) -> torch.dtype:
    """ "auto" -> bf16 (or fp16) on CUDA, fp16 on MPS, fp32 on the CPU, stepping down to what
    ``model`` supports (its ``supports_dtype``); names or dtypes otherwise, checked against both.
    """
    allowed = usable_dtypes(device, model)
    if isinstance(dtype, str):
        if dtype == "auto":
            if device.type == "cuda":
                preferred = (torch.bfloat16,) if torch.cuda.is_bf16_supported() else ()
                preferred += (torch.float16,)
            else:
                preferred = (torch.float16,) if device.type == "mps" else ()
            return next((d for d in preferred if d in allowed), torch.float32)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be auto, fp32, fp16 or bf16, got {dtype!r}")
        dtype = DTYPES[dtype]
    names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
    if dtype not in supported_dtypes(device):
        hint = " (half precision is not supported on the CPU)" if dtype == torch.float16 else ""
        raise ValueError(f"{dtype} is not supported on {device.type}{hint}; use one of {names}")
    if dtype not in allowed:
        name = getattr(model, "architecture", type(model).__name__)
        raise ValueError(
            f"{name} models do not run correctly in {str(dtype).removeprefix('torch.')}; "
            f"use one of {names}"
        )
    return dtype


def usable_dtypes(device: torch.device, model: object | None = None) -> tuple[torch.dtype, ...]:
    """The precisions both ``device`` and ``model`` (when given) support, fp32 first."""
    return tuple(
        d
        for d in supported_dtypes(device)
        if model is None or not hasattr(model, "supports_dtype") or model.supports_dtype(d)
    )
