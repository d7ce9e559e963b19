"""Issue 26, the first minutes of a new user: stage lines before the first image, a
progress bar whose total is right (read through a pseudo-terminal), labelled strips and
animations, one spelling of ``sample``, ``export``'s flags as every command's."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sam_age.cli.main import build_parser, main
from sam_age.render import label_band, make_strip, save_image

pytest.importorskip("dlib")


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


def test_export_takes_checkpoint_path_and_defaults_its_output(small_sam_path, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnx")
    parser = build_parser()
    args = parser.parse_args(["export", "--checkpoint_path", "x.pt"])
    assert args.checkpoint == "x.pt" and args.output is None  # -> exported-onnx, after --format
    monkeypatch.chdir(tmp_path)
    assert (
        main(["export", "--checkpoint_path", str(small_sam_path), "--networks", "age_encoder", "--no-check", "--quiet"])
        == 0
    )
    assert (tmp_path / "exported-onnx" / "manifest.json").is_file()
    assert json.loads((tmp_path / "exported-onnx" / "manifest.json").read_text())


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
