"""The ``sam-age`` entry point: ``--help`` and ``--version`` import no torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_help_and_version_import_no_torch():
    code = r"""
import sys
from sam_age.cli.main import main, SUBCOMMANDS
for argv in (["--version"], ["--help"], *([c, "--help"] for c in SUBCOMMANDS)):
    try:
        main(argv)
    except SystemExit:
        pass
heavy = [m for m in ("torch", "numpy", "PIL", "gradio", "sam_age.pipeline") if m in sys.modules]
print("HEAVY", heavy, file=sys.stderr)
"""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr, proc.stderr[-2000:]
