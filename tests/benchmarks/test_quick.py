"""The benchmark's --quick mode runs end to end and writes its JSON and table."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_benchmark(tmp_path, small_sam_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--device", "cpu",
                           "--checkpoint", str(small_sam_path), "--cases", "default,latency",
                           "--output", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "cpu-quick.json").read_text())
    cases = {c["case"]: c for c in report["cases"]}
    assert cases["default"]["ages"] == 2 and cases["default"]["seconds_per_face"] > 0
    assert cases["latency"]["seconds"] > 0 and cases["latency"]["peak_memory_mib"] > 0
    assert report["torch"] and report["commit"]
    assert "(b) default path" in (tmp_path / "cpu-quick.md").read_text()
