"""``torchrun --nproc_per_node 2 -m sam_age age`` (2 CPU processes) on six photos with a
truncated file and a photo without a face among them: each input done exactly once, one
manifest line per input; a rank killed with SIGKILL mid-run, then the command again: the
rest done, nothing done twice, no half-written file. 256 px stand-in SAM, one age."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from sam_age.fileio import OWN_MARKER

from ..helpers.dataset import GOOD, write_dataset
from ..helpers.output import age_args
from ..helpers.paths import torchrun

pytest.importorskip("dlib")


pytestmark = [pytest.mark.torchrun, pytest.mark.skipif(torchrun() is None, reason="torchrun is not installed")]


def _command(data, out, weights):
    return [
        torchrun(),
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "sam_age",
        *age_args(weights, out, data, extra=["--batch-size", "1", "--workers", "1"]),
    ]


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def _manifest(out):
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == len({r["input"] for r in lines})  # one line per input
    return {Path(r["input"]).name: r for r in lines}


def _part_records(out):
    recs = []
    for part in sorted((out / ".sam-age" / "parts").glob("*.jsonl")):
        for line in part.read_text().splitlines(keepends=True):
            if line.endswith("\n"):
                recs.append(json.loads(line))
    return recs


def _check_results(out, expect, m):
    for name, status in expect.items():
        assert m[name]["status"] == status, (name, m[name])
        stem = Path(name).stem
        if status == GOOD:
            assert m[name]["files"] == [f"{stem}/age_030.png", f"{stem}/strip.png"]
            for rel in m[name]["files"]:
                with Image.open(out / rel) as im:
                    im.load()  # whole
        else:
            assert not (out / stem).exists() and m[name]["reason"]
    results = {p.name for p in out.iterdir()}
    assert results == {Path(n).stem for n, s in expect.items() if s == GOOD} | {"manifest.jsonl"}
    assert not [
        p for p in out.rglob("*") if p.name.startswith(".") and p.name != OWN_MARKER
    ]  # no temporaries, no state left


@pytest.mark.timeout(1800)  # torchrun subprocesses: each may take 900 s on a loaded machine
def test_two_ranks_split_the_inputs(small_sam_path, tmp_path):
    data, out = tmp_path / "in", tmp_path / "out"
    expect = write_dataset(data)
    run = subprocess.run(_command(data, out, small_sam_path), env=_env(), capture_output=True, text=True, timeout=900)
    assert run.returncode == 1, run.stderr[-3000:]  # two inputs failed
    m = _manifest(out)
    _check_results(out, expect, m)
    # the split: sorted listing dealt round-robin, each input once
    names = sorted(expect)
    assert {n: m[n]["rank"] for n in names} == {n: i % 2 for i, n in enumerate(names)}
    assert "all 2 ranks: 4 of 6 inputs done, 2 failed" in run.stdout
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("sam-age age: ")]
    assert len(errors) == 2 and "already exists" not in run.stderr


@pytest.mark.timeout(1800)
def test_a_rank_killed_mid_run_then_run_again(small_sam_path, tmp_path):
    data, out = tmp_path / "in", tmp_path / "out"
    expect = write_dataset(data)
    proc = subprocess.Popen(
        _command(data, out, small_sam_path), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    victim = None
    try:
        deadline = time.time() + 600
        while victim is None and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
            parts = out / ".sam-age" / "parts"
            for part in parts.glob("*.jsonl") if parts.is_dir() else []:
                try:
                    text = part.read_text()
                except FileNotFoundError:
                    continue
                if '"status":"ok"' in text:  # its first face is done: kill it
                    victim = int(part.name.split("-")[-3])  # HOST-PID-rRANK-ID.jsonl
                    os.kill(victim, signal.SIGKILL)
                    break
        assert victim is not None, "no rank finished a face"
        proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0
    done_before = {Path(r["input"]).name: r for r in _part_records(out) if r["status"] == "ok"}
    assert 1 <= len(done_before) < 4
    first_files = {p: p.stat().st_mtime_ns for n in done_before for p in (out / Path(n).stem).iterdir()}
    for folder in (p for p in out.iterdir() if p.is_dir() and p.name != ".sam-age"):
        assert sorted(x.name for x in folder.iterdir()) == [OWN_MARKER, "age_030.png", "strip.png"]  # whole or absent

    run = subprocess.run(_command(data, out, small_sam_path), env=_env(), capture_output=True, text=True, timeout=900)
    assert run.returncode == 1, run.stderr[-3000:]
    m = _manifest(out)
    _check_results(out, expect, m)
    for name, rec in done_before.items():  # not done twice
        assert m[name]["time"] == rec["time"]
    assert {p: p.stat().st_mtime_ns for p in first_files} == first_files
    assert f"({len(done_before)} done before)" in run.stdout
    assert "already exists" not in run.stderr
