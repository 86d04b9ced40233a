"""Tiled inference: the Upscaler and pure tiling functions."""
