"""``sam-age age`` end to end on the bundled portrait and on every kind of bad input
(in-process through ``sam_age.cli.main.main``; one real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sam_age.ages import parse_ages
from sam_age.cli.common import refuse_existing_result
from sam_age.cli.main import build_parser, main
from sam_age.errors import InputError, UsageError
from sam_age.face.prepare import prepare_faces
from sam_age.fileio import OWN_MARKER, mark_own
from sam_age.render import label_band, make_strip, save_image

from ..helpers.images import write_bad_files, write_grey16, write_rotated
from ..helpers.output import TTY as _TTY
from ..helpers.output import mode as _mode

pytest.importorskip("dlib")


def _lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


def test_parse_ages():
    assert parse_ages("0:100:10") == [float(a) for a in range(0, 101, 10)]  # inclusive: 11 ages
    assert parse_ages("0,10, 20") == [0.0, 10.0, 20.0]
    assert parse_ages("5,0:20:10,20") == [5.0, 0.0, 10.0, 20.0]
    assert parse_ages("30:10:-10") == [30.0, 20.0, 10.0]
    for bad in ("abc", "0:100:0", "10:0:5", "150", ""):
        with pytest.raises(UsageError):
            parse_ages(bad)


def test_sample_all_faces_strip_gif_paste_back(small_sam_path, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "age",
            "sample",
            "--checkpoint",
            str(small_sam_path),
            "--ages",
            "0,100",
            "--output",
            str(out),
            "--all-faces",
            "--gif",
            "--frames-per-age",
            "1",
            "--paste-back",
            "--json",
            "--device",
            "cpu",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["ok"] == 1 and summary["failed"] == 0
    path = summary["compute_path"]  # what ran, and why (AgePipeline.compute_path)
    assert path["device"] == "cpu" and path["dtype"] in ("float32", "bfloat16") and path["why"]
    assert set(path["forms"]) == {"conv", "generator", "autotune"} and path["forms"]["generator"] == "per_sample"
    rec = summary["inputs"][0]
    assert rec["faces"] >= 2 and rec["scores"] == sorted(rec["scores"], reverse=True)  # best first
    base = out / "astronaut"
    for face in ("face_1", "face_2"):
        for name in ("age_000.png", "age_100.png", "strip.png", "animation.gif"):
            assert (base / face / name).is_file(), name
    assert Image.open(base / "face_1" / "strip.png").size == (768, 256)
    assert Image.open(base / "face_1" / "age_100.png").size == (256, 256)
    with Image.open(base / "face_1" / "animation.gif") as gif:
        assert gif.n_frames == 2
    for age in ("000", "100"):
        assert Image.open(base / f"pasted_{age}.png").size == (512, 512)
    assert sorted(rec["files"]) == sorted(str(p) for p in base.rglob("*") if p.is_file() and p.name != OWN_MARKER)
    assert [p.name for p in base.rglob(".*")] == [OWN_MARKER]  # no temporary files left behind, one marker

    # nothing is overwritten without --overwrite: that input fails (exit 1), files untouched
    before = {p: p.stat().st_mtime_ns for p in base.rglob("*")}
    code = main(["age", "sample", "--checkpoint", str(small_sam_path), "--ages", "0,100", "--output", str(out)])
    err = _lines(capsys.readouterr().err)
    assert code == 1 and len(err) == 1 and "astronaut.jpg: " in err[0] and "--overwrite" in err[0]
    assert before == {p: p.stat().st_mtime_ns for p in base.rglob("*")}
    refuse_existing_result(base, overwrite=True)  # --overwrite lets it through
    with pytest.raises(InputError):
        refuse_existing_result(base, overwrite=False)


def test_bad_inputs_one_line_each_and_batch_continues(small_sam_path, tmp_path, capsys):
    bad = write_bad_files(tmp_path / "in")
    # (RGBA and palette conversions are covered by tests/face/test_images.py; each good
    # input here costs two encoder passes)
    good = [write_rotated(tmp_path / "in" / "rotated.jpg"), write_grey16(tmp_path / "in" / "grey16.png")]
    missing = tmp_path / "in" / "missing.jpg"
    out = tmp_path / "out"
    args = [
        "age",
        *map(str, bad.values()),
        *map(str, good),
        str(missing),
        "--checkpoint",
        str(small_sam_path),
        "--ages",
        "30",
        "--output",
        str(out),
        "--device",
        "cpu",
    ]
    code = main(args)
    captured = capsys.readouterr()
    assert code == 1
    err = _lines(captured.err)
    assert "Traceback" not in captured.err
    expected = {
        "corrupt": "not an image",
        "truncated": "truncated",
        "notes": "not an image",
        "blank": "no face",
        "tiny": "too small",
        "bomb": "decompression bomb",
        "missing": "file not found",
    }
    assert len(err) == len(expected), err
    for stem, reason in expected.items():
        line = [ln for ln in err if f"{stem}." in ln]
        assert len(line) == 1 and line[0].startswith("sam-age age: ") and reason in line[0], (stem, err)
    for p in good:  # EXIF-rotated and 16-bit greyscale photos go through
        assert (out / p.stem / "age_030.png").is_file() and (out / p.stem / "strip.png").is_file()
    for stem in expected:
        assert not (out / stem).exists()
    assert "2 of 9 inputs done" in captured.out


def test_usage_and_checkpoint_errors_exit_2(small_sam_path, tmp_path, capsys):
    assert (
        main(["age", "sample", "--checkpoint", str(small_sam_path), "--ages", "0:abc", "--output", str(tmp_path)]) == 2
    )
    assert "--ages" in capsys.readouterr().err
    assert main(["age", "sample", "--checkpoint", str(tmp_path / "none.pt"), "--output", str(tmp_path)]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "none.pt" in err[0]
    assert main(["age", "--checkpoint", str(small_sam_path), "--output", str(tmp_path)]) == 2
    with pytest.raises(SystemExit) as e:  # argparse's own usage errors
        main(["age", "sample", "--size", "512"])
    assert e.value.code == 2
    # this checkpoint generates 256 px only: --size 1024 is a usage error
    assert (
        main(
            [
                "age",
                "sample",
                "--checkpoint",
                str(small_sam_path),
                "--ages",
                "10",
                "--size",
                "1024",
                "--output",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "size" in capsys.readouterr().err


def test_python_m_sam_age_subprocess(small_sam_path, tmp_path):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sam_age",
            "age",
            str(tmp_path / "gone.jpg"),
            "--checkpoint",
            str(small_sam_path),
            "--output",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 1
    assert _lines(proc.stderr) == [f"sam-age age: {tmp_path / 'gone.jpg'}: file not found"]


def test_age_disk_full_mid_run_one_line_partial_removed_run_stops(
    small_sam_path, tmp_path, capsys, face, disk_full_after_first_image
):
    second = tmp_path / "second.png"
    Image.open(face).save(second)
    out = tmp_path / "out"
    disk_full_after_first_image()
    code = main(
        [
            "age",
            str(face),
            str(second),
            "--no-align",
            "--checkpoint",
            str(small_sam_path),
            "--ages",
            "30",
            "--output",
            str(out),
            "--device",
            "cpu",
            "--batch-size",
            "1",
            "--workers",
            "0",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    err = _lines(captured.err)
    assert len(err) == 2, err
    assert err[0] == f"sam-age age: {face}: cannot write {out / 'face' / 'strip.png'}: No space left on device"
    assert err[1].startswith("sam-age age: stopped: 1 input(s) not done (cannot write")
    assert "0 of 2 inputs done" in captured.out
    assert not (out / "face").exists() and not (out / "second").exists()  # no partial result
    assert not [p for p in out.rglob("*.png")]


def test_age_overwrite_replaces_folder_progress_bar_modes(small_sam_path, tmp_path, face, monkeypatch, umask022):
    out = tmp_path / "out"
    stale = out / "face" / "age_090.png"  # an earlier run's result for other ages
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    mark_own(stale.parent)  # (sam-age's own: --overwrite replaces only such a folder, issue 22)
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    code = main(
        [
            "age",
            str(face),
            "--no-align",
            "--checkpoint",
            str(small_sam_path),
            "--ages",
            "30,40",
            "--output",
            str(out),
            "--device",
            "cpu",
            "--overwrite",
            "--workers",
            "0",
        ]
    )
    assert code == 0, tty.getvalue()
    assert sorted(p.name for p in (out / "face").iterdir()) == [OWN_MARKER, "age_030.png", "age_040.png", "strip.png"]
    for p in [out / "face", *(out / "face").iterdir()]:
        assert _mode(p) == (0o755 if p.is_dir() else 0o644), p
    bar = tty.getvalue()
    assert "sam-age age" in bar and "2/2" in bar and "face-age" in bar  # 1 face x 2 ages


def test_no_align_refuses_a_photo_that_is_not_square(tmp_path, capsys, small_sam_path):
    wide = tmp_path / "wide.jpg"
    Image.new("RGB", (1280, 886), (120, 100, 90)).save(wide)
    with pytest.raises(InputError, match="is 1280x886, not a square"):
        prepare_faces(wide, align=False)
    square = tmp_path / "big.png"
    Image.new("RGB", (1024, 1024)).save(square)
    assert prepare_faces(square, align=False)[1][0][0].size == (256, 256)  # a square crop is resized
    code = main(
        [
            "age",
            str(wide),
            "--no-align",
            "--checkpoint",
            str(small_sam_path),
            "--output",
            str(tmp_path / "o"),
            "--device",
            "cpu",
        ]
    )
    err = _lines(capsys.readouterr().err)
    assert code == 1 and len(err) == 1 and "not a square" in err[0] and str(wide) in err[0]


def test_flags_that_do_nothing_say_so(tmp_path, capsys, small_sam_path):
    gone = str(tmp_path / "gone.jpg")  # no model run needed: the notes come first
    base = ["age", gone, "--checkpoint", str(small_sam_path), "--output", str(tmp_path / "o"), "--device", "cpu"]
    assert main([*base, "--no-align", "--paste-back", "--gif", "--ages", "30"]) == 1
    err = _lines(capsys.readouterr().err)
    notes = [ln for ln in err if ": note: " in ln]
    assert len(notes) == 2, err
    assert "--paste-back does nothing with --no-align" in notes[0]
    assert "--gif with one age" in notes[1]
    assert main([*base, "--no-align", "--paste-back", "--gif", "--ages", "30", "--quiet"]) == 1
    assert not [ln for ln in _lines(capsys.readouterr().err) if ": note: " in ln]


def test_frames_per_age_help_agrees_with_the_animation(capsys):
    with pytest.raises(SystemExit):
        main(["age", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "the age's own frame included" in text and "4 = each age and 3 in between" in text
    import torch

    from sam_age.render import interpolate_codes, ping_pong

    codes = torch.zeros(2, 1, 1)  # 2 ages, K = 4: the first age and 3 in between, then the last
    frames = interpolate_codes(codes, 4)
    assert frames.shape[0] == 4 + 1 and len(ping_pong(list(range(frames.shape[0])))) == 8


def test_checkpoint_folder_says_folder(tmp_path, capsys, face):
    assert main(["age", str(face), "--checkpoint", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "is a folder" in err[0] and str(tmp_path) in err[0], err


def _age(small_sam_path, out, *extra):
    return main(
        [
            "age",
            "sample",
            "--checkpoint",
            str(small_sam_path),
            "--ages",
            "30,60",
            "--output",
            str(out),
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--json",
            *extra,
        ]
    )


def test_labels_change_only_the_band_and_no_labels_gives_the_old_bytes(small_sam_path, tmp_path, capsys):
    assert _age(small_sam_path, tmp_path / "on", "--gif", "--frames-per-age", "2") == 0
    summary = json.loads(capsys.readouterr().out)  # issue 26 item 1: stage timings in --json
    assert [s["stage"] for s in summary["stages"]] == ["read", "faces", "load", "first_pass"]
    assert all(s["seconds"] >= 0 for s in summary["stages"]) and summary["first_image_seconds"] > 0
    assert summary["compute_path"]["device"] == "cpu" and summary["compute_path"]["dtype"] == "float32"
    assert str(small_sam_path) in summary["stages"][2]["detail"]
    assert _age(small_sam_path, tmp_path / "off", "--gif", "--frames-per-age", "2", "--no-labels") == 0
    capsys.readouterr()
    on, off = tmp_path / "on" / "astronaut", tmp_path / "off" / "astronaut"
    a = np.asarray(Image.open(on / "strip.png").convert("RGB")).astype(int)
    b = np.asarray(Image.open(off / "strip.png").convert("RGB")).astype(int)
    assert a.shape == b.shape == (256, 768, 3)
    band = label_band(256)
    assert np.array_equal(a[: 256 - band], b[: 256 - band])  # above the band: untouched
    for t in range(3):  # every tile has its label: white text on the dark band
        tile = a[256 - band :, t * 256 : (t + 1) * 256]
        assert (tile.min(axis=2) > 200).sum() > 20 and (tile.max(axis=2) < 40).sum() > 1000, t
    # --no-labels: the bytes the unlabelled code wrote (the input tile, then the age files)
    ages = [Image.open(off / f"age_{x}.png").convert("RGB") for x in ("030", "060")]
    aligned = Image.fromarray(b[:, :256].astype(np.uint8))
    save_image(make_strip(aligned, ages), tmp_path / "old.png", mark=None)
    # the same pixels (the files' bytes differ only by their AI-edit marks: ages, ingredient)
    old = np.asarray(Image.open(tmp_path / "old.png").convert("RGB"))
    assert np.array_equal(old, b.astype(np.uint8))
    # the animation: 30 -> 45 -> 60 -> 45, each frame labelled in its band only
    with Image.open(on / "animation.gif") as g_on, Image.open(off / "animation.gif") as g_off:
        assert g_on.n_frames == g_off.n_frames == 4
        for i in range(4):
            g_on.seek(i)
            g_off.seek(i)
            x = np.asarray(g_on.convert("RGB")).astype(int)
            y = np.asarray(g_off.convert("RGB")).astype(int)
            assert (x[256 - band :].min(axis=2) > 200).sum() > 20  # white text
            # above the band only the GIF palette's rounding may differ (each frame gets its
            # own 256 colours; the band's black and white take two of them)
            assert np.abs(x[: 256 - band] - y[: 256 - band]).mean() < 8.0
            assert np.abs(x[256 - band :] - y[256 - band :]).mean() > 30.0


def test_sample_has_one_spelling_and_the_old_flag_still_works(capsys):
    parser = build_parser()
    age_help = parser._subparsers._group_actions[0].choices["age"].format_help()
    assert "--sample" not in age_help and "'sample'" in age_help
    args = parser.parse_args(["age", "--sample"])  # hidden, deprecated: old scripts keep running
    from sam_age.cli.common import collect_inputs

    named, missing = collect_inputs(args)
    assert [n for n, _ in named] == ["astronaut"] and not missing
    assert "--sample is deprecated" in capsys.readouterr().err
    args = parser.parse_args(["age", "sample"])
    assert [n for n, _ in collect_inputs(args)[0]] == ["astronaut"]
    assert "deprecated" not in capsys.readouterr().err


def _run_in_pty(argv, columns=120, timeout=900):
    """Run ``python -m sam_age ARGV`` with its stdout and stderr on a pseudo-terminal
    (``columns`` wide), as a user sees it; -> (exit code, everything it wrote)."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios
    import time

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = dict(os.environ, PYTHONWARNINGS="ignore", COLUMNS=str(columns), TERM="xterm")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sam_age", *argv], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
    )
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_pty_stage_lines_then_a_bar_whose_total_is_right_with_all_faces(small_sam_path, tmp_path):
    """Issue 26 items 1 and 2, read through a pseudo-terminal: a line as each stage starts
    (reading, finding faces, loading the model with its path, the compute path, the first
    pass), then a bar that never counts past its total: with --all-faces on a photo with
    several faces it used to show 1/1 after the first face, then 2/1 ... 6/6."""
    import re

    out = tmp_path / "out"
    code, text = _run_in_pty(
        [
            "age",
            "sample",
            "--all-faces",
            "--ages",
            "30",
            "--checkpoint",
            str(small_sam_path),
            "--output",
            str(out),
            "--device",
            "cpu",
            "--dtype",
            "float32",
        ]
    )
    assert code == 0, text
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", text) if ln.strip()]
    order = [
        "sam-age age: reading ",
        "sam-age age: finding faces in ",
        "sam-age age: loading the model ",
        "sam-age age: compute path: cpu, float32",
        "sam-age age: first pass through the model",
    ]
    at = [next((i for i, ln in enumerate(lines) if ln.startswith(o)), None) for o in order]
    assert None not in at and at == sorted(at), (at, lines)
    assert str(small_sam_path) in lines[at[2]] and "astronaut.jpg" in lines[at[0]]
    faces = json.loads((out / "manifest.jsonl").read_text().splitlines()[-1])["faces"]
    assert faces >= 2
    counts = [(int(a), int(b)) for a, b in re.findall(r"\b(\d+)/(\d+) \[", text)]
    assert counts and all(n <= total for n, total in counts), counts  # never past its total
    done = [(n, total) for n, total in counts if n > 0]
    assert done and all(total == faces for _, total in done), counts  # the total was known before any face
    assert counts[-1] == (faces, faces)
