"""What ``sam_age.memory.keep_freed_heap`` (the ``sam-age`` command's allocator setting) buys.

    PYTHONPATH=src python benchmarks/heap.py                 # 1024 px stand-in, native + AVX2
    PYTHONPATH=src python benchmarks/heap.py --checkpoint small --isa native --repeat 1

Each run is a fresh process (the setting is process-wide and cannot be undone): load the SAM,
one warm-up call, then ``--repeat`` timed calls of ``engine.age_faces`` (one face, two ages:
encode once, two age encoders, two generators) on the float32 path with the forms the
pipeline picks (``apply_forms``). "glibc" is the allocator
as it comes; "kept" calls ``keep_freed_heap()`` first. The two alternate (glibc, kept, glibc,
kept, ...) ``--rounds`` times per ISA level, so drift on a shared machine hits both; the
table gives the median per call, system time and minor page faults per call, and peak RSS.
Writes ``heap.json`` and ``heap.md`` to ``--output`` (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (cpu_info, isa_levels, the stand-in builder)

MODES = ("glibc", "kept")


def child(checkpoint: str, mode: str, repeat: int) -> dict:
    """One measured process (run with ``--_child``): prints its result as JSON."""
    from sam_age.memory import keep_freed_heap

    applied = keep_freed_heap() if mode == "kept" else False
    import torch

    from sam_age import load_sam
    from sam_age.engine import age_faces, apply_forms, make_tuner

    model = load_sam(checkpoint, dtype=torch.float32)
    apply_forms(model, None, make_tuner())  # the forms the pipeline would pick
    face = bench._face()
    with torch.no_grad():
        age_faces(model, face, [30, 60])  # warm-up: packing, oneDNN primitives, first faults
        before, times = resource.getrusage(resource.RUSAGE_SELF), []
        for _ in range(repeat):
            t = time.perf_counter()
            age_faces(model, face, [30, 60])
            times.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "mode": mode,
        "applied": applied,
        "seconds": times,
        "sys_s_per_call": (after.ru_stime - before.ru_stime) / repeat,
        "minflt_per_call": (after.ru_minflt - before.ru_minflt) / repeat,
        "peak_rss_mib": after.ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }


def measure(checkpoint: Path, mode: str, repeat: int, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--_child", mode, "--checkpoint", str(checkpoint), "--repeat", str(repeat)]
    env = dict(os.environ, **env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(bench.REPO / "src"), env.get("PYTHONPATH")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"heap.py: the {mode} run failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summary(runs: list) -> dict:
    out = {}
    for mode in MODES:
        mine = [r for r in runs if r["mode"] == mode]
        out[mode] = {
            "median_s_per_call": statistics.median(s for r in mine for s in r["seconds"]),
            "sys_s_per_call": statistics.median(r["sys_s_per_call"] for r in mine),
            "minflt_per_call": statistics.median(r["minflt_per_call"] for r in mine),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in mine),
            "applied": all(r["applied"] for r in mine) if mode == "kept" else False,
        }
    out["kept_over_glibc"] = out["kept"]["median_s_per_call"] / out["glibc"]["median_s_per_call"]
    return out


def markdown(report: dict) -> str:
    cpu = report["cpu"]
    lines = [
        "# Heap setting: glibc as it comes vs `keep_freed_heap` (the `sam-age` command's)",
        "",
        f"{report['date']} · {cpu['model']} ({cpu['cores']} cores; {', '.join(cpu['flags'])}) · "
        f"torch {report['torch']} · commit {report['commit']} · {report['checkpoint']}",
        "",
        f"`{report['command']}`",
        "",
        "One face, two ages (`engine.age_faces`, float32), per call after one warm-up; "
        f"{report['repeat']} calls x {report['rounds']} rounds per mode, the modes alternating.",
        "",
        "| ISA | mode | s/call (median) | sys s/call | minor faults/call | peak RSS MiB | kept / glibc |",
        "|---|---|---|---|---|---|---|",
    ]
    for lv in report["levels"]:
        s = lv["summary"]
        for mode in MODES:
            m = s[mode]
            ratio = f"{s['kept_over_glibc']:.2f}x" if mode == "kept" else ""
            lines.append(
                f"| {lv['isa']} | {mode} | {m['median_s_per_call']:.3f} | {m['sys_s_per_call']:.2f} | "
                f"{m['minflt_per_call']:,.0f} | {m['peak_rss_mib']:,.0f} | {ratio} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="a SAM file, or 'small': the 256 px stand-in (default 1024 px)")
    p.add_argument("--repeat", type=int, default=3, help="timed calls per process (default 3)")
    p.add_argument("--rounds", type=int, default=2, help="processes per mode and ISA level, alternating (default 2)")
    p.add_argument("--isa", default="native,AVX2", help="comma-separated ISA levels (default native,AVX2)")
    p.add_argument("--output", type=Path, default=bench.RESULTS, help="folder for heap.json and heap.md")
    p.add_argument("--_child", choices=MODES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        print(json.dumps(child(args.checkpoint, args._child, args.repeat)))
        return 0
    if args.checkpoint == "small":
        checkpoint = bench._small_sam()
    else:
        checkpoint = Path(args.checkpoint) if args.checkpoint else bench._standin("sam_ffhq_aging")
    info = bench.cpu_info()
    levels = []
    for isa, env in bench.isa_levels(argparse.Namespace(isa=args.isa, quick=False, device="cpu"), info):
        runs = [measure(checkpoint, mode, args.repeat, env) for _ in range(args.rounds) for mode in MODES]
        levels.append({"isa": isa, "env": env, "runs": runs, "summary": summary(runs)})
        print(f"heap: {isa}: kept / glibc = {levels[-1]['summary']['kept_over_glibc']:.2f}x", file=sys.stderr)
    import torch

    report = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join(["python benchmarks/heap.py", *(sys.argv[1:] if argv is None else argv)]),
        "cpu": info,
        "torch": torch.__version__,
        "commit": bench._commit(),
        "checkpoint": Path(checkpoint).name,
        "repeat": args.repeat,
        "rounds": args.rounds,
        "levels": levels,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "heap.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.output / "heap.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
