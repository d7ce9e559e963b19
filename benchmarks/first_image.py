"""Time to the first image, the way a new user meets it: the CLI (``sam-age age sample``)
and the Python API (``AgePipeline.from_pretrained(...)(photo, ages=[30])``), each in a
fresh process (import, model load from disk, face search, first pass), A/B interleaved
in one run.

    .venv/bin/python benchmarks/first_image.py --checkpoint SAM.pt [--repeat 2] [--ages 30]

Writes ``results/first-image.{json,md}`` with the CPU model and flags, torch version, the
load average before and after, the command, and per run the wall time of the process up to
its first image (the CLI's own ``first_image_seconds`` and stage timings from ``--json``;
the API's from a timer around import + load + call) and the whole process's wall time.
Without ``--checkpoint``: the 1024 px stand-in from the test cache (random weights: the
timings are real, the images mean nothing).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

API = r"""
import json, sys, time
t0 = time.perf_counter()
from sam_age import AgePipeline
t_import = time.perf_counter()
pipe = AgePipeline.from_pretrained(sys.argv[1], device="cpu", dtype=sys.argv[3])
t_load = time.perf_counter()
result = pipe(sys.argv[2], ages=[float(a) for a in sys.argv[4].split(",")])
t_first = time.perf_counter()
print(json.dumps({"import": t_import - t0, "load": t_load - t_import, "call": t_first - t_load,
                  "first_image_seconds": t_first - t0, "faces": len(result.faces)}))
"""


def cpu_info() -> dict:
    model, flags = platform.processor(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model.strip():
                model = line.split(":", 1)[1].strip()
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                break
    except OSError:
        pass
    keep = [f for f in flags if f.startswith(("avx", "amx", "fma", "f16c"))]
    return {"model": model, "cores": os.cpu_count(), "flags": keep}


def run_cli(python, checkpoint, ages, dtype, out) -> dict:
    cmd = [
        python,
        "-m",
        "sam_age",
        "age",
        "sample",
        "--checkpoint",
        str(checkpoint),
        "--ages",
        ages,
        "--device",
        "cpu",
        "--dtype",
        dtype,
        "--output",
        str(out),
        "--json",
        "--overwrite",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"CLI failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout)
    return {
        "kind": "cli",
        "process_seconds": round(wall, 2),
        "first_image_seconds_in_process": summary.get("first_image_seconds"),
        "stages": summary.get("stages"),
        "compute_path": summary.get("compute_path"),
    }


def run_api(python, checkpoint, ages, dtype) -> dict:
    from_sample = str(REPO / "src" / "sam_age" / "data" / "astronaut.jpg")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [python, "-c", API, str(checkpoint), from_sample, dtype, ages],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"API run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "kind": "api",
        "process_seconds": round(wall, 2),
        "first_image_seconds_in_process": round(r["first_image_seconds"], 2),
        "stages": {k: round(r[k], 2) for k in ("import", "load", "call")},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--ages", default="30")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--out", default=str(HERE / "results" / "first-image"))
    a = p.parse_args()
    ckpt = a.checkpoint
    if ckpt is None:
        cache = Path(os.environ.get("SAM_AGE_TEST_CACHE") or Path(tempfile.gettempdir()) / "sam-age-test-cache")
        found = sorted(cache.glob("sam_ffhq_aging-*.pt"))
        if not found:
            raise SystemExit("no --checkpoint and no 1024 px stand-in in the test cache (run the tests once)")
        ckpt = found[-1]
    load_before = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory(prefix="sam-age-first-image-") as tmp:
        for i in range(a.repeat):  # interleaved: CLI, API, CLI, API ...
            runs.append(run_cli(sys.executable, ckpt, a.ages, a.dtype, Path(tmp) / f"cli{i}"))
            print(json.dumps(runs[-1]), flush=True)
            runs.append(run_api(sys.executable, ckpt, a.ages, a.dtype))
            print(json.dumps(runs[-1]), flush=True)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_info(),
        "python": platform.python_version(),
        "torch": __import__("torch").__version__,
        "checkpoint": str(ckpt),
        "checkpoint_bytes": Path(ckpt).stat().st_size,
        "ages": a.ages,
        "dtype": a.dtype,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "runs": runs,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Time to the first image ({report['date']})",
        "",
        f"CPU: {report['cpu']['model']} ({report['cpu']['cores']} cores; {' '.join(report['cpu']['flags'])}); "
        f"torch {report['torch']}; load average before {report['load_before']}, after {report['load_after']}",
        f"Checkpoint: {ckpt} ({report['checkpoint_bytes'] / 1e9:.2f} GB), ages {a.ages}, dtype {a.dtype}",
        f"Command: `{report['command']}`",
        "",
        "| run | kind | first image (s, in process) | process wall (s) | stages (s) |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(runs):
        st = r["stages"]
        if isinstance(st, list):
            st = ", ".join(f"{s['stage']} {s['seconds']:.2f}" for s in st)
        else:
            st = ", ".join(f"{k} {v:.2f}" for k, v in st.items())
        lines.append(
            f"| {i + 1} | {r['kind']} | {r['first_image_seconds_in_process']} | {r['process_seconds']} | {st} |"
        )
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
