"""Evaluation: the methods compared (``methods``), the loop (``evaluate``), the report and its
table (``report``), and the metrics (PSNR, SSIM, LPIPS). See ``docs/evaluation.md``."""

from upsampler.evaluation.evaluate import degradation_seed, evaluate, list_images, load_hq
from upsampler.evaluation.methods import (
    SRMethod,
    interpolation_method,
    spandrel_method,
    upscaler_method,
)
from upsampler.evaluation.metrics import lpips_distance, psnr, rgb_to_y, ssim
from upsampler.evaluation.report import EvaluationReport, ImageScore, MethodScores, format_table

__all__ = [
    "EvaluationReport",
    "ImageScore",
    "MethodScores",
    "SRMethod",
    "degradation_seed",
    "evaluate",
    "format_table",
    "interpolation_method",
    "list_images",
    "load_hq",
    "lpips_distance",
    "psnr",
    "rgb_to_y",
    "spandrel_method",
    "ssim",
    "upscaler_method",
]
