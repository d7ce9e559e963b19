"""Issue 22 items 1-4: a run never loses a user's file, never gives one input's result to
another, takes any name the OS allows, and never ages its own results. The model is a stub
(tests/helpers/stub_pipeline.py: each result is its input's colour), the rest is the real CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sam_age import fileio
from sam_age.cli.main import main
from sam_age.dataset import manifest

from ..helpers.output import age_args
from ..helpers.stub_pipeline import colour_of, use_stub, write_face


def _age(weights, out, *inputs, extra=()):
    return main(age_args(weights, out, *inputs, extra=["--no-align", *extra]))


def _records(out):
    raw = (Path(out) / "manifest.jsonl").read_bytes()
    return [json.loads(line) for line in raw.decode("utf-8").splitlines()]  # strict UTF-8, valid JSON


def _user_folder(photos):
    mine = photos / "holiday"
    mine.mkdir(parents=True)
    for k in (1, 2):
        (mine / f"beach_00{k}.jpg").write_bytes(b"the user's photo %d" % k)
    return {p: p.read_bytes() for p in mine.iterdir()}


def test_overwrite_never_deletes_a_users_folder(tmp_path, monkeypatch, capsys):
    """Item 1: `sam-age age photos/holiday.jpg --output photos --overwrite` with a folder
    photos/holiday/ of the user's: left whole, the input fails with one line."""
    w = use_stub(monkeypatch, tmp_path)
    photos = tmp_path / "photos"
    write_face(photos / "holiday.png", (200, 10, 10))
    theirs = _user_folder(photos)
    assert _age(w, photos, photos / "holiday.png", extra=["--overwrite"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sam-age did not write" in err[0] and "left alone" in err[0]
    assert {p: p.read_bytes() for p in (photos / "holiday").iterdir()} == theirs


def test_overwrite_replaces_sam_ages_own_folder_but_not_one_the_user_added_to(tmp_path, monkeypatch, capsys):
    w = use_stub(monkeypatch, tmp_path)
    out = tmp_path / "out"
    src = write_face(tmp_path / "in" / "a.png", (10, 200, 10))
    assert _age(w, out, src) == 0
    assert (out / "a" / fileio.OWN_MARKER).is_file()
    assert _age(w, out, src, extra=["--ages", "60", "--overwrite"]) == 0  # its own: replaced whole
    assert sorted(p.name for p in (out / "a").iterdir()) == [fileio.OWN_MARKER, "age_060.png", "strip.png"]
    (out / "a" / "notes.txt").write_text("the user's")
    capsys.readouterr()
    assert _age(w, out, src, extra=["--ages", "30", "--overwrite"]) == 1
    assert "notes.txt" in capsys.readouterr().err
    assert (out / "a" / "notes.txt").read_text() == "the user's" and (out / "a" / "age_060.png").is_file()


def test_overwrite_in_flat_layout_replaces_only_recorded_files(tmp_path, monkeypatch, capsys):
    w = use_stub(monkeypatch, tmp_path)
    photos = tmp_path / "photos"
    write_face(photos / "anna.png", (1, 2, 3))
    (photos / "anna_age_030.png").write_bytes(b"the user's own file of that name")
    assert _age(w, photos, photos / "anna.png", extra=["--layout", "flat", "--overwrite"]) == 1
    assert (photos / "anna_age_030.png").read_bytes() == b"the user's own file of that name"
    assert "sam-age" in capsys.readouterr().err
    (photos / "anna_age_030.png").unlink()
    assert _age(w, photos, photos / "anna.png", extra=["--layout", "flat"]) == 0
    assert _age(w, photos, photos / "anna.png", extra=["--layout", "flat", "--overwrite"]) == 0  # recorded: ours


def test_mix_results_folder_replaces_only_its_own(tmp_path):
    """``mix`` (through fileio.atomic_dir): a user's folder is never replaced."""
    user = tmp_path / "holiday"
    theirs = _user_folder(tmp_path)
    with pytest.raises(FileExistsError, match="sam-age did not write"):
        with fileio.atomic_dir(user, replace=True) as d:
            (d / "grid.png").write_bytes(b"new")
    assert {p: p.read_bytes() for p in user.iterdir()} == theirs
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    own = tmp_path / "mine"
    with fileio.atomic_dir(own) as d:
        (d / "sub").mkdir()
        (d / "sub" / "a.png").write_bytes(b"1")
    with fileio.atomic_dir(own, replace=True) as d:
        (d / "b.png").write_bytes(b"2")
    assert sorted(p.name for p in own.iterdir()) == [fileio.OWN_MARKER, "b.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holiday", "mine"]


def test_a_retried_input_keeps_its_own_name(tmp_path, monkeypatch):
    """Item 2: cam2/a.png failed as a_2; fixed and run alone, it is a_2 again and cam1's
    OUT/a stays cam1's."""
    w = use_stub(monkeypatch, tmp_path)
    out = tmp_path / "out"
    one = write_face(tmp_path / "cam1" / "a.png", (250, 0, 0))
    two = tmp_path / "cam2" / "a.png"
    two.parent.mkdir()
    two.write_bytes(b"not an image")
    assert _age(w, out, one, two) == 1
    write_face(two, (0, 0, 250))
    assert _age(w, out, two) == 0
    assert colour_of(out / "a" / "age_030.png") == (250, 0, 0)
    assert colour_of(out / "a_2" / "age_030.png") == (0, 0, 250)
    recs = {r["name"]: r for r in _records(out)}
    assert recs["a"]["input"] == str(one) and recs["a_2"]["input"] == str(two)
    assert all(r["status"] == "ok" for r in recs.values())


NAMES = [
    b"caf\xe9.png",
    b"new\nline.png",
    b'say "cheese".png',
    b"it's.png",
    b"-rf.png",
    b"2024-01-01T10:30.png",
    b"...png",
    b"\xff\xfe.png",
    b"tab\there.png",
]


def test_any_name_the_os_allows(tmp_path, monkeypatch, capsys):
    """Item 3: every such name is done, the manifest is UTF-8 JSON that gives back the exact
    path, no output name is '..' or hidden, and a rerun skips them all (the keys round-trip)."""
    w = use_stub(monkeypatch, tmp_path)
    src = tmp_path / "in"
    src.mkdir()
    paths = [write_face(src / os.fsdecode(b), (k * 20, 5, 5)) for k, b in enumerate(NAMES)]
    bad = src / os.fsdecode(b"broken\xe9\n.png")
    bad.write_bytes(b"not an image")
    out = tmp_path / "out"
    assert _age(w, out, src) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "broken\\xe9\\n.png" in err[0]  # one line, the bytes shown
    recs = _records(out)
    assert sorted(manifest.record_key(r) for r in recs) == sorted(str(p) for p in paths + [bad])
    for r in recs:
        assert r["name"] and not r["name"].startswith(".") and "\n" not in r["name"]
    by_key = {manifest.record_key(r): r for r in recs}
    for k, p in enumerate(paths):
        r = by_key[str(p)]
        assert r["status"] == "ok" and colour_of(out / r["files"][0]) == (k * 20, 5, 5)
    assert by_key[str(paths[0])]["name"] == "café"
    assert {p.name for p in out.iterdir()} == {r["name"] for r in recs if r["status"] == "ok"} | {"manifest.jsonl"}
    assert _age(w, out, src, extra=["--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped"] == len(paths)


def test_flat_layout_into_the_input_folder_never_ages_its_own_results(tmp_path, monkeypatch):
    """Item 4: three runs (and one with another age) into the photos' folder: one result per
    photo and age, never anna_age_030_age_030.png."""
    w = use_stub(monkeypatch, tmp_path)
    photos = tmp_path / "photos"
    write_face(photos / "anna.png", (9, 9, 9))
    for extra in ([], [], ["--ages", "60"], ["--ages", "60"], ["--ages", "30", "--overwrite"]):
        assert _age(w, photos, photos, extra=["--layout", "flat", *extra]) == 0
    assert sorted(p.name for p in photos.iterdir()) == [
        "anna.png",
        "anna_age_030.png",
        "anna_age_060.png",
        "manifest.jsonl",
    ]
    (rec,) = _records(photos)
    assert rec["files"] == ["anna_age_030.png"] and rec["earlier_files"] == ["anna_age_060.png"]


def test_estimate_and_export_overwrite_only_their_own_files(tmp_path):
    """The other commands that replace files by name (estimate's estimates.csv/json,
    export's networks and manifest.json, video's NAME_age_AGE.mp4): with --overwrite, only
    the files the folder's marker lists as sam-age's (fileio.note_own)."""
    import argparse

    from sam_age.cli.estimate import _check_output
    from sam_age.errors import UsageError
    from sam_age.export import check_output

    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("the user's")
    (out / "estimates.csv").write_text("the user's")
    with pytest.raises(UsageError, match="not written by sam-age"):
        check_output(out, "onnx", overwrite=True)
    with pytest.raises(UsageError, match="not written by sam-age"):
        _check_output(argparse.Namespace(output=str(out), overwrite=True))
    fileio.note_own(out, ["estimates.csv", "estimates.json", "manifest.json"])  # as if sam-age wrote them
    assert _check_output(argparse.Namespace(output=str(out), overwrite=True)) == out
    assert check_output(out, "onnx", overwrite=True) == out
    assert fileio.not_own_file(out, ["estimates.csv", "encoder.onnx"]) is None
    (out / "link.mp4").symlink_to(out / "estimates.csv")
    fileio.note_own(out, ["link.mp4"])
    assert fileio.not_own_file(out, ["link.mp4"]) == out / "link.mp4"  # a link is never ours to replace
