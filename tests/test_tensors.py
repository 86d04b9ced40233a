"""Images <-> the engine's tensors: one set of conversions, exact where the format allows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from upsampler.io.tensors import (
    array_to_pixels,
    merge_channels,
    pixels_to_array,
    rgb_tensor,
    split_channels,
    to_pil_rgb,
    to_uint8,
)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_split_and_merge_channels_round_trip(channels):
    pixels = np.random.default_rng(channels).random((5, 7, channels), dtype=np.float32)
    if channels in (1, 2):  # grey comes back as the luma of the RGB it was repeated to
        pixels[..., 0] = np.round(pixels[..., 0] * 255) / 255
    rgb, alpha = split_channels(pixels)
    assert rgb.shape == (1, 3, 5, 7) and (alpha is None) == (channels in (1, 3))
    if channels in (1, 2):
        assert torch.equal(rgb[0, 0], rgb[0, 2])
    np.testing.assert_allclose(merge_channels(rgb, alpha, channels), pixels, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shape", [(4, 6), (4, 6, 1), (4, 6, 3), (4, 6, 4)])
def test_arrays_come_back_in_their_own_dtype_and_shape(dtype, shape):
    rng = np.random.default_rng(0)
    if dtype is np.float32:
        array = rng.random(shape, dtype=np.float32)
    else:
        array = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    pixels = array_to_pixels(array)
    assert pixels.dtype == np.float32 and pixels.ndim == 3 and 0 <= pixels.min() <= 1
    back = pixels_to_array(pixels, like=array)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)  # exact: integers are rounded back


def test_other_dtypes_are_refused():
    with pytest.raises(ValueError, match="uint8, uint16 or float"):
        array_to_pixels(np.zeros((2, 2), dtype=np.int32))


def test_rgb_tensor_takes_every_kind_of_image_alike():
    rng = np.random.default_rng(1)
    array = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    expected = torch.from_numpy(array.astype(np.float32) / 255).permute(2, 0, 1)
    as_pil = rgb_tensor(Image.fromarray(array))
    as_rgba_pil = rgb_tensor(Image.fromarray(array).convert("RGBA"))  # alpha dropped
    as_array = rgb_tensor(array)
    as_float_array = rgb_tensor(array.astype(np.float32) / 255)
    as_chw = rgb_tensor(torch.from_numpy(array).permute(2, 0, 1))  # uint8 tensor
    as_hwc = rgb_tensor(torch.from_numpy(array.astype(np.float32) / 255))
    for got in (as_pil, as_rgba_pil, as_array, as_float_array, as_chw, as_hwc):
        assert got.shape == (3, 6, 5) and got.dtype == torch.float32
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    grey = rgb_tensor(array[..., 0])
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[0], expected[0])
    with pytest.raises(ValueError, match="1 or 3 channels"):
        rgb_tensor(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(TypeError, match="PIL images, NumPy arrays or tensors"):
        rgb_tensor([[0.5]])


def test_to_uint8_rounds_and_clamps_and_to_pil_rgb_is_its_image():
    image = torch.tensor([[[-0.2, 0.5 / 255, 1.5 / 255, 1.2]]]).expand(3, 1, 4)
    assert to_uint8(image)[0, :, 0].tolist() == [0, 0, 2, 255]  # round half to even, as torch
    assert to_uint8(image[None]).shape == (1, 4, 3)
    with pytest.raises(ValueError, match="one image"):
        to_uint8(torch.zeros(2, 3, 1, 1))
    pil = to_pil_rgb(image)
    assert pil.mode == "RGB" and np.array_equal(np.asarray(pil), to_uint8(image))
