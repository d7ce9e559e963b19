"""Video files in and out through the ffmpeg binary that imageio-ffmpeg ships (no system
ffmpeg, no ffprobe needed).

- :func:`probe_video` runs one decode pass (``-f null`` with the ``vfrdet`` filter) and
  reads ffmpeg's own report: size *after* rotation (ffmpeg turns phone clips upright while
  decoding), frame rate, frame count, duration, rotation, audio streams, and whether the
  frame rate varies. Every failure becomes a one-line :class:`~sam_age.errors.VideoReadError`
  naming the file (not a video, an image, empty, truncated, no video stream).
- :func:`read_frames` streams RGB frames (``uint8 [H, W, 3]``) one at a time: memory does not
  grow with the clip. A variable-frame-rate clip is read at a constant rate (its average) so
  frames stay at their times: the timing, and so the sync with the sound, is kept.
- :class:`SegmentWriter` encodes frames to H.264 yuv420p (odd sides padded by one edge pixel,
  since 4:2:0 needs even sides); :func:`concat_and_mux` joins the segments without re-encoding
  and copies the input's audio streams unchanged (re-encoding to AAC only where MP4 cannot
  hold the codec), writing the result atomically (temp file + rename).

Inputs are hostile until read (issue 22): every input is named to ffmpeg as ``file:`` + its
absolute path (a name with ``:`` is never read as a protocol), with ``-protocol_whitelist file``
and a demuxer whitelist of video containers (:data:`INPUT_FORMATS`: no playlists such as HLS
``.m3u8``, no concat lists, no image sequences), so a file can never make ffmpeg read another
file or a URL. Temporary files are made with ``mkstemp`` (``O_EXCL``: a link planted under a
guessed name is never followed) and renamed into place. The concat list quotes each name the
way the concat demuxer reads it. :func:`check_length` bounds a clip by its counted frames
(never by the container's claimed duration), and the probe can stop decoding at a frame cap
and give up after a timeout.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import numpy as np

from ..defaults import DEFAULT_VIDEO_CRF
from ..errors import SamAgeError, VideoReadError
from ..marks import DEFAULT as DEFAULT_MARK
from ..marks import Mark, ffmpeg_metadata, mark_video_file

IMAGE_CODECS = {"mjpeg", "png", "bmp", "tiff", "webp", "gif", "jpeg2000", "pgm", "ppm", "pam", "qoi"}
IMAGE_FORMATS = ("image2", "_pipe", "gif", "webp")
# The demuxers an input may be read with: video containers and raw video streams, plus the
# single-image ones (so a photo gets "this is an image", not "not a video"). Never hls,
# concat, image2 (file patterns), tty, lavfi, data or any network demuxer.
INPUT_FORMATS = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,mpeg,mpegvideo,m4v,h264,hevc,"
    "flv,ogg,asf,ivf,obu,mxf,dv,nut,yuv4mpegpipe,gif,webp,jpeg_pipe,png_pipe,bmp_pipe,"
    "webp_pipe,tiff_pipe,gif_pipe,qoi_pipe,pgm_pipe,ppm_pipe,pam_pipe,j2k_pipe"
)
PROBE_TIMEOUT = None  # the command line decodes a long clip whole; the web tab gives 60 s
# near-lossless H.264: the untouched background stays >= 40 dB PSNR with a margin
# (measured on a grainy test clip, re-encoding alone: CRF 8 42.2 dB, 10 41.1 dB, 16 ~37 dB)
DEFAULT_CRF = DEFAULT_VIDEO_CRF
DEFAULT_PRESET = "medium"


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise SamAgeError("video needs imageio-ffmpeg: pip install 'sam-age[video]'") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_cmd(*, quiet: bool = True, overwrite: bool = False) -> List[str]:
    """The head of every ffmpeg command: the binary, no banner, never reading stdin
    (``quiet``: errors only; ``overwrite``: ``-y``, for sam-age's own temporary files)."""
    return [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        *(["-loglevel", "error"] if quiet else []),
        *(["-y"] if overwrite else []),
    ]


def input_args(path) -> List[str]:
    """``-i`` for an input file, safely: only the file protocol, only video demuxers, and
    the name given as ``file:/absolute/path`` (so ``2024-01-01T10:30.mp4`` is a file)."""
    return [
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        INPUT_FORMATS,
        "-i",
        "file:" + os.path.abspath(os.fspath(path)),
    ]


def output_arg(path) -> str:
    return "file:" + os.path.abspath(os.fspath(path))


def temp_beside(path, suffix: str) -> Path:
    """A new empty file in ``path``'s folder (same file system: the rename into place is
    atomic), made with ``O_EXCL`` so it never follows a planted link."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=".sam-age-", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(name)


def concat_quote(name: str) -> str:
    """``name`` quoted for an ffmpeg concat list line (``file '...'``): inside single
    quotes everything is literal, and a quote is written ``'\\''``. Line breaks cannot be
    written in a concat list at all."""
    if "\n" in name or "\r" in name or "\0" in name:
        raise ValueError(f"a line break in a file name cannot go into an ffmpeg concat list: {name!r}")
    return "'" + name.replace("'", "'\\''") + "'"


@dataclass
class VideoInfo:
    path: str
    width: int  # upright frame size (after rotation), before any padding
    height: int
    fps: Fraction  # the output frame rate (the average for a variable-rate clip)
    frames: int  # frames decoded (at ``fps`` for a variable-rate clip)
    duration: float  # seconds
    codec: str = ""
    rotation: int = 0  # degrees the player turns the stored frames (0, 90, 180, 270)
    vfr: bool = False
    audio: List[str] = field(default_factory=list)  # one description per audio stream

    @property
    def padded_size(self):
        """(width, height) rounded up to even numbers, as H.264 yuv420p needs."""
        return self.width + self.width % 2, self.height + self.height % 2

    @property
    def odd(self) -> bool:
        return bool(self.width % 2 or self.height % 2)

    def notes(self) -> List[str]:
        """What was done about the clip's particularities, one line each."""
        out = []
        if self.rotation:
            out.append(
                f"rotation metadata {self.rotation} degrees: frames turned upright "
                f"({self.width}x{self.height}), written without rotation"
            )
        if self.vfr:
            out.append(
                f"variable frame rate: read at a constant {float(self.fps):.3f} fps "
                f"(its nominal rate; {self.frames} frames), timing kept"
            )
        if self.odd:
            w, h = self.padded_size
            out.append(
                f"odd size {self.width}x{self.height}: padded to {w}x{h} (H.264 yuv420p needs even width and height)"
            )
        return out

    def to_json(self) -> dict:
        d = asdict(self)
        d["fps"] = float(self.fps)
        d["fps_fraction"] = f"{self.fps.numerator}/{self.fps.denominator}"
        return d


def _fraction(rate: float) -> Fraction:
    """25 -> 25/1, 29.97 -> 30000/1001 (the NTSC rates ffmpeg prints rounded)."""
    ntsc = round(rate * 1.001)
    if abs(rate - ntsc / 1.001) < 0.006 and abs(rate - round(rate)) > 0.006:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(rate).limit_denominator(1001)


def _first_line(text: str, *needles: str) -> Optional[str]:
    for line in text.splitlines():
        if any(n in line for n in needles):
            return line
    return None


def probe_video(path, max_frames: Optional[int] = None, timeout: Optional[float] = None) -> VideoInfo:
    """Everything about ``path`` that the video pipeline needs, from one decode pass.

    ``max_frames``: decode at most one frame more than this (``info.frames`` then says
    ``max_frames + 1`` for a longer clip: :func:`check_length` refuses it); ``timeout``:
    seconds the decode pass may take (default :data:`PROBE_TIMEOUT`: none)."""
    path = Path(path)
    if not path.exists():
        raise VideoReadError("file not found", path)
    if path.is_dir():
        raise VideoReadError("is a folder, not a video file", path)
    if path.stat().st_size == 0:
        raise VideoReadError("empty file (0 bytes)", path)
    limit = ["-frames:v", str(int(max_frames) + 1)] if max_frames is not None else []
    cmd = [
        *ffmpeg_cmd(quiet=False),
        *input_args(path),
        "-map",
        "0:v:0?",
        "-vf",
        "vfrdet",
        *limit,
        "-f",
        "null",
        "-",
    ]
    timeout = PROBE_TIMEOUT if timeout is None else float(timeout)  # None: no limit
    try:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise VideoReadError(f"reading the video took over {timeout:g} s (too long or too large)", path) from None
    err = proc.stderr.decode("utf-8", "replace")
    head = err.split("Stream mapping:")[0]
    if "not on whitelist" in err:  # a playlist, a concat list, an image pattern, text, ...
        if _is_image(path):
            raise VideoReadError("this is an image, not a video: use 'sam-age age' for photos", path)
        raise VideoReadError(
            "not a video file (only video files are read: no playlists, lists or image sequences)", path
        )
    if "moov atom not found" in err:
        with open(path, "rb") as f:
            magic = f.read(12)
        if magic[4:8] != b"ftyp":
            raise VideoReadError("not a video file (ffmpeg cannot read it: invalid data)", path)
        raise VideoReadError("truncated or damaged video (its index, the MP4 'moov' atom, is missing)", path)
    m_in = re.search(r"Input #0, ([^,\n]+)", head)
    if m_in is None:
        why = _first_line(err, "Invalid data", "Error opening input", "error")
        reason = "not a video file (ffmpeg cannot read it"
        if why and "Invalid data" in why:
            reason += ": invalid data"
        raise VideoReadError(reason + ")", path)
    fmt = m_in.group(1)
    vline = _first_line(head, "Video:")
    if vline is None:
        raise VideoReadError("no video stream in this file" + (" (audio only)" if "Audio:" in head else ""), path)
    codec = re.search(r"Video: ([\w-]+)", vline).group(1)
    if codec in IMAGE_CODECS and (any(f in fmt for f in IMAGE_FORMATS) or "Duration: N/A" in head):
        raise VideoReadError(f"this is an image ({codec}), not a video: use 'sam-age age' for photos", path)
    audio = [re.sub(r"^.*Audio: ", "", ln).strip() for ln in head.splitlines() if "Audio:" in ln]
    rotation = 0
    m_rot = re.search(r"rotation of (-?[\d.]+) degrees", head) or re.search(r"rotate\s*:\s*(-?\d+)", head)
    if m_rot:
        rotation = int(round(float(m_rot.group(1)))) % 360
    # the size ffmpeg decodes to (after autorotation): the output stream's line
    out_part = err.split("Stream mapping:")[1] if "Stream mapping:" in err else ""
    oline = _first_line(out_part, "Video: wrapped_avframe") or vline
    m_size = re.search(r", (\d{2,5})x(\d{2,5})", oline)
    if m_size is None:
        raise VideoReadError("cannot read the frame size", path)
    width, height = int(m_size.group(1)), int(m_size.group(2))
    frames_found = re.findall(r"frame=\s*(\d+)", err)
    frames = int(frames_found[-1]) if frames_found else 0
    m_dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", head)
    duration = (int(m_dur.group(1)) * 3600 + int(m_dur.group(2)) * 60 + float(m_dur.group(3))) if m_dur else 0.0
    m_fps = re.search(r"([\d.]+) fps", vline) or re.search(r"([\d.]+) tbr", vline)
    rate = float(m_fps.group(1)) if m_fps else 0.0
    m_vfr = re.search(r"VFR:([\d.]+) \((\d+)/(\d+)\)", err)
    vfr = bool(m_vfr and int(m_vfr.group(2)) > 0)
    if frames == 0 or proc.returncode != 0 and frames < 2:
        raise VideoReadError("truncated or damaged video (no frame could be decoded)", path)
    if rate <= 0 and duration > 0:
        rate = frames / duration
    if rate <= 0:
        raise VideoReadError("cannot read the frame rate", path)
    fps = _fraction(rate)
    if vfr and duration > 0:
        # the nominal rate (tbr): every output frame shows what was on screen at its time
        m_tbr = re.search(r"([\d.]+)k? tbr", vline)
        fps = _fraction(float(m_tbr.group(1))) if m_tbr else Fraction(frames / duration).limit_denominator(1001)
        frames = _count_frames(path, _constant_rate(fps)) or frames
    elif duration > 0 and frames < 0.9 * duration * rate - 1 and (max_frames is None or frames <= max_frames):
        raise VideoReadError(
            f"truncated or damaged video (decoded {frames} of about {int(round(duration * rate))} frames)", path
        )
    return VideoInfo(str(path), width, height, fps, frames, duration, codec, rotation, vfr, audio)


def _is_image(path: Path) -> bool:
    try:
        from PIL import Image

        with Image.open(path) as im:
            im.verify()
        return True
    except Exception:  # PIL raises many kinds for "not an image"
        return False


def check_length(info: VideoInfo, max_seconds: float, max_frames: Optional[int] = None) -> None:
    """Refuse a clip longer than ``max_seconds`` or ``max_frames``, by its *counted* frames
    at its frame rate (a raw stream's container says nothing, 0.0 s, whatever it holds)."""
    from ..errors import UsageError

    cap = frame_cap(max_seconds, max_frames)
    if not info.fps or info.frames <= 0:
        raise UsageError(f"{info.path}: the length of this clip cannot be known; it is refused")
    seconds = info.frames / float(info.fps)
    if info.frames > cap or seconds > max_seconds + 1e-6:
        more = "over " if info.frames > cap else ""
        raise UsageError(
            f"this clip is {more}{seconds:.1f} s long ({more}{info.frames - bool(more)} frames); "
            f"clips are taken up to {max_seconds:g} s and {cap} frames "
            f"(use `sam-age video` for longer ones)"
        )


def frame_cap(max_seconds: float, max_frames: Optional[int] = None, max_fps: float = 60.0) -> int:
    """Frames a clip of ``max_seconds`` may have: ``max_frames``, or ``max_seconds`` at ``max_fps``."""
    return int(max_frames) if max_frames is not None else int(math.ceil(max_seconds * max_fps))


def probe_limited(path, max_seconds: float, max_frames: Optional[int] = None, timeout: float = 60.0) -> VideoInfo:
    """:func:`probe_video` for a bounded consumer (the web tab): decoding stops one frame past
    the cap, the pass gives up after ``timeout`` s, and :func:`check_length` is applied."""
    info = probe_video(path, max_frames=frame_cap(max_seconds, max_frames), timeout=timeout)
    check_length(info, max_seconds, max_frames)
    return info


def _count_frames(path: Path, rate_args: List[str]) -> int:
    """Frames ffmpeg delivers for ``path`` with ``rate_args`` (one decode pass)."""
    cmd = [*ffmpeg_cmd(quiet=False), *input_args(path), "-map", "0:v:0", *rate_args, "-f", "null", "-"]
    err = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).stderr.decode("utf-8", "replace")
    found = re.findall(r"frame=\s*(\d+)", err)
    return int(found[-1]) if found else 0


def _constant_rate(fps: Fraction) -> List[str]:
    """ffmpeg's ``fps`` filter: each output time takes the frame on screen then (frames
    repeated across gaps, none added past the clip's end; ``-fps_mode cfr`` pads the end)."""
    return ["-vf", f"fps={fps.numerator}/{fps.denominator}"]


def _rate_args(info: VideoInfo) -> List[str]:
    if info.vfr:
        return _constant_rate(info.fps)
    return ["-fps_mode", "passthrough"]


def read_frames(info: VideoInfo, start: int = 0, stop: Optional[int] = None) -> Iterator[np.ndarray]:
    """Frames ``start..stop-1`` as ``uint8 [H, W, 3]`` RGB (upright, unpadded), one at a time.
    Decoding always starts at frame 0 (exact frame numbers whatever the codec); frames
    before ``start`` are decoded and dropped, which costs little next to the model."""
    stop = info.frames if stop is None else min(stop, info.frames)
    cmd = [
        *ffmpeg_cmd(),
        *input_args(info.path),
        "-map",
        "0:v:0",
        *_rate_args(info),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]
    size = info.width * info.height * 3
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=size)
    try:
        i = 0
        while i < stop:
            buf = proc.stdout.read(size)
            if len(buf) < size:  # the decoder gave fewer frames than the probe counted
                raise VideoReadError(f"damaged video: frame {i + 1} of {info.frames} cannot be decoded", info.path)
            if i >= start:
                yield np.frombuffer(buf, np.uint8).reshape(info.height, info.width, 3)
            i += 1
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def pad_even(frame: np.ndarray) -> np.ndarray:
    """Repeat the last row / column where a side is odd (yuv420p needs even sides)."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class SegmentWriter:
    """H.264 yuv420p (libx264, CRF ``crf``) from RGB frames piped to ffmpeg; written to a
    temp name and renamed when closed without error (a killed run leaves no half file under
    the final name). No B-frames: a segment then has no reordering delay or edit list, and
    segments of any length (one frame too) join end to end with exact timestamps."""

    def __init__(
        self, path, width: int, height: int, fps: Fraction, crf: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET
    ):
        self.path = Path(path)
        self.tmp = temp_beside(self.path, self.path.suffix or ".mp4")
        self.size = (width + width % 2, height + height % 2)
        cmd = [
            *ffmpeg_cmd(overwrite=True),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-s",
            f"{self.size[0]}x{self.size[1]}",
            "-framerate",
            f"{fps.numerator}/{fps.denominator}",
            "-i",
            "-",
            "-an",
            "-c:v",
            "libx264",
            "-preset",
            preset,
            "-crf",
            str(crf),
            "-bf",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "mp4",
            output_arg(self.tmp),
        ]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        self.count = 0

    def write(self, frame: np.ndarray) -> None:
        frame = pad_even(np.ascontiguousarray(frame, dtype=np.uint8))
        if frame.shape[1::-1] != self.size:
            raise ValueError(f"frame size {frame.shape[1::-1]} != {self.size}")
        self.proc.stdin.write(frame.tobytes())
        self.count += 1

    def close(self) -> Path:
        self.proc.stdin.close()
        err = self.proc.stderr.read().decode("utf-8", "replace")
        if self.proc.wait() != 0:
            self.tmp.unlink(missing_ok=True)
            raise SamAgeError(f"ffmpeg could not encode the video: {err.strip().splitlines()[-1:]}", self.path)
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.tmp.unlink(missing_ok=True)


def concat_and_mux(
    segments: Sequence[Path],
    audio_source: Optional[str],
    out: Path,
    has_audio: bool = True,
    shortest: bool = False,
    durations: Optional[Sequence[float]] = None,
    mark: Optional[Mark] = DEFAULT_MARK,
) -> List[str]:
    """Join ``segments`` (same encoder settings) without re-encoding, add every audio stream
    of ``audio_source`` copied as is, write ``out`` atomically, marked (:mod:`sam_age.marks`:
    container ``comment``, the XMP box, C2PA with a signer; ``mark=None``: unmarked).
    Returns notes (e.g. when the audio had to be re-encoded because MP4 cannot hold its codec)."""
    out = Path(out)
    segments = [Path(s).resolve() for s in segments]
    # the list sits beside the segments (sam-age's own folder) and names them relative to
    # itself; each name is quoted as the concat demuxer reads it
    folder = segments[0].parent if segments and all(s.parent == segments[0].parent for s in segments) else None
    # each segment's exact duration (frames / fps): a very short segment's own MP4 duration
    # can be off by its last frame, which would shift every later segment
    durations = list(durations) if durations is not None else [None] * len(segments)
    try:
        lines = "".join(
            f"file {concat_quote(s.name if folder else s.as_posix())}\n"
            + (f"duration {d:.9f}\n" if d is not None else "")
            for s, d in zip(segments, durations)
        )
    except ValueError as e:
        raise SamAgeError(str(e), out) from None
    listing = temp_beside((folder or out.parent) / "segments.txt", ".txt")
    tmp = None
    notes: List[str] = []
    try:
        listing.write_text(lines, encoding="utf-8", errors="surrogateescape")
        tmp = temp_beside(out, ".mp4")
        base = [
            *ffmpeg_cmd(overwrite=True),
            "-f",
            "concat",
            "-safe",
            "0",
            "-protocol_whitelist",
            "file",
            "-i",
            output_arg(listing),
        ]
        audio = bool(audio_source and has_audio)
        inputs = [*input_args(audio_source), "-map", "0:v:0", "-map", "1:a?"] if audio else ["-map", "0:v:0"]
        tail = [*(["-shortest"] if audio and shortest else []), "-movflags", "+faststart", *ffmpeg_metadata(mark)]
        cmd = base + inputs + ["-c", "copy"] + tail + ["-f", "mp4", output_arg(tmp)]
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if audio and proc.returncode != 0:  # e.g. PCM audio from a .mov: MP4 cannot hold it as is
            cmd = (
                base + inputs + ["-c:v", "copy", "-c:a", "aac", "-b:a", "256k"] + tail + ["-f", "mp4", output_arg(tmp)]
            )
            proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            notes.append("audio re-encoded to AAC 256 kb/s (MP4 cannot hold the input's audio codec)")
        if proc.returncode != 0:
            msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SamAgeError(f"ffmpeg could not write the video: {msg[-1] if msg else 'unknown error'}", out)
        mark_video_file(tmp, mark)
        os.replace(tmp, out)
    finally:
        listing.unlink(missing_ok=True)
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return notes
