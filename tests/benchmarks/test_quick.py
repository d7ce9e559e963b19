"""The benchmark's --quick mode runs end to end and writes its JSON and table."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_benchmark(tmp_path, small_sam_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--device", "cpu",
                           "--checkpoint", str(small_sam_path), "--cases", "ours,original",
                           "--output", str(tmp_path)], capture_output=True, text=True, timeout=900)
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
    env_code = ("import sys, runpy, importlib.util as u; real = u.find_spec; "
                "u.find_spec = lambda n, *a: None if n == 'onnxruntime' else real(n, *a); "
                f"sys.argv = ['run.py', '--quick', '--device', 'cpu', '--checkpoint', {str(small_sam_path)!r}, "
                f"'--cases', 'onnxruntime', '--output', {str(tmp_path)!r}]; "
                f"runpy.run_path({str(REPO / 'benchmarks' / 'run.py')!r}, run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", env_code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "cpu-quick.json").read_text())
    assert report["cases"][0]["case"] == "onnxruntime" and "not installed" in report["cases"][0]["skipped"]
    assert "skipped" in (tmp_path / "cpu-quick.md").read_text()
