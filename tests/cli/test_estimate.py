"""``sam-age estimate`` and relative ages in ``sam-age age`` (in-process, stand-in weights:
the 256 px SAM and the DEX stand-in, whose estimates are meaningless but deterministic)."""

from __future__ import annotations

import json
import re

import pytest

from sam_age.cli.main import join_signed_values, main

from ..helpers.images import group_photo_path, write_bad_files

pytest.importorskip("dlib")


def _lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def dex(standin):
    return str(standin("dex_age_classifier"))


def test_estimate_prints_each_face_and_goes_on_past_bad_inputs(dex, tmp_path, capsys):
    bad = write_bad_files(tmp_path / "in")
    inputs = ["sample", str(bad["text"]), str(bad["blank"]), str(tmp_path / "gone.jpg")]
    group = group_photo_path()
    if group is not None:
        inputs.append(str(group))
    out = tmp_path / "out"
    code = main(
        ["estimate", *inputs, "--age_predictor_weights", dex, "--all-faces", "--output", str(out), "--device", "cpu"]
    )
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    err = _lines(captured.err)
    for name, reason in (("notes.png", "not an image"), ("blank.png", "no face"), ("gone.jpg", "file not found")):
        assert len([ln for ln in err if name in ln and reason in ln and ln.startswith("sam-age estimate: ")]) == 1
    lines = _lines(captured.out)
    astronaut = [ln for ln in lines if "astronaut.jpg: face " in ln]
    assert len(astronaut) >= 1 and astronaut[0].split(": ")[1] == "face 1"
    for ln in lines:
        assert 0.0 <= float(ln.rsplit(": ", 1)[1]) <= 100.0
    if group is not None:
        assert len([ln for ln in lines if "t1.jpg: face " in ln]) >= 4  # every face of the group
    summary = json.loads((out / "estimates.json").read_text())
    assert summary["ok"] == len(inputs) - 3 and summary["failed"] == 3
    rows = (out / "estimates.csv").read_text().splitlines()
    assert rows[0] == "input,face,estimated_age,score" and len(rows) == 1 + len(lines)
    # nothing is overwritten without --overwrite: exit 2 before any work
    assert main(["estimate", "sample", "--age_predictor_weights", dex, "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_estimate_json_and_errors(dex, tmp_path, capsys):
    assert main(["estimate", "sample", "--age_predictor_weights", dex, "--json", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    face = summary["inputs"][0]["faces"][0]
    assert summary["command"] == "estimate" and summary["ok"] == 1 and summary["age_predictor"] == dex
    assert face["face"] == 1 and 0 <= face["age"] <= 100 and len(face["quad"]) == 4
    # a missing weights file: exit 2, one line naming it
    assert main(["estimate", "sample", "--age_predictor_weights", str(tmp_path / "none.pth")]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "none.pth" in err[0]
    assert main(["estimate", "--age_predictor_weights", dex]) == 2  # no inputs
    assert main(["estimate", "sample", "--batch-size", "0"]) == 2


def test_signed_values_reach_ages():
    assert join_signed_values(["age", "x", "--ages", "-10,+10", "--json"]) == ["age", "x", "--ages=-10,+10", "--json"]
    assert join_signed_values(["age", "--ages", "-5:+5:5"]) == ["age", "--ages=-5:+5:5"]
    assert join_signed_values(["age", "--ages", "--json"]) == ["age", "--ages", "--json"]  # an option stays one
    assert join_signed_values(["age", "--output", "-10"]) == ["age", "--output", "-10"]  # only --ages


@pytest.mark.parametrize(
    "ages, message",
    [
        ("0:100", "needs a step"),
        ("10:0:5", "is empty"),
        ("-5:5:5", "one end has a sign"),
        ("150", "outside 0..100"),
    ],
)
def test_age_refuses_unclear_ages_before_anything_loads(ages, message, tmp_path, capsys):
    code = main(
        ["age", "sample", "--ages", ages, "--checkpoint", str(tmp_path / "never.pt"), "--output", str(tmp_path / "o")]
    )
    err = _lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and message in err[0] and "--ages" in err[0], err


def test_age_relative_and_fractional_ages(small_sam_path, dex, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "age",
            "sample",
            "--checkpoint",
            str(small_sam_path),
            "--age_predictor_weights",
            dex,
            "--ages",
            "-20,30.21,30.24",
            "--output",
            str(out),
            "--json",
            "--device",
            "cpu",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    rec = json.loads(captured.out)["inputs"][0]
    est = rec["estimated_ages"][0]
    assert 0 <= est <= 100
    assert rec["requested"] == ["-20", "30.21", "30.24"]
    # the record holds the estimate rounded to 2 places, the ages asked are the exact
    # estimate's, rounded to 1: compare within that rounding, never rebuild the digits
    asked = round(est - 20, 1)
    (ages,) = rec["ages"]
    assert abs(ages[0] - max(0.0, asked)) <= 0.1 + 1e-9 and ages[1:] == [30.21, 30.24]
    base = out / "astronaut"
    for name in ("age_-20.png", "age_030.21.png", "age_030.24.png", "strip.png"):  # one file per age
        assert (base / name).is_file(), name
    assert len(set(rec["files"])) == len(rec["files"]) == 4
    notes = _lines(captured.err)
    assert len(notes) == 1 and notes[0].startswith("sam-age age: ")
    said = re.search(r"estimated age ([\d.]+)", notes[0])
    assert said and abs(float(said[1]) - est) <= 0.05 + 0.005
    if asked < 0:  # the stand-in DEX says about 12: -20 is clamped, and said so
        (clamped,) = rec["clamped"]
        assert abs(clamped.pop("asked") - asked) <= 0.1 + 1e-9
        assert clamped == {"face": 1, "request": "-20", "age": 0.0}
        assert "-20 -> " in notes[0] and "clamped to 0" in notes[0]


def test_age_relative_with_missing_age_predictor_exits_2_early(small_sam_path, tmp_path, capsys):
    code = main(
        [
            "age",
            "sample",
            "--checkpoint",
            str(small_sam_path),
            "--ages",
            "+10",
            "--age_predictor_weights",
            str(tmp_path / "no-dex.pth"),
            "--output",
            str(tmp_path / "o"),
        ]
    )
    err = _lines(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and "no-dex.pth" in err[0]
    assert not (tmp_path / "o").exists()
