"""Stage configs: frozen dataclasses that validate themselves.

A degradation pipeline is a list of stages; each stage is one of the dataclasses below. A
recipe writes them as a TOML list of tables (``[[degradation.stages]]`` with a ``type`` key),
which arrives here as a list of plain dicts: :func:`parse_stages` turns it into configs,
rejecting unknown stage types, unknown keys, probabilities outside [0, 1] and bad ranges with
a ``ValueError`` that names the stage and the key. A second-order degradation is simply a
second entry of the same type, never a ``*_2`` key.

Every default is Real-ESRGAN x4plus's first-order setting
(``options/train_realesrgan_x4plus.yml`` in the Real-ESRGAN repository), so ``{type = "blur"}``
alone is Real-ESRGAN's first blur.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "KERNEL_TYPES",
    "RESIZE_MODES",
    "BlurStage",
    "FinalStage",
    "JpegStage",
    "NoiseStage",
    "ResizeStage",
    "SincStage",
    "Stage",
    "parse_stage",
    "parse_stages",
    "stage_to_dict",
]

#: The blur kernel families of Real-ESRGAN (``kernel_list`` in its training options). Built in
#: :mod:`upsampler.degradations.kernels`; named here, so that configs and presets (and the help
#: of the command line) need no torch.
KERNEL_TYPES: tuple[str, ...] = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)

#: Interpolation modes a resize may draw from (``torch.nn.functional.interpolate`` names).
RESIZE_MODES: tuple[str, ...] = ("area", "bilinear", "bicubic", "nearest")


def _freeze(config: Any) -> None:
    """Store list fields as tuples, so a config built in Python with lists is hashable and
    compares equal to one parsed from a recipe."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, list):
            object.__setattr__(config, field.name, tuple(value))


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")


def _check_range(
    name: str,
    value: tuple[float, float],
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> None:
    low, high = value
    if low > high:
        raise ValueError(f"{name} must be a [low, high] range with low <= high, got {list(value)}")
    if minimum is not None and (low <= minimum if exclusive_minimum else low < minimum):
        bound = ">" if exclusive_minimum else ">="
        raise ValueError(f"{name} must be {bound} {minimum}, got {list(value)}")
    if maximum is not None and high > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {list(value)}")


def _check_kernel_size(name: str, value: tuple[int, int]) -> None:
    _check_range(name, value, minimum=1)
    if value[0] % 2 == 0 or value[1] % 2 == 0:
        raise ValueError(f"{name} must be odd sizes, got {list(value)}")


@dataclass(frozen=True)
class BlurStage:
    """Blur every image with its own random kernel (Real-ESRGAN Sec. 3.1 and 3.3).

    With ``probability`` an image is blurred (else left alone); its kernel is a sinc with
    ``sinc_probability``, else one of ``kernel_types`` drawn with ``kernel_probabilities``.
    Sizes are odd, drawn uniformly from ``kernel_size``; ``sigma`` is in pixels.
    """

    type: ClassVar[str] = "blur"
    probability: float = 1.0
    kernel_size: tuple[int, int] = (7, 21)
    kernel_types: tuple[str, ...] = KERNEL_TYPES
    kernel_probabilities: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sigma: tuple[float, float] = (0.2, 3.0)
    generalized_beta: tuple[float, float] = (0.5, 4.0)
    plateau_beta: tuple[float, float] = (1.0, 2.0)
    sinc_probability: float = 0.1

    def __post_init__(self) -> None:
        _freeze(self)
        _check_probability("probability", self.probability)
        _check_kernel_size("kernel_size", self.kernel_size)
        unknown = [name for name in self.kernel_types if name not in KERNEL_TYPES]
        if unknown or not self.kernel_types:
            raise ValueError(
                f"kernel_types must be a non-empty list of {list(KERNEL_TYPES)}, got {list(self.kernel_types)}"
            )
        if len(self.kernel_probabilities) != len(self.kernel_types):
            raise ValueError(
                f"kernel_probabilities needs one probability per kernel type "
                f"({len(self.kernel_types)}), got {len(self.kernel_probabilities)}"
            )
        for probability in self.kernel_probabilities:
            _check_probability("kernel_probabilities", probability)
        if not math.isclose(sum(self.kernel_probabilities), 1.0, abs_tol=1e-6):
            raise ValueError(
                f"kernel_probabilities must sum to 1, got {sum(self.kernel_probabilities):g}"
            )
        _check_range("sigma", self.sigma, minimum=0.0, exclusive_minimum=True)
        _check_range("generalized_beta", self.generalized_beta, minimum=0.0, exclusive_minimum=True)
        _check_range("plateau_beta", self.plateau_beta, minimum=0.0, exclusive_minimum=True)
        _check_probability("sinc_probability", self.sinc_probability)


@dataclass(frozen=True)
class ResizeStage:
    """Resize the batch up, down or not at all (Real-ESRGAN Sec. 3.1).

    ``up_down_keep`` are the probabilities of scaling up (factor uniform in
    ``[1, scale[1]]``), down (``[scale[0], 1]``) or keeping the size. The factor applies to the
    current size (``relative_to = "current"``, Real-ESRGAN's first resize) or to the final
    low-resolution size (``relative_to = "target"``, its second resize). ``up_down_keep =
    [0, 0, 1]`` with ``relative_to = "target"`` resizes exactly to the output size. One factor
    is drawn per batch, because the images of a batch must keep one size to stay one tensor
    (Real-ESRGAN does the same; :class:`upsampler.degradations.PairPool` mixes batches); the
    interpolation mode is drawn per image from ``modes``.
    """

    type: ClassVar[str] = "resize"
    up_down_keep: tuple[float, float, float] = (0.2, 0.7, 0.1)
    scale: tuple[float, float] = (0.15, 1.5)
    relative_to: str = "current"
    modes: tuple[str, ...] = ("area", "bilinear", "bicubic")
    antialias: bool = False

    def __post_init__(self) -> None:
        _freeze(self)
        if len(self.up_down_keep) != 3:
            raise ValueError(
                f"up_down_keep must be three probabilities [up, down, keep], got {list(self.up_down_keep)}"
            )
        for probability in self.up_down_keep:
            _check_probability("up_down_keep", probability)
        if not math.isclose(sum(self.up_down_keep), 1.0, abs_tol=1e-6):
            raise ValueError(f"up_down_keep must sum to 1, got {sum(self.up_down_keep):g}")
        _check_range("scale", self.scale, minimum=0.0, exclusive_minimum=True)
        if not self.scale[0] <= 1.0 <= self.scale[1]:
            raise ValueError(f"scale must be a range around 1 ([down, up]), got {list(self.scale)}")
        if self.relative_to not in ("current", "target"):
            raise ValueError(f"relative_to must be 'current' or 'target', got {self.relative_to!r}")
        _check_modes("modes", self.modes)

    @property
    def keeps_size(self) -> bool:
        """Whether the factor is always 1 (so a resize relative to the target ends at it)."""
        return self.up_down_keep[2] == 1.0 or self.scale == (1.0, 1.0)


def _check_modes(name: str, modes: tuple[str, ...]) -> None:
    if not modes or any(mode not in RESIZE_MODES for mode in modes):
        raise ValueError(
            f"{name} must be a non-empty list of {list(RESIZE_MODES)}, got {list(modes)}"
        )


@dataclass(frozen=True)
class NoiseStage:
    """Add Gaussian (with ``gaussian_probability``) or else Poisson noise (Real-ESRGAN Sec. 3.1).

    ``gaussian_sigma`` is in 8-bit levels (0-255); ``poisson_scale`` multiplies Poisson noise
    whose strength follows the image's intensity. With ``gray_probability`` the noise is the
    same in all three channels (grey noise), else independent per channel (colour noise).
    ``probability`` is the chance an image gets noise at all.
    """

    type: ClassVar[str] = "noise"
    probability: float = 1.0
    gaussian_probability: float = 0.5
    gaussian_sigma: tuple[float, float] = (1.0, 30.0)
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    gray_probability: float = 0.4

    def __post_init__(self) -> None:
        _freeze(self)
        _check_probability("probability", self.probability)
        _check_probability("gaussian_probability", self.gaussian_probability)
        _check_range("gaussian_sigma", self.gaussian_sigma, minimum=0.0, maximum=255.0)
        _check_range("poisson_scale", self.poisson_scale, minimum=0.0)
        _check_probability("gray_probability", self.gray_probability)


@dataclass(frozen=True)
class JpegStage:
    """JPEG-compress each image with ``probability`` at a quality uniform in ``quality``."""

    type: ClassVar[str] = "jpeg"
    probability: float = 1.0
    quality: tuple[float, float] = (30.0, 95.0)

    def __post_init__(self) -> None:
        _freeze(self)
        _check_probability("probability", self.probability)
        _check_range("quality", self.quality, minimum=1.0, maximum=100.0)


@dataclass(frozen=True)
class SincStage:
    """Filter each image with ``probability`` through a sinc kernel (ringing, overshoot).

    ``cutoff`` is in radians per pixel, in (0, pi].
    """

    type: ClassVar[str] = "sinc"
    probability: float = 0.8
    kernel_size: tuple[int, int] = (7, 21)
    cutoff: tuple[float, float] = (math.pi / 3, math.pi)

    def __post_init__(self) -> None:
        _freeze(self)
        _check_probability("probability", self.probability)
        _check_kernel_size("kernel_size", self.kernel_size)
        _check_range(
            "cutoff", self.cutoff, minimum=0.0, maximum=math.pi + 1e-9, exclusive_minimum=True
        )


@dataclass(frozen=True)
class FinalStage:
    """Real-ESRGAN's last step: [resize to the output size + sinc] and [JPEG], in random order.

    Per image, with ``jpeg_first_probability`` JPEG comes first, else last (Real-ESRGAN draws
    the order 50/50: resizing after JPEG blurs its blocks, resizing before keeps them). The
    resize mode is drawn per image from ``modes``; the sinc filter (``sinc_probability``,
    ``sinc_kernel_size``, ``sinc_cutoff``) is the one of :class:`SincStage`.
    """

    type: ClassVar[str] = "final"
    modes: tuple[str, ...] = ("area", "bilinear", "bicubic")
    sinc_probability: float = 0.8
    sinc_kernel_size: tuple[int, int] = (7, 21)
    sinc_cutoff: tuple[float, float] = (math.pi / 3, math.pi)
    jpeg_quality: tuple[float, float] = (30.0, 95.0)
    jpeg_first_probability: float = 0.5

    def __post_init__(self) -> None:
        _freeze(self)
        _check_modes("modes", self.modes)
        _check_probability("sinc_probability", self.sinc_probability)
        _check_kernel_size("sinc_kernel_size", self.sinc_kernel_size)
        _check_range(
            "sinc_cutoff",
            self.sinc_cutoff,
            minimum=0.0,
            maximum=math.pi + 1e-9,
            exclusive_minimum=True,
        )
        _check_range("jpeg_quality", self.jpeg_quality, minimum=1.0, maximum=100.0)
        _check_probability("jpeg_first_probability", self.jpeg_first_probability)

    @property
    def sinc(self) -> SincStage:
        return SincStage(
            probability=self.sinc_probability,
            kernel_size=self.sinc_kernel_size,
            cutoff=self.sinc_cutoff,
        )

    @property
    def jpeg(self) -> JpegStage:
        return JpegStage(probability=1.0, quality=self.jpeg_quality)


Stage = BlurStage | ResizeStage | NoiseStage | JpegStage | SincStage | FinalStage

_STAGE_TYPES: dict[str, type] = {
    cls.type: cls for cls in (BlurStage, ResizeStage, NoiseStage, JpegStage, SincStage, FinalStage)
}


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Turn a TOML/JSON value into the type of the field's default, or say what is wrong."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ValueError(f"{name} must be a list, got {value!r}")
        items = list(value)
        if default and isinstance(default[0], str):
            if not all(isinstance(item, str) for item in items):
                raise ValueError(f"{name} must be a list of strings, got {value!r}")
            return tuple(items)
        if any(isinstance(item, bool) or not isinstance(item, (int, float)) for item in items):
            raise ValueError(f"{name} must be a list of numbers, got {value!r}")
        integer = bool(default) and all(isinstance(item, int) for item in default)
        if integer:
            if not all(float(item).is_integer() for item in items):
                raise ValueError(f"{name} must be a list of integers, got {value!r}")
            items = [int(item) for item in items]
        else:
            items = [float(item) for item in items]
        if len(default) == 2 and len(items) != 2:
            raise ValueError(f"{name} must be a [low, high] pair, got {value!r}")
        return tuple(items)
    raise TypeError(f"unsupported default for {name}: {default!r}")  # a bug here, not in the input


def parse_stage(data: Mapping[str, Any]) -> Stage:
    """Build one stage config from a plain dict such as a TOML table gives.

    The dict needs a ``type`` (one of ``blur``, ``resize``, ``noise``, ``jpeg``, ``sinc``,
    ``final``); every other key must be a field of that stage. Raises ``ValueError``.
    """
    if isinstance(data, (BlurStage, ResizeStage, NoiseStage, JpegStage, SincStage, FinalStage)):
        return data
    if not isinstance(data, Mapping):
        raise ValueError(f"a stage must be a table (dict), got {data!r}")
    if "type" not in data:
        raise ValueError(
            f"a stage needs a 'type' key, one of {sorted(_STAGE_TYPES)}; got {dict(data)}"
        )
    stage_type = data["type"]
    if stage_type not in _STAGE_TYPES:
        raise ValueError(
            f"unknown stage type {stage_type!r}; expected one of {sorted(_STAGE_TYPES)}"
        )
    cls = _STAGE_TYPES[stage_type]
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields) - {"type"})
    if unknown:
        raise ValueError(
            f"unknown key(s) {unknown} for stage {stage_type!r}; allowed keys: {sorted(fields)}"
        )
    values = {
        name: _coerce(name, value, fields[name].default)
        for name, value in data.items()
        if name != "type"
    }
    return cls(**values)


def parse_stages(stages: Sequence[Mapping[str, Any] | Stage]) -> tuple[Stage, ...]:
    """Build stage configs from a list of dicts (or configs); errors name the stage's position."""
    if isinstance(stages, (str, bytes, Mapping)) or not isinstance(stages, Sequence):
        raise ValueError(f"stages must be a list of tables, got {stages!r}")
    parsed = []
    for index, data in enumerate(stages):
        try:
            parsed.append(parse_stage(data))
        except ValueError as error:
            raise ValueError(f"degradation stage {index + 1}: {error}") from error
    return tuple(parsed)


def stage_to_dict(stage: Stage) -> dict[str, Any]:
    """The plain-dict form of a stage (``type`` first, lists for tuples), for recipes and logs."""
    values = {"type": stage.type}
    for field in dataclasses.fields(stage):
        value = getattr(stage, field.name)
        values[field.name] = list(value) if isinstance(value, tuple) else value
    return values
