"""Training data: image folders and tar shards with captions, sampled step by step; teacher
outputs cached on disk for distillation.

Its names are imported on first use (see ``upsampler._lazy``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from upsampler._lazy import attach

if TYPE_CHECKING:
    from upsampler.data.datasets import DataError, ImageDataset, StepBatchSampler, collate
    from upsampler.data.teacher_cache import (
        TeacherCacheDataset,
        TeacherCacheError,
        TeacherCacheMix,
        build_teacher_cache,
    )

__getattr__, __dir__ = attach(
    __name__,
    {
        "upsampler.data.datasets": ("DataError", "ImageDataset", "StepBatchSampler", "collate"),
        "upsampler.data.teacher_cache": (
            "TeacherCacheDataset",
            "TeacherCacheError",
            "TeacherCacheMix",
            "build_teacher_cache",
        ),
    },
)

__all__ = [
    "DataError",
    "ImageDataset",
    "StepBatchSampler",
    "TeacherCacheDataset",
    "TeacherCacheMix",
    "TeacherCacheError",
    "build_teacher_cache",
    "collate",
]
