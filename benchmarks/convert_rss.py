"""Peak RSS of ``sam-age weights convert`` (SAM .pt -> .safetensors), one process per run.

    .venv/bin/python benchmarks/convert_rss.py SRC.pt [--tree before=/path/to/old/src --tree after=src]

Each run is ``python -m sam_age weights convert SRC --output TMP.safetensors`` in a fresh
process with ``PYTHONPATH`` set to the tree; its peak resident set size comes from
``wait4``'s rusage (``ru_maxrss``: file-backed pages of a memory-mapped source count too).
Runs alternate between the trees (A B A B ...) so that the machine's load and the page
cache treat them alike; the outputs are checked to hold the same tensors. Results go to
``results/convert-rss.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_once(tree: Path, src: Path, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, "-m", "sam_age", "weights", "convert", str(src), "--output", str(out), "--overwrite"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace").strip()
    proc.stdout.close()
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{tree}: exit {code}: {err}")
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"peak_rss_bytes": peak, "seconds": round(seconds, 2), "output_bytes": out.stat().st_size}


def same_tensors(a: Path, b: Path) -> bool:
    import torch
    from safetensors import safe_open

    with safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
        if set(fa.keys()) != set(fb.keys()) or fa.metadata() != fb.metadata():
            return False
        return all(torch.equal(fa.get_tensor(k), fb.get_tensor(k)) for k in fa.keys())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=SRC_DIR",
        help="a source tree to run (default: after=this checkout's src)",
    )
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "convert-rss")
    args = parser.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree) or {"after": str(HERE.parent / "src")}
    runs = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        outs = {name: Path(tmp) / f"{name}.safetensors" for name in trees}
        for _ in range(args.repeat):
            for name, tree in trees.items():
                runs[name].append(run_once(Path(tree), args.source, outs[name]))
                print(name, runs[name][-1], flush=True)
        names = list(trees)
        same = all(same_tensors(outs[names[0]], outs[n]) for n in names[1:])
    load = os.getloadavg()
    cpu = platform.processor() or platform.machine()
    try:
        info = open("/proc/cpuinfo").read().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
        flags = next(line.split(":", 1)[1].split() for line in info if line.startswith("flags"))
        wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
        cpu = f"{cpu} ({os.cpu_count()} cores; {', '.join(wanted)})"
    except (OSError, StopIteration):
        pass
    result = {
        "command": " ".join(
            [Path(sys.executable).name, "benchmarks/convert_rss.py", str(args.source)]
            + [f"--tree {k}={v}" for k, v in trees.items()]
        ),
        "source_bytes": args.source.stat().st_size,
        "cpu": cpu,
        "loadavg_at_end": load,
        "outputs_hold_the_same_tensors": same,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# `weights convert` peak RSS",
        "",
        f"Source: `{args.source.name}`, {result['source_bytes']:,} bytes. "
        f"CPU: {cpu}. Load average at the end: {load[0]:.2f}. Outputs identical: {same}.",
        "",
        "| tree | peak RSS (GB), each run | seconds, each run |",
        "|---|---|---|",
    ]
    for name, rs in runs.items():
        peaks = ", ".join("%.2f" % (r["peak_rss_bytes"] / 1e9) for r in rs)
        secs = ", ".join(str(r["seconds"]) for r in rs)
        lines.append(f"| {name} | {peaks} | {secs} |")
    lines += ["", "Command: `" + result["command"] + "`", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
