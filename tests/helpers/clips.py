"""Test clips made from real photos: a moving virtual camera over a still image.

Frame ``t`` is the photo seen through a window whose top-left corner follows
``path(t)`` (sub-pixel, bicubic resampling), optionally JPEG-recompressed per frame (so
each frame's pixels, and the detector's landmarks, get fresh noise), written as H.264
(near-lossless) through imageio-ffmpeg's ffmpeg; optional sine audio, rotation metadata,
odd sizes (yuv444p, which allows them).
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
from PIL import Image


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def camera_frames(
    photo: Image.Image,
    n: int,
    size: Tuple[int, int],
    window: Tuple[float, float],
    path: Callable[[int], Tuple[float, float]],
    jpeg_quality: Optional[int] = None,
):
    """Frames of ``size`` showing ``window`` (w, h in photo px) at ``path(t)`` (top-left)."""
    photo = photo.convert("RGB")
    sx, sy = window[0] / size[0], window[1] / size[1]
    for t in range(n):
        x0, y0 = path(t)
        frame = photo.transform(size, Image.AFFINE, (sx, 0, x0, 0, sy, y0), Image.BICUBIC)
        if jpeg_quality:
            buf = io.BytesIO()
            frame.save(buf, "JPEG", quality=jpeg_quality)
            frame = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        yield np.asarray(frame)


def write_clip(
    frames,
    path: Path,
    size: Tuple[int, int],
    fps: str = "25",
    audio: bool = False,
    rotate: Optional[int] = None,
    crf: int = 8,
    gap_after: Optional[int] = None,
) -> Path:
    """``gap_after=k``: variable frame rate, frames after the k-th shown two frame times
    later (a phone dropping frames)."""
    path = Path(path)
    odd = size[0] % 2 or size[1] % 2
    raw = path.with_name(path.stem + ".noaudio.mp4") if (audio or rotate) else path
    cmd = [
        ffmpeg(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{size[0]}x{size[1]}",
        "-framerate",
        fps,
        "-i",
        "-",
        *(["-vf", f"setpts=(N+2*gte(N\\,{gap_after}))/({fps})/TB", "-fps_mode", "vfr"] if gap_after else []),
        "-c:v",
        "libx264",
        "-crf",
        str(crf),
        "-pix_fmt",
        "yuv444p" if odd else "yuv420p",
        str(raw),
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for fr in frames:
        proc.stdin.write(np.ascontiguousarray(fr, np.uint8).tobytes())
    proc.stdin.close()
    assert proc.wait() == 0
    if raw != path:
        cmd = [ffmpeg(), "-hide_banner", "-loglevel", "error", "-y"]
        if rotate:
            cmd += ["-display_rotation", str(rotate)]
        cmd += ["-i", str(raw)]
        if audio:
            cmd += [
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=44100",
                "-map",
                "0:v",
                "-map",
                "1:a",
                "-c:a",
                "aac",
                "-shortest",
            ]
        cmd += ["-c:v", "copy", str(path)]
        subprocess.run(cmd, check=True)
        raw.unlink()
    return path


def smooth_path(n: int, start=(0.0, 0.0), amplitude=(6.0, 3.0)):
    """A slow, smooth sub-pixel drift (a hand-held camera gliding)."""

    def path(t):
        u = t / max(n - 1, 1)
        return (
            start[0] + amplitude[0] * np.sin(np.pi * u) + 0.37 * t,
            start[1] + amplitude[1] * (1 - np.cos(np.pi * u)) + 0.21 * t,
        )

    return path


def sample_clip(path: Path, n: int = 4, seconds_per_frame: Optional[float] = None, size: int = 192) -> Path:
    """A short clip of the sample portrait (gliding camera, sine audio) for the web tests."""
    from sam_age.pipeline import sample_path

    fps = "25" if seconds_per_frame is None else f"1/{seconds_per_frame:g}"
    return write_clip(
        camera_frames(Image.open(sample_path()), n, (size, size), (384, 384), smooth_path(n, (64, 0))),
        path,
        (size, size),
        fps=fps,
        audio=True,
    )
