"""Training data: image folders and tar shards with captions, sampled step by step; teacher
outputs cached on disk for distillation."""

from upsampler.data.datasets import DataError, ImageDataset, StepBatchSampler, collate
from upsampler.data.teacher_cache import (
    TeacherCacheDataset,
    TeacherCacheError,
    TeacherCacheMix,
    build_teacher_cache,
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
