"""One command for every speed number of sam-age, with its peers in the same run.

    python benchmarks/run.py                      # CPU: ours, original, peers, training (~10 min)
    python benchmarks/run.py --quick              # CI smoke run: 256 px stand-in, 2 ages
    python benchmarks/run.py --device cuda        # GPU: throughput, latency, CUDA graphs, training
    python benchmarks/run.py --cases ours,openvino --repeat 3
    python benchmarks/run.py --isa AVX2           # one ISA level (default: every level the CPU has)

ISA levels (``--isa``): every case runs once per level the CPU offers -- AVX2,
AVX512_CORE, AVX512_CORE_BF16, AVX512_CORE_AMX -- in processes started with
``ONEDNN_MAX_CPU_ISA=<level>`` and ``ATEN_CPU_CAPABILITY`` (avx2 / avx512), so one machine
measures what each CPU kind gets; the table puts the levels side by side. ``native`` runs
without the variables (what ``--quick`` does by default).

Cases (each in its own subprocess, so peak memory does not mix):
  ours        sam-age's float32 path (exact) and its default dtype (resolve_dtype(None): bf16 on
              CPUs with avx512_bf16/AMX, fp16 on CUDA), A/B interleaved in one process: each
              network per call (batch 1), the 11-age encode-once schedule (engine.age_faces),
              one face at one age, a slider move (face encoded: one age encoder + one
              generator), agreement with the original code's outputs (cases/sam_forward.npz,
              1024 stand-in) and between the default and float32.
              CUDA adds a multi-face throughput run and CUDA-graph replay.
  rss         the default path alone in a fresh process: peak RSS for one face x 11 ages.
  rss-float32 the same for the float32 path (the exact one; what the memory target is about).
  original    the original inference script's schedule on our float32 model with the
              reference math: one age per forward, the pretrained encoder again every age.
  onnxruntime / openvino
              the networks that ``sam-age export`` wrote (ONNX, float32; cached under
              benchmarks/.cache), run per call and in the same encode-once schedule (one age
              per call); OpenVINO in f32 and in its own default precision (bf16 on AMX CPUs).
              Skipped with a note when the ``bench`` extra is not installed, and on CUDA.
  training    s/step and memory of forward + backward + Adam on the age encoder (MSE loss,
              not the full SAM loss set) for the generator's reference and lean ("grouped")
              forms (and "shared" on CUDA): CPU batch 2 at 256 px, CUDA batch 6 at 1024 px.
Without ``--checkpoint`` the weights are the deterministic stand-ins built from the shared
reference folder (random weights: the timings are real, the images mean nothing).
GFLOP/s per network = the network's multiply-adds x 2 (counted by torch's FlopCounterMode
on the meta device) / seconds per call. Results: benchmarks/results/<device>[-quick].json
and .md; every case is written as soon as it ends.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
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
CACHE = REPO / "benchmarks" / ".cache"
AGES_11 = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
NETS = ("pretrained_encoder", "age_encoder", "generator")
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16")
CPU_CASES = "ours,rss,rss-float32,original,onnxruntime,openvino,training"
# oneDNN ISA levels, the CPU flag each needs, and ATen's capability beside it
ISA_LEVELS = (
    ("AVX2", "avx2", "avx2"),
    ("AVX512_CORE", "avx512f", "avx512"),
    ("AVX512_CORE_BF16", "avx512_bf16", "avx512"),
    ("AVX512_CORE_AMX", "amx_bf16", "avx512"),
)
CUDA_CASES = "ours,original,training"


# -- helpers run inside the case subprocess ---------------------------------------------


def _shared() -> Path:
    return Path(os.environ.get("SAM_AGE_SHARED", REPO.parent / "shared")).resolve()


def _standins():
    """The one stand-in builder, shared with the tests: tests/helpers/standins.py."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.helpers import standins

    return standins


def _standin(name: str) -> Path:
    return _standins().build_standin(name)


def _small_sam() -> Path:
    return _standins().small_sam()


def _checkpoint(args) -> Path:
    if args.checkpoint:
        return Path(args.checkpoint)
    return _small_sam() if args.quick else _standin("sam_ffhq_aging")


def _ages(args):
    return AGES_11 if args.ages >= 11 else AGES_11[:: max(1, len(AGES_11) // args.ages)][: args.ages]


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _face(n: int = 1):
    import torch

    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 256, 256, generator=g) * 2 - 1


def _psnr(a, b) -> float:
    a, b = a.double(), b.double()
    peak = float(b.max() - b.min())
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def _interleaved(fns: dict, repeat: int, device, warm: bool = True) -> dict:
    """A/B: every callable once per round, ``repeat`` rounds; min seconds per callable."""
    if warm:
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            _sync(device)
            t = time.perf_counter()
            fn()
            _sync(device)
            times[k].append(time.perf_counter() - t)
    return {k: min(v) for k, v in times.items()}


def network_flops(checkpoint) -> dict:
    """Multiply-adds x 2 per call (batch 1) of each network, counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sam_age.checkpoints.load import _infer_sam_config, _read, _sam_state
    from sam_age.models.sam import SAM

    fmt, obj, path = _read(checkpoint)
    state, opts, _ = _sam_state(fmt, obj, path)
    cfg = _infer_sam_config(state, opts, path)
    del obj, state
    with torch.device("meta"):
        sam = SAM(**cfg).eval()
        x4 = torch.empty(1, 4, 256, 256)
        codes = torch.empty(1, sam.n_styles, 512)
    out = {}
    with torch.no_grad():
        for name, fn in (
            ("pretrained_encoder", lambda: sam.pretrained_encoder(x4[:, :3], impl="reference")),
            ("age_encoder", lambda: sam.encoder(x4, impl="reference")),
            ("generator", lambda: sam.generate(codes, randomize_noise=False, impl="reference")),
        ):
            if name == "pretrained_encoder" and sam.pretrained_encoder is None:
                continue
            counter = FlopCounterMode(display=False)
            with counter:
                fn()
            out[name] = counter.get_total_flops()
    return out


def case_ours(args, device) -> dict:
    import torch

    from sam_age import load_sam
    from sam_age.engine import age_channel, age_encoded, age_faces, apply_forms, choose_dtype, encode_faces, make_tuner

    ckpt = _checkpoint(args)
    ages = _ages(args)
    tuner = make_tuner()  # the pipeline's default: forms measured once per machine (autotune.json)
    default, why = choose_dtype(None, device, tuner)
    dtypes = [torch.float32] + ([default] if default != torch.float32 else [])
    t0 = time.perf_counter()
    models = {str(d).replace("torch.", ""): load_sam(ckpt, device=device, dtype=d) for d in dtypes}
    for m in models.values():
        apply_forms(m, None, tuner)
    out = {
        "case": "ours",
        "load_s": round(time.perf_counter() - t0, 2),
        "default_dtype": str(default).replace("torch.", ""),
        "dtypes": list(models),
        "ages": len(ages),
        "batch_size": args.batch_size,
        "why": why,
    }
    face = _face().to(device)
    x4 = age_channel(face, [50])
    res = {}
    for name, m in models.items():
        dt_ = next(m.parameters()).dtype
        xf, x4d = face.to(dt_), x4.to(dt_)
        base = encode_faces(m, xf)
        with torch.no_grad():
            c = m.age_codes(x4d, base)
        res[name] = dict(m=m, xf=xf, x4=x4d, base=base, codes=c)
    fns = {}
    for name, r in res.items():
        m = r["m"]
        if m.pretrained_encoder is not None:
            fns[f"{name}/pretrained_encoder"] = lambda m=m, r=r: m.encode_w_plus(r["xf"])
        fns[f"{name}/age_encoder"] = lambda m=m, r=r: torch.no_grad()(m.encoder)(r["x4"])
        fns[f"{name}/generator"] = lambda m=m, r=r: torch.no_grad()(m.generate)(r["codes"], randomize_noise=False)
    per_call = _interleaved(fns, args.repeat, device, warm=not args.quick)
    sched = {}
    for name, r in res.items():
        m = r["m"]
        sched[f"{name}/schedule"] = lambda m=m: age_faces(m, face, ages, batch_size=args.batch_size)
        sched[f"{name}/latency"] = lambda m=m: age_faces(m, face, [50], batch_size=args.batch_size)
        sched[f"{name}/slider"] = lambda m=m, r=r: age_encoded(m, face, r["base"], [50], batch_size=args.batch_size)
    if device.type == "cuda":
        for name, r in res.items():
            m = r["m"]
            sched[f"{name}/latency_graphs"] = lambda m=m: age_faces(m, face, [50], cuda_graphs=True)
            sched[f"{name}/slider_graphs"] = lambda m=m, r=r: age_encoded(m, face, r["base"], [50], cuda_graphs=True)
            faces = _face(args.faces).to(device)
            big = args.faces * len(ages)
            sched[f"{name}/throughput"] = lambda m=m, faces=faces: age_faces(m, faces, ages, batch_size=args.batch_size)
            sched[f"{name}/throughput_graphs"] = lambda m=m, faces=faces: age_faces(
                m, faces, ages, batch_size=args.batch_size, cuda_graphs=True
            )
            sched[f"{name}/throughput_big_graphs"] = lambda m=m, faces=faces, big=big: age_faces(
                m, faces, ages, batch_size=big, cuda_graphs=True
            )
    whole = _interleaved(sched, args.repeat, device, warm=not args.quick)
    out["per_call_s"] = {k: round(v, 4) for k, v in per_call.items()}
    out["seconds"] = {k: round(v, 4) for k, v in whole.items()}
    out["forms"] = {"conv": tuner.summary("conv:"), "generator": tuner.summary("generator:"), "autotune": tuner.mode}
    out["faces"] = args.faces if device.type == "cuda" else 1
    # agreement: each path vs the original code's outputs, and default vs float32
    agree = {}
    with torch.no_grad():
        imgs = {name: age_faces(r["m"], face, ages, batch_size=args.batch_size)[0] for name, r in res.items()}
    if len(imgs) > 1:
        agree["default_vs_float32_psnr_db"] = _psnr(imgs[out["default_dtype"]], imgs["float32"])
    try:
        import numpy as np

        ref = np.load(_shared() / "reference" / "cases" / "sam_forward.npz")
        x = torch.from_numpy(ref["x"]).to(device)
        theirs = torch.from_numpy(ref["images_256"])
        if (
            not args.quick
            and x.shape[-1] == 256
            and theirs.shape[0] == x.shape[0]
            and res["float32"]["m"].output_size == 1024
            and not args.checkpoint
        ):
            for name, r in res.items():
                ours = torch.cat(
                    [age_faces(r["m"], x[i : i + 1, :3], [float(x[i, 3, 0, 0]) * 100])[0][0] for i in range(x.shape[0])]
                ).cpu()
                agree[f"{name}_vs_original_psnr_db"] = _psnr(ours, theirs)
                agree[f"{name}_vs_original_max_abs"] = float((ours - theirs).abs().max())
    except (OSError, KeyError, ImportError) as e:  # no reference folder: say so
        agree["note"] = f"no reference case ({type(e).__name__})"
    out["agreement"] = agree
    try:
        out["flops"] = network_flops(ckpt)
    except Exception as e:  # counting is informative only
        out["flops_error"] = str(e)[:200]
    if device.type == "cuda":
        out["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else:
        out["peak_memory_mib"] = round(_peak_rss_mib(), 1)
    return out


def case_rss(args, device, dtype=None, case: str = "rss") -> dict:
    from sam_age import load_sam
    from sam_age.engine import age_faces, apply_forms, choose_dtype, make_tuner

    tuner = make_tuner()
    dtype, _ = choose_dtype(dtype, device, tuner)
    model = load_sam(_checkpoint(args), device=device, dtype=dtype)
    apply_forms(model, None, tuner)
    t = time.perf_counter()
    age_faces(model, _face().to(device), _ages(args), batch_size=args.batch_size)
    name = str(dtype).replace("torch.", "")
    return {
        "case": case,
        "dtype": name,
        "first_run_s": round(time.perf_counter() - t, 2),
        "peak_memory_mib": round(_peak_rss_mib(), 1),
        "ages": args.ages,
        "note": f"peak RSS of a fresh process: load + one face x all ages in {name}",
    }


def case_original(args, device) -> dict:
    import torch

    from sam_age import load_sam
    from sam_age.engine import age_channel

    model = load_sam(_checkpoint(args), device=device, dtype=torch.float32)
    ages = _ages(args)
    face = _face().to(device)
    for net in (model.encoder, model.pretrained_encoder, model.decoder):  # the reference modules
        if net is not None:
            net.impl = "reference"

    def original():
        with torch.no_grad():
            for age in ages:  # as the original inference script: one age per forward
                model(age_channel(face, [age]), randomize_noise=False, resize=True)

    secs = _interleaved(
        {"original": original}, max(1, min(args.repeat, 1 if not args.quick else 1)), device, warm=device.type == "cuda"
    )["original"]
    out = {"case": "original", "seconds_per_face": secs, "ages": len(ages), "seconds_per_image": secs / len(ages)}
    out["peak_memory_mib"] = round(
        torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _peak_rss_mib(), 1
    )
    return out


def _peer_networks(args) -> dict:
    manifest = json.loads((Path(args.export_dir) / "manifest.json").read_text())
    return {n: Path(args.export_dir) / v["file"] for n, v in manifest["networks"].items()}


def _peer_schedule(runners: dict, face, ages) -> None:
    """The encode-once schedule on exported networks, one age per call (as their per-call
    numbers multiply up)."""
    import numpy as np

    f = face.numpy()
    w_plus = runners["pretrained_encoder"](f) if "pretrained_encoder" in runners else None
    for age in ages:
        x = np.concatenate([f, np.full((1, 1, 256, 256), age / 100.0, dtype=np.float32)], axis=1)
        codes = runners["age_encoder"](x, w_plus) if w_plus is not None else runners["age_encoder"](x)
        runners["generator"](codes)


def case_peer(args, device, runtime: str) -> dict:
    import numpy as np

    from sam_age.export import Runner

    files = _peer_networks(args)
    face = _face()
    ages = _ages(args)
    variants = {"onnxruntime": [("onnxruntime", "f32")], "openvino": [("openvino", "f32"), ("openvino", "default")]}[
        runtime
    ]
    t0 = time.perf_counter()
    sets = {}
    for rt, precision in variants:
        label = rt if rt == "onnxruntime" else f"openvino-{precision}"
        if precision == "default":
            import openvino as ov

            hint = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
            label = f"openvino-default-{hint}"
        sets[label] = {
            n: Runner(p, rt, threads=args.threads, precision=None if precision == "default" else "f32")
            for n, p in files.items()
        }
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    x4 = np.concatenate([face.numpy(), np.full((1, 1, 256, 256), 0.5, np.float32)], axis=1)
    n_styles = json.loads((Path(args.export_dir) / "manifest.json").read_text())["n_styles"]
    w = rng.standard_normal((1, n_styles, 512)).astype(np.float32) * 0.3
    fns = {}
    for label, runners in sets.items():
        for n, r in runners.items():
            if n == "pretrained_encoder":
                fns[f"{label}/{n}"] = lambda r=r: r(face.numpy())
            elif n == "age_encoder":
                fns[f"{label}/{n}"] = lambda r=r: r(x4, w) if len(r.inputs) == 2 else r(x4)
            else:
                fns[f"{label}/{n}"] = lambda r=r: r(w)
    per_call = _interleaved(fns, args.repeat, device)
    sched = _interleaved(
        {f"{label}/schedule": (lambda rs=rs: _peer_schedule(rs, face, ages)) for label, rs in sets.items()},
        args.repeat,
        device,
        warm=False,
    )
    import importlib

    mod = importlib.import_module(runtime)
    return {
        "case": runtime,
        "version": getattr(mod, "__version__", "?"),
        "load_s": round(load_s, 2),
        "per_call_s": {k: round(v, 4) for k, v in per_call.items()},
        "seconds": {k: round(v, 4) for k, v in sched.items()},
        "ages": len(ages),
        "peak_memory_mib": round(_peak_rss_mib(), 1),
        "threads": args.threads,
    }


def case_training(args, device) -> dict:
    import torch

    from sam_age import load_sam
    from sam_age.engine import age_channel

    cuda = device.type == "cuda"
    ckpt = _checkpoint(args) if (cuda or args.checkpoint) else _small_sam()  # CPU: 256 px
    model = load_sam(ckpt, device=device, dtype=torch.float32)
    batch = args.train_batch or (6 if cuda else 2)
    model.train()
    params = list(model.encoder.parameters())
    opt = torch.optim.Adam(params, lr=1e-4)
    x = age_channel(_face().to(device).repeat(batch, 1, 1, 1), [30.0] * batch)
    impls = ["reference", "grouped"] + (["shared"] if cuda else [])
    out = {
        "case": "training",
        "batch": batch,
        "size": model.output_size,
        "impls": {},
        "note": "age encoder forward+backward+Adam with an MSE loss (not the full SAM loss set)",
    }
    for impl in impls:
        model.decoder.impl = impl

        def step():
            y = model(x, randomize_noise=True, resize=True)
            loss = torch.nn.functional.mse_loss(y, x[:, :3])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        try:
            step()  # warm-up (cuDNN autotuning allocations are not counted below)
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            secs = _interleaved({impl: step}, args.repeat, device, warm=False)[impl]
            r = {"seconds_per_step": round(secs, 3), "samples_per_s": round(batch / secs, 3)}
            if cuda:
                r["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            out["impls"][impl] = r
        except RuntimeError as e:  # CUDA out of memory included: the other forms still run
            out["impls"][impl] = {"error": (str(e).splitlines() or ["failed"])[0][:160]}
            if cuda:
                torch.cuda.empty_cache()
    out["peak_memory_mib"] = round(_peak_rss_mib(), 1) if not cuda else None
    return out


def run_case(case: str, args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if case == "ours":
        return case_ours(args, device)
    if case == "rss":
        return case_rss(args, device)
    if case == "rss-float32":
        return case_rss(args, device, "float32", case)
    if case == "original":
        return case_original(args, device)
    if case in ("onnxruntime", "openvino"):
        return case_peer(args, device, case)
    if case == "training":
        return case_training(args, device)
    raise SystemExit(f"unknown case {case}")


# -- the driver -------------------------------------------------------------------------


def cpu_info() -> dict:
    model, flags = platform.processor() or "cpu", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("cpu", platform.processor()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith(("flags", "Features")) and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": model, "flags": [f for f in FLAGS if f in flags], "cores": os.cpu_count()}


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def ensure_export(args, env) -> Path:
    """The ONNX files ``sam-age export`` writes for this checkpoint, cached by its path,
    size and date and by the source of the exported code."""
    ckpt = Path(args.checkpoint) if args.checkpoint else None
    if ckpt is None:
        sys.path.insert(0, str(REPO))
        sys.path.insert(0, str(REPO / "src"))
        ckpt = _checkpoint(args)
    st = ckpt.stat()
    src = b"".join(
        (REPO / "src" / "sam_age" / f).read_bytes()
        for f in ("export.py", "models/stylegan2.py", "models/encoder.py", "models/irse.py", "ops/modconv.py")
    )
    key = hashlib.sha1(f"{ckpt.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode() + src).hexdigest()[:12]
    out = Path(args.export_dir or CACHE / f"export-{key}")
    if not (out / "manifest.json").exists():
        print(f"[bench] exporting ONNX to {out} (once per checkpoint) ...", file=sys.stderr, flush=True)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "sam_age",
                "export",
                "--checkpoint",
                str(ckpt),
                "--format",
                "onnx",
                "--output",
                str(out),
                "--overwrite",
                "--quiet",
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0:
            raise RuntimeError((proc.stderr.strip().splitlines() or ["export failed"])[-1])
    return out


def _fmt_s(v):
    return "" if v is None else (f"{v:.3f} s" if v < 10 else f"{v:.1f} s")


def _markdown(report: dict) -> str:
    r = {c["case"]: c for c in report["cases"] if "error" not in c and "skipped" not in c}
    info = report["cpu"]
    lines = [
        f"# sam-age benchmark: {report['device_name']} ({report['device']})",
        "",
        f"{report['date']} - torch {report['torch']} - {report['threads']} threads - commit {report['commit']} - "
        f"load average at start {report['load_average']}, at end {report.get('load_average_end', '?')}",
        "",
        f"CPU: {info['model']}, {info['cores']} cores, "
        f"flags: {' '.join(info['flags']) or 'none of ' + '/'.join(FLAGS)}",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Weights: {report['weights']}",
        "",
    ]
    ours = r.get("ours")
    flops = (ours or {}).get("flops", {})
    # per network
    rows = []
    if ours:
        for d in ours["dtypes"]:
            label = (
                f"sam-age {d}"
                + (" (default)" if d == ours["default_dtype"] else "")
                + (" (exact)" if d == "float32" else "")
            )
            rows.append(
                (label, {n: ours["per_call_s"].get(f"{d}/{n}") for n in NETS}, ours["seconds"].get(f"{d}/schedule"))
            )
    for peer in ("onnxruntime", "openvino"):
        c = r.get(peer)
        if c:
            for label in sorted({k.split("/")[0] for k in c["per_call_s"]}):
                rows.append(
                    (
                        f"{label} {c['version']}",
                        {n: c["per_call_s"].get(f"{label}/{n}") for n in NETS},
                        c["seconds"].get(f"{label}/schedule"),
                    )
                )
    if rows:
        n_ages = (ours or {}).get("ages", report["ages"])
        lines += [
            f"## Per network call (batch 1) and the encode-once schedule ({n_ages} ages, one face)",
            "",
            "| runtime | pretrained encoder | age encoder | generator | schedule, s/face |",
            "|---|---|---|---|---|",
        ]
        for label, per, sched in rows:
            cells = []
            for n in NETS:
                v = per.get(n)
                g = f" ({flops[n] / v / 1e9:.0f} GFLOP/s)" if v and n in flops else ""
                cells.append(f"{_fmt_s(v)}{g}" if v else "")
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {_fmt_s(sched)} |")
        if flops:
            lines += ["", "GFLOP per call: " + ", ".join(f"{n} {v / 1e9:.1f}" for n, v in flops.items()) + "."]
        lines.append("")
    # ratios
    if ours:
        d, s = ours["default_dtype"], ours["seconds"]
        lines += ["## Against the references", "", "| what | result |", "|---|---|"]
        f32 = s.get("float32/schedule")
        if "original" in r and f32:
            o = r["original"]
            lines.append(
                f"| original schedule (float32, reference math, one age per forward) | "
                f"{o['seconds_per_face']:.1f} s/face ({o['ages']} ages) |"
            )
            lines.append(f"| float32 path vs original | {o['seconds_per_face'] / f32:.2f}x faster |")
            if d != "float32":
                lines.append(
                    f"| default ({d}) vs original | {o['seconds_per_face'] / s[f'{d}/schedule']:.2f}x faster |"
                )
        if d != "float32" and f32:
            lines.append(f"| default ({d}) vs float32 path | {f32 / s[f'{d}/schedule']:.2f}x faster (schedule) |")
        for peer_label in [k for k in (r.get("openvino") or {}).get("seconds", {})] + [
            k for k in (r.get("onnxruntime") or {}).get("seconds", {})
        ]:
            peer = r["openvino"] if peer_label.startswith("openvino") else r["onnxruntime"]
            pv = peer["seconds"][peer_label]
            name = peer_label.split("/")[0]
            if f32:
                lines.append(f"| float32 path vs {name} | {pv / f32:.2f}x |")
            if d != "float32":
                lines.append(f"| default ({d}) vs {name} | {pv / s[f'{d}/schedule']:.2f}x |")
        for key, what in (
            ("latency", "one face, one age"),
            ("slider", "slider move (face encoded: age encoder + generator)"),
            ("latency_graphs", "one face, one age, CUDA graphs"),
            ("slider_graphs", "slider move, CUDA graphs"),
        ):
            for dd in ours["dtypes"]:
                v = s.get(f"{dd}/{key}")
                if v is not None:
                    lines.append(f"| {what}, {dd} | {v * 1000:.1f} ms |" if v < 1 else f"| {what}, {dd} | {v:.2f} s |")
        n_img = ours.get("faces", 1) * ours["ages"]
        for key, batch in (
            ("throughput", ours["batch_size"] or "default (16)"),
            ("throughput_graphs", ours["batch_size"] or "default (16)"),
            ("throughput_big_graphs", n_img),
        ):
            for dd in ours["dtypes"]:
                v = s.get(f"{dd}/{key}")
                if v is not None:
                    what = "throughput" + (", CUDA graphs" if "graphs" in key else "")
                    lines.append(
                        f"| {what}, {dd}, {ours['faces']} faces x {ours['ages']} ages, batch {batch} | "
                        f"{n_img / v:.1f} images/s ({v / ours['faces']:.3f} s/face) |"
                    )
        a = ours.get("agreement", {})
        if "default_vs_float32_psnr_db" in a:
            lines.append(f"| agreement, default ({d}) vs float32 | {a['default_vs_float32_psnr_db']:.1f} dB PSNR |")
        for dd in ours["dtypes"]:
            if f"{dd}_vs_original_psnr_db" in a:
                lines.append(
                    f"| agreement, {dd} vs the original code's images | {a[f'{dd}_vs_original_psnr_db']:.1f} dB "
                    f"PSNR, max abs err {a[f'{dd}_vs_original_max_abs']:.2e} |"
                )
        mem = "max_memory_allocated" if report["device"] == "cuda" else "peak RSS"
        if "rss" in r:
            lines.append(
                f"| peak RSS, default path ({r['rss']['dtype']}) alone (load + 11 ages) | "
                f"{r['rss']['peak_memory_mib'] / 1024:.2f} GiB |"
            )
        if "rss-float32" in r:
            lines.append(
                f"| peak RSS, float32 path alone (load + 11 ages) | "
                f"{r['rss-float32']['peak_memory_mib'] / 1024:.2f} GiB |"
            )
        lines.append(f"| {mem}, the A/B process (all dtypes loaded) | {ours['peak_memory_mib'] / 1024:.2f} GiB |")
        lines.append("")
    if "training" in r:
        t = r["training"]
        lines += [
            f"## Training step (batch {t['batch']}, {t['size']} px; {t['note']})",
            "",
            "| generator form | s/step | samples/s | peak memory |",
            "|---|---|---|---|",
        ]
        for impl, v in t["impls"].items():
            if "error" in v:
                lines.append(f"| {impl} | failed: {v['error']} | | |")
            else:
                m = (
                    f"{v['peak_memory_mib'] / 1024:.2f} GiB"
                    if v.get("peak_memory_mib")
                    else (
                        f"{t['peak_memory_mib'] / 1024:.2f} GiB (process, all forms)"
                        if t.get("peak_memory_mib")
                        else ""
                    )
                )
                lines.append(f"| {impl} | {v['seconds_per_step']:.2f} | {v['samples_per_s']:.2f} | {m} |")
        lines.append("")
    notes = [f"- {c['case']}: skipped ({c['skipped']})" for c in report["cases"] if "skipped" in c]
    notes += [f"- {c['case']}: failed ({c['error'][:200]})" for c in report["cases"] if "error" in c]
    if notes:
        lines += ["## Notes", ""] + notes + [""]
    return "\n".join(lines)


def _level_row(cases: list) -> dict:
    """The headline numbers of one ISA level's cases (for the side-by-side table)."""
    r = {c["case"]: c for c in cases if "error" not in c and "skipped" not in c}
    row = {}
    ours = r.get("ours")
    if ours:
        d, s = ours["default_dtype"], ours["seconds"]
        for n in NETS:
            row[f"{n.replace('_', ' ')}, float32, per call"] = _fmt_s(ours["per_call_s"].get(f"float32/{n}"))
        row["schedule (11 ages), float32, s/face"] = _fmt_s(s.get("float32/schedule"))
        row["default dtype (why)"] = f"{d} ({ours.get('why', '')})"
        row["schedule, default dtype, s/face"] = _fmt_s(s.get(f"{d}/schedule"))
        row["one face one age, float32"] = _fmt_s(s.get("float32/latency"))
        row["slider move, float32"] = _fmt_s(s.get("float32/slider"))
        forms = ours.get("forms") or {}
        row["forms (encoder convs; generator)"] = f"{forms.get('conv')}; {forms.get('generator')}"
        if "original" in r and s.get("float32/schedule"):
            o = r["original"]["seconds_per_face"]
            row["original schedule, s/face"] = _fmt_s(o)
            row["float32 vs original"] = f"{o / s['float32/schedule']:.2f}x"
        for peer in ("openvino", "onnxruntime"):
            for k, v in (r.get(peer) or {}).get("seconds", {}).items():
                row[f"{k.split('/')[0]} schedule, s/face"] = _fmt_s(v)
                if s.get("float32/schedule"):
                    row[f"float32 vs {k.split('/')[0]}"] = f"{v / s['float32/schedule']:.2f}x"
    for key in ("rss-float32", "rss"):
        if key in r:
            row[f"peak RSS, {r[key]['dtype']} alone"] = f"{r[key]['peak_memory_mib'] / 1024:.2f} GiB"
    return row


def _markdown_levels(report: dict) -> str:
    """Every ISA level side by side, then each level's own tables."""
    levels = report["levels"]
    rows = [(lv["isa"], _level_row(lv["cases"])) for lv in levels]
    keys = list(dict.fromkeys(k for _, row in rows for k in row))
    head = _markdown({**report, "cases": []}).split("## Notes")[0].rstrip()
    lines = [
        head,
        "",
        "## Per ISA level, side by side",
        "",
        "Each level in its own processes with `ONEDNN_MAX_CPU_ISA=<level>` and `ATEN_CPU_CAPABILITY` "
        "(avx2 for AVX2, avx512 above): what a CPU of that kind gets.",
        "",
        "| | " + " | ".join(lv for lv, _ in rows) + " |",
        "|---|" + "---|" * len(rows),
    ]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(row.get(k, "") for _, row in rows) + " |")
    lines.append("")
    for lv in levels:
        body = _markdown({**report, "cases": lv["cases"]}).split("\n", 8)[-1]  # without the shared header
        lines += [f"## ISA level {lv['isa']}", "", body.replace("\n## ", "\n### ")]
    return "\n".join(lines)


def _write(report: dict, args) -> None:
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.device + ("-quick" if args.quick else "")
    for suffix, text in ((".json", json.dumps(report, indent=2) + "\n"), (".md", _markdown(report))):
        tmp = out_dir / f".{stem}{suffix}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out_dir / f"{stem}{suffix}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI smoke run: 256 px stand-in, 2 ages, 1 repeat, no peers")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--checkpoint", default=None, help="a SAM checkpoint (default: the stand-in)")
    p.add_argument("--ages", type=int, default=None, help="ages per face (default 11; --quick: 2)")
    p.add_argument(
        "--repeat", type=int, default=None, help="timed rounds, A/B interleaved, best kept (default 2; --quick: 1)"
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads for every runtime (default 2 on CPU)")
    p.add_argument(
        "--batch_size",
        "--batch-size",
        type=int,
        default=None,
        help="images per batch (default: the engine's per-device default)",
    )
    p.add_argument("--faces", type=int, default=4, help="faces in the CUDA throughput run (default 4)")
    p.add_argument("--train_batch", type=int, default=None, help="training batch (default: CPU 2, CUDA 6)")
    p.add_argument("--cases", default=None, help=f"comma-separated (CPU default {CPU_CASES}; CUDA {CUDA_CASES})")
    p.add_argument("--export_dir", default=None, help="exported ONNX folder for the peers (default: cached export)")
    p.add_argument("--output", default=str(RESULTS), help="results folder")
    p.add_argument(
        "--isa",
        default=None,
        help="comma-separated oneDNN ISA levels (AVX2, AVX512_CORE, AVX512_CORE_BF16, AVX512_CORE_AMX), "
        "'all' (every level this CPU has; the CPU default) or 'native' (no cap; --quick's default)",
    )
    p.add_argument("--case", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.ages = args.ages or (2 if args.quick else 11)
    args.repeat = args.repeat or (1 if args.quick else 2)
    args.threads = args.threads or (2 if args.device == "cpu" else torch.get_num_threads())
    if args.case:  # inside a case subprocess
        print(json.dumps(run_case(args.case, args)))
        return 0

    cases = [c for c in (args.cases or (CUDA_CASES if args.device == "cuda" else CPU_CASES)).split(",") if c]
    if args.quick and args.cases is None:
        cases = ["ours", "original"]
    info = cpu_info()
    device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else info["model"]
    report = {
        "device": args.device,
        "device_name": device_name,
        "cpu": info,
        "torch": torch.__version__,
        "threads": args.threads,
        "commit": _commit(),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "command": "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "weights": args.checkpoint
        or ("256 px stand-in SAM (random weights)" if args.quick else "1024 px stand-in SAM (random weights)"),
        "ages": args.ages,
        "repeat": args.repeat,
        "cases": [],
    }
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS=str(args.threads),
    )
    base = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--device",
        args.device,
        "--ages",
        str(args.ages),
        "--repeat",
        str(args.repeat),
        "--threads",
        str(args.threads),
        "--faces",
        str(args.faces),
    ]
    for flag, value in (
        ("--batch_size", args.batch_size),
        ("--train_batch", args.train_batch),
        ("--checkpoint", args.checkpoint),
    ):
        if value is not None:
            base += [flag, str(value)]
    if args.quick:
        base.append("--quick")
    levels = isa_levels(args, info)
    if len(levels) > 1 or levels[0][0] != "native":
        report["levels"] = []
    for level, level_env in levels:
        if "levels" in report:
            sub = {"isa": level, "env": level_env, "cases": []}
            report["levels"].append(sub)
            report["cases"] = sub["cases"]  # the last (highest) level's cases stay at the top
            print(f"[bench] ISA level {level} ...", file=sys.stderr, flush=True)
        _run_cases(cases, args, report, base, dict(env, **level_env))
    print(_markdown_levels(report) if "levels" in report else _markdown(report))
    return 1 if any("error" in c for lv in report.get("levels", [report]) for c in lv["cases"]) else 0


def isa_levels(args, info) -> list:
    """``[(level, env)]`` to run: ``native`` has no cap; the others set oneDNN's and ATen's."""
    want = args.isa or ("native" if args.quick or args.device != "cpu" else "all")
    flags = set(info.get("all_flags") or info["flags"])
    offered = [
        (lv, {"ONEDNN_MAX_CPU_ISA": lv, "ATEN_CPU_CAPABILITY": aten}) for lv, flag, aten in ISA_LEVELS if flag in flags
    ]
    if want == "native" or not offered:
        return [("native", {})]
    if want == "all":
        return offered
    named = {lv: e for lv, e in offered}
    levels = []
    for lv in want.upper().split(","):
        if lv == "NATIVE":
            levels.append(("native", {}))
        elif lv in named:
            levels.append((lv, named[lv]))
        else:
            raise SystemExit(f"ISA level {lv} is not offered by this CPU (it has: {', '.join(named) or 'none'})")
    return levels


def _run_cases(cases, args, report, base, env) -> None:
    for case in cases:
        extra = []
        if case in ("onnxruntime", "openvino"):
            module = "onnxruntime" if case == "onnxruntime" else "openvino"
            if args.device != "cpu":
                report["cases"].append({"case": case, "skipped": "CPU peers; this run is on " + args.device})
                continue
            missing = [m for m in (module, "onnx", "onnxscript") if not _has(m)]
            if missing:
                report["cases"].append(
                    {"case": case, "skipped": f"{', '.join(missing)} not installed (pip install 'sam-age[bench]')"}
                )
                _write(report, args)
                continue
            try:
                args.export_dir = str(ensure_export(args, env))
            except RuntimeError as e:
                report["cases"].append({"case": case, "error": f"export failed: {e}"})
                continue
            extra = ["--export_dir", args.export_dir]
        print(f"[bench] {case} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        proc = subprocess.run(base + extra + ["--case", case], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            err = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            report["cases"].append({"case": case, "error": err})
            print(f"[bench] {case} failed: {err}", file=sys.stderr)
        else:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result["wall_s"] = round(time.perf_counter() - t, 1)
            report["cases"].append(result)
            print(f"[bench] {case} done in {result['wall_s']} s", file=sys.stderr, flush=True)
        report["load_average_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        _write(report, args)  # after every case: a long run that is cut short keeps its numbers


if __name__ == "__main__":
    sys.exit(main())
