"""video/io.py: joining segments and muxing the source's audio (no model needed)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from sam_age.video.io import concat_and_mux, probe_video

from ..helpers.clips import ffmpeg, write_clip

pytest.importorskip("imageio_ffmpeg")


@pytest.fixture
def segments(tmp_path):
    frames = [np.full((64, 64, 3), 40 * i, np.uint8) for i in range(6)]
    seg = tmp_path / "work"
    seg.mkdir()
    return [write_clip(frames[:3], seg / "a.mp4", (64, 64)), write_clip(frames[3:], seg / "b.mp4", (64, 64))]


def _with_audio(tmp_path, codec, ext):
    """A 6-frame clip whose audio is ``codec`` (adpcm_ima_qt: a .mov codec the MP4 muxer refuses)."""
    out = tmp_path / f"source.{ext}"
    cmd = [ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "color=gray:s=64x64:r=25:d=0.24"]
    cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-shortest"]
    cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", codec, str(out)]
    subprocess.run(cmd, check=True)
    return out


def _audio_codecs(path):
    r = subprocess.run(
        [ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, text=True, errors="replace", check=False
    )
    return [ln.split("Audio: ")[1].split(",")[0].split(" ")[0] for ln in r.stderr.splitlines() if "Audio: " in ln]


def test_joined_segments_keep_every_frame_and_no_audio_without_a_source(segments, tmp_path):
    out = tmp_path / "joined.mp4"
    notes = concat_and_mux(segments, None, out, has_audio=False, mark=None)
    assert notes == [] and probe_video(out).frames == 6 and _audio_codecs(out) == []


def test_aac_audio_is_copied(segments, tmp_path):
    src = _with_audio(tmp_path, "aac", "mp4")
    out = tmp_path / "joined.mp4"
    notes = concat_and_mux(segments, str(src), out, mark=None)
    assert notes == [] and _audio_codecs(out) == ["aac"] and probe_video(out).frames == 6


def test_audio_an_mp4_cannot_hold_is_reencoded_with_a_note(segments, tmp_path):
    src = _with_audio(tmp_path, "adpcm_ima_qt", "mov")
    assert _audio_codecs(src) == ["adpcm_ima_qt"]
    out = tmp_path / "joined.mp4"
    notes = concat_and_mux(segments, str(src), out, mark=None)
    assert _audio_codecs(out) == ["aac"] and probe_video(out).frames == 6
    assert len(notes) == 1 and "re-encoded to AAC" in notes[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["joined.mp4", "source.mov", "work"]  # no temporaries
