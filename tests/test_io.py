"""Image I/O: nothing lost on the way in or out, bad files named, writes atomic."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from upsampler.io.images import (
    AnimatedImageError,
    ImageData,
    ImageReadError,
    ImageTooLargeError,
    UnsupportedImageError,
    read_image,
    read_image_size,
    read_rgb,
    write_image,
)

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def random_pixels(height: int, width: int, channels: int, bit_depth: int = 8) -> np.ndarray:
    peak = 2**bit_depth - 1
    values = np.random.default_rng(channels + bit_depth).integers(
        0, peak + 1, (height, width, channels)
    )
    return (values / peak).astype(np.float32)


def as_int(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    return np.rint(pixels * (2**bit_depth - 1)).astype(np.int64)


def exif_with(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"  # Make
    exif.get_ifd(0x8769)[0x9003] = "2024:05:06 07:08:09"  # DateTimeOriginal, in the Exif IFD
    return exif


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_and_reset(tmp_path, orientation):
    array = (random_pixels(5, 7, 3) * 255).astype(np.uint8)
    path = tmp_path / "photo.jpg"
    Image.fromarray(array).save(path, exif=exif_with(orientation), quality=100)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    data = read_image(path)
    assert np.array_equal(as_int(data.pixels, 8), expected)
    exif = Image.Exif()
    exif.load(data.exif)
    assert exif[0x0112] == 1 and exif[0x010F] == "TestCam"
    assert exif.get_ifd(0x8769)[0x9003] == "2024:05:06 07:08:09"


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_lossless_round_trip_keeps_mode_bit_depth_and_metadata(
    tmp_path, channels, suffix, bit_depth
):
    exif = exif_with(1).tobytes()
    data = ImageData(random_pixels(9, 11, channels, bit_depth), bit_depth, SRGB, exif, None)
    path = tmp_path / f"image{suffix}"
    write_image(path, data)
    back = read_image(path)
    assert back.mode == data.mode
    assert np.array_equal(as_int(back.pixels, bit_depth), as_int(data.pixels, bit_depth))
    assert back.icc_profile == SRGB
    if not (suffix == ".tif" and bit_depth == 16 and channels > 1):  # documented: tifffile
        exif_back = Image.Exif()
        exif_back.load(back.exif)
        assert exif_back[0x010F] == "TestCam"


def test_sixteen_bit_survives_where_eight_bit_would_not(tmp_path):
    pixels = np.full((4, 4, 3), 1000 / 65535, dtype=np.float32)  # between two 8-bit levels
    write_image(tmp_path / "deep.png", ImageData(pixels, bit_depth=16))
    assert as_int(read_image(tmp_path / "deep.png").pixels, 16).max() == 1000


@pytest.mark.parametrize(("suffix", "quality"), [(".jpg", 95), (".webp", 90), (".webp", 100)])
def test_lossy_formats_carry_metadata(tmp_path, suffix, quality):
    channels = 4 if suffix == ".webp" else 3
    data = ImageData(random_pixels(16, 16, channels), 8, SRGB, exif_with(1).tobytes(), None)
    write_image(tmp_path / f"out{suffix}", data, quality=quality)
    back = read_image(tmp_path / f"out{suffix}")
    assert back.channels == channels and back.icc_profile == SRGB
    if quality == 100:  # lossless WebP, exact even under transparent pixels
        assert np.array_equal(as_int(back.pixels, 8), as_int(data.pixels, 8))


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_png_compression_trades_size_for_time_losslessly(tmp_path, bit_depth):
    # A smooth gradient with a little noise: compressible, as photos are.
    ramp = np.linspace(0, 2**bit_depth - 1, 96)[None, :, None] * np.ones((64, 1, 3))
    noise = np.random.default_rng(0).integers(0, 4, ramp.shape)
    peak = 2**bit_depth - 1
    pixels = (np.rint(np.clip(ramp + noise, 0, peak)) / peak).astype(np.float32)
    data = ImageData(pixels, bit_depth=bit_depth)
    sizes = {}
    for level in (0, 3, 9):
        path = tmp_path / f"level{level}.png"
        write_image(path, data, png_compression=level)
        assert np.array_equal(read_image(path).pixels, pixels)
        sizes[level] = path.stat().st_size
    assert max(sizes[3], sizes[9]) < 0.9 * sizes[0]  # 0 stores, 3 and 9 compress
    write_image(tmp_path / "default.png", data)
    assert (tmp_path / "default.png").read_bytes() == (tmp_path / "level3.png").read_bytes()
    with pytest.raises(ValueError, match=r"png_compression must be in \[0, 9\], got 10"):
        write_image(tmp_path / "bad.png", data, png_compression=10)


def test_jpeg_refuses_alpha(tmp_path):
    with pytest.raises(ValueError, match="JPEG cannot store alpha"):
        write_image(tmp_path / "a.jpg", ImageData(random_pixels(4, 4, 4)))
    assert not list(tmp_path.iterdir())


def test_pillow_modes_are_mapped(tmp_path):
    palette = Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4)).convert("P")
    palette.info["transparency"] = 0
    palette.save(tmp_path / "p.png", transparency=0)
    Image.new("1", (4, 4), 1).save(tmp_path / "bw.png")
    Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)).save(tmp_path / "g16.png")
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    assert read_image(tmp_path / "p.png").mode == "RGBA"
    assert read_image(tmp_path / "p.png").pixels[0, 0, 3] == 0.0
    assert read_image(tmp_path / "bw.png").mode == "L"
    grey_gif = Image.new("P", (4, 4))
    grey_gif.putpalette([value for level in range(256) for value in (level, level, level)])
    grey_gif.putdata(list(range(16)))
    grey_gif.save(tmp_path / "grey.gif", transparency=0)  # Pillow opens it as L + transparency
    assert read_image(tmp_path / "grey.gif").mode == "LA"
    grey16 = read_image(tmp_path / "g16.png")
    assert grey16.mode == "L;16" and as_int(grey16.pixels, 16).max() == 40000
    cmyk = read_image(tmp_path / "cmyk.jpg")
    assert cmyk.mode == "RGB"
    red, green, blue = cmyk.pixels[2, 2]
    assert red > 0.9 and green < 0.1 and blue < 0.1  # C=0 M=255 Y=255 K=0 is red


def make_bad_files(folder):
    """Every kind of bad input, by name -> (path, expected exception type)."""
    good = io.BytesIO()
    Image.fromarray((random_pixels(64, 64, 3) * 255).astype(np.uint8)).save(good, "PNG")
    jpeg = io.BytesIO()
    Image.fromarray((random_pixels(64, 64, 3) * 255).astype(np.uint8)).save(jpeg, "JPEG")
    files = {
        "empty.png": (b"", ImageReadError),
        "truncated.png": (good.getvalue()[: len(good.getvalue()) // 2], ImageReadError),
        "corrupt.jpg": (jpeg.getvalue()[:200] + b"\x00" * 500, ImageReadError),
        "text.png": (b"this is not an image at all\n" * 10, ImageReadError),
    }
    paths = {}
    for name, (content, error) in files.items():
        (folder / name).write_bytes(content)
        paths[name] = (folder / name, error)
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    paths["animated.gif"] = (folder / "animated.gif", AnimatedImageError)
    frames[0].save(folder / "pages.tif", save_all=True, append_images=frames[1:])
    paths["pages.tif"] = (folder / "pages.tif", AnimatedImageError)
    Image.fromarray(np.zeros((4, 4), dtype=np.float32)).save(folder / "float.tif")
    paths["float.tif"] = (folder / "float.tif", UnsupportedImageError)
    paths["missing.png"] = (folder / "missing.png", ImageReadError)
    return paths


def test_bad_inputs_raise_specific_errors(tmp_path):
    for name, (path, error) in make_bad_files(tmp_path).items():
        with pytest.raises(error) as raised:
            read_image(path)
        assert str(path) in str(raised.value), name
    with pytest.raises(ImageReadError, match="not a file"):
        read_image(tmp_path)


def test_decompression_bomb_limit_is_configurable(tmp_path):
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageTooLargeError, match="10,000 pixels is over the limit of 9,999"):
        read_image(tmp_path / "big.png", max_pixels=9_999)
    assert read_image(tmp_path / "big.png", max_pixels=10_000).height == 100


@pytest.mark.parametrize("reader", [read_image, read_rgb, read_image_size])
def test_every_reader_refuses_over_the_limit_naming_the_flag(tmp_path, reader):
    path = tmp_path / "small.png"
    Image.new("RGB", (30, 20)).save(path)
    data = path.read_bytes()
    for source in ({}, {"data": data}):
        with pytest.raises(
            ImageTooLargeError, match=r"600 pixels is over the limit of 599"
        ) as raised:
            reader(path, max_pixels=599, **source)
        assert "--max-pixels" in str(raised.value)
        assert str(raised.value).startswith(f"{path}: ")
        assert reader(path, max_pixels=600, **source) is not None


def test_the_default_limit_is_the_documented_one():
    import inspect

    from upsampler.io.formats import DEFAULT_MAX_PIXELS

    assert DEFAULT_MAX_PIXELS == 40_000_000
    for reader in (read_image, read_rgb, read_image_size):
        default = inspect.signature(reader).parameters["max_pixels"].default
        assert default == DEFAULT_MAX_PIXELS, reader.__name__


def test_bytes_in_memory_read_as_the_file_does(tmp_path):
    cases = {
        "photo.jpg": ImageData(random_pixels(12, 10, 3), exif=exif_with(6).tobytes()),
        "deep.png": ImageData(random_pixels(6, 5, 4, 16), bit_depth=16),
        "deep.tif": ImageData(random_pixels(6, 5, 2, 16), bit_depth=16),  # tifffile alone
        "grey.png": ImageData(random_pixels(6, 5, 1)),
    }
    for name, image in cases.items():
        path = tmp_path / name
        write_image(path, image)
        from_file, from_bytes = read_image(path), read_image(path, data=path.read_bytes())
        np.testing.assert_array_equal(from_bytes.pixels, from_file.pixels, err_msg=name)
        assert from_bytes.bit_depth == from_file.bit_depth and from_bytes.exif == from_file.exif
        assert read_image_size(path, data=path.read_bytes()) == read_image_size(path)
        assert read_rgb(path, data=path.read_bytes()).tobytes() == read_rgb(path).tobytes()
    with pytest.raises(ImageReadError, match=r"^shard\.tar:a\.png: empty file"):
        read_image("shard.tar:a.png", data=b"")
    with pytest.raises(ImageReadError, match=r"^shard\.tar:a\.png: not an image"):
        read_image("shard.tar:a.png", data=b"not an image at all" * 4)


def test_read_rgb_is_upright_8_bit_rgb_of_every_mode(tmp_path):
    rgba = random_pixels(6, 8, 4)
    write_image(tmp_path / "rgba.png", ImageData(rgba))
    write_image(tmp_path / "grey_alpha.png", ImageData(rgba[..., :2]))
    write_image(tmp_path / "deep.png", ImageData(rgba[..., :3], bit_depth=16))
    write_image(tmp_path / "turned.jpg", ImageData(rgba[..., :3], exif=exif_with(6).tobytes()))
    for name in ("rgba.png", "grey_alpha.png", "deep.png", "turned.jpg"):
        image = read_rgb(tmp_path / name)
        assert image.mode == "RGB", name
        pixels = read_image(tmp_path / name).pixels
        channels = pixels[..., :1].repeat(3, axis=2) if pixels.shape[2] < 3 else pixels[..., :3]
        expected = np.rint(channels * 255).astype(np.uint8)  # alpha dropped, grey repeated
        np.testing.assert_array_equal(np.asarray(image), expected, err_msg=name)
    assert read_rgb(tmp_path / "turned.jpg").size == (6, 8)  # orientation 6: a quarter turn
    # 16 bits are rounded to 8, not cut (Pillow's own conversion of 16-bit grey clips at 255).
    deep = np.asarray(read_rgb(tmp_path / "deep.png"))
    np.testing.assert_array_equal(deep, np.rint(rgba[..., :3] * 255).astype(np.uint8))


def test_read_image_size_reads_the_header_alone(tmp_path):
    write_image(
        tmp_path / "turned.jpg", ImageData(random_pixels(6, 8, 3), exif=exif_with(6).tobytes())
    )
    assert read_image_size(tmp_path / "turned.jpg") == (6, 8)  # upright (width, height)
    big = tmp_path / "header_only.png"
    _png_header_only(big, 300, 200)  # no pixel data: decoding it would fail
    assert read_image_size(big) == (300, 200)
    with pytest.raises(ImageReadError, match="corrupt or truncated"):
        read_image(big)
    bad = make_bad_files(tmp_path)
    for name in ("empty.png", "text.png", "animated.gif", "pages.tif", "missing.png"):
        path, error = bad[name]
        with pytest.raises(error):
            read_image_size(path)


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header claims width x height and whose pixel data is missing: a bomb shape."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


def test_max_pixels_above_pillows_own_limit_takes_effect(tmp_path):
    # 200M pixels: past twice Pillow's default MAX_IMAGE_PIXELS, where Pillow refuses in open().
    path = tmp_path / "huge.png"
    _png_header_only(path, 20_000, 10_000)
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageTooLargeError, match=r"raise max_pixels \(--max-pixels\)") as raised:
        read_image(path)
    assert "PIL.Image" not in str(raised.value)  # no advice a CLI user cannot follow
    # Allowed by max_pixels: Pillow opens it, and decoding reports the missing pixel data.
    with pytest.raises(ImageReadError) as raised:
        read_image(path, max_pixels=250_000_000)
    assert not isinstance(raised.value, ImageTooLargeError)
    assert "corrupt or truncated" in str(raised.value)
    assert before == Image.MAX_IMAGE_PIXELS  # Pillow's global is left as it was


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, OSError])
def test_interrupted_write_leaves_nothing_behind(tmp_path, monkeypatch, interruption):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous complete output")

    def half_written_save(self, fp, format=None, **options):
        with open(fp, "wb") as handle:
            handle.write(b"\x89PNG\r\n\x1a\n half an image")
        raise interruption("interrupted mid-write")

    monkeypatch.setattr(Image.Image, "save", half_written_save)
    with pytest.raises((KeyboardInterrupt, OSError)):
        write_image(target, ImageData(random_pixels(8, 8, 3)))
    assert target.read_bytes() == b"previous complete output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary file left


def test_written_files_follow_the_umask(tmp_path):
    write_image(tmp_path / "out.png", ImageData(random_pixels(4, 4, 3)))
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "out.png").stat().st_mode & 0o777 == 0o666 & ~mask
