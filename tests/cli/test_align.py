"""``sam-age align``: aligned crops through the dataset runner (manifest, resume, split)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from sam_age.cli.main import main
from sam_age.dataset.align import split_side
from sam_age.face.align import align_faces
from sam_age.face.prepare import prepare_faces

from ..helpers.images import group_photo, sample, write_bad_files

pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    sample().save(d / "astronaut.jpg", quality=95)
    group_photo().save(d / "group.png")
    sample().transpose(Image.FLIP_LEFT_RIGHT).save(d / "mirror.png")
    bad = write_bad_files(d / "bad")
    return d, bad


def _run(args, capsys):
    code = main(args)
    return code, capsys.readouterr()


def test_align_best_face_same_as_age_and_bad_files_named(photos, tmp_path, capsys):
    d, bad = photos
    out = tmp_path / "aligned"
    code, cap = _run(
        [
            "align",
            str(d / "astronaut.jpg"),
            str(d / "mirror.png"),
            str(bad["blank"]),
            str(bad["corrupt"]),
            "--output",
            str(out),
            "--json",
            "--workers",
            "0",
        ],
        capsys,
    )
    assert code == 1  # two bad inputs
    summary = json.loads(cap.out)
    assert (summary["ok"], summary["failed"]) == (2, 2)
    errs = [ln for ln in cap.err.splitlines() if ln.startswith("sam-age align:")]
    assert len(errs) == 2 and any("blank.png" in e and "no face" in e for e in errs)
    assert "Traceback" not in cap.err
    # the crop is the one `age` feeds the model (the same alignment, pixel for pixel)
    _, faces = prepare_faces(d / "astronaut.jpg")
    got = np.asarray(Image.open(out / "astronaut.png"))
    assert got.shape == (256, 256, 3)
    assert np.array_equal(got, np.asarray(faces[0].image))
    lines = [json.loads(ln) for ln in (out / "manifest.jsonl").read_text().splitlines()]
    by_name = {r["name"]: r for r in lines}
    assert by_name["astronaut"]["status"] == "ok" and by_name["astronaut"]["files"] == ["astronaut.png"]
    assert by_name["blank"]["status"] == "no-face" and by_name["corrupt"]["status"] == "failed"

    # resume: a second run skips what is done, redoes nothing, and keeps the files
    before = os.stat(out / "astronaut.png").st_mtime_ns
    code, cap = _run(
        ["align", str(d / "astronaut.jpg"), str(d / "mirror.png"), "--output", str(out), "--json", "--workers", "0"],
        capsys,
    )
    assert code == 0
    assert json.loads(cap.out)["skipped"] == 2
    assert os.stat(out / "astronaut.png").st_mtime_ns == before
    # another request (1024 px) does not replace the crops it did not write
    code, cap = _run(
        ["align", str(d / "astronaut.jpg"), "--output", str(out), "--size", "1024", "--workers", "0"], capsys
    )
    assert code == 1 and "--overwrite" in cap.err
    assert Image.open(out / "astronaut.png").size == (256, 256)


def test_align_all_faces_1024_and_split(photos, tmp_path, capsys):
    d, _ = photos
    out = tmp_path / "data"
    code, cap = _run(
        [
            "align",
            str(d),
            "--output",
            str(out),
            "--all-faces",
            "--size",
            "1024",
            "--split",
            "0.5",
            "--json",
            "--workers",
            "1",
        ],
        capsys,
    )
    assert code == 0, cap.err  # (the bad/ subfolder is not listed: folders are not recursive)
    recs = {r["name"]: r for r in json.loads(cap.out)["inputs"]}
    group = recs["group"]
    n = len(align_faces(group_photo(), all_faces=True))
    assert group["faces"] == n >= 2
    side = split_side("group", 0.5)
    assert [os.path.relpath(f, out) for f in group["files"]] == [f"{side}/group_face{k}.png" for k in range(1, n + 1)]
    assert all(Image.open(f).size == (1024, 1024) for f in group["files"])
    # the split is a function of the name alone: both sides exist for enough names, the share is near F
    sides = [split_side(f"img{i:04d}", 0.05) for i in range(4000)]
    assert 0.04 < sides.count("test") / 4000 < 0.06
    assert split_side("img0001", 0.05) == split_side("img0001", 0.05)
    # train/ and test/ are what `sam-age train` reads: every file there is an aligned crop
    made = sorted(p.relative_to(out).parts[0] for p in out.rglob("*.png"))
    assert set(made) <= {"train", "test"} and len(made) == sum(r["faces"] for r in recs.values())


def test_align_usage_errors(tmp_path, capsys):
    assert main(["align", "sample", "--output", str(tmp_path / "o"), "--split", "1.5"]) == 2
    assert "--split" in capsys.readouterr().err
    assert main(["align", str(tmp_path / "nothing-here.jpg"), "--output", str(tmp_path / "o")]) == 1


@pytest.mark.torchrun
def test_torchrun_two_ranks_split_the_inputs(tmp_path):
    import subprocess
    from pathlib import Path

    from ..helpers.dataset import GOOD, write_dataset
    from ..helpers.paths import torchrun as find_torchrun

    torchrun = find_torchrun()
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    data, out = tmp_path / "in", tmp_path / "out"
    expect = write_dataset(data)
    run = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "sam_age",
            "align",
            str(data),
            "--output",
            str(out),
            "--split",
            "0.3",
            "--workers",
            "0",
        ],
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    n_bad = sum(s != GOOD for s in expect.values())
    assert run.returncode == (1 if n_bad else 0), run.stderr[-3000:]
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    m = {Path(r["input"]).name: r for r in lines}
    assert len(lines) == len(m) == len(expect)  # each input once
    names = sorted(expect)
    assert {n: m[n]["rank"] for n in names} == {n: i % 2 for i, n in enumerate(names)}
    for name, status in expect.items():
        assert m[name]["status"] == status, (name, m[name])
        if status == GOOD:
            (rel,) = m[name]["files"]
            assert rel == f"{split_side(Path(name).stem, 0.3)}/{Path(name).stem}.png"
            assert Image.open(out / rel).size == (256, 256)
    assert f"all 2 ranks: {len(expect) - n_bad} of {len(expect)} inputs done" in run.stdout
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no state left
