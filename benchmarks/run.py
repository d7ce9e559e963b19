"""One command for every speed number of sam-age (issue 8).

    .venv/bin/python benchmarks/run.py [--quick] [--device cpu|cuda] [--checkpoint PATH]

Cases (each runs in its own subprocess so that peak memory does not mix):
  original   the original's schedule re-created with our float32 model: one age after the
             other, the pretrained encoder recomputed for every age, reference generator math
  default    our default path (resolve_dtype(None)): pretrained encoder once, ages batched,
             fast generator; one face x all ages at 256 px out
  float32    the same with dtype float32 (the exact path); skipped when default is float32
  latency    one face, one age, default path
  agreement  default path vs the original code's outputs on the reference case
             (cases/sam_forward.npz; needs the 1024 stand-in) -- PSNR and max abs error
  training   s/step and peak memory: CPU batch 2 at 256 px, CUDA batch 6 at 1024 px
             (forward + backward + Adam step of the encoder, MSE to the input; the full
             loss set of sam_age.training is not included)
Without ``--checkpoint`` the weights are the deterministic stand-ins built from the shared
reference folder (random weights: the timings are real, the images mean nothing).
Results: benchmarks/results/<device>.json and .md (``--quick``: <device>-quick.*).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
AGES_11 = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


# -- helpers run inside the case subprocess ---------------------------------------------

def _standin(name: str) -> Path:
    sys.path.insert(0, str(REPO))
    from tests.conftest import build_standin  # the same deterministic stand-ins as the tests
    return build_standin(name)


def _small_sam() -> Path:
    import torch
    from tests.conftest import _cache_dir
    out = _cache_dir() / "small_sam_256.pt"
    if not out.exists():
        from sam_age import build_sam_for_training, save_sam
        model = build_sam_for_training(_standin("stylegan2-256"), _standin("model_ir_se50"),
                                       _standin("psp_encode-256"), generator=torch.Generator().manual_seed(0))
        save_sam(model, out)
    return out


def _checkpoint(args) -> Path:
    if args.checkpoint:
        return Path(args.checkpoint)
    return _small_sam() if args.quick else _standin("sam_ffhq_aging")


def _sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_memory_mib(device) -> float:
    import torch
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _face(model, device):
    import torch
    g = torch.Generator().manual_seed(0)
    return (torch.rand(1, 3, 256, 256, generator=g) * 2 - 1).to(device)


def _psnr(a, b) -> float:
    import torch
    a, b = a.double(), b.double()
    peak = float(b.max() - b.min())
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)


def run_case(case: str, args) -> dict:
    import torch
    from sam_age import load_sam
    from sam_age.engine import age_channel, age_faces, resolve_dtype
    from sam_age.ops.modconv import modconv_mode

    device = torch.device(args.device)
    ages = AGES_11[:: max(1, len(AGES_11) // args.ages)][:args.ages] if args.ages < 11 else AGES_11
    dtype = torch.float32 if case in ("original", "float32", "training") else resolve_dtype(None, device)
    t0 = time.perf_counter()
    ckpt = _checkpoint(args)
    if case == "training" and device.type == "cpu" and not args.checkpoint:
        ckpt = _small_sam()  # CPU training is measured at 256 px (batch 2)
    model = load_sam(ckpt, device=device, dtype=dtype)
    load_s = time.perf_counter() - t0
    out = {"case": case, "dtype": str(dtype).replace("torch.", ""), "load_s": round(load_s, 2)}
    face = _face(model, device)

    def timed(fn):
        times = []
        for _ in range(args.repeat):
            _sync(device)
            t = time.perf_counter()
            result = fn()
            _sync(device)
            times.append(time.perf_counter() - t)
        return min(times), result

    if case == "original":
        def original():
            with torch.no_grad(), modconv_mode("reference"):
                for age in ages:  # as the original inference script: one age per forward
                    model(age_channel(face, [age]), randomize_noise=False, resize=True)
        secs, _ = timed(original)
        out.update(seconds_per_face=secs, ages=len(ages), seconds_per_image=secs / len(ages))
    elif case in ("default", "float32"):
        age_faces(model, face, ages[:1], batch_size=args.batch_size)  # warm-up (oneDNN primitives)
        secs, _ = timed(lambda: age_faces(model, face, ages, batch_size=args.batch_size))
        out.update(seconds_per_face=secs, ages=len(ages), seconds_per_image=secs / len(ages),
                   images_per_s=len(ages) / secs)
    elif case == "latency":
        age_faces(model, face, [50])
        secs, _ = timed(lambda: age_faces(model, face, [50]))
        out.update(seconds=secs)
    elif case == "agreement":
        import numpy as np
        sys.path.insert(0, str(REPO))
        from tests.conftest import CASES
        ref = np.load(CASES / "sam_forward.npz")
        x = torch.from_numpy(ref["x"]).to(device)
        rgb, age_values = x[:1, :3], [float(a) * 100 for a in x[:, 3, 0, 0]]
        same_face = bool((x[:, :3] == x[:1, :3]).all())
        faces = rgb if same_face else x[:, :3]
        images, _ = age_faces(model, faces, age_values if same_face else [0], batch_size=args.batch_size)
        if same_face:
            ours = images[0].cpu()
        else:
            ours = torch.cat([age_faces(model, x[i:i + 1, :3], [age_values[i]])[0][0] for i in range(len(x))]).cpu()
        theirs = torch.from_numpy(ref["images_256"])
        out.update(psnr_db=_psnr(ours, theirs), max_abs_err=float((ours - theirs).abs().max()),
                   reference="original code's images_256 (float32)")
    elif case == "training":
        batch, size = (6, 1024) if device.type == "cuda" else (2, None)
        model.train()
        params = list(model.encoder.parameters())
        opt = torch.optim.Adam(params, lr=1e-4)
        x = age_channel(face.repeat(batch, 1, 1, 1), [30.0] * batch)

        def step():
            y = model(x, randomize_noise=True, resize=True)
            loss = torch.nn.functional.mse_loss(y, x[:, :3])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        step()
        secs, _ = timed(step)
        out.update(seconds_per_step=secs, batch=batch, samples_per_s=batch / secs, size=model.output_size,
                   note="encoder forward+backward+Adam with an MSE loss (not the full SAM loss set)")
    else:
        raise SystemExit(f"unknown case {case}")
    out["peak_memory_mib"] = round(_peak_memory_mib(device), 1)
    out["peak_memory_kind"] = "max_memory_allocated" if device.type == "cuda" else "peak RSS (ru_maxrss)"
    return out


# -- the driver -------------------------------------------------------------------------

def _device_name(device: str) -> str:
    import torch
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _markdown(report: dict) -> str:
    r = {c["case"]: c for c in report["cases"] if "error" not in c}
    lines = [f"# sam-age benchmark: {report['device_name']} ({report['device']})", "",
             f"{report['date']} - torch {report['torch']} - {report['threads']} threads - commit "
             f"{report['commit']} - load average at start {report['load_average']}", "",
             f"Command: `{report['command']}`", "",
             f"Weights: {report['weights']}", "",
             "| case | what | result | peak memory |", "|---|---|---|---|"]

    def mem(c):
        return f"{c['peak_memory_mib'] / 1024:.2f} GiB" if "peak_memory_mib" in c else ""
    if "original" in r:
        c = r["original"]
        lines.append(f"| (a) original schedule, float32 | {c['ages']} ages, one after another | "
                     f"{c['seconds_per_face']:.1f} s/face ({c['seconds_per_image']:.2f} s/image) | {mem(c)} |")
    for key, label in (("default", "(b) default path"), ("float32", "(c) float32 path")):
        if key in r:
            c = r[key]
            speedup = (f", {r['original']['seconds_per_face'] / c['seconds_per_face']:.2f}x the original"
                       if "original" in r and r["original"]["ages"] == c["ages"] else "")
            lines.append(f"| {label}, {c['dtype']} | {c['ages']} ages batched | {c['seconds_per_face']:.1f} s/face "
                         f"({c['images_per_s']:.2f} images/s{speedup}) | {mem(c)} |")
    if "float32" not in r and "default" in r and r["default"]["dtype"] == "float32":
        lines.append("| (c) float32 path | | same as (b): the default is float32 on this device | |")
    if "latency" in r:
        c = r["latency"]
        lines.append(f"| (d) latency, {c['dtype']} | one face, one age | {c['seconds']:.2f} s | {mem(c)} |")
    if "agreement" in r:
        c = r["agreement"]
        lines.append(f"| (f) agreement, {c['dtype']} | vs the original's outputs | {c['psnr_db']:.1f} dB PSNR, "
                     f"max abs err {c['max_abs_err']:.2e} | {mem(c)} |")
    if "training" in r:
        c = r["training"]
        lines.append(f"| (g) training, float32 | batch {c['batch']}, {c.get('size', '')} px | {c['seconds_per_step']:.2f} s/step "
                     f"({c['samples_per_s']:.2f} samples/s) | {mem(c)} |")
    for c in report["cases"]:
        if "error" in c:
            lines.append(f"| {c['case']} | failed | {c['error'][:120]} | |")
    lines += ["", "(e) peak memory: peak RSS of the case's own process on CPU (includes loading the "
              "weights), torch.cuda.max_memory_allocated on CUDA.", ""]
    return "\n".join(lines)


def _write(report: dict, args) -> None:
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.device + ("-quick" if args.quick else "")
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(_markdown(report))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI smoke run: 256 px stand-in, 2 ages, 1 repeat")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--checkpoint", default=None, help="a SAM checkpoint (default: the stand-in)")
    p.add_argument("--ages", type=int, default=None, help="ages per face (default 11; --quick: 2)")
    p.add_argument("--repeat", type=int, default=None, help="timed repeats, best kept (default 2; --quick: 1)")
    p.add_argument("--batch_size", type=int, default=None, help="images per batch (default: engine default)")
    p.add_argument("--cases", default="default,original,float32,latency,agreement,training")
    p.add_argument("--output", default=str(RESULTS), help="results folder")
    p.add_argument("--case", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    import torch
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.ages = args.ages or (2 if args.quick else 11)
    args.repeat = args.repeat or (1 if args.quick else 2)
    args.batch_size = args.batch_size or 8
    if args.case:  # inside a case subprocess
        print(json.dumps(run_case(args.case, args)))
        return 0

    cases = [c for c in args.cases.split(",") if c]
    if args.quick:  # the reference case is for the 1024 px model
        cases = [c for c in cases if c != "agreement"]
    from sam_age.engine import resolve_dtype
    if "float32" in cases and resolve_dtype(None, torch.device(args.device)) == torch.float32:
        cases.remove("float32")  # the default path *is* the float32 path here
    report = {"device": args.device, "device_name": _device_name(args.device), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "commit": _commit(), "python": platform.python_version(),
              "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
              "command": "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "weights": args.checkpoint or ("256 px stand-in SAM (random weights)" if args.quick
                                             else "1024 px stand-in SAM (random weights)"),
              "ages": args.ages, "repeat": args.repeat, "cases": []}
    base = [sys.executable, str(Path(__file__).resolve()), "--device", args.device, "--ages", str(args.ages),
            "--repeat", str(args.repeat), "--batch_size", str(args.batch_size)]
    if args.quick:
        base.append("--quick")
    if args.checkpoint:
        base += ["--checkpoint", args.checkpoint]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    for case in cases:
        print(f"[bench] {case} ...", file=sys.stderr, flush=True)
        proc = subprocess.run(base + ["--case", case], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            err = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            report["cases"].append({"case": case, "error": err})
            print(f"[bench] {case} failed: {err}", file=sys.stderr)
        else:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            report["cases"].append(result)
            print(f"[bench] {json.dumps(result)}", file=sys.stderr, flush=True)
        _write(report, args)  # after every case: a long run that is cut short keeps its numbers
    print(_markdown(report))
    return 1 if any("error" in c for c in report["cases"]) else 0


if __name__ == "__main__":
    sys.exit(main())
