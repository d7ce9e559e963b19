"""``sam-age evaluate`` on stand-in weights: the table, the summary, the plots, bad data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from sam_age.cli.main import main
from sam_age.evaluation import CSV_COLUMNS, Report, Row, summarize, write_report

from ..helpers.output import lines as _lines


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Two aligned 256 px crops (the sample's face, and its mirror) and one corrupt file."""
    from sam_age.pipeline import sample_path

    d = tmp_path_factory.mktemp("faces")
    face = Image.open(sample_path()).convert("RGB").crop((128, 20, 384, 276))
    face.save(d / "a.png")
    face.transpose(Image.FLIP_LEFT_RIGHT).save(d / "b.jpg")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return d


def test_evaluate_writes_table_summary_plots_and_names_the_bad_file(
    small_sam_path, standin, data_dir, tmp_path, capsys
):
    out = tmp_path / "eval"
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(small_sam_path),
            "--data",
            str(data_dir),
            "--ages",
            "20,80",
            "--output",
            str(out),
            "--no-align",
            "--device",
            "cpu",
            "--ir_se50_weights",
            str(standin("model_ir_se50")),
            "--age_predictor_weights",
            str(standin("dex_age_classifier")),
            "--fid",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1  # one input failed
    bad_lines = [line for line in captured.err.splitlines() if "broken.png" in line]
    assert len(bad_lines) == 1 and "Traceback" not in captured.err
    assert "FID skipped" in captured.err  # no Inception weights here: said, then went on

    assert {p.name for p in out.iterdir()} >= {
        "results.csv",
        "summary.json",
        "age_accuracy.png",
        "identity_vs_age_gap.png",
    }
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert sorted((r["image"], float(r["target_age"])) for r in rows) == [
        ("a.png", 20.0),
        ("a.png", 80.0),
        ("b.jpg", 20.0),
        ("b.jpg", 80.0),
    ]
    for r in rows:
        predicted, target = float(r["predicted_age"]), float(r["target_age"])
        assert 0.0 <= predicted <= 100.0
        assert float(r["age_error"]) == pytest.approx(abs(predicted - target), abs=1e-3)
        assert -1.0 - 1e-4 <= float(r["identity_similarity"]) <= 1.0 + 1e-4
        assert 0.0 <= float(r["input_predicted_age"]) <= 100.0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"inputs": 3, "succeeded": 2, "failed": 1, "faces": 2, "rows": 4}
    assert [Path(f["image"]).name for f in summary["failed"]] == ["broken.png"]
    assert set(summary["per_target_age"]) == {"20", "80"}
    assert all(s["n"] == 2 for s in summary["per_target_age"].values())
    assert summary["overall"]["mean_age_error"] == pytest.approx(sum(float(r["age_error"]) for r in rows) / 4, abs=1e-3)
    assert summary["fid"]["per_target_age"] is None and "skipped" in summary["fid"]["note"]
    for png in ("age_accuracy.png", "identity_vs_age_gap.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.width > 300
    assert "overall" in captured.out


def test_usage_errors_exit_2_before_loading_anything(tmp_path, capsys):
    assert (
        main(["evaluate", "--checkpoint", "x.pt", "--data", str(tmp_path / "nope"), "--output", str(tmp_path / "o")])
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert (
        main(["evaluate", "--checkpoint", "x.pt", "--data", str(tmp_path / "empty"), "--output", str(tmp_path / "o")])
        == 2
    )
    assert "no images" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                "x.pt",
                "--data",
                str(tmp_path),
                "--ages",
                "0:200:50",
                "--output",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "0..100" in capsys.readouterr().err
    # Results already there are not overwritten.
    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (64, 64)).save(data / "x.png")
    out = tmp_path / "done"
    out.mkdir()
    (out / "results.csv").write_text("keep me\n")
    assert main(["evaluate", "--checkpoint", "x.pt", "--data", str(data), "--output", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "results.csv").read_text() == "keep me\n"
    # A checkpoint that does not exist is a checkpoint error (2), not a crash.
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(tmp_path / "missing.pt"),
                "--data",
                str(data),
                "--output",
                str(tmp_path / "o2"),
                "--ir_se50_weights",
                str(data / "x.png"),
                "--age_predictor_weights",
                str(data / "x.png"),
            ]
        )
        == 2
    )


def test_summary_and_plots_from_rows():
    rows = [
        Row("a.png", 0, t, p, abs(p - t), p - t, s, 30.0, abs(t - 30.0))
        for t, p, s in [(0, 10, 0.9), (50, 45, 0.8), (0, 4, 0.7), (50, 58, 0.6)]
    ]
    report = Report(ages=[0.0, 50.0], rows=rows, n_inputs=3, failures=[{"image": "c.png", "reason": "no face found"}])
    s = summarize(report)
    assert s["per_target_age"]["0"]["mean_age_error"] == pytest.approx(7.0)
    assert s["per_target_age"]["50"]["mean_signed_age_error"] == pytest.approx(1.5)
    assert s["per_target_age"]["50"]["mean_identity_similarity"] == pytest.approx(0.7)
    assert s["overall"]["n"] == 4 and s["counts"]["failed"] == 1


def test_empty_report_still_writes_everything(tmp_path):
    paths = write_report(Report(ages=[10.0], n_inputs=1, failures=[{"image": "x.png", "reason": "bad"}]), tmp_path)
    assert all(p.exists() for p in paths.values())
    assert (tmp_path / "results.csv").read_text().strip() == ",".join(CSV_COLUMNS)
    assert json.loads((tmp_path / "summary.json").read_text())["per_target_age"]["10"]["n"] == 0


class _FakePipeline:
    """Reads with the package's reader (so bad files fail as in real use), 'ages' nothing."""

    def __call__(self, path, ages, all_faces=False, align=True):
        from types import SimpleNamespace

        from sam_age.images import read_image

        face = read_image(path).resize((256, 256))
        return SimpleNamespace(faces=[SimpleNamespace(aligned=face, images=[face] * len(ages))])


class _FakeNets:
    def predict_ages(self, x):
        return (x.mean(dim=(1, 2, 3)) + 1) * 50

    def features(self, x):
        import torch.nn.functional as F

        return F.normalize(x.flatten(1)[:, :16], dim=1)


def test_fid_runs_per_age_when_a_backend_is_present(data_dir, tmp_path, monkeypatch):
    import sys
    import types

    from sam_age import evaluation

    calls = []
    fake = types.ModuleType("torch_fidelity")

    def calculate_metrics(input1, input2, **kwargs):
        calls.append((Path(input1).name, Path(input2).name, len(list(Path(input1).iterdir()))))
        return {"frechet_inception_distance": 12.5}

    fake.calculate_metrics = calculate_metrics
    monkeypatch.setitem(sys.modules, "torch_fidelity", fake)
    monkeypatch.setattr(evaluation, "fid_backend", lambda: ("torch-fidelity", None))
    evaluator = evaluation.Evaluator(_FakePipeline(), _FakeNets(), _FakeNets())
    errors = []
    report = evaluation.run_evaluation(
        evaluator,
        sorted(data_dir.iterdir()),
        [10, 60],
        tmp_path,
        fid=True,
        on_error=lambda name, msg: errors.append(name),
    )
    assert [Path(e).name for e in errors] == ["broken.png"]
    assert calls == [("age_10", "inputs", 2), ("age_60", "inputs", 2)]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["fid"]["per_target_age"] == {"10": 12.5, "60": 12.5}
    # Identical input and output: identity 1, and the fake DEX reads the same age for both.
    assert all(abs(r.identity_similarity - 1) < 1e-5 for r in report.rows)
    assert all(abs(r.predicted_age - r.input_predicted_age) < 1e-4 for r in report.rows)


def test_evaluate_with_curricularface_names_the_network(
    small_sam_path, standin, curricular_face_path, data_dir, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "eval-cf"
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(small_sam_path),
            "--data",
            str(data_dir),
            "--ages",
            "30",
            "--output",
            str(out),
            "--no-align",
            "--device",
            "cpu",
            "--curricular_face_weights",
            str(curricular_face_path),
            "--age_predictor_weights",
            str(standin("dex_age_classifier")),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1  # broken.png
    summary = json.loads((out / "summary.json").read_text())
    assert summary["identity_model"] == {"name": "curricularface", "network": "CurricularFace IR-101"}
    assert summary["counts"]["rows"] == 2
    assert "CurricularFace IR-101" in captured.out
    with open(out / "results.csv", newline="") as f:
        assert all(-1.0 - 1e-4 <= float(r["identity_similarity"]) <= 1.0 + 1e-4 for r in csv.DictReader(f))
    # --id-model curricularface is refused when its weights cannot be had (offline, empty cache): exit 2
    monkeypatch.setenv("SAM_AGE_OFFLINE", "1")
    monkeypatch.setenv("SAM_AGE_HOME", str(tmp_path / "empty-cache"))
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(small_sam_path),
                "--data",
                str(data_dir),
                "--output",
                str(tmp_path / "o3"),
                "--id-model",
                "curricularface",
            ]
        )
        == 2
    )
    assert "CurricularFace_Backbone.pth" in capsys.readouterr().err


def test_evaluate_missing_data_says_it_does_not_exist(tmp_path, capsys, face):
    assert main(["evaluate", "--data", str(tmp_path / "missing"), "--output", str(tmp_path / "o")]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "does not exist" in err[0] and "missing" in err[0], err
    assert main(["evaluate", "--data", str(face), "--output", str(tmp_path / "o")]) == 2
    assert "is a file" in capsys.readouterr().err
