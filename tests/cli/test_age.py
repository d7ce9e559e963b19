"""``sam-age age`` end to end on the bundled portrait and on every kind of bad input
(in-process through ``sam_age.cli.main.main``; one real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from sam_age.ages import parse_ages
from sam_age.cli.common import refuse_existing_result
from sam_age.cli.main import main
from sam_age.errors import InputError, UsageError
from sam_age.fileio import OWN_MARKER

from ..helpers.images import write_bad_files, write_grey16, write_rotated

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
