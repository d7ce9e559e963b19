"""The benchmark's --quick mode runs end to end and writes its JSON and table."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(1800)  # the benchmark subprocess alone may take 900 s
def test_quick_benchmark(tmp_path, small_sam_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--quick",
            "--device",
            "cpu",
            "--checkpoint",
            str(small_sam_path),
            "--cases",
            "ours,original",
            "--output",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "cpu-quick.json").read_text())
    cases = {c["case"]: c for c in report["cases"]}
    ours = cases["ours"]
    assert ours["ages"] == 2 and "float32" in ours["dtypes"]
    for d in ours["dtypes"]:
        for what in ("schedule", "latency", "slider"):
            assert ours["seconds"][f"{d}/{what}"] > 0
        for net in ("pretrained_encoder", "age_encoder", "generator"):
            assert ours["per_call_s"][f"{d}/{net}"] > 0
    assert set(ours["flops"]) == {"pretrained_encoder", "age_encoder", "generator"}
    assert cases["original"]["seconds_per_face"] > 0 and cases["original"]["peak_memory_mib"] > 0
    assert report["torch"] and report["commit"] and report["cpu"]["model"]
    text = (tmp_path / "cpu-quick.md").read_text()
    assert "Per network call" in text and "original schedule" in text and "GFLOP/s" in text


def test_peers_skipped_with_a_note_when_absent(tmp_path, small_sam_path):
    """A missing optional runtime is a note in the table, not a failure."""
    env_code = (
        "import sys, runpy, importlib.util as u; real = u.find_spec; "
        "u.find_spec = lambda n, *a: None if n == 'onnxruntime' else real(n, *a); "
        f"sys.argv = ['run.py', '--quick', '--device', 'cpu', '--checkpoint', {str(small_sam_path)!r}, "
        f"'--cases', 'onnxruntime', '--output', {str(tmp_path)!r}]; "
        f"runpy.run_path({str(REPO / 'benchmarks' / 'run.py')!r}, run_name='__main__')"
    )
    proc = subprocess.run([sys.executable, "-c", env_code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "cpu-quick.json").read_text())
    assert report["cases"][0]["case"] == "onnxruntime" and "not installed" in report["cases"][0]["skipped"]
    assert "skipped" in (tmp_path / "cpu-quick.md").read_text()


@pytest.mark.timeout(1800)
def test_layer_groups_account_for_the_networks_flops(tmp_path, small_sam_path):
    """benchmarks/layers.py: every convolution lands in a group, and the groups' GFLOP add
    up to what torch's FlopCounterMode counts for the same network call."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sam_age import load_sam
    from sam_age.engine import age_channel

    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "layers.py"),
            "--checkpoint",
            str(small_sam_path),
            "--output",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "layers-float32.json").read_text())
    model = load_sam(small_sam_path)
    face = torch.zeros(1, 3, 256, 256)
    x4 = age_channel(face, [50])
    with torch.no_grad():
        codes = model.age_codes(x4, model.encode_w_plus(face))
        counted = {}
        for name, fn in (
            ("age encoder", lambda: model.encoder(x4, impl="reference")),
            ("generator", lambda: model.generate(codes, randomize_noise=False, impl="reference")),
        ):
            with FlopCounterMode(display=False) as fc:
                fn()
            counted[name] = fc.get_total_flops() / 1e9
    for name, want in counted.items():
        groups = report["networks"][name]["groups"]
        got = sum(g["gflop"] for g in groups.values())
        assert abs(got - want) <= 0.03 * want, (name, got, want)  # (elementwise ops are not counted)
        assert all(g["calls"] > 0 for g in groups.values()), (name, groups)
    # the profiled times are parts of the one measured call: each directly measured group with
    # real work took time (a tiny one, e.g. the 1x1 ToRGB at 4 px, may round to 0.0 ms), and
    # they add up to no more than the call's wall time (heads = whole - body, derived)
    gen = report["networks"]["generator"]
    assert all(g["ms"] >= 0 for g in gen["groups"].values()), gen["groups"]
    assert all(g["ms"] > 0 for g in gen["groups"].values() if g["gflop"] >= 0.5), gen["groups"]
    assert sum(g["ms"] for g in gen["groups"].values()) + gen["other_ms"] <= 1.05 * 1e3 * gen["wall_s"] + 1
    assert report["networks"]["age encoder"]["groups"]["body 3x3 (input + IR-SE units)"]["ms"] > 0
    assert {"heads 3x3 stride 2 (18 GradualStyleBlocks)", "body 3x3 (input + IR-SE units)"} <= set(
        report["networks"]["age encoder"]["groups"]
    )
    assert (tmp_path / "layers-float32.md").read_text().count("GFLOP/s") >= 3
