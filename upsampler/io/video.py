"""Video files through PyAV (FFmpeg's libraries in a wheel): probing, streamed decoding,
encoded segments, and the final file assembled with every other stream copied.

The pieces, in the order :mod:`upsampler.inference.video` uses them:

* :func:`is_video` / :func:`find_videos`: what a folder holds, by probing the content (a video
  suffix is taken whatever the content says, so a broken clip is reported, not skipped);
* :func:`scan_video`: the checks made before any frame is decoded (a video stream, a decoder
  for it, the pixel limit, a readable container) and the keyframes, read from the packets alone;
* :func:`read_frames`: the frames with ``start <= pts < end``, decoded from the keyframe at
  ``start`` (seeking), one at a time: memory does not grow with the clip;
* :func:`write_segment`: frames encoded into a segment file, written atomically. A segment file
  is this module's own: the encoded packets with their exact timestamps (MP4 and Matroska round
  or shift them) and the encoder's extradata;
* :func:`assemble`: the segments' packets and the source's audio, subtitle, data and attachment
  streams (copied as they are: remuxed, not re-encoded) muxed into the output, written
  atomically, with the metadata carried over: container and stream tags (language, title,
  ...), the rotation, colour primaries/transfer/matrix/range and the sample aspect ratio.

Errors are :class:`VideoReadError` (a ``ValueError``; subclasses for the pixel limit, an
unsupported codec and a file without a video stream) and :class:`VideoWriteError` (an
``OSError``: the disk is full, the folder is read-only).
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import json
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from upsampler.io.files import atomic_output, list_files
from upsampler.io.formats import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, VIDEO_SUFFIXES

# Output codecs: our name -> (FFmpeg encoder, default CRF). CRF 18 is x264's "visually
# lossless" point for 8-bit video (x265's equivalent is about 20); FFV1 is lossless.
CODECS: dict[str, tuple[str, int | None]] = {
    "h264": ("libx264", 18),
    "h265": ("libx265", 20),
    "ffv1": ("ffv1", None),
}
DEFAULT_CODEC = "h264"

# Demuxers (FFmpeg's names) taken for video containers. Anything else a probe opens is not a
# video here: FFmpeg reads text files as "tty" ANSI art and images as "image2", and GIFs are
# animations (upsampler.io.animation).
_VIDEO_DEMUXERS = {
    "mov", "mp4", "matroska", "webm", "avi", "mpegts", "mpeg", "flv", "asf", "ogg", "nut",
    "mxf", "dv", "rm", "wtv",
}  # fmt: skip
# Output muxer by suffix, and which of CODECS each holds; other cases are written as Matroska.
_MUXERS = {
    ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi",
    ".ts": "mpegts", ".mts": "mpegts", ".m2ts": "mpegts", ".nut": "nut",
}  # fmt: skip
_HOLDS = {
    "mp4": {"h264", "h265"},
    "mov": {"h264", "h265"},
    "matroska": set(CODECS),
    "avi": {"h264", "ffv1"},
    "mpegts": {"h264", "h265"},
    "nut": set(CODECS),
}
_GLOBAL_HEADER = 0x0040  # AVFMT_GLOBALHEADER: the muxer wants codec headers in extradata
# Tags that describe the source's encoding, not the content: the muxer writes its own.
_STALE_TAGS = ("encoder", "major_brand", "minor_version", "compatible_brands", "duration",
               "number_of_frames", "number_of_bytes", "bps", "_statistics")  # fmt: skip

_SEGMENT_MAGIC = b"UPSVSEG1"
_RECORD = struct.Struct("<qqqBI")  # pts, dts, duration, keyframe (255: the trailer), size
_NONE = -(2**63)  # a missing pts/dts in a record


class VideoReadError(ValueError):
    """A video that cannot be read; the message says which file and why."""


class VideoTooLargeError(VideoReadError):
    """Frames with more pixels than the limit (the decompression-bomb guard)."""


class UnsupportedVideoError(VideoReadError):
    """A codec this build of FFmpeg cannot decode, or a stream the output cannot hold."""


class NoVideoStreamError(VideoReadError):
    """A container without a video stream (audio only, subtitles only)."""


class VideoWriteError(OSError):
    """The output could not be written (nothing is left under its name)."""


def _av() -> Any:
    import av  # PyAV: imported on first use, so the command line starts without it

    return av


# --------------------------------------------------------------------------- finding


def is_video(path: str | os.PathLike) -> bool:
    """Whether FFmpeg opens ``path`` as a video container with a video stream (by content)."""
    av = _av()
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            return _is_video_container(container) and _main_stream(container) is not None
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        return False


def find_videos(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    recursive: bool,
    exclude: str | os.PathLike | None = None,
) -> list[Path]:
    """The video files in the folders of ``paths`` (files given directly are not returned).

    Files with a video suffix (:data:`~upsampler.io.formats.VIDEO_SUFFIXES`) are taken as they
    are; files with neither a video nor an image suffix are taken when :func:`is_video` probes
    them as a video (a clip saved without its suffix). Hidden files, links to folders and
    ``exclude`` are skipped as by :func:`~upsampler.io.files.find_images`.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    found: list[Path] = []
    for item in map(Path, paths):
        if not item.is_dir():
            continue
        for path in list_files(item, recursive=recursive, exclude=exclude):
            suffix = path.suffix.lower()
            if suffix in VIDEO_SUFFIXES or (suffix not in IMAGE_SUFFIXES and is_video(path)):
                found.append(path)
    return found


def output_suffix(source: str | os.PathLike, codec: str) -> str:
    """The output's suffix: the source's when its container holds ``codec``, else ``.mkv``
    (Matroska holds every codec here; MP4 and MOV do not hold FFV1)."""
    suffix = Path(source).suffix.lower()
    muxer = _MUXERS.get(suffix)
    if muxer is None and suffix not in VIDEO_SUFFIXES:  # a clip saved without its suffix
        suffix = _probed_suffix(Path(source))
        muxer = _MUXERS.get(suffix)
    if muxer is not None and codec in _HOLDS[muxer]:
        return suffix if suffix != Path(source).suffix.lower() else Path(source).suffix
    return ".mkv"


def _probed_suffix(path: Path) -> str:
    """The usual suffix of the container FFmpeg finds in ``path`` ("" if none)."""
    av = _av()
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            names = container.format.name.split(",")
    except (av.FFmpegError, OSError, ValueError):
        return ""
    for name, suffix in (("mp4", ".mp4"), ("matroska", ".mkv"), ("avi", ".avi"), ("mpegts", ".ts")):
        if name in names:
            return suffix
    return ""


def _is_video_container(container: Any) -> bool:
    return bool(set(container.format.name.split(",")) & _VIDEO_DEMUXERS)


def _main_stream(container: Any) -> Any:
    """The first video stream that is not a cover picture, or None."""
    attached = _av().stream.Disposition.attached_pic
    for stream in container.streams.video:
        if not stream.disposition & attached:
            return stream
    return None


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`scan_video` found, from the packets alone (no frame decoded).

    Timestamps are in ``time_base`` units of the video stream: ``keyframes`` holds the pts of
    every keyframe (sorted), ``start`` the first frame's and ``end`` the end of the last one.
    ``frames`` counts the stream's packets (one frame each for the codecs met in practice).
    """

    path: Path
    format: str
    stream_index: int
    codec: str
    pix_fmt: str
    bit_depth: int
    width: int
    height: int
    time_base: Fraction
    rate: Fraction | None
    start: int
    end: int
    frames: int
    keyframes: tuple[int, ...]
    colour: tuple[int, int, int, int]  # primaries, transfer, matrix, range (FFmpeg's numbers)
    sample_aspect_ratio: Fraction | None

    def seconds(self, pts: int) -> float:
        return float((pts - self.start) * self.time_base)


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Any]:
    """The container, with every FFmpeg failure turned into a :class:`VideoReadError`."""
    av = _av()
    if not path.is_file():
        raise VideoReadError(
            f"{path}: no such file" if not path.exists() else f"{path}: not a file"
        )
    if path.stat().st_size == 0:
        raise VideoReadError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as error:
        raise VideoReadError(
            f"{path}: not a video, or corrupt or truncated ({_reason(error)})"
        ) from error
    try:
        yield container
    except (VideoReadError, KeyboardInterrupt, GeneratorExit):
        raise
    except av.FFmpegError as error:
        raise VideoReadError(f"{path}: corrupt or truncated video ({_reason(error)})") from error
    finally:
        container.close()


def scan_video(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> VideoInfo:
    """Check a video file and list its keyframes, before any frame is decoded.

    Raises:
        NoVideoStreamError: no video stream (an audio file, a subtitle file).
        UnsupportedVideoError: no decoder for its codec in this build of FFmpeg.
        VideoTooLargeError: frames over ``max_pixels`` (``--max-pixels``).
        VideoReadError: not a video, corrupt or truncated, no frames, no timestamps.
    """
    path = Path(path)
    av = _av()
    with _opened(path) as container:
        stream = _main_stream(container)
        if stream is None:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            raise NoVideoStreamError(
                f"{path}: no video stream in this {container.format.name.split(',')[0]} file "
                f"(it holds {', '.join(kinds)})"
            )
        context = stream.codec_context
        if context is None or context.codec is None:
            raise UnsupportedVideoError(f"{path}: no decoder for its video codec in this FFmpeg")
        codec = context.name
        try:
            av.codec.Codec(codec, "r")
        except (av.FFmpegError, ValueError) as error:
            raise UnsupportedVideoError(
                f"{path}: video codec {codec!r} cannot be decoded by this build of FFmpeg"
            ) from error
        width, height = context.width, context.height
        if width * height > max_pixels:
            raise VideoTooLargeError(
                f"{path}: {width}x{height} = {width * height:,} pixels per frame is over the "
                f"limit of {max_pixels:,} (decompression-bomb guard); raise it with --max-pixels"
            )
        if width < 1 or height < 1 or context.format is None:
            raise VideoReadError(f"{path}: the video stream has no frame size or pixel format")
        keyframes, frames, start, end = [], 0, None, None
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            if packet.pts is None:
                raise VideoReadError(f"{path}: video packets without timestamps are not supported")
            frames += 1
            start = packet.pts if start is None else min(start, packet.pts)
            finish = packet.pts + max(packet.duration or 0, 1)
            end = finish if end is None else max(end, finish)
            if packet.is_keyframe:
                keyframes.append(packet.pts)
        if not frames:
            raise VideoReadError(f"{path}: corrupt or truncated video (no frames in the stream)")
        if not keyframes or min(keyframes) > start:
            keyframes.append(start)  # a stream cut before its first keyframe: decode from start
        return VideoInfo(
            path=path,
            format=container.format.name,
            stream_index=stream.index,
            codec=codec,
            pix_fmt=context.format.name,
            bit_depth=max(c.bits for c in context.format.components),
            width=width,
            height=height,
            time_base=stream.time_base,
            rate=stream.average_rate or stream.guessed_rate,
            start=start,
            end=end,
            frames=frames,
            keyframes=tuple(sorted(set(keyframes))),
            colour=(
                context.color_primaries,
                context.color_trc,
                context.colorspace,
                context.color_range,
            ),
            sample_aspect_ratio=context.sample_aspect_ratio,
        )


def read_frames(
    info: VideoInfo, start: int | None = None, end: int | None = None, *, seek: bool = True
) -> Iterator[Any]:
    """The decoded frames (``av.VideoFrame``) with ``start <= pts < end``, in order, one at a
    time. Decoding starts at the keyframe at or before ``start`` (a seek); if the seek lands
    past it, decoding starts again from the beginning and skips what comes before ``start``."""
    seeking = seek and start is not None and start > info.start
    landed_past = False
    with _opened(info.path) as container:
        stream = container.streams[info.stream_index]
        stream.thread_type = "AUTO"
        if seeking:
            container.seek(start, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is None:
                raise VideoReadError(f"{info.path}: a frame without a timestamp")
            if start is not None and frame.pts < start:
                continue
            if seeking and frame.pts > start:
                landed_past = True
                break
            seeking = False
            if end is not None and frame.pts >= end:
                return
            if (frame.width, frame.height) != (info.width, info.height):
                raise VideoReadError(
                    f"{info.path}: the frame size changes from {info.width}x{info.height} to "
                    f"{frame.width}x{frame.height} at {info.seconds(frame.pts):.3f} s "
                    "(not supported: split the clip there)"
                )
            yield frame
    if landed_past:
        yield from read_frames(info, start, end, seek=False)


def frame_rotation(info: VideoInfo) -> int:
    """The display rotation (degrees counter-clockwise) the first frame carries; 0 if none."""
    for frame in read_frames(info, None, None):
        return int(round(frame.rotation or 0))
    return 0


def frame_to_rgb(frame: Any, bit_depth: int) -> np.ndarray:
    """(H, W, 3) RGB of a decoded frame: uint8, or uint16 when the video has more than 8 bits,
    converted with the frame's own matrix and range."""
    options: dict[str, Any] = {"format": "rgb48le" if bit_depth > 8 else "rgb24"}
    if frame.color_range:
        options["src_color_range"] = frame.color_range
    if frame.colorspace in _matrices():
        options["src_colorspace"] = frame.colorspace
    return frame.to_ndarray(**options)


def _matrices() -> set[int]:
    return {int(value) for value in _av().video.reformatter.Colorspace}


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


# --------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class EncodeSettings:
    """How the upscaled frames are encoded: the same for every segment and the final stream."""

    codec: str
    crf: int | None
    pix_fmt: str
    width: int
    height: int
    time_base: Fraction
    rate: Fraction | None
    colour: tuple[int, int, int, int]
    sample_aspect_ratio: Fraction | None
    global_header: bool

    def to_json(self) -> dict:
        data = asdict(self)
        for key in ("time_base", "rate", "sample_aspect_ratio"):
            data[key] = None if data[key] is None else str(data[key])
        data["colour"] = list(self.colour)
        return data


def encode_settings(
    info: VideoInfo,
    target: str | os.PathLike,
    *,
    size: tuple[int, int],
    codec: str = DEFAULT_CODEC,
    crf: int | None = None,
    pix_fmt: str | None = None,
    fps: Fraction | None = None,
) -> EncodeSettings:
    """The settings for ``info`` upscaled to ``size`` (height, width) into ``target``.

    ``pix_fmt`` None keeps the source's chroma subsampling and, above 8 bits, 10 bits; frame
    sizes are made even (one row or column cropped) for subsampled formats. ``fps`` None keeps
    the source's time base (and so its timestamps, variable frame rate included).
    """
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {codec!r}")
    encoder, default_crf = CODECS[codec]
    if crf is not None and default_crf is None:
        raise ValueError(f"{codec} is lossless: it takes no CRF")
    if crf is not None and not 0 <= crf <= 51:
        raise ValueError(f"crf must be in [0, 51], got {crf}")
    av = _av()
    formats = {f.name for f in av.codec.Codec(encoder, "w").video_formats or ()}
    pix_fmt = pix_fmt or _auto_pix_fmt(info, formats)
    if pix_fmt not in formats:
        raise ValueError(
            f"{codec} cannot encode pixel format {pix_fmt!r}; it takes {', '.join(sorted(formats))}"
        )
    height, width = size
    chroma = av.VideoFormat(pix_fmt, width, height).components[-1]
    if chroma.width < width or chroma.height < height:  # subsampled chroma: even sides
        height, width = height - height % 2, width - width % 2
    muxer = _MUXERS.get(Path(target).suffix.lower(), "matroska")
    return EncodeSettings(
        codec=codec,
        crf=default_crf if crf is None else crf,
        pix_fmt=pix_fmt,
        width=width,
        height=height,
        time_base=info.time_base if fps is None else 1 / fps,
        rate=fps or info.rate,
        colour=info.colour,
        sample_aspect_ratio=info.sample_aspect_ratio,
        global_header=bool(av.format.ContainerFormat(muxer, "w").flags & _GLOBAL_HEADER),
    )


def _auto_pix_fmt(info: VideoInfo, formats: set[str]) -> str:
    source = _av().VideoFormat(info.pix_fmt, 16, 16)
    luma, chroma = source.components[0], source.components[-1]
    if len(source.components) < 3 or info.pix_fmt.startswith(("rgb", "bgr", "gbr")):
        sampling = "444"
    elif chroma.height < luma.height:
        sampling = "420"
    elif chroma.width < luma.width:
        sampling = "422"
    else:
        sampling = "444"
    depth = "10le" if info.bit_depth > 8 else ""
    for name in (f"yuv{sampling}p{depth}", f"yuv420p{depth}", "yuv420p"):
        if name in formats:
            return name
    return sorted(formats)[0]


def _configure(context: Any, settings: EncodeSettings) -> None:
    """The encoder settings shared by segment encoders and the output's stream."""
    context.width, context.height = settings.width, settings.height
    context.pix_fmt = settings.pix_fmt
    context.time_base = settings.time_base
    if settings.rate:
        context.framerate = settings.rate
    primaries, transfer, matrix, colour_range = settings.colour
    context.color_primaries, context.color_trc = primaries, transfer
    context.colorspace, context.color_range = matrix, colour_range
    if settings.sample_aspect_ratio:
        context.sample_aspect_ratio = settings.sample_aspect_ratio
    options = {}
    if settings.codec in ("h264", "h265"):
        options["crf"] = str(settings.crf)
    if settings.codec == "h265":
        options["x265-params"] = "log-level=error"
    if settings.codec == "ffv1":
        options.update(level="3", slicecrc="1")
    context.options = options


def rgb_to_frame(rgb: np.ndarray, pts: int, settings: EncodeSettings) -> Any:
    """An upscaled (H, W, 3) uint8/uint16 frame as an ``av.VideoFrame`` in the output's pixel
    format, converted with the source's matrix and range, at ``pts``."""
    av = _av()
    rgb = np.ascontiguousarray(rgb[: settings.height, : settings.width])
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le" if rgb.dtype == np.uint16 else "rgb24")
    _, _, matrix, colour_range = settings.colour
    options: dict[str, Any] = {"format": settings.pix_fmt}
    if matrix in _matrices():
        options["dst_colorspace"] = matrix
    if colour_range:
        options["dst_color_range"] = colour_range
    frame = frame.reformat(**options)
    frame.pts, frame.time_base = pts, settings.time_base
    return frame


def write_segment(path: str | os.PathLike, frames: Iterable[Any], settings: EncodeSettings) -> int:
    """Encode ``frames`` (``av.VideoFrame`` from :func:`rgb_to_frame`) into a segment file,
    atomically: the file exists complete or not at all. Returns the number of frames."""
    av = _av()
    encoder = av.CodecContext.create(CODECS[settings.codec][0], "w")
    _configure(encoder, settings)
    if settings.global_header:
        encoder.flags |= int(av.codec.context.Flags.global_header)
    count = 0
    with _writing(path), atomic_output(path) as temporary, open(temporary, "wb") as handle:
        handle.write(_SEGMENT_MAGIC)
        for frame in frames:
            count += 1
            for packet in encoder.encode(frame):
                _write_packet(handle, packet)
        for packet in encoder.encode(None):
            _write_packet(handle, packet)
        trailer = json.dumps(
            {"frames": count, "extradata": (encoder.extradata or b"").hex()}
        ).encode()
        handle.write(_RECORD.pack(_NONE, _NONE, 0, 255, len(trailer)) + trailer)
    return count


def _write_packet(handle: Any, packet: Any) -> None:
    data = bytes(packet)
    pts = _NONE if packet.pts is None else packet.pts
    dts = _NONE if packet.dts is None else packet.dts
    handle.write(_RECORD.pack(pts, dts, packet.duration or 0, packet.is_keyframe, len(data)))
    handle.write(data)


def read_segment(
    path: str | os.PathLike,
) -> tuple[dict, Iterator[tuple[int, int, int, bool, bytes]]]:
    """A segment file's trailer ({"frames", "extradata"}) and its packets (pts, dts,
    duration, keyframe, data); pts/dts None where the encoder gave none."""
    path = Path(path)
    with open(path, "rb") as handle:
        if handle.read(len(_SEGMENT_MAGIC)) != _SEGMENT_MAGIC:
            raise VideoReadError(f"{path}: not a segment file")
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
    trailer: dict | None = None

    def records() -> Iterator[tuple[int, int, int, bool, bytes]]:
        nonlocal trailer
        with open(path, "rb") as handle:
            handle.seek(len(_SEGMENT_MAGIC))
            while handle.tell() < size:
                pts, dts, duration, flag, length = _RECORD.unpack(handle.read(_RECORD.size))
                data = handle.read(length)
                if len(data) != length:
                    break
                if flag == 255:
                    trailer = json.loads(data)
                    return
                yield (None if pts == _NONE else pts, None if dts == _NONE else dts, duration,
                       bool(flag), data)  # fmt: skip
        raise VideoReadError(f"{path}: segment file is incomplete")

    # The trailer is last: read it once up front, so a bad file fails before any muxing.
    for _ in records():
        pass
    return trailer, records()


# --------------------------------------------------------------------------- assembling


def assemble(
    target: str | os.PathLike,
    info: VideoInfo,
    segments: list[Path],
    settings: EncodeSettings,
    *,
    rotation: int = 0,
) -> None:
    """Mux the segments' video and the source's other streams (copied) into ``target``,
    atomically, with the metadata carried over (see the module docstring).

    Raises:
        UnsupportedVideoError: a stream of the source that the output's container cannot hold.
        VideoWriteError: the file system refused (disk full, ...); nothing is left behind.
    """
    av = _av()
    target = Path(target)
    muxer = _MUXERS.get(target.suffix.lower(), "matroska")
    extradata = {bytes.fromhex(read_segment(path)[0]["extradata"]) for path in segments}
    with (
        _writing(target),
        atomic_output(target) as temporary,
        _opened(info.path) as source,
        av.open(str(temporary), "w", format=muxer) as output,
    ):
        video, copies = _add_streams(output, source, info, settings, rotation=rotation)
        try:
            output.start_encoding()
        except av.FFmpegError as error:
            kinds = ", ".join(sorted({s.type for s in source.streams}))
            raise UnsupportedVideoError(
                f"{info.path}: a {muxer} file cannot hold its streams ({kinds}) as they are "
                f"({_reason(error)}); write it as .mkv, which holds them all"
            ) from error
        if extradata != {bytes(video.codec_context.extradata or b"")}:
            raise VideoReadError(
                f"{target}: the finished segments were encoded with other settings than this "
                "run's; remove the hidden .segments folder beside it and run again"
            )
        video_packets = _segment_packets(segments, video, settings.time_base)
        copied = _copied_packets(source, copies)
        for packet in heapq.merge(video_packets, copied, key=_packet_seconds):
            output.mux(packet)


def check_output(target: str | os.PathLike, info: VideoInfo, settings: EncodeSettings) -> None:
    """Fail now, before any frame is upscaled, if ``target``'s container cannot hold the
    source's other streams (:func:`assemble` would fail the same way at the end).

    Raises:
        UnsupportedVideoError: naming the stream.
    """
    import io

    av = _av()
    muxer = _MUXERS.get(Path(target).suffix.lower(), "matroska")
    with _opened(info.path) as source, av.open(io.BytesIO(), "w", format=muxer) as output:
        _add_streams(output, source, info, settings)


def _add_streams(
    output: Any, source: Any, info: VideoInfo, settings: EncodeSettings, *, rotation: int = 0
) -> tuple[Any, dict[int, Any]]:
    """The output's video stream and a copy of every other stream of ``source`` (by the
    source's stream index), with their tags and dispositions."""
    av = _av()
    muxer = output.format.name
    output.metadata.update(_fresh_tags(source.metadata))
    video = output.add_stream(CODECS[settings.codec][0], rate=settings.rate)
    _configure(video.codec_context, settings)
    video.time_base = settings.time_base
    source_video = source.streams[info.stream_index]
    video.metadata.update(_fresh_tags(source_video.metadata))
    with contextlib.suppress(AttributeError, ValueError):
        video.disposition = source_video.disposition
    if rotation:
        video.set_display_rotation(rotation)
    copies = {}
    for stream in source.streams:
        if stream.index == info.stream_index:
            continue
        try:
            copy = output.add_stream_from_template(stream)
        except (av.FFmpegError, ValueError, TypeError) as error:
            raise UnsupportedVideoError(
                f"{info.path}: its {stream.type} stream {stream.index} cannot be copied "
                f"into a {muxer} file ({_reason(error)}); keep the source's container with a "
                "codec it holds (h264 with CRF 0 is lossless too)"
            ) from error
        copy.metadata.update(_fresh_tags(stream.metadata))
        with contextlib.suppress(AttributeError, ValueError):
            copy.disposition = stream.disposition
        copies[stream.index] = copy
    return video, copies


def _segment_packets(segments: list[Path], stream: Any, time_base: Fraction) -> Iterator[Any]:
    """The segments' packets in order, for ``stream``. Each segment was encoded alone, so its
    first decode timestamps (before its first frame, with B-frames) can fall at or before the
    previous segment's last: they are moved just after it, never past their own pts."""
    av = _av()
    last_dts = None
    for path in segments:
        _, records = read_segment(path)
        for pts, dts, duration, keyframe, data in records:
            if dts is not None and last_dts is not None and dts <= last_dts:
                dts = last_dts + 1
                if pts is not None and dts > pts:
                    raise VideoReadError(
                        f"{path}: its timestamps cannot follow the previous segment's; "
                        "use a longer segment or --video-codec ffv1"
                    )
            last_dts = dts if dts is not None else last_dts
            packet = av.Packet(data)
            packet.pts, packet.dts, packet.duration = pts, dts, duration
            packet.time_base = time_base
            packet.is_keyframe = keyframe
            packet.stream = stream
            yield packet


def _copied_packets(source: Any, copies: dict[int, Any]) -> Iterator[Any]:
    if not copies:
        return
    streams = [source.streams[index] for index in copies]
    for packet in source.demux(streams):
        if packet.size == 0 or (packet.dts is None and packet.pts is None):
            continue
        packet.stream = copies[packet.stream.index]
        yield packet


def _packet_seconds(packet: Any) -> float:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float(stamp * packet.time_base)


def _fresh_tags(tags: dict) -> dict:
    """Tags without those that describe the source's encoding (the muxer writes its own)."""
    return {key: value for key, value in tags.items() if not key.lower().startswith(_STALE_TAGS)}


@contextlib.contextmanager
def _writing(path: str | os.PathLike) -> Iterator[None]:
    """Failures of the file system (disk full, read-only) as one :class:`VideoWriteError`."""
    av = _av()
    try:
        yield
    except (VideoReadError, VideoWriteError):
        raise
    except (OSError, av.FFmpegError) as error:
        code = getattr(error, "errno", None)
        reason = "the disk is full" if code == errno.ENOSPC else _reason(error)
        raise VideoWriteError(
            f"{path}: cannot write ({reason}); nothing was left under its name"
        ) from error
