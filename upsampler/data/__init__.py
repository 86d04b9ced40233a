"""Training data: image folders and tar shards with captions, sampled step by step."""

from upsampler.data.datasets import DataError, ImageDataset, StepBatchSampler, collate

__all__ = ["DataError", "ImageDataset", "StepBatchSampler", "collate"]
