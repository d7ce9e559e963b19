"""``sam-age video``: the issue's measured numbers on clips made here from real photos.

What is measured does not depend on the weights (the 256 px stand-in makes noise faces):
crop steadiness (quad corners' RMS second difference), tracking ids on a pan over a real
group photo, the background left as it was (PSNR outside the pasted faces), file
properties (frames, size, rate, duration, audio), resume from the chunk cache, and one
line per bad input.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from sam_age.cli.main import main
from sam_age.face.align import face_quad
from sam_age.face.landmarks import detect_faces
from sam_age.pipeline import sample_path
from sam_age.video import VideoAger, VideoJob, probe_video, track_clip
from sam_age.video.io import read_frames
from sam_age.video.smooth import gaussian_smooth, radius, rms_second_difference
from sam_age.video.track import FrameFaces, Tracker

from ..helpers.clips import camera_frames, ffmpeg, smooth_path, write_clip
from ..helpers.images import group_photo

pytest.importorskip("dlib")
pytest.importorskip("imageio_ffmpeg")


def _lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """The sample portrait through a gliding camera, JPEG-recompressed per frame."""
    d = tmp_path_factory.mktemp("clips")
    photo = Image.open(sample_path())
    out = {}
    n = 24
    out["steady"] = write_clip(
        camera_frames(photo, n, (256, 256), (384, 384), smooth_path(n, (64, 0)), jpeg_quality=75),
        d / "steady.mp4",
        (256, 256),
    )
    n = 6
    out["audio"] = write_clip(
        camera_frames(photo, n, (256, 256), (384, 384), smooth_path(n, (64, 0)), jpeg_quality=95),
        d / "talk.mp4",
        (256, 256),
        audio=True,
    )
    # odd size, stored sideways with a 90 degree display rotation (a phone clip)
    n = 6
    odd = (193, 255)
    side = [np.rot90(f, -1) for f in camera_frames(photo, n, odd, (290, 383), smooth_path(n, (80, 0)))]
    out["phone"] = write_clip(side, d / "phone.mp4", (odd[1], odd[0]), rotate=90, gap_after=3)
    return out


# -- pure parts ---------------------------------------------------------------------------
def test_gaussian_smooth_window_and_ends():
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=(60, 3)), axis=0)
    sigma = 1.5
    full = gaussian_smooth(x, sigma)
    r = radius(sigma)
    lo, hi = 20, 30  # a window with r frames either side gives the same values (streaming)
    part = gaussian_smooth(x[lo - r : hi + r], sigma, reflect_start=False, reflect_end=False)
    np.testing.assert_allclose(part[r : r + hi - lo], full[lo:hi], atol=1e-12)
    line = np.arange(20.0)[:, None] * [0.7, -0.3] + 5.0  # constant velocity stays exact at the ends
    np.testing.assert_allclose(gaussian_smooth(line, 2.0), line, atol=1e-9)
    assert np.array_equal(gaussian_smooth(x, 0.0), x)


def test_tracker_bridges_short_gaps_and_splits_long_ones():
    lm = np.stack([np.array(face_landmarks_grid())])

    def faces(k):
        return FrameFaces(np.array([[0, 0, 100, 100]] * k, float), np.ones(k), np.repeat(lm, k, 0))

    tr = Tracker(max_gap=2, min_frames=1)
    for f in range(20):
        present = not (5 <= f < 7 or 10 <= f < 14)  # a 2-frame gap (bridged), a 4-frame gap (not)
        tr.update(f, faces(1) if present else faces(0))
    tracks = tr.finish()
    assert [(t.id, t.first, t.last, t.bridged) for t in tracks] == [(1, 0, 9, 2), (2, 14, 19, 0)]


def face_landmarks_grid():
    """68 plausible landmark positions (eyes, mouth where the FFHQ quad expects them)."""
    lm = np.zeros((68, 2))
    lm[:, 0] = np.linspace(20, 80, 68)
    lm[:, 1] = 50
    lm[36:42] = [30, 40]
    lm[42:48] = [70, 40]
    lm[48] = [38, 75]
    lm[54] = [62, 75]
    return lm


# -- measured: steadiness and tracking (no model needed) ------------------------------------
def test_crop_steadiness_smoothing_on_vs_off(clips):
    info, tracks = track_clip(clips["steady"])
    assert len(tracks) == 1 and tracks[0].first == 0 and tracks[0].last == info.frames - 1
    lm = tracks[0].landmarks
    raw = rms_second_difference(np.stack([face_quad(x) for x in lm]))
    smooth = rms_second_difference(np.stack([face_quad(x) for x in gaussian_smooth(lm, 2.0)]))
    print(f"quad RMS second difference: raw {raw:.3f} px, smoothed {smooth:.3f} px")
    assert smooth <= raw / 3 and smooth < 0.5


def test_group_pan_every_face_keeps_one_track_id(tmp_path):
    photo = group_photo()  # insightface's sample t1.jpg: six people at a table
    truth = detect_faces(photo, all_faces=True)
    assert len(truth) == 6
    n, (w, h), y0 = 20, (640, 444), 60.0

    def path(t):
        return 640.0 * t / (n - 1), y0

    clip = write_clip(camera_frames(photo, n, (w, h), (w, h), path), tmp_path / "pan.mp4", (w, h))
    _, tracks = track_clip(clip)
    entered_or_left = 0
    for face in truth:
        centre = face.landmarks.mean(0)
        ids, visible = set(), []
        for f in range(n):
            x0 = path(f)[0]
            if face.box[0] - x0 < 5 or face.box[2] - x0 > w - 5:
                continue  # not fully in the frame
            visible.append(f)
            owners = [
                t.id
                for t in tracks
                if t.first <= f <= t.last and np.linalg.norm(t.landmarks[f - t.first].mean(0) + [x0, y0] - centre) < 20
            ]
            assert len(owners) == 1, (face.box, f, owners)
            ids |= set(owners)
        assert visible and len(ids) == 1, (face.box, ids)
        entered_or_left += visible[0] > 0 or visible[-1] < n - 1
    assert entered_or_left == 6  # the pan makes every face enter or leave
    assert len(tracks) == 6


# -- the whole pipeline with the stand-in model -------------------------------------------
@pytest.fixture(scope="module")
def pipeline(small_sam_path):
    from sam_age.pipeline import shared_pipeline

    return shared_pipeline(small_sam_path, "cpu", "float32", 8)


def test_age_clip_background_untouched_audio_kept_and_resume(clips, pipeline, small_sam_path, tmp_path):
    src = clips["audio"]
    out = tmp_path / "out"
    job = VideoJob(ages=[30, 70], chunk=3)
    res = VideoAger(pipeline).run(src, out, job, keep_cache=True)
    names = sorted(p.name for p in out.glob("*.mp4"))
    assert names == ["talk_age030.mp4", "talk_age070.mp4"]
    a = probe_video(src)
    for f in res.files:
        b = probe_video(f)
        assert (b.width, b.height, b.fps, b.frames) == (a.width, a.height, a.fps, a.frames)
        assert abs(b.duration - a.duration) < 0.05
        assert len(b.audio) == 1 and b.audio[0].split(",")[:3] == a.audio[0].split(",")[:3]

    # the audio stream is copied bit for bit
    def audio_md5(p):
        r = subprocess.run(
            [ffmpeg(), "-v", "error", "-i", str(p), "-map", "0:a", "-c", "copy", "-f", "md5", "-"],
            capture_output=True,
            check=True,
        )
        return r.stdout

    assert audio_md5(res.files[0]) == audio_md5(src)

    # outside the pasted faces nothing changes but the re-encoding: PSNR >= 40 dB
    (tid,) = res.aged
    track = next(t for t in res.tracks if t.id == tid)
    se, count = 0.0, 0
    for f, (x, y) in enumerate(zip(read_frames(a), read_frames(probe_video(res.files[1])))):
        mask = Image.new("L", (a.width, a.height), 0)
        if track.first <= f <= track.last:
            q = res.quads[tid][f - track.first]
            ImageDraw.Draw(mask).polygon([tuple(p) for p in q], fill=255)
            mask = mask.filter(ImageFilter.MaxFilter(9))  # the pasted region, plus the codec's reach
        keep = np.asarray(mask) == 0
        se += float(((x.astype(np.float64) - y)[keep] ** 2).sum())
        count += int(keep.sum()) * 3
    psnr = 10 * np.log10(255.0**2 / (se / count))
    print(f"PSNR outside the faces: {psnr:.2f} dB over {a.frames} frames")
    assert psnr >= 40.0

    # resume: lose the outputs and the last chunk's segments; a rerun redoes only that chunk
    cache = next((out / ".sam-age-video").iterdir())
    first = [np.array(fr) for fr in read_frames(probe_video(res.files[1]))]
    for f in res.files:
        f.unlink()
    for seg in cache.glob("seg*_00001.mp4"):
        seg.unlink()
    again = VideoAger(pipeline).run(src, out, job)
    assert again.resumed_chunks == 2 + 2 + 1  # faces, codes (both chunks), segments (chunk 0)
    second = [np.array(fr) for fr in read_frames(probe_video(again.files[1]))]
    assert all(np.array_equal(x, y) for x, y in zip(first, second)) and len(first) == len(second)
    assert not (out / ".sam-age-video").exists()  # cache removed after a finished run

    # nothing is overwritten without --overwrite
    before = again.files[0].stat().st_mtime_ns
    code = main(["video", str(src), "--checkpoint", str(small_sam_path), "--ages", "30", "--output", str(out)])
    assert code == 1 and again.files[0].stat().st_mtime_ns == before


def test_cli_phone_clip_rotation_odd_size_vfr_ramp_side_by_side(clips, small_sam_path, tmp_path, capsys):
    src = clips["phone"]
    a = probe_video(src)
    assert a.rotation == 90 and (a.width, a.height) == (193, 255)  # upright size after rotation
    assert a.vfr and a.frames == 8 and a.duration == pytest.approx(0.32)  # 6 frames, a 2-frame gap
    out = tmp_path / "out"
    code = main(
        [
            "video",
            str(src),
            "--checkpoint",
            str(small_sam_path),
            "--age-ramp",
            "20:80",
            "--side-by-side",
            "--output",
            str(out),
            "--json",
            "--device",
            "cpu",
            "--dtype",
            "float32",
        ]
    )
    cap = capsys.readouterr()
    assert code == 0, cap.err
    summary = json.loads(cap.out)
    rec = summary["inputs"][0]
    (f,) = rec["files"]
    assert Path(f).name == "phone_age020-080_sbs.mp4"
    b = probe_video(f)
    assert (b.width, b.height, b.frames, b.rotation) == (2 * 194, 256, a.frames, 0)
    assert not b.vfr and b.fps == a.fps and b.duration == pytest.approx(a.duration, abs=0.01)  # timing kept
    notes = " ".join(rec["notes"])
    assert "variable frame rate" in notes
    assert "rotation metadata 90" in notes and "odd size 193x255: padded to 194x256" in notes
    err = [ln for ln in _lines(cap.err) if ln.startswith("sam-age video:")]
    assert any("odd size" in ln for ln in err) and any("rotation" in ln for ln in err)
    assert rec["tracks"] and rec["tracks"][0]["aged"]


def test_variable_frame_rate_keeps_each_frame_at_its_time(tmp_path):
    frames = [np.full((64, 64, 3), 20 * t, np.uint8) for t in range(6)]
    clip = write_clip(frames, tmp_path / "vfr.mp4", (64, 64), gap_after=3)  # frame 3 shown at t=5
    info = probe_video(clip)
    assert info.vfr and info.fps == 25 and info.frames == 8
    shown = [int(round(f.mean() / 20)) for f in read_frames(info)]
    assert shown == [0, 1, 2, 2, 2, 3, 4, 5]  # frame 2 stays on screen across the gap


def _no_face_clip(path):
    frames = [np.full((120, 160, 3), 40 + 10 * t, np.uint8) for t in range(5)]
    return write_clip(frames, path, (160, 120))


def test_bad_inputs_one_line_each(clips, small_sam_path, tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    (d / "notes.mp4").write_text("not a video at all\n")
    (d / "empty.mp4").write_bytes(b"")
    good = Path(clips["audio"]).read_bytes()
    (d / "cut.mp4").write_bytes(good[: len(good) // 3])  # moov atom at the end: lost
    (d / "photo.mp4").write_bytes(sample_path().read_bytes())  # an image named like a video
    nofaces = _no_face_clip(d / "wall.mp4")
    audio_only = d / "tone.m4a"
    subprocess.run([ffmpeg(), "-v", "error", "-f", "lavfi", "-i", "sine=duration=0.5", str(audio_only)], check=True)
    bad = [d / "notes.mp4", d / "empty.mp4", d / "cut.mp4", d / "photo.mp4", nofaces, audio_only, d / "missing.mp4"]
    out = tmp_path / "out"
    code = main(["video", *map(str, bad), "--checkpoint", str(small_sam_path), "--output", str(out), "--device", "cpu"])
    err = [ln for ln in _lines(capsys.readouterr().err) if ln.startswith("sam-age video:")]
    assert code == 1
    assert len(err) == len(bad), err
    for path, line in zip(bad, err):
        assert str(path) in line and "Traceback" not in line
    expect = [
        "not a video",
        "empty file",
        "truncated",
        "image",
        "no face found in any of the 5 frames",
        "no video stream",
        "not found",
    ]
    for word, line in zip(expect, err):
        assert word in line, line
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]  # nothing half-written


def test_usage_errors_exit_2(small_sam_path, clips, tmp_path, capsys):
    base = ["video", str(clips["audio"]), "--checkpoint", str(small_sam_path), "--output", str(tmp_path)]
    assert main(base + ["--age-ramp", "20-80"]) == 2
    assert main(base + ["--ages", "150"]) == 2
    with pytest.raises(SystemExit) as e:  # argparse: mutually exclusive
        main(base + ["--age", "30", "--ages", "40"])
    assert e.value.code == 2
    assert (
        main(["video", str(clips["audio"]), "--checkpoint", str(tmp_path / "none.pt"), "--output", str(tmp_path)]) == 2
    )
    capsys.readouterr()


def test_detect_every_k_frames_carries_landmarks_between(clips):
    from sam_age.video.track import select_tracks

    info, every = track_clip(clips["steady"])
    _, third = track_clip(clips["steady"], VideoJob(ages=[0], detect_every=3))
    assert len(third) == 1 and (third[0].first, third[0].last) == (0, info.frames - 1)
    # the carried landmarks stay on the face: within 2 px (mean) of per-frame detection
    err = np.abs(third[0].landmarks - every[0].landmarks).mean()
    assert err < 2.0, err
    assert select_tracks(every, largest=True) == every and select_tracks(every, face=2) == []


def test_find_faces_resumes_from_any_cached_chunks(clips, tmp_path):
    from sam_age.video.ager import _Progress, analyse

    info = probe_video(clips["steady"])
    job = VideoJob(ages=[0], chunk=8).check()
    full, _ = analyse(info, info.frames, job, tmp_path, _Progress(False, ""))
    for c in (0, 2):  # lose the first and the last of three chunks: the middle one is reused
        (tmp_path / f"faces_{c:05d}.npz").unlink()
    again, resumed = analyse(info, info.frames, job, tmp_path, _Progress(False, ""))
    assert resumed == 1 and len(again) == len(full) == info.frames
    for a, b in zip(full, again):
        np.testing.assert_array_equal(a.landmarks, b.landmarks)


def test_resume_after_an_interruption_loses_less_than_a_chunk(clips, pipeline, tmp_path, monkeypatch):
    """Issue 26: with 32-frame chunks a clip shorter than that (this one: 24 frames) was
    redone from the start after Ctrl+C. Interrupt the face pass and the encoding pass at
    frame 13 (an injected failure), run them again, count the frames computed again."""
    import sam_age.face.landmarks as landmarks
    from sam_age.video.ager import CHUNK, _Progress, analyse

    info = probe_video(clips["steady"])
    n, job, cache = info.frames, VideoJob(ages=[40]).check(), tmp_path / "cache"
    cache.mkdir()
    assert n == 24 and job.chunk == CHUNK < n
    real_detect, real_codes = landmarks.detect_faces, VideoAger._codes
    seen, fail = {"detect": 0, "codes": 0}, {"on": True}

    def detect(*a, **k):
        if fail["on"] and seen["detect"] == 13:
            raise KeyboardInterrupt
        seen["detect"] += 1
        return real_detect(*a, **k)

    def codes(self, crops, ages):  # called once per chunk: the second holds frame 13
        seen["calls"] = seen.get("calls", 0) + 1
        if fail["on"] and seen["calls"] == 13 // CHUNK + 1:
            raise KeyboardInterrupt
        seen["codes"] += len(crops)
        return real_codes(self, crops, ages)

    monkeypatch.setattr(landmarks, "detect_faces", detect)
    monkeypatch.setattr(VideoAger, "_codes", codes)
    quiet = _Progress(False, "")
    with pytest.raises(KeyboardInterrupt):  # the face pass stops at frame 13
        analyse(info, n, job, cache, quiet)
    fail["on"], seen["detect"] = False, 0
    faces, _ = analyse(info, n, job, cache, quiet)
    assert seen["detect"] == n - 13 // CHUNK * CHUNK  # only the chunk that was cut is redone
    assert 13 - 13 // CHUNK * CHUNK < CHUNK  # (< 8 frames lost, whatever the clip's length)

    tracker = Tracker()
    for f, ff in enumerate(faces):
        tracker.update(f, ff)
    tracks = tracker.finish(n)
    smoothed = {t.id: gaussian_smooth(t.landmarks, job.smooth_landmarks) for t in tracks}
    fail["on"] = True
    with pytest.raises(KeyboardInterrupt):  # the encoding pass stops at frame 13
        VideoAger(pipeline)._encode(info, n, job, tracks, smoothed, cache, quiet)
    fail["on"], seen["codes"] = False, 0
    VideoAger(pipeline)._encode(info, n, job, tracks, smoothed, cache, quiet)
    kept = 13 // CHUNK * CHUNK  # frames before the cut chunk: not encoded again
    assert seen["codes"] == sum(t.first <= f <= t.last for t in tracks for f in range(kept, n)) > 0


def test_checkpoint_of_another_kind_exits_2_before_any_download(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SAM_AGE_HOME", str(home))
    monkeypatch.setenv("SAM_AGE_OFFLINE", "1")
    argv = ["video", str(tmp_path / "clip.mp4"), "--checkpoint", "psp_ffhq_encode", "--output", str(tmp_path / "out")]
    code = main(argv + ["--ages", "40"])
    err = capsys.readouterr().err
    assert code == 2 and "psp_ffhq_encode is a pSp encoder, not a SAM checkpoint" in err, err
    assert not any(home.iterdir())
