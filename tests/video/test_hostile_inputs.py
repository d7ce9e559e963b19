"""Hostile video names and files (issue 22, items 8-11): apostrophes and colons in names,
links planted where temporary files go, playlists, and a raw stream that hides its length."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from sam_age.errors import UsageError, VideoReadError

pytest.importorskip("imageio_ffmpeg")

from sam_age.video.io import (
    SegmentWriter,
    check_length,
    concat_and_mux,
    concat_quote,  # noqa: E402
    probe_limited,
    probe_video,
)

from ..helpers.clips import ffmpeg, sample_clip, write_clip  # noqa: E402


def _tiny(path: Path, n: int = 3) -> Path:
    frames = [np.full((48, 64, 3), 30 * t, np.uint8) for t in range(n)]
    return write_clip(frames, path, (64, 48))


def _segments(folder: Path, n: int = 2):
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        w = SegmentWriter(folder / f"seg0_{i:05d}.mp4", 64, 48, fps=__import__("fractions").Fraction(25))
        for t in range(3):
            w.write(np.full((48, 64, 3), 40 * t + i, np.uint8))
        out.append(w.close())
    return out


def test_concat_quote():
    assert concat_quote("Bob's party.mp4") == "'Bob'\\''s party.mp4'"
    assert concat_quote("plain.mp4") == "'plain.mp4'"
    with pytest.raises(ValueError):
        concat_quote("two\nlines.mp4")


def test_apostrophe_in_the_segment_folder_and_output(tmp_path):
    # the cache folder is named after the clip: `Bob's party-<key>`
    segs = _segments(tmp_path / "out" / ".sam-age" / "Bob's party-1234")
    target = tmp_path / "out" / "Bob's party_age060.mp4"
    concat_and_mux(segs, None, target, has_audio=False, durations=[0.12, 0.12])
    info = probe_video(target)
    assert info.frames == 6
    assert sorted(p.name for p in target.parent.iterdir()) == [".sam-age", target.name]  # no temp left


def test_planted_links_are_never_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's file\n")
    out = tmp_path / "out"
    segs = _segments(out / "cache")
    target = out / "clip_age060.mp4"
    # the old fixed temp names, each a link to the victim
    for name in (".clip_age060.tmp.mp4", ".clip_age060.segments.txt"):
        os.symlink(victim, out / name)
    os.symlink(victim, out / "cache" / ".seg0_00009.tmp.mp4")
    w = SegmentWriter(out / "cache" / "seg0_00009.mp4", 64, 48, fps=__import__("fractions").Fraction(25))
    w.write(np.zeros((48, 64, 3), np.uint8))
    w.close()
    concat_and_mux(segs, None, target, has_audio=False)
    assert victim.read_text() == "the user's file\n"
    assert probe_video(target).frames == 6
    for name in (".clip_age060.tmp.mp4", ".clip_age060.segments.txt"):
        assert (out / name).is_symlink()  # left alone: not ours


def test_colon_in_a_relative_name_is_a_file(tmp_path, monkeypatch):
    _tiny(tmp_path / "2024-01-01T10:30.mp4")
    monkeypatch.chdir(tmp_path)
    info = probe_video("2024-01-01T10:30.mp4")
    assert info.frames == 3


def test_playlist_and_lists_are_refused(tmp_path):
    _tiny(tmp_path / "private.mp4")
    m3u8 = tmp_path / "upload.m3u8"
    m3u8.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nprivate.mp4\n#EXT-X-ENDLIST\n")
    named_mp4 = tmp_path / "upload.mp4"  # the same playlist under a video's name
    named_mp4.write_text(m3u8.read_text())
    concat = tmp_path / "list.mp4"
    concat.write_text("ffconcat version 1.0\nfile private.mp4\n")
    for p in (m3u8, named_mp4, concat):
        with pytest.raises(VideoReadError, match="not a video") as e:
            probe_video(p)
        assert "\n" not in str(e.value) and p.name in str(e.value)


def _raw_h264(path: Path, frames: int) -> Path:
    subprocess.run(
        [
            ffmpeg(),
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=25",
            "-frames:v",
            str(frames),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-f",
            "h264",
            str(path),
        ],
        check=True,
    )
    return path


def test_raw_stream_with_no_duration_is_bounded_by_counted_frames(tmp_path):
    raw = _raw_h264(tmp_path / "clip.mp4", 1500)  # 60 s at 25 fps, no container duration
    assert probe_video(raw).duration == 0.0
    t0 = time.perf_counter()
    with pytest.raises(UsageError, match=r"over .* s long .*up to 10 s and 600 frames"):
        probe_limited(raw, 10.0)
    assert time.perf_counter() - t0 < 30
    short = _raw_h264(tmp_path / "short.mp4", 50)
    info = probe_limited(short, 10.0)
    assert info.frames == 50
    check_length(info, 2.0)
    with pytest.raises(UsageError, match="2.0 s long"):
        check_length(info, 1.0)


def test_probe_timeout(tmp_path):
    raw = _raw_h264(tmp_path / "clip.mp4", 1500)
    with pytest.raises(VideoReadError, match="took over"):
        probe_video(raw, timeout=0.001)


def test_web_tab_refuses_raw_stream_before_the_model(tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    import sam_age.web as web

    class NoModel:
        def __init__(self, *a, **k):
            raise AssertionError("the clip reached the model")

    monkeypatch.setattr(web, "VideoAger", NoModel)
    demo = web.WebDemo(None, workdir=tmp_path / "web")
    raw = _raw_h264(tmp_path / "party.mp4", 1500)
    path, message = demo.video(str(raw), 60)
    assert path is None and "s long" in message and "up to 10 s" in message, message
    m3u8 = tmp_path / "list.m3u8"
    m3u8.write_text("#EXTM3U\n#EXTINF:1,\nparty.mp4\n#EXT-X-ENDLIST\n")
    path, message = demo.video(str(m3u8), 60)
    assert path is None and "not a video" in message, message


def test_cli_apostrophe_and_colon_end_to_end(small_sam_path, tmp_path, monkeypatch, capsys):
    pytest.importorskip("dlib")
    from sam_age.cli.main import main

    d = tmp_path / "in"
    d.mkdir()
    sample_clip(d / "Bob's party 10:30.mp4", n=3)
    monkeypatch.chdir(d)
    out = tmp_path / "Bob's out"
    code = main(
        [
            "video",
            "Bob's party 10:30.mp4",
            "--checkpoint",
            str(small_sam_path),
            "--age",
            "60",
            "--output",
            str(out),
            "--json",
            "--device",
            "cpu",
        ]
    )
    cap = capsys.readouterr()
    assert code == 0, cap.err
    (f,) = json.loads(cap.out)["inputs"][0]["files"]
    assert Path(f).name == "Bob's party 10:30_age060.mp4"
    info = probe_video(f)
    assert info.frames == 3 and info.audio
