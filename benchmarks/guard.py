"""Speed guard for CI: per network, the default path is not slower than the plain one.

    python benchmarks/guard.py                 # the machine's own ISA, then AVX2 (exit 1 on a loss)
    python benchmarks/guard.py --isa AVX2      # one level only
    python benchmarks/guard.py --dtype float32 # the exact path's forms only (no bf16 choice)

For each network (the pretrained encoder and the age encoder: random weights, the full
IR-SE-50 body and 8 of the 18 style heads -- 3 coarse, 4 middle, 1 fine, so every conv shape
is in, the 512-channel ones at 16..1 px that regressed on AVX2 too, at half the memory; the
generator at 256 px) one process times, in one run, interleaved, best of ``--repeat``
after a warm-up (which includes any first-use measurement of ``sam_age.autotune``, in
memory only):

- default: what ``AgePipeline`` runs by default -- ``dtype="auto"`` (engine.choose_dtype),
  every form "auto";
- plain: float32, the encoders' folded form with ``F.conv2d`` (no packed weights), the
  generator's reference form.

A ratio default/plain above ``1 + --tolerance`` (default 0.15) fails the guard. Ratios
from one run, never absolute times, so a loaded CI machine does not flip it. Each ISA
level runs in its own process with ``ONEDNN_MAX_CPU_ISA`` / ``ATEN_CPU_CAPABILITY`` set
(read once at start-up by oneDNN and ATen), so an AVX-512 machine also guards the AVX2
path most users have. Each network's line gives its wall and CPU seconds (on a loaded
machine the CPU seconds tell the quiet-machine cost: about CPU s / threads).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ISA_ENV = {"AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}
HEADS = 8  # style heads per encoder: 3 coarse (16 px), 4 middle (32 px), 1 fine (64 px)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@contextlib.contextmanager
def _no_packing():
    from sam_age.ops import packed

    real = packed.packing_available
    packed.packing_available = lambda: False
    try:
        yield
    finally:
        packed.packing_available = real


def _best_interleaved(fns: dict, repeat: int) -> dict:
    times = {k: [] for k in fns}
    for r in range(repeat):
        for k in list(fns) if r % 2 == 0 else list(fns)[::-1]:
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    return {k: min(v) for k, v in times.items()}


def _encoder_pair(input_nc: int, dtype, tuner):
    """``(default, plain)`` callables of one encoder (shared weights where the dtype is
    the same: each form keeps its own folded copy, swapped in before its call)."""
    import torch

    from sam_age.models.encoder import GradualStyleEncoder

    torch.manual_seed(input_nc)
    enc = GradualStyleEncoder(input_nc, HEADS).eval()
    enc.reclaim_file_pages = False
    x = torch.rand(1, input_nc, 256, 256) * 2 - 1

    def settle(module, plain: bool):
        if hasattr(module, "conv_form"):
            module.conv_form, module.tuner = ("plain", None) if plain else ("auto", tuner)

    def build(module, plain: bool):
        settle(module, plain)
        module.__dict__.pop("_folded_cache", None)
        xi = x.to(next(module.parameters()).dtype)
        with _no_packing() if plain else contextlib.nullcontext():
            module(xi)  # folds (and packs / measures at the first call)
        cache = module.__dict__["_folded_cache"]

        def call():
            settle(module, plain)
            module.__dict__["_folded_cache"] = cache
            return module(xi)

        return call

    default_module = enc if dtype == torch.float32 else copy.deepcopy(enc).to(dtype)  # before any fold
    plain = build(enc, True)
    default = build(default_module, False)
    return default, plain


def _generator_pair(dtype, tuner):
    import torch

    from sam_age.models.stylegan2 import Generator

    torch.manual_seed(0)
    g = Generator(256, 512, 8, 2).eval()
    lat = torch.randn(1, g.n_latent, 512)
    gd = g if dtype == torch.float32 else copy.deepcopy(g).to(dtype)
    if hasattr(gd, "tuner"):
        gd.tuner = tuner
    ld = lat.to(dtype)

    def default():
        gd.impl = "auto"
        return gd.synthesis(ld, gd.fixed_noise())

    def plain():
        return g.synthesis(lat, g.fixed_noise(), impl="reference")

    default()  # the warm-up (first-use measurement) of the default
    return default, plain


def child(args) -> dict:
    import torch

    from sam_age import engine

    if args.threads:
        torch.set_num_threads(args.threads)
    tuner = None
    if hasattr(engine, "make_tuner"):
        from sam_age.autotune import Tuner

        tuner = Tuner(None, "on", reps=2)  # measured now, in memory only (the cache is not read)
    if args.dtype == "float32":
        dtype, why = torch.float32, "asked: float32"
    elif hasattr(engine, "choose_dtype"):
        dtype, why = engine.choose_dtype("auto", "cpu", tuner)
    else:
        dtype = engine.resolve_dtype(None, torch.device("cpu"))
        why = "resolve_dtype rule"
    out = {
        "isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "native"),
        "capability": str(torch.backends.cpu.get_cpu_capability()),
        "threads": torch.get_num_threads(),
        "dtype": str(dtype).replace("torch.", ""),
        "why": why,
        "nets": {},
    }
    makers = {
        "pretrained_encoder": lambda: _encoder_pair(3, dtype, tuner),
        "age_encoder": lambda: _encoder_pair(4, dtype, tuner),
        "generator": lambda: _generator_pair(dtype, tuner),
    }
    with torch.no_grad():
        for name in args.nets.split(","):
            t0, c0 = time.perf_counter(), _cpu_s()
            default, plain = makers[name]()
            plain()  # the plain form's warm-up too
            best = _best_interleaved({"default": default, "plain": plain}, args.repeat)
            out["nets"][name] = {
                "default_s": round(best["default"], 4),
                "plain_s": round(best["plain"], 4),
                "ratio": round(best["default"] / best["plain"], 3),
                "wall_s": round(time.perf_counter() - t0, 1),
                "cpu_s": round(_cpu_s() - c0, 1),
            }
            print(f"guard:   {out['isa']} {name}: {out['nets'][name]}", file=sys.stderr, flush=True)
            del default, plain
    if tuner is not None:
        out["forms"] = {"conv": tuner.summary("conv:"), "generator": tuner.summary("generator:")}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--isa", default="native,AVX2", help="comma-separated: native and/or AVX2 (default both)")
    p.add_argument("--nets", default="pretrained_encoder,age_encoder,generator")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32"))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--tolerance", type=float, default=0.15)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    flags = (
        Path("/proc/cpuinfo").read_text().split("flags", 1)[-1].split("\n", 1)[0]
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    results, failed = [], False
    for isa in args.isa.split(","):
        if isa == "AVX2" and " avx2" not in flags:
            print(f"guard: {isa}: not on this CPU, skipped")
            continue
        env = {
            **os.environ,
            **ISA_ENV.get(isa, {}),
            "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
        }
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--nets",
            args.nets,
            "--dtype",
            args.dtype,
            "--repeat",
            str(args.repeat),
        ] + (["--threads", str(args.threads)] if args.threads else [])
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)  # progress on stderr
        if proc.returncode != 0:
            print(f"guard: {isa}: the run failed (exit {proc.returncode})", file=sys.stderr)
            failed = True
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(res)
        for name, r in res["nets"].items():
            bad = r["ratio"] > 1 + args.tolerance
            failed |= bad
            print(
                f"guard: {isa:7s} {res['dtype']:8s} {name:19s} default {r['default_s']:.3f} s, plain "
                f"{r['plain_s']:.3f} s: {r['ratio']:.2f}x the plain time {'FAIL' if bad else 'ok'} "
                f"({r['wall_s']} s wall, {r['cpu_s']} s CPU)"
            )
        if res.get("forms"):
            print(f"guard: {isa:7s} forms: {res['forms']} ({res['why']})")
    if args.json:
        Path(args.json).write_text(json.dumps({"load": os.getloadavg(), "results": results}, indent=1))
    print(
        f"guard: {'FAILED: the default path is more than' if failed else 'ok: the default path within'} "
        f"{args.tolerance:.0%} of the plain one (load {os.getloadavg()[0]:.1f})"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
