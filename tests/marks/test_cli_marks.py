"""Every file ``sam-age age`` and ``mix`` write says it was edited by AI (and with
--sign-cert, carries Content Credentials); ``--no-mark`` writes the same pixels unmarked
and says so in one line."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from sam_age.cli.main import main
from sam_age.marks import COMPOSITE, GENERATED, read_marks

pytest.importorskip("dlib")


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured


@pytest.fixture(scope="module")
def dex(standin):
    return str(standin("dex_age_classifier"))


def test_age_outputs_are_marked_per_kind_and_age(small_sam_path, dex, tmp_path, capsys):
    out = tmp_path / "out"
    code, cap = _run(
        capsys,
        "age",
        "sample",
        "--checkpoint",
        str(small_sam_path),
        "--ages",
        "30,+10",
        "--age_predictor_weights",
        dex,
        "--output",
        str(out),
        "--gif",
        "--frames-per-age",
        "1",
        "--paste-back",
        "--format",
        "jpg",
        "--json",
        "--device",
        "cpu",
    )
    assert code == 0, cap.err
    base = out / "astronaut"
    asked = {}
    for f in sorted(p for p in base.iterdir() if p.is_file() and not p.name.startswith(".")):
        rec = read_marks(f)
        assert rec["marked"], f
        want = COMPOSITE if f.name.startswith("pasted_") else GENERATED
        assert rec["digital_source_type"] == want, f
        asked[f.name] = rec["xmp"]["samage:AgeRequested"]
    assert asked["age_030.jpg"] == "30" and asked["pasted_030.jpg"] == "30"
    assert asked["age_+10.jpg"].startswith("+10 (")  # the relative age, and the age it became
    assert asked["strip.jpg"] == asked["animation.gif"] == "30,+10"
    manifest = [json.loads(ln) for ln in (out / "manifest.jsonl").read_text().splitlines()]
    assert manifest[-1]["request"]["mark"] == "xmp"
    if shutil.which("exiftool"):  # a reader nobody here wrote
        tags = json.loads(
            subprocess.run(
                ["exiftool", "-j", "-G1", str(base / "pasted_030.jpg"), str(base / "animation.gif")],
                capture_output=True,
                text=True,
            ).stdout
        )
        assert [t["XMP-iptcExt:DigitalSourceType"] for t in tags] == [COMPOSITE, GENERATED]

    # --no-mark: one line says so; the same pixels, no mark; a new request (not skipped as done)
    plain = tmp_path / "plain"
    code, cap = _run(
        capsys,
        "age",
        "sample",
        "--checkpoint",
        str(small_sam_path),
        "--ages",
        "30",
        "--output",
        str(plain),
        "--paste-back",
        "--format",
        "png",
        "--quiet",
        "--device",
        "cpu",
        "--no-mark",
    )
    assert code == 0, cap.err
    lines = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--no-mark" in lines[0] and "edited by AI" in lines[0]
    marked = tmp_path / "marked"
    code, cap = _run(
        capsys,
        "age",
        "sample",
        "--checkpoint",
        str(small_sam_path),
        "--ages",
        "30",
        "--output",
        str(marked),
        "--paste-back",
        "--format",
        "png",
        "--quiet",
        "--device",
        "cpu",
    )
    assert code == 0 and "--no-mark" not in cap.err
    for name in ("age_030.png", "strip.png", "pasted_030.png"):
        a, b = plain / "astronaut" / name, marked / "astronaut" / name
        assert not read_marks(a)["marked"] and read_marks(b)["marked"]
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), name
    # the request records the marking: a run with marks does not skip the unmarked results
    code, cap = _run(
        capsys,
        "age",
        "sample",
        "--checkpoint",
        str(small_sam_path),
        "--ages",
        "30",
        "--output",
        str(plain),
        "--paste-back",
        "--format",
        "png",
        "--quiet",
        "--device",
        "cpu",
    )
    assert code == 1 and "already exists" in cap.err


def test_age_signed_with_c2pa(small_sam_path, tmp_path, capsys):
    c2pa = pytest.importorskip("c2pa")
    from sam_age.pipeline import sample_path

    from ..helpers.certs import make_ca

    ca = make_ca(tmp_path / "ca", "ec", "sec1")
    out = tmp_path / "out"
    code, cap = _run(
        capsys,
        "age",
        "sample",
        "--checkpoint",
        str(small_sam_path),
        "--ages",
        "60",
        "--output",
        str(out),
        "--paste-back",
        "--quiet",
        "--device",
        "cpu",
        "--sign-cert",
        str(ca.chain),
        "--sign-key",
        str(ca.key),
    )
    assert code == 0, cap.err
    ctx = c2pa.Context(
        c2pa.Settings.from_dict({"trust": {"user_anchors": ca.root.read_text()}, "verify": {"ocsp_fetch": False}})
    )
    for name, source in (("age_060.png", GENERATED), ("pasted_060.png", COMPOSITE), ("strip.png", GENERATED)):
        with c2pa.Reader(str(out / "astronaut" / name), context=ctx) as r:
            store = json.loads(r.json())
            assert r.get_validation_state() == "Trusted", store.get("validation_status")
        active = store["manifests"][store["active_manifest"]]
        edited = [
            a
            for x in active["assertions"]
            if x["label"].startswith("c2pa.actions")
            for a in x["data"]["actions"]
            if a["action"] == "c2pa.edited"
        ]
        assert edited[0]["digitalSourceType"] == source
        assert active["ingredients"][0]["title"] == sample_path().name
    manifest = json.loads((out / "manifest.jsonl").read_text().splitlines()[-1])
    assert manifest["request"]["mark"] == "c2pa"


def test_mix_outputs_are_marked(small_sam_path, tmp_path, capsys):
    out = tmp_path / "mix"
    code, cap = _run(
        capsys,
        "mix",
        "sample",
        "--checkpoint",
        str(small_sam_path),
        "--ages",
        "20,70",
        "--n-random",
        "1",
        "--output",
        str(out),
        "--quiet",
        "--device",
        "cpu",
    )
    assert code == 0, cap.err
    files = sorted((out / "astronaut").rglob("*.png"))
    assert len(files) == 3
    recs = {f.relative_to(out / "astronaut").as_posix(): read_marks(f) for f in files}
    assert all(r["digital_source_type"] == GENERATED for r in recs.values())
    assert recs["random_0/age_070.png"]["xmp"]["samage:AgeRequested"] == "70 (style random_0)"
    assert recs["grid.png"]["xmp"]["samage:AgeRequested"] == "20,70"
