"""Evaluation metrics (PSNR, SSIM, LPIPS) and the eval loop. See ``docs/evaluation.md``."""

from upsampler.evaluation.evaluate import (
    EvaluationReport,
    ImageScore,
    MethodScores,
    SRMethod,
    degradation_seed,
    evaluate,
    format_table,
    interpolation_method,
    list_images,
    load_hq,
    spandrel_method,
    upscaler_method,
)
from upsampler.evaluation.metrics import lpips_distance, psnr, rgb_to_y, ssim

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
