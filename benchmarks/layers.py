"""Where the time goes inside each network: time and GFLOP/s per layer group, on the CPU.

    python benchmarks/layers.py                 # float32 (the exact path), 2 threads
    python benchmarks/layers.py --dtype bfloat16

One call of each network (batch 1, after a warm-up call) under ``torch.profiler`` with the
input shapes recorded; every convolution is put in a group by its kind and the resolution
it works at, and its multiply-adds are counted from those shapes (2 FLOP each):

- generator: ``conv 3x3`` (modulated, stride 1), ``up conv 3x3`` (the stride-2 transposed
  conv; counted at its input size), ``blur 4x4`` (depthwise, after each up conv), ``ToRGB
  1x1``, and the elementwise rest (noise, leaky ReLU, skip upsampling, modulation);
- encoders: ``body`` (input layer + the 24 IR-SE units, folded), ``heads`` (the 18
  GradualStyleBlocks' stride-2 convs, packed), ``lateral 1x1``, and the rest.

The reference point is this machine's float32 GEMM rate (a 4096^3 ``torch.mm``, same threads),
printed with the table. Results: ``results/layers-<dtype>.{json,md}``. Calls under the
profiler can run slower than bare ones (both are printed): read the groups' shares, and
benchmarks/run.py for the times.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

CONV_OPS = (
    "aten::mkldnn_convolution",
    "aten::_convolution",
    "mkldnn::_convolution_pointwise",
    "aten::_slow_conv2d_forward",
    "aten::slow_conv_transpose2d",
    "aten::thnn_conv2d",
)


def best_time(fn, repeat: int = 3) -> float:
    """The shortest of ``repeat`` timed calls, in seconds (the caller warms up)."""
    best = 1e9
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def gemm_rate(dtype, size: int = 4096) -> float:
    import torch

    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    a @ b
    return 2 * size**3 / best_time(lambda: a @ b) / 1e9


STRIDE_ARG = {"aten::_convolution": 3}  # elsewhere the 5th argument


def classify(name: str, shapes, concrete, network: str):
    """(group, FLOP) of one profiled op, or (None, 0) for ops that are not convolutions.
    Encoder 3x3 convs come back as (None, FLOP): the caller tells heads from body."""
    if name not in CONV_OPS or len(shapes) < 2 or len(shapes[0]) != 4 or len(shapes[1]) != 4:
        return None, 0
    (n, c, h, w), (o, i, kh, kw) = shapes[0], shapes[1]
    concrete = list(concrete or [])
    stride = concrete[STRIDE_ARG.get(name, 4)] if len(concrete) > STRIDE_ARG.get(name, 4) else None
    s = int(stride[0]) if isinstance(stride, (list, tuple)) and stride else 1
    transposed = name == "aten::slow_conv_transpose2d" or (
        name == "aten::_convolution" and len(concrete) > 6 and bool(concrete[6])
    )
    if i == 1 and o == c and c > 1:  # depthwise
        if c == 3:  # upfirdn2d's x2 upsampling of the RGB skip (zero-stuffed input)
            return "RGB skip upsample (all sizes)", 2 * n * c * (h - 3) * (w - 3) * kh * kw
        return f"blur 4x4 @{h - 1}", 2 * n * c * (h - 1) * (w - 1) * kh * kw
    if transposed:  # weight [in, out, k, k]; multiply-adds counted at the input size
        return f"up conv 3x3 @{2 * h}", 2 * n * h * w * i * o * kh * kw
    flop = 2 * n * (h // s) * (w // s) * c * o * kh * kw
    if network == "generator":
        return (f"ToRGB 1x1 @{h}" if kh == 1 else f"conv 3x3 @{h}"), flop
    if kh == 1:
        return "lateral / shortcut 1x1", flop
    return None, flop


def profile_network(fn, network: str):
    import torch
    from torch.profiler import ProfilerActivity, profile

    fn()
    bare = best_time(fn)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        t = time.perf_counter()
        fn()
        wall = time.perf_counter() - t
    groups = collections.OrderedDict()
    other_ms = 0.0
    for ev in prof.events():
        if ev.device_type != torch.autograd.DeviceType.CPU:
            continue
        ms = ev.self_cpu_time_total / 1e3
        if ev.name in CONV_OPS and any(ch.name in CONV_OPS for ch in ev.cpu_children):
            other_ms += ms  # a dispatcher frame around the conv that does the work
            continue
        group, flop = classify(ev.name, ev.input_shapes, getattr(ev, "concrete_inputs", None), network)
        if ev.name in CONV_OPS and group is None and flop:
            group = "encoder convs 3x3"  # split below
        if group is None:
            other_ms += ms
            continue
        g = groups.setdefault(group, {"calls": 0, "ms": 0.0, "gflop": 0.0})
        g["calls"] += 1
        g["ms"] += ms
        g["gflop"] += flop / 1e9
    for g in groups.values():
        g["gflop_s"] = round(g["gflop"] / (g["ms"] / 1e3), 1) if g["ms"] else None
        g["ms"] = round(g["ms"], 1)
        g["gflop"] = round(g["gflop"], 2)
    return {"wall_s": round(wall, 3), "bare_s": round(bare, 3), "groups": groups, "other_ms": round(other_ms, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--output", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)
    import torch

    import run as bench  # benchmarks/run.py: stand-ins, CPU info
    from sam_age import load_sam
    from sam_age.engine import age_channel, resolve_dtype

    torch.set_num_threads(args.threads)
    dtype = resolve_dtype(args.dtype, torch.device("cpu"))
    ckpt = Path(args.checkpoint) if args.checkpoint else bench._standin("sam_ffhq_aging")
    model = load_sam(ckpt, dtype=dtype)
    face = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x4 = age_channel(face, [50]).to(dtype)
    report = {
        "cpu": bench.cpu_info(),
        "torch": torch.__version__,
        "threads": args.threads,
        "dtype": str(dtype).replace("torch.", ""),
        "commit": bench._commit(),
        "gemm_gflop_s": {
            "float32": round(gemm_rate(torch.float32), 1),
            "bfloat16": round(gemm_rate(torch.bfloat16), 1),
        },
        "command": "python benchmarks/layers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "networks": {},
    }
    with torch.no_grad():
        codes = model.age_codes(x4, model.encode_w_plus(face.to(dtype)))
        # the encoder's 3x3 convs: heads vs body by running the two parts separately
        enc = model.encoder
        body = profile_network(lambda: enc.features_folded(x4), "encoder")
        whole = profile_network(lambda: enc(x4), "encoder")
        gen = profile_network(lambda: model.generate(codes, randomize_noise=False), "generator")
    b3 = body["groups"].get("encoder convs 3x3", {"ms": 0.0, "gflop": 0.0, "calls": 0})
    w3 = whole["groups"].pop("encoder convs 3x3", {"ms": 0.0, "gflop": 0.0, "calls": 0})
    whole["groups"]["body 3x3 (input + IR-SE units)"] = dict(b3)
    heads = {
        "calls": w3["calls"] - b3["calls"],
        "ms": round(w3["ms"] - b3["ms"], 1),
        "gflop": round(w3["gflop"] - b3["gflop"], 2),
    }
    heads["gflop_s"] = round(heads["gflop"] / (heads["ms"] / 1e3), 1) if heads["ms"] > 0 else None
    whole["groups"]["heads 3x3 stride 2 (18 GradualStyleBlocks)"] = heads
    report["networks"] = {"age encoder": whole, "generator": gen}
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    name = f"layers-{report['dtype']}"
    (out / f"{name}.json").write_text(json.dumps(report, indent=2))
    lines = [
        f"# Time per layer group ({report['dtype']}, {args.threads} threads)",
        "",
        f"{report['cpu']['model']}, flags {' '.join(report['cpu']['flags'])}; torch {report['torch']}; "
        f"commit {report['commit']}",
        "",
        f"Command: `{report['command']}`",
        "",
        f"GEMM rate on this machine (4096^3 torch.mm): float32 {report['gemm_gflop_s']['float32']} GFLOP/s, "
        f"bfloat16 {report['gemm_gflop_s']['bfloat16']} GFLOP/s.",
        "",
    ]
    for net, r in report["networks"].items():
        lines += [
            f"## {net} (one call, batch 1: {r['wall_s']} s under the profiler, {r['bare_s']} s without)",
            "",
            "| group | calls | ms | GFLOP | GFLOP/s |",
            "|---|---|---|---|---|",
        ]
        for g, v in sorted(r["groups"].items(), key=lambda kv: -kv[1]["ms"]):
            lines.append(f"| {g} | {v['calls']} | {v['ms']} | {v['gflop']} | {v.get('gflop_s') or ''} |")
        lines += [
            f"| everything else (elementwise, SE, noise, activations, modulation, pooling) | | {r['other_ms']} | | |",
            "",
        ]
    (out / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
