"""Video upscaling: frames per second beside bicubic, and flicker with one z per clip vs a fresh
z per frame.

    python benchmarks/video.py                          # nano-4x, 320x180 -> 1280x720, 24 frames
    python benchmarks/video.py --model nano-4x --frames 48 --threads 2

The clip is made here and is a static camera: scikit-image's astronaut photo, resized to
``--width x --height``, with fresh sensor-like noise on every frame (sigma 2/255) and encoded
with H.264 at CRF 18, as a real static shot arrives.

Printed:

* frames per second of the model alone (decoded frames in, upscaled frames out), of bicubic
  on the same frames, and of the whole ``Upscaler.upscale_video`` (decode, upscale, encode
  H.264 at 1280x720, mux);
* flicker: the mean absolute difference between consecutive output frames (in 8-bit levels),
  minus the same figure for bicubic-upscaled frames, which carries the input's own noise and
  coding changes. It is given for ``shared z`` (what ``upsampler upscale`` does: one z and one
  set of styles per clip) and ``fresh z`` (a new seed for every frame, as upscaling the
  frames one by one as images with different seeds would). 0 means the model adds no
  frame-to-frame change of its own.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def make_static_clip(path: Path, width: int, height: int, frames: int, rate: int = 24) -> None:
    import av
    from PIL import Image
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.LANCZOS)
    still = np.asarray(photo, dtype=np.float32)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as output:
        stream = output.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, rate)
        stream.codec_context.options = {"crf": "18"}
        for index in range(frames):
            noisy = still + rng.normal(0.0, 2.0, still.shape)
            frame = av.VideoFrame.from_ndarray(np.clip(noisy, 0, 255).astype(np.uint8))
            frame.pts = index
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)


def decoded_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def flicker(frames: list[np.ndarray]) -> float:
    """Mean absolute difference between consecutive frames, in 8-bit levels."""
    steps = [
        np.abs(b.astype(np.float32) - a.astype(np.float32)).mean()
        for a, b in zip(frames[:-1], frames[1:], strict=True)
    ]
    return float(np.mean(steps))


def bicubic(frame: np.ndarray, scale: int) -> np.ndarray:
    tensor = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    hq = F.interpolate(tensor, scale_factor=scale, mode="bicubic", align_corners=False)
    return (hq.clamp(0, 1)[0].permute(1, 2, 0) * 255).round().byte().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="nano-4x")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from upsampler import Upscaler

    upscaler = Upscaler.from_pretrained(args.model, device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "static.mp4"
        make_static_clip(clip, args.width, args.height, args.frames)
        frames = decoded_frames(clip)
        scale = upscaler.scale
        print(
            f"{args.model}: {args.width}x{args.height} -> {args.width * scale}x"
            f"{args.height * scale}, {len(frames)} frames, {args.threads} threads"
        )

        started = time.perf_counter()
        bicubic_frames = [bicubic(frame, scale) for frame in frames]
        bicubic_fps = len(frames) / (time.perf_counter() - started)

        started = time.perf_counter()
        with upscaler.clip(seed=0) as upscale_frame:
            shared = [upscale_frame(frame) for frame in frames]
        model_fps = len(frames) / (time.perf_counter() - started)

        started = time.perf_counter()
        fresh = [upscaler.upscale(frame, seed=index) for index, frame in enumerate(frames)]
        fresh_fps = len(frames) / (time.perf_counter() - started)

        started = time.perf_counter()
        upscaler.upscale_video(clip, Path(folder) / "out.mp4", seed=0)
        video_fps = len(frames) / (time.perf_counter() - started)

    print(f"{'':28}{'frames/s':>10}")
    print(f"{'bicubic':28}{bicubic_fps:>10.2f}")
    print(f"{'model, shared z':28}{model_fps:>10.2f}")
    print(f"{'model, fresh z per frame':28}{fresh_fps:>10.2f}")
    print(f"{'upscale_video (H.264 out)':28}{video_fps:>10.2f}")
    base = flicker(bicubic_frames)
    print(f"\nflicker (mean |frame t - frame t-1|, 8-bit levels); bicubic itself: {base:.3f}")
    print(f"{'shared z (one per clip)':28}{flicker(shared) - base:>+10.3f}")
    print(f"{'fresh z per frame':28}{flicker(fresh) - base:>+10.3f}")


if __name__ == "__main__":
    main()
