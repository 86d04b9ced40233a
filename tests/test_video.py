"""Video and animations through `upsampler upscale` and Upscaler.upscale_video, on tiny clips made
here with PyAV (32x24, a few dozen frames, AAC audio and a text subtitle stream), with a tiny model."""

from __future__ import annotations

import errno
import struct
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import tiny_generator
from upsampler import Upscaler
from upsampler.inference import video as video_driver
from upsampler.inference.video import segments_folder
from upsampler.io.video import VideoWriteError, is_video
from upsampler_cli.app import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("one_thread")

# mov_text and subrip encoders read the styles of an ASS header.
ASS_HEADER = (
    b"[Script Info]\nScriptType: v4.00+\n\n[V4+ Styles]\nFormat: Name, Fontname, Fontsize\n"
    b"Style: Default,Arial,16\n\n[Events]\nFormat: Layer, Start, End, Style, Text\n"
)
VFR_STEPS = (33, 50, 67)  # ms between frames, in turn


def make_clip(
    path,
    *,
    frames: int = 30,
    rate: int = 24,
    vfr: bool = False,
    keyint: int = 6,
    pix_fmt: str = "yuv420p",
    audio: bool = True,
    subtitles: bool = True,
    rotation: int = 0,
    seed: int = 0,
) -> None:
    """A clip of smoothly moving colour (so that H.264 makes real P/B frames), keyframes every
    ``keyint`` frames, with mono AAC audio and two subtitles; VFR clips step by VFR_STEPS ms."""
    muxer = "mp4" if path.suffix == ".mp4" else "matroska"
    with av.open(str(path), "w", format=muxer) as output:
        video = output.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = 32, 24, pix_fmt
        time_base = Fraction(1, 1000) if vfr else Fraction(1, rate)
        video.time_base = video.codec_context.time_base = time_base
        video.codec_context.options = {
            "g": str(keyint),
            "keyint_min": str(keyint),
            "sc_threshold": "0",
        }
        video.metadata["language"] = "fra"
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = output.add_stream("aac", rate=8000)
            sound.layout = "mono"
            sound.metadata["language"] = "eng"
        text = None
        if subtitles:
            text = output.add_stream("mov_text" if muxer == "mp4" else "subrip")
            text.codec_context.subtitle_header = ASS_HEADER
            text.metadata["language"] = "deu"
        rng = np.random.default_rng(seed)
        base = rng.integers(0, 200, (24, 32, 3))
        deep = pix_fmt.endswith("10le")
        pts = 0
        for index in range(frames):
            image = np.roll(base, index, axis=1) + index
            if deep:
                image = (image * 256).astype(np.uint16)
            frame = av.VideoFrame.from_ndarray(
                image.astype(np.uint16 if deep else np.uint8), format="rgb48le" if deep else "rgb24"
            )
            frame.pts = pts
            pts += VFR_STEPS[index % 3] if vfr else 1
            for packet in video.encode(frame):
                output.mux(packet)
        for packet in video.encode():
            output.mux(packet)
        if sound is not None:
            samples = frames * 8000 // rate
            for start in range(0, samples, 1024):
                chunk = rng.standard_normal((1, 1024)).astype(np.float32) * 0.1
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 8000, start
                for packet in sound.encode(frame):
                    output.mux(packet)
            for packet in sound.encode():
                output.mux(packet)
        if text is not None:
            for index, line in enumerate(("hello", "world")):
                data = line.encode()
                if muxer == "mp4":
                    data = struct.pack(">H", len(data)) + data
                packet = av.Packet(data)
                packet.stream, packet.time_base = text, Fraction(1, 1000)
                packet.pts = packet.dts = index * 500
                packet.duration = 400
                output.mux(packet)


def video_frames(path) -> list[tuple[int, int, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(frame.pts, frame.width, frame.height) for frame in container.decode(stream)]


def stream_packets(path, kind: str) -> list[tuple[float, bytes]]:
    """(seconds, bytes) of every packet of the first stream of ``kind``."""
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [
            (round(float(packet.pts * packet.time_base), 3), bytes(packet))
            for packet in container.demux(stream)
            if packet.size
        ]


def seconds(path) -> list[float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [round(float(f.pts * stream.time_base), 4) for f in container.decode(stream)]


@pytest.fixture(scope="module")
def upscaler():
    return Upscaler(tiny_generator())


def test_cli_keeps_frames_timestamps_audio_subtitles_and_metadata(tmp_path, model_dir):
    make_clip(tmp_path / "clip.mp4", rotation=90)
    args = ["upscale", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "out")]
    args += ["--model", str(model_dir), "--segment", "0.1", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "done 1, skipped 0, failed 0" in result.output
    source, output = tmp_path / "clip.mp4", tmp_path / "out" / "clip.mp4"
    before, after = video_frames(source), video_frames(output)
    assert len(after) == len(before) == 30
    assert [pts for pts, _, _ in after] == [pts for pts, _, _ in before]
    assert seconds(output) == seconds(source)
    assert {(w, h) for _, w, h in after} == {(128, 96)}
    # Audio and subtitles copied packet for packet (remuxed, not re-encoded).
    assert stream_packets(output, "audio") == stream_packets(source, "audio")
    assert stream_packets(output, "subtitles") == stream_packets(source, "subtitles")
    with av.open(str(output)) as container:
        languages = [s.metadata.get("language") for s in container.streams]
        assert languages == ["fra", "eng", "deu"]
        audio = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(audio))
    with av.open(str(source)) as container:
        assert samples == sum(
            frame.samples for frame in container.decode(container.streams.audio[0])
        )
    with av.open(str(output)) as container:
        first = next(container.decode(video=0))
        assert first.rotation == 90
    assert not list((tmp_path / "out").glob(".*"))  # no segments or temporary files left


def test_variable_frame_rate_keeps_its_timestamps(tmp_path, upscaler):
    make_clip(tmp_path / "vfr.mkv", vfr=True)
    result = upscaler.upscale_video(
        tmp_path / "vfr.mkv", tmp_path / "out" / "vfr.mkv", segment_seconds=0.3
    )
    assert result.frames == 30 and result.segments > 1
    times = seconds(tmp_path / "out" / "vfr.mkv")
    assert times == seconds(tmp_path / "vfr.mkv")
    assert len(set(np.round(np.diff(times), 3))) == 3  # three different frame durations
    assert stream_packets(tmp_path / "out" / "vfr.mkv", "subtitles") == stream_packets(
        tmp_path / "vfr.mkv", "subtitles"
    )


def test_a_killed_run_resumes_and_equals_an_uninterrupted_one(tmp_path, upscaler):
    make_clip(tmp_path / "clip.mp4")
    options = dict(seed=3, segment_seconds=0.2)
    whole = upscaler.upscale_video(tmp_path / "clip.mp4", tmp_path / "a" / "clip.mp4", **options)
    assert whole.segments == 5 and whole.resumed == 0

    def killed(event):
        if event.frames_done == 14:  # in the third segment (frames 12-17)
            raise KeyboardInterrupt

    target = tmp_path / "b" / "clip.mp4"
    with pytest.raises(KeyboardInterrupt):
        upscaler.upscale_video(tmp_path / "clip.mp4", target, progress=killed, **options)
    assert not target.exists()
    folder = segments_folder(target)
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json",
        "segment-00000.bin",
        "segment-00001.bin",
    ]  # finished segments only: the one in progress left nothing
    events = []
    resumed = upscaler.upscale_video(
        tmp_path / "clip.mp4", target, progress=events.append, **options
    )
    assert resumed.resumed == 12 and events[0].frames_done == 13 and events[0].resumed == 12
    assert target.read_bytes() == (tmp_path / "a" / "clip.mp4").read_bytes()
    assert not folder.exists()
    # Other settings do not reuse segments made with these.
    with pytest.raises(KeyboardInterrupt):
        upscaler.upscale_video(
            tmp_path / "clip.mp4", target.with_name("c.mp4"), progress=killed, **options
        )
    other = upscaler.upscale_video(
        tmp_path / "clip.mp4", target.with_name("c.mp4"), seed=4, segment_seconds=0.2
    )
    assert other.resumed == 0


def test_every_frame_shares_one_style(upscaler):
    frame = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    with upscaler.clip(seed=5) as upscale_frame:
        first, again = upscale_frame(frame), upscale_frame(frame)
    assert np.array_equal(first, again)
    assert np.array_equal(first, upscaler.upscale(frame, seed=5))
    assert not np.array_equal(first, upscaler.upscale(frame, seed=6))


def test_fps_gives_a_constant_rate_and_keeps_the_audio(tmp_path, upscaler):
    make_clip(tmp_path / "clip.mp4")  # 30 frames at 24 fps: 1.25 s
    upscaler.upscale_video(
        tmp_path / "clip.mp4", tmp_path / "out.mp4", fps="12", segment_seconds=0.3
    )
    times = seconds(tmp_path / "out.mp4")
    assert len(times) == 15
    assert np.allclose(np.diff(times), 1 / 12, atol=1e-3)
    assert stream_packets(tmp_path / "out.mp4", "audio") == stream_packets(
        tmp_path / "clip.mp4", "audio"
    )


def test_ten_bit_input_gives_ten_bit_output_and_ffv1_is_lossless_mkv(tmp_path, upscaler):
    make_clip(tmp_path / "deep.mkv", pix_fmt="yuv420p10le", audio=False, subtitles=False, frames=6)
    upscaler.upscale_video(tmp_path / "deep.mkv", tmp_path / "deep_out.mkv")
    with av.open(str(tmp_path / "deep_out.mkv")) as container:
        assert container.streams.video[0].codec_context.format.name == "yuv420p10le"
    upscaler.upscale_video(tmp_path / "deep.mkv", tmp_path / "lossless.mkv", codec="ffv1")
    with av.open(str(tmp_path / "lossless.mkv")) as container:
        assert container.streams.video[0].codec_context.name == "ffv1"
        assert len(list(container.decode(video=0))) == 6


def test_animated_gif_keeps_durations_and_loop(tmp_path, model_dir):
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)) for _ in range(4)]
    durations = [40, 80, 120, 200]
    frames[0].save(
        tmp_path / "in.gif", save_all=True, append_images=frames[1:], duration=durations, loop=3
    )
    args = ["upscale", str(tmp_path / "in.gif"), "-o", str(tmp_path / "out")]
    result = runner.invoke(app, [*args, "--model", str(model_dir), "--no-progress"])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "in.gif") as image:
        assert image.n_frames == 4 and image.size == (32, 24) and image.info["loop"] == 3
        found = []
        for index in range(image.n_frames):
            image.seek(index)
            found.append(image.info["duration"])
    assert found == durations
    result = runner.invoke(app, [*args, "--model", str(model_dir), "--format", "jpg"])
    assert result.exit_code == 1 and "animation cannot be written as jpg" in result.output


@pytest.mark.parametrize(("suffix", "mode"), [(".webp", "RGB"), (".png", "RGBA")])
def test_animated_webp_and_png_keep_durations_loop_and_alpha(tmp_path, model_dir, suffix, mode):
    rng = np.random.default_rng(1)
    channels = len(mode)
    frames = [
        Image.fromarray(rng.integers(1, 256, (6, 8, channels), dtype=np.uint8), mode)
        for _ in range(3)
    ]
    durations = [50, 100, 250]
    extra = {"lossless": True} if suffix == ".webp" else {}
    source = tmp_path / f"in{suffix}"
    frames[0].save(
        source, save_all=True, append_images=frames[1:], duration=durations, loop=2, **extra
    )
    args = ["upscale", str(source), "-o", str(tmp_path / "out"), "--model", str(model_dir)]
    result = runner.invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / source.name) as image:
        assert image.n_frames == 3 and image.size == (32, 24)
        assert image.info["loop"] == 2
        found = []
        for index in range(image.n_frames):
            image.seek(index)
            image.load()  # WebP states a frame's duration once the frame is decoded
            found.append(image.info["duration"])
            if mode == "RGBA":
                alpha = np.asarray(image.convert("RGBA"))[..., 3]
                assert alpha.min() < 255  # the source's transparency is kept
    assert found == durations


def test_bad_videos_are_reported_and_the_others_still_made(tmp_path, model_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "good.mp4", frames=8)
    make_clip(folder / "suffixless", frames=8, subtitles=False)  # found by probing
    whole = (folder / "good.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.txt").write_text("not a video, not an image: ignored")
    with av.open(str(folder / "sound.mkv"), "w", format="matroska") as output:
        sound = output.add_stream("pcm_s16le", rate=8000)
        sound.layout = "mono"
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = 8000, 0
        for packet in [*sound.encode(frame), *sound.encode()]:
            output.mux(packet)
    # A Matroska file whose video track names a codec no FFmpeg knows.
    make_clip(tmp_path / "h264.mkv", frames=4, audio=False, subtitles=False)
    data = (tmp_path / "h264.mkv").read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    (folder / "unknown.mkv").write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_NOSUCH/CODEC0"))
    args = ["upscale", str(folder), "-o", str(tmp_path / "out"), "--model", str(model_dir)]
    result = runner.invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 1
    assert "done 2, skipped 0, failed 3" in result.output, result.output
    assert f"{folder / 'unknown.mkv'}: no decoder for its video codec" in result.output
    assert f"{folder / 'truncated.mp4'}: not a video, or corrupt or truncated" in result.output
    assert f"{folder / 'sound.mkv'}: no video stream" in result.output
    assert "notes.txt" not in result.output
    made = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert made == ["good.mp4", "suffixless.mkv"]  # nothing half-written, no segment folders
    assert is_video(folder / "suffixless") and not is_video(folder / "notes.txt")

    result = runner.invoke(app, [*args, "--no-progress", "--overwrite", "--max-pixels", "700"])
    assert "32x24 = 768 pixels per frame is over the limit of 700" in result.output


def test_a_full_disk_is_one_clear_error_and_leaves_nothing(tmp_path, upscaler, monkeypatch):
    make_clip(tmp_path / "clip.mp4", frames=6)

    def full(handle, packet):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("upsampler.io.video._write_packet", full)
    target = tmp_path / "out" / "clip.mp4"
    with pytest.raises(VideoWriteError, match="the disk is full"):
        upscaler.upscale_video(tmp_path / "clip.mp4", target)
    assert not target.exists()
    assert not [p for p in segments_folder(target).iterdir() if p.name != "manifest.json"]


def test_plan_segments_cuts_at_keyframes(tmp_path):
    make_clip(tmp_path / "clip.mp4", audio=False, subtitles=False)  # keyframes every 6 frames
    info = video_driver.scan_video(tmp_path / "clip.mp4")
    assert info.frames == 30 and len(info.keyframes) == 5
    assert video_driver.plan_segments(info, 0.3) == list(info.keyframes[::2])
    assert video_driver.plan_segments(info, 100) == [info.keyframes[0]]


def test_ctrl_c_keeps_finished_segments_and_the_command_resumes(tmp_path, model_dir, monkeypatch):
    from upsampler_cli.upscale import _Run

    make_clip(tmp_path / "clip.mp4", subtitles=False)
    args = ["upscale", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "out")]
    args += ["--model", str(model_dir), "--segment", "0.2", "--no-progress"]
    original = _Run._on_frames

    def interrupted(self, event):
        if event.frames_done == 14:
            raise KeyboardInterrupt
        original(self, event)

    monkeypatch.setattr(_Run, "_on_frames", interrupted)
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "its 2 finished segment(s) are kept and the same command resumes" in result.output
    assert not (tmp_path / "out" / "clip.mp4").exists()
    monkeypatch.setattr(_Run, "_on_frames", original)
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "done 1, skipped 0, failed 0" in result.output
    assert len(video_frames(tmp_path / "out" / "clip.mp4")) == 30
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.mp4"]
