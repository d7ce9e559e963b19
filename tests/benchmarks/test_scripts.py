"""Every benchmark script starts: ``--help`` for each (they import their heavy parts after
parsing), and a tiny real run of the scripts whose work is cheap on the 256 px stand-in
(``seam.py`` once failed only after parsing: an import of a helper that had been removed)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.name for p in (REPO / "benchmarks").glob("*.py"))


def _run(args, timeout=600, **kw):
    return subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw
    )


def test_every_script_is_covered():
    assert {"run.py", "layers.py", "seam.py", "video.py", "dataset.py", "convert_rss.py", "heap.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
    proc = _run([REPO / "benchmarks" / script, "--help"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:") and "--" in proc.stdout


def test_gpu_script_parses():
    proc = subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "gpu.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_seam_tiny_run(tmp_path, small_sam_path):
    pytest.importorskip("dlib")
    proc = _run([REPO / "benchmarks" / "seam.py", "--checkpoint", small_sam_path, "--output", tmp_path])
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "seam.json").read_text())
    assert report["cpu"] and report["commit"] and report["photos"]
    portrait = report["photos"][0]
    assert portrait["faces"] == 1
    # pasting the unchanged face back adds (almost) no edge, whatever the mask
    assert all(0.9 <= v["mean"] <= 1.1 for v in portrait["identity"].values()), portrait["identity"]
    assert "Paste-back seam" in (tmp_path / "seam.md").read_text()


def test_convert_rss_tiny_run(tmp_path, small_sam_path):
    out = tmp_path / "convert-rss"
    proc = _run([REPO / "benchmarks" / "convert_rss.py", small_sam_path, "--repeat", "1", "--out", out])
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.with_suffix(".json").read_text())
    (run,) = result["runs"]["after"]
    assert run["peak_rss_bytes"] > 0 and run["output_bytes"] > 0
    assert result["source_bytes"] == Path(small_sam_path).stat().st_size


def test_heap_tiny_run(tmp_path, small_sam_path):
    args = ["--checkpoint", small_sam_path, "--isa", "native", "--repeat", "1", "--rounds", "1", "--output", tmp_path]
    proc = _run([REPO / "benchmarks" / "heap.py", *args])
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "heap.json").read_text())
    (level,) = report["levels"]
    assert [r["mode"] for r in level["runs"]] == ["glibc", "kept"]
    s = level["summary"]
    assert s["glibc"]["median_s_per_call"] > 0 and s["kept"]["median_s_per_call"] > 0
    if s["kept"]["applied"]:  # glibc: the kept heap takes (almost) no page faults per call
        assert s["kept"]["minflt_per_call"] < s["glibc"]["minflt_per_call"] / 10
    assert "kept / glibc" in (tmp_path / "heap.md").read_text()
