"""``--report``: the age and identity each output reached, the thresholds, the fallback."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from sam_age.cli.main import main
from sam_age.identity import ARCFACE_POINTS_112, similarity_transform, warp_to_112
from sam_age.report import OutputReport, check_output, report_notes

pytest.importorskip("dlib")


def test_similarity_transform_and_warp():
    # a known similarity (scale 2, 30 degrees, shift) is recovered exactly from five points
    a = np.deg2rad(30)
    m = np.array([[2 * np.cos(a), -2 * np.sin(a), 5.0], [2 * np.sin(a), 2 * np.cos(a), -3.0]])
    src = ARCFACE_POINTS_112 / 2
    dst = src @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(similarity_transform(src, dst), m, atol=1e-9)
    # the identity transform reads the image as it is (pixel centres kept); outside is black
    img = torch.rand(1, 3, 112, 112) * 2 - 1
    eye = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    torch.testing.assert_close(warp_to_112(img, [eye]), img, atol=1e-4, rtol=0)
    shifted = warp_to_112(img, [np.array([[1.0, 0, 10], [0, 1.0, 0]])])  # content moves 10 px right
    torch.testing.assert_close(shifted[..., 10:], img[..., :-10], atol=1e-4, rtol=0)
    assert torch.all(shifted[..., :9] == -1)


def test_checks_and_captions():
    r = check_output(OutputReport(70.0, 68.4, 0.6213, "curricularface"), max_age_error=5, min_identity=0.5)
    assert r.check == "ok" and r.caption == "looks 68 for 70 asked; identity 0.62"
    r = check_output(OutputReport(70.0, 52.0, 0.3, "ir_se50"), max_age_error=5, min_identity=0.5)
    assert r.check == "failed" and len(r.misses) == 2
    face = type("F", (), {"report": [r]})()
    (line,) = report_notes([face])
    assert line.startswith("check failed: age 70:") and "--max-age-error 5" in line and "--min-identity" in line
    plain = OutputReport(30.0, 31.0, 0.9, "ir_se50").to_json()
    assert "check" not in plain and plain["caption"] == "looks 31 for 30 asked; identity 0.90"
    # the caption rounds the exact value, the record keeps 4 places: 0.85504 is 0.86 and 0.855
    edge = OutputReport(80.0, 10.5049, 0.85504, "curricularface").to_json()
    assert edge["caption"] == "looks 11 for 80 asked; identity 0.86" and edge["identity"] == 0.855


def _age(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured


def test_age_report_json_manifest_and_failed_checks(small_sam_path, standin, curricular_face_path, tmp_path, capsys):
    out = tmp_path / "out"
    dex = str(standin("dex_age_classifier"))
    code, cap = _age(
        [
            "age",
            "sample",
            "--checkpoint",
            str(small_sam_path),
            "--ages",
            "20,80",
            "--output",
            str(out),
            "--json",
            "--device",
            "cpu",
            "--report",
            "--age_predictor_weights",
            dex,
            "--curricular_face_weights",
            str(curricular_face_path),
            "--max-age-error",
            "0.01",
            "--min-identity",
            "-1",
        ],
        capsys,
    )
    assert code == 0, cap.err  # a missed check is reported, never a failure
    rec = json.loads(cap.out)["inputs"][0]
    (face,) = rec["report"]
    assert [o["age"] for o in face] == [20.0, 80.0]
    for o in face:
        assert o["identity_model"] == "curricularface"
        assert 0 <= o["achieved_age"] <= 100 and -1 - 1e-4 <= o["identity"] <= 1 + 1e-4
        # the caption rounds the exact numbers; the record holds them rounded to 2 and 4
        # places, so rebuilding the caption from the record can differ in the last digit
        # (the exact 0.85504 is "0.86" in the caption and 0.855 in the record, which
        # formats as "0.85"): compare the numbers, each within its rounding
        m = re.fullmatch(r"looks (\d+) for (\S+) asked; identity (-?[\d.]+)", o["caption"])
        assert m, o["caption"]
        assert abs(int(m[1]) - o["achieved_age"]) <= 0.5 + 0.005
        assert float(m[2]) == o["age"]
        assert abs(float(m[3]) - o["identity"]) <= 0.005 + 0.00005
        assert o["check"] == "failed"  # nothing lands within 0.01 years of the age asked
    failed = [ln for ln in cap.err.splitlines() if "check failed" in ln]
    assert len(failed) == 2 and all("--max-age-error 0.01" in ln for ln in failed)
    line = json.loads((out / "manifest.jsonl").read_text().splitlines()[-1])
    assert line["report"] == rec["report"]
    # the achieved age is what `sam-age estimate` says of the output file
    code, cap = _age(
        [
            "estimate",
            str(out / "astronaut" / "age_080.png"),
            "--no-align",
            "--json",
            "--age_predictor_weights",
            dex,
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert code == 0, cap.err
    assert json.loads(cap.out)["inputs"][0]["faces"][0]["age"] == pytest.approx(face[1]["achieved_age"], abs=0.05)


def test_report_falls_back_to_ir_se50_and_says_so(small_sam_path, standin, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SAM_AGE_OFFLINE", "1")
    monkeypatch.setenv("SAM_AGE_HOME", str(tmp_path / "empty-cache"))
    code, cap = _age(
        [
            "age",
            "sample",
            "--checkpoint",
            str(small_sam_path),
            "--ages",
            "50",
            "--output",
            str(tmp_path / "o"),
            "--json",
            "--device",
            "cpu",
            "--report",
            "--age_predictor_weights",
            str(standin("dex_age_classifier")),
            "--ir_se50_weights",
            str(standin("model_ir_se50")),
        ],
        capsys,
    )
    assert code == 0, cap.err
    assert "identity measured with IR-SE-50" in cap.err
    ((o,),) = json.loads(cap.out)["inputs"][0]["report"]
    assert o["identity_model"] == "ir_se50" and "check" not in o
    # a cached pipeline does not carry --report into the next run
    code, cap = _age(
        [
            "age",
            "sample",
            "--checkpoint",
            str(small_sam_path),
            "--ages",
            "50",
            "--output",
            str(tmp_path / "o2"),
            "--json",
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert code == 0 and "report" not in json.loads(cap.out)["inputs"][0]
    # bad thresholds: exit 2 before any work
    assert (
        main(
            [
                "age",
                "sample",
                "--checkpoint",
                str(small_sam_path),
                "--output",
                str(tmp_path / "o3"),
                "--min-identity",
                "2",
            ]
        )
        == 2
    )


def test_pipeline_report_true(small_sam_path, standin):
    from sam_age import AgePipeline
    from sam_age.identity import IdentityNet

    ident = IdentityNet.from_weights(standin("model_ir_se50"), "ir_se50")
    pipe = AgePipeline.from_pretrained(
        small_sam_path, device="cpu", dtype="float32", age_predictor=standin("dex_age_classifier"), identity=ident
    )
    from sam_age.pipeline import sample_path

    res = pipe(sample_path(), [30], report=True)
    (r,) = res.faces[0].report
    assert r.identity_model == "ir_se50" and r.crop == "fixed" and r.age == 30.0
    # the same numbers as measuring by hand: DEX on the output, IR-SE-50 cosine on the training crop
    assert r.achieved_age == pytest.approx(pipe.estimator.estimate_aligned([res.faces[0].images[0]])[0], abs=1e-4)
    from sam_age.images import to_tensor

    feats = ident.features(torch.stack([to_tensor(res.faces[0].aligned), to_tensor(res.faces[0].images[0])]))
    assert r.identity == pytest.approx(float(feats[0] @ feats[1]), abs=1e-5)
    assert pipe(sample_path(), [30]).faces[0].report is None  # off unless asked


def test_video_report_per_track_and_flicker(small_sam_path, standin, tmp_path, capsys, monkeypatch):
    pytest.importorskip("imageio_ffmpeg")
    from PIL import Image

    from sam_age.pipeline import sample_path

    from ..helpers.clips import camera_frames, smooth_path, write_clip

    n = 6
    clip = write_clip(
        camera_frames(Image.open(sample_path()), n, (256, 256), (384, 384), smooth_path(n, (32, 0)), jpeg_quality=90),
        tmp_path / "clip.mp4",
        (256, 256),
    )
    monkeypatch.setenv("SAM_AGE_OFFLINE", "1")
    monkeypatch.setenv("SAM_AGE_HOME", str(tmp_path / "empty-cache"))
    code, cap = _age(
        [
            "video",
            str(clip),
            "--checkpoint",
            str(small_sam_path),
            "--ages",
            "30,70",
            "--output",
            str(tmp_path / "v"),
            "--json",
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--report",
            "--age_predictor_weights",
            str(standin("dex_age_classifier")),
            "--ir_se50_weights",
            str(standin("model_ir_se50")),
            "--min-identity",
            "1.0",
        ],
        capsys,
    )
    assert code == 0, cap.err
    rec = json.loads(cap.out)["inputs"][0]
    (track,) = rec["report"]
    assert track["identity_model"] == "ir_se50" and track["sample_every"] == 1
    assert [o["output"] for o in track["outputs"]] == ["clip_age030.mp4", "clip_age070.mp4"]
    for o, asked in zip(track["outputs"], (30, 70)):
        assert o["frames_sampled"] == n
        assert o["age_asked"] == {"mean": asked, "min": asked, "max": asked}
        a = o["achieved_age"]
        assert 0 <= a["min"] <= a["mean"] <= a["max"] <= 100
        assert -1 - 1e-4 <= o["identity"]["min"] <= o["identity"]["mean"] <= 1 + 1e-4
        f = o["flicker"]
        assert (
            f["inside"] > 0 and f["outside"] > 0 and f["ratio"] == pytest.approx(f["inside"] / f["outside"], rel=1e-3)
        )
        assert o["check"] == "failed"  # identity 1.0 is out of reach
    assert track["input_flicker"]["inside"] > 0
    assert sum("check failed: track 1" in ln for ln in cap.err.splitlines()) == 2
