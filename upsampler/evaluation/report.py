"""What an evaluation reports: per-image and per-method scores, JSON and the table."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


@dataclass(frozen=True)
class ImageScore:
    """One method on one image. psnr in dB (inf for a perfect match), ssim in [-1, 1],
    lpips >= 0 (lower is better), seconds for the method's call."""

    image: str
    psnr: float
    ssim: float
    lpips: float
    seconds: float


@dataclass(frozen=True)
class MethodScores:
    """All images of one method, with their means."""

    name: str
    images: tuple[ImageScore, ...]

    @property
    def psnr(self) -> float:
        """The mean over all images (inf if any is reproduced exactly; the report's
        :meth:`EvaluationReport.psnr` leaves those out for every method)."""
        return _mean([score.psnr for score in self.images])

    @property
    def ssim(self) -> float:
        return _mean([score.ssim for score in self.images])

    @property
    def lpips(self) -> float:
        return _mean([score.lpips for score in self.images])

    @property
    def seconds_per_image(self) -> float:
        return _mean([score.seconds for score in self.images])


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class EvaluationReport:
    """The settings of one eval run and every method's scores."""

    data_dir: str
    degradation: str
    scale: int
    seed: int
    crop_border: int
    y_channel: bool
    lpips_net: str
    images: tuple[str, ...]
    methods: tuple[MethodScores, ...]
    skipped: tuple[tuple[str, str], ...] = field(default=())

    @functools.cached_property
    def exact_images(self) -> tuple[str, ...]:
        """Images some method reproduced exactly (infinite PSNR; a flat colour, say): every
        method's PSNR mean leaves them out, so that the means stay finite and comparable."""
        return tuple(
            image
            for image in self.images
            if any(s.image == image and s.psnr == math.inf for m in self.methods for s in m.images)
        )

    def psnr(self, method: MethodScores) -> float:
        """``method``'s PSNR mean over the images no method reproduced exactly (inf when
        that leaves none)."""
        exact = set(self.exact_images)
        kept = [score.psnr for score in method.images if score.image not in exact]
        return _mean(kept) if kept or not method.images else math.inf

    def psnr_note(self) -> str | None:
        """The line saying which images the PSNR means leave out, if any."""
        if not (exact := self.exact_images):
            return None
        methods = [m.name for m in self.methods if any(s.psnr == math.inf for s in m.images)]
        return (
            f"PSNR means leave out {len(exact)} of {len(self.images)} images that "
            f"{', '.join(methods)} reproduced exactly (infinite PSNR): {', '.join(exact)}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: settings, per-method means and per-image values (inf/nan -> null)."""
        return {
            "data_dir": self.data_dir,
            "degradation": self.degradation,
            "scale": self.scale,
            "seed": self.seed,
            "crop_border": self.crop_border,
            "channel": "y" if self.y_channel else "rgb",
            "lpips_net": self.lpips_net,
            "num_images": len(self.images),
            "skipped": [{"image": image, "reason": reason} for image, reason in self.skipped],
            "psnr_left_out": list(self.exact_images),
            "methods": {
                method.name: {
                    "psnr": _json_number(self.psnr(method)),
                    "ssim": _json_number(method.ssim),
                    "lpips": _json_number(method.lpips),
                    "seconds_per_image": _json_number(method.seconds_per_image),
                    "images": [
                        {
                            "image": score.image,
                            "psnr": _json_number(score.psnr),
                            "ssim": _json_number(score.ssim),
                            "lpips": _json_number(score.lpips),
                            "seconds": _json_number(score.seconds),
                        }
                        for score in method.images
                    ],
                }
                for method in self.methods
            },
        }


def format_table(report: EvaluationReport, *, markdown: bool = False) -> str:
    """The means as a text table (or a Markdown one, e.g. for a README)."""
    channel = "Y" if report.y_channel else "RGB"
    header = [
        "method",
        f"PSNR-{channel} (dB)",
        f"SSIM-{channel}",
        f"LPIPS-{report.lpips_net}",
        "s/image",
    ]
    rows = [
        [
            method.name,
            f"{report.psnr(method):.2f}",
            f"{method.ssim:.4f}",
            f"{method.lpips:.4f}",
            f"{method.seconds_per_image:.3f}",
        ]
        for method in report.methods
    ]
    notes = [note] if (note := report.psnr_note()) else []
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines + ([""] + notes if notes else []))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines + notes)
