"""Dataset-run throughput of ``sam-age age``: images/s for a folder of N faces, with 1 and
with several processes (issue 16).

    .venv/bin/python benchmarks/dataset.py                       # CPU: 1 vs 2 processes, 256 px stand-in
    .venv/bin/python benchmarks/dataset.py --device cuda --nproc 1 --n 64 --checkpoint 1024
    .venv/bin/python benchmarks/dataset.py --nproc 1,2 --repeat 2  # interleaved 1,2,1,2

Each configuration is the real command, timed from outside: ``python -m sam_age age
FOLDER`` for one process, ``torchrun --standalone --nproc_per_node P -m sam_age age
FOLDER`` for P (torchrun gives each CPU process one thread, as it does by default). The
folder holds N distinct photos of the bundled portrait's face (crops, flips, scales), so
detection and alignment run for real in the DataLoader workers.

Two numbers per run, both from the run's own ``manifest.jsonl``:
  wall    images (faces x ages) / the command's wall time, start-up and model loading
          included: what a user waits for;
  steady  after each rank's first batch: images / time between its first and last batch,
          summed over ranks: the rate a long run settles at.
Without ``--checkpoint`` the weights are the deterministic 256 px stand-in (random
weights: the timings are real, the faces mean nothing); ``--checkpoint 1024`` takes the
1024 px stand-in, or give a path. Results: benchmarks/results/dataset-<device>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def _bench_run():
    spec = importlib.util.spec_from_file_location("sam_age_bench_run", REPO / "benchmarks" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _checkpoint(value) -> tuple:
    run = _bench_run()
    if value in (None, "", "256"):
        return run._small_sam(), "256 px stand-in SAM (random weights)"
    if value == "1024":
        return run._standin("sam_ffhq_aging"), "1024 px stand-in SAM (random weights)"
    return Path(value), str(value)


def _torchrun() -> str:
    exe = Path(sys.executable).parent / "torchrun"
    return str(exe) if exe.exists() else (shutil.which("torchrun") or "torchrun")


def _cpu_flags() -> list:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return [f for f in CPU_FLAGS if f in have]
    return []


def _steady(records: list, n_ages: int):
    """Images/s after each rank's first batch (records of one batch are written together)."""
    total = 0.0
    for rank in {r["rank"] for r in records}:
        times = sorted(
            dt.datetime.strptime(r["time"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() for r in records if r["rank"] == rank
        )
        batches = []  # (end time, images)
        for r_t in times:
            if batches and r_t - batches[-1][0] < 0.5:
                batches[-1] = (r_t, batches[-1][1] + n_ages)
            else:
                batches.append((r_t, n_ages))
        if len(batches) < 2:
            return None
        total += sum(b[1] for b in batches[1:]) / (batches[-1][0] - batches[0][0])
    return total


def run_once(nproc: int, omp: int, folder: Path, args, weights: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix=f"sam-age-bench-{nproc}-"))
    try:
        age = [
            "age",
            str(folder),
            "--checkpoint",
            str(weights),
            "--ages",
            args.ages,
            "--output",
            str(out),
            "--device",
            args.device,
            "--dtype",
            args.dtype,
            "--batch-size",
            str(args.batch_size),
        ]
        if args.workers is not None:
            age += ["--workers", str(args.workers)]
        if args.no_align:
            age.append("--no-align")
        cmd = (
            [sys.executable, "-m", "sam_age", *age]
            if nproc == 1
            else [_torchrun(), "--standalone", "--nproc_per_node", str(nproc), "-m", "sam_age", *age]
        )
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
            PYTHONWARNINGS="ignore",
        )
        env.pop("OMP_NUM_THREADS", None)
        if omp:
            env["OMP_NUM_THREADS"] = str(omp)
        threads = omp or (1 if nproc > 1 else os.cpu_count())  # torchrun's default: 1 per process
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            return {"nproc": nproc, "error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
        records = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
        ok = [r for r in records if r["status"] == "ok"]
        n_ages = len(ok[0]["ages"]) if ok else 0
        images = sum(r["faces"] * n_ages for r in ok)
        steady = _steady(ok, n_ages)
        return {
            "nproc": nproc,
            "threads_per_process": threads,
            "inputs": len(records),
            "ok": len(ok),
            "images": images,
            "wall_s": round(wall, 2),
            "images_per_s_wall": round(images / wall, 4),
            "images_per_s_steady": None if steady is None else round(steady, 4),
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _markdown(report: dict) -> str:
    lines = [
        f"# sam-age dataset throughput: {report['device_name']} ({report['device']})",
        "",
        f"{report['date']} - torch {report['torch']} - {report['cpus']} CPUs (flags: "
        f"{', '.join(report['cpu_flags']) or 'n/a'}) - commit {report['commit']} - load average "
        f"{report['load_average_start']} at start, {report.get('load_average_end', '?')} at end",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Weights: {report['weights']}; {report['n']} photos x {report['n_ages']} age(s); "
        f"--batch-size {report['batch_size']}, --dtype {report['dtype']}"
        f"{', --no-align (no detection)' if report.get('no_align') else ''}",
        "",
        "| processes x threads | run | images | wall time | images/s (wall) | images/s (steady) |",
        "|---|---|---|---|---|---|",
    ]
    groups = {}
    for i, r in enumerate(report["runs"]):
        if "error" in r:
            lines.append(f"| {r['nproc']} | {i + 1} | failed: {r['error'][:100]} | | | |")
            continue
        key = f"{r['nproc']} x {r.get('threads_per_process', '?')}"
        groups.setdefault(key, []).append(r)
        steady = "" if r["images_per_s_steady"] is None else f"{r['images_per_s_steady']:.3f}"
        lines.append(
            f"| {key} | {i + 1} | {r['images']} | {r['wall_s']:.1f} s | {r['images_per_s_wall']:.3f} | {steady} |"
        )
    if groups:
        lines += [
            "",
            "Median per configuration (ratios to the first one):",
            "",
            "| processes x threads | runs | images/s (wall) | images/s (steady) |",
            "|---|---|---|---|",
        ]
        med = {
            k: (
                statistics.median(r["images_per_s_wall"] for r in rs),
                statistics.median(r["images_per_s_steady"] for r in rs)
                if all(r["images_per_s_steady"] is not None for r in rs)
                else None,
            )
            for k, rs in groups.items()
        }
        w0, s0 = next(iter(med.values()))
        for k, (w, st) in med.items():
            steady = "" if st is None else f"{st:.3f}" + (f" ({st / s0:.2f}x)" if s0 else "")
            lines.append(f"| {k} | {len(groups[k])} | {w:.3f} ({w / w0:.2f}x) | {steady} |")
    lines += [
        "",
        "wall: images / the whole command's time (start-up, model loading per process, "
        "detection and alignment in DataLoader workers, writing PNGs). steady: after each "
        "process's first batch, summed over processes. The stand-in's faces are noise; "
        "the work per image is the real model's.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=12, help="photos in the folder (default: %(default)s)")
    p.add_argument("--ages", default="30", help="ages per face (default: %(default)s)")
    p.add_argument("--nproc", default=None, help="process counts, comma-separated (default: 1,2 on CPU, 1 on CUDA)")
    p.add_argument("--repeat", type=int, default=1, help="runs per process count, interleaved (default: 1)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    p.add_argument("--dtype", default="auto", help="as sam-age age --dtype (default: %(default)s)")
    p.add_argument("--checkpoint", default=None, help="256 (default), 1024 (the stand-ins) or a path")
    p.add_argument(
        "--batch-size",
        type=int,
        default=2,
        help="sam-age age --batch-size (default %(default)s: several batches per process)",
    )
    p.add_argument("--workers", type=int, default=None, help="sam-age age --workers (default: its own)")
    p.add_argument(
        "--threads",
        default="0",
        help="OMP_NUM_THREADS per process, comma-separated, each tried with every --nproc; 0 = "
        "the default: torch's for one process, 1 under torchrun (default: %(default)s)",
    )
    p.add_argument(
        "--no-align",
        action="store_true",
        help="photos are 256 px face crops read with --no-align (no dlib: the model's rate)",
    )
    p.add_argument("--output", default=str(RESULTS), help="results folder")
    args = p.parse_args(argv)
    nprocs = [int(x) for x in (args.nproc or ("1" if args.device.startswith("cuda") else "1,2")).split(",") if x]
    configs = []  # (processes, OMP_NUM_THREADS or 0 = the default), without repeats
    for omp in [int(x) for x in args.threads.split(",") if x]:
        for n in nprocs:
            threads = omp or (1 if n > 1 else os.cpu_count())
            if (n, threads) not in [(c[0], c[2]) for c in configs]:
                configs.append((n, omp, threads))

    import torch

    from sam_age.engine import resolve_dtype

    sys.path.insert(0, str(REPO))
    from tests.helpers.dataset import write_faces

    run = _bench_run()
    weights, label = _checkpoint(args.checkpoint)
    folder = Path(tempfile.mkdtemp(prefix="sam-age-bench-photos-"))
    report = {
        "device": args.device,
        "device_name": (torch.cuda.get_device_name(0) if args.device.startswith("cuda") else run.cpu_info()["model"]),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "cpu_flags": _cpu_flags(),
        "commit": run._commit(),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "command": "python benchmarks/dataset.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "weights": label,
        "n": args.n,
        "n_ages": len(args.ages.split(",")),
        "batch_size": args.batch_size,
        "dtype": args.dtype
        if args.dtype != "auto"
        else f"auto ({str(resolve_dtype(None, torch.device(args.device.split(':')[0]))).replace('torch.', '')} here)",
        "no_align": args.no_align,
        "threads": args.threads,
        "runs": [],
    }
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"dataset-{args.device.split(':')[0]}"
    try:
        write_faces(folder, args.n, size=256 if args.no_align else None)
        for _ in range(args.repeat):
            for nproc, omp, threads in configs:  # interleaved: a shared machine's load drifts
                print(f"[bench] {nproc} process(es) x {threads} thread(s) ...", file=sys.stderr, flush=True)
                r = run_once(nproc, omp, folder, args, weights)
                print(f"[bench] {json.dumps(r)}", file=sys.stderr, flush=True)
                report["runs"].append(r)
                report["load_average_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
                (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
                (out_dir / f"{stem}.md").write_text(_markdown(report))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(_markdown(report))
    return 1 if any("error" in r for r in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
