"""``sam-age age`` as a dataset run in one process: the manifest, resume after an
interruption (issue 17: done inputs are skipped and count as done), --format, --layout.
256 px stand-in SAM, one age: the faces are noise, the files and records are what count."""

from __future__ import annotations

import json

import pytest
from PIL import Image

import sam_age.dataset.manifest as manifest_mod
import sam_age.dataset.runner as runner_mod
from sam_age.cli.main import main
from sam_age.fileio import OWN_MARKER

from ..helpers.dataset import write_dataset
from ..helpers.output import age_args

pytest.importorskip("dlib")


def _manifest(out):
    return {json.loads(x)["name"]: json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()}


def _mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and ".sam-age" not in p.parts}


def _age(small_sam_path, out, *inputs, extra=()):
    return main(age_args(small_sam_path, out, *inputs, extra=["--batch-size", "1", *extra]))


def test_rerun_after_interrupt_skips_done_inputs_and_exits_0(small_sam_path, tmp_path, capsys, monkeypatch):
    data = tmp_path / "in"
    write_dataset(data)
    inputs = [data / "a.jpg", data / "b.jpg"]
    out = tmp_path / "out"
    # Ctrl-C while the second photo's batch is being aged
    real = runner_mod._do_batch
    calls = []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(runner_mod, "_do_batch", interrupted)
    assert _age(small_sam_path, out, *inputs) == 130
    monkeypatch.setattr(runner_mod, "_do_batch", real)
    capsys.readouterr()
    assert (out / "a" / "strip.png").is_file() and not (out / "b").exists()
    assert _manifest(out)["a"]["status"] == "ok"
    first = _mtimes(out / "a")

    # the same request again: a is skipped and counts as done, b is done, exit 0
    assert _age(small_sam_path, out, *inputs, extra=["--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] == 2 and summary["failed"] == 0 and summary["skipped"] == 1
    rec = {r["name"]: r for r in summary["inputs"]}
    assert rec["a"].get("skipped") and not rec["b"].get("skipped")
    assert sorted(rec["a"]["files"]) == sorted(str(p) for p in first if p.name != OWN_MARKER)  # (+ its marker)
    assert _mtimes(out / "a") == first  # not redone
    m = _manifest(out)
    assert [m[n]["status"] for n in "ab"] == ["ok"] * 2 and m["a"]["files"] == ["a/age_030.png", "a/strip.png"]
    assert not (out / ".sam-age").exists()

    # another request into the same folder is refused as before (and leaves the record alone)
    before = _mtimes(out)
    code = main(
        [
            "age",
            str(inputs[0]),
            "--checkpoint",
            str(small_sam_path),
            "--ages",
            "60",
            "--output",
            str(out),
            "--device",
            "cpu",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "already exists" in err[0] and "--overwrite" in err[0]
    assert _mtimes(out) == before and _manifest(out)["a"]["request"]["ages"] == ["30"]


def test_a_result_placed_but_not_recorded_is_redone_not_refused(small_sam_path, tmp_path, capsys, monkeypatch):
    """Killed between moving NAME/ into place and committing its line: the 'started' line
    says the folder is this request's own, so the next run replaces it."""
    data = tmp_path / "in"
    write_dataset(data)
    out = tmp_path / "out"
    real = manifest_mod.PartWriter.commit
    calls = []

    def commit(self):
        calls.append(1)
        if len(calls) == 2:  # the batch's final lines: lost
            self._pending.clear()
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(manifest_mod.PartWriter, "commit", commit)
    jpg = ["--format", "jpg"]
    assert _age(small_sam_path, out, data / "d.jpg", extra=jpg) == 130
    monkeypatch.setattr(manifest_mod.PartWriter, "commit", real)
    assert (out / "d" / "strip.jpg").is_file()
    assert _manifest(out)["d"]["status"] == "interrupted"
    capsys.readouterr()
    assert _age(small_sam_path, out, data / "d.jpg", extra=jpg) == 0
    assert _manifest(out)["d"]["status"] == "ok"
    assert "1 of 1 inputs done" in capsys.readouterr().out
    for name in ("age_030.jpg", "strip.jpg"):  # --format jpg, per-input layout
        with Image.open(out / "d" / name) as im:
            assert im.format == "JPEG"


def test_flat_layout_and_formats(small_sam_path, tmp_path, capsys):
    data = tmp_path / "in"
    expect = write_dataset(data)
    out = tmp_path / "flat"
    inputs = [data / "a.jpg", data / "e_truncated.jpg", data / "f_gradient.png", "sample"]
    assert _age(small_sam_path, out, *inputs, extra=["--layout", "flat", "--format", "webp", "--all-faces"]) == 1
    err = capsys.readouterr().err
    assert "e_truncated.jpg: " in err and "f_gradient.png: no face" in err
    files = sorted(p.name for p in out.iterdir())
    faces = [f for f in files if f.startswith("astronaut_face")]
    assert "a_face1_age_030.webp" in files and len(faces) >= 2 and "astronaut_face2_age_030.webp" in faces
    assert all(not (out / f).is_dir() for f in files)  # flat: no folders, no strips
    assert not [f for f in files if "strip" in f]
    for f in files:
        if f.endswith(".webp"):
            with Image.open(out / f) as im:
                assert im.format == "WEBP" and im.size == (256, 256)
    m = _manifest(out)
    assert m["astronaut"]["files"] == sorted(faces) and m["astronaut"]["faces"] == len(faces)
    assert {m[n]["status"] for n in ("e_truncated", "f_gradient")} == {
        expect["e_truncated.jpg"],
        expect["f_gradient.png"],
    }
    assert m["a"]["request"]["layout"] == "flat" and m["a"]["request"]["format"] == "webp"


def test_an_output_that_cannot_hold_results_is_a_usage_error(small_sam_path, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    data = tmp_path / "in"
    write_dataset(data)
    assert _age(small_sam_path, afile, data / "a.jpg") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--output" in err[0] and str(afile) in err[0]
    assert afile.read_text() == "mine"


def test_worker_processes_leave_a_small_machine_to_the_model():
    from sam_age.dataset.runner import default_workers
    from sam_age.launch import Ranks

    one = Ranks()
    assert default_workers(one, n_batches=1, cpus=64) == 0  # one photo: nothing to read ahead
    assert default_workers(one, n_batches=50, cpus=2) == 0  # 2 cores: the model keeps both
    assert default_workers(one, n_batches=50, cpus=3) == 0
    assert default_workers(one, n_batches=50, cpus=8) == 2  # a quarter of the cores
    assert default_workers(one, n_batches=3, cpus=64) == 2  # no more than batches to read ahead
    assert default_workers(one, n_batches=50, cpus=64) == 8
    assert default_workers(one, n_batches=50, cpus=8, device="cuda:0") == 7  # beside a GPU: all but one
