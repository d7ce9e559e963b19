"""What ``--report`` costs per output, beside what making that output costs, in one run (A/B
interleaved, best of ``--repeat``), on the CPU, float32, stand-in weights (random, so the
timings are real and the numbers mean nothing).

    PYTHONPATH=src .venv/bin/python benchmarks/report_cost.py [--checkpoint SAM.pt] [--repeat 3]

Per output (one face at one age), each timed on its own:
  make         the age encoder + generator for one age (the pretrained encoding cached, as a
               slider move or the 11-age schedule amortises it), 256 px output
  dex          DEX on the output (achieved_age)
  id_cf        CurricularFace IR-101 identity: dlib landmarks on the output + 112 px warp +
               forward (the input face's embedding is shared by all its outputs: not counted)
  id_irse      IR-SE-50 identity (the fallback): fixed crop + forward
Writes benchmarks/results/report-cost.json with the CPU, flags, load and command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _best(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None, help="SAM weights (default: the 1024 px stand-in)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from tests.helpers.standins import build_standin

    from sam_age import AgePipeline
    from sam_age.estimate import AgeEstimator
    from sam_age.identity import IdentityNet
    from sam_age.images import to_tensor
    from sam_age.pipeline import sample_path

    ckpt = args.checkpoint or build_standin("sam_ffhq_aging")
    pipe = AgePipeline.from_pretrained(ckpt, device="cpu", dtype="float32", batch_size=1)
    photo, faces = pipe.prepare(sample_path())
    face = to_tensor(faces[0].image)[None]
    pipe.encode(face)  # cached from here on
    out_img = pipe.age_aligned(face, [70])[0][0, 0]
    dex = AgeEstimator.from_pretrained(build_standin("dex_age_classifier"), device="cpu")
    cf = IdentityNet.from_weights(build_standin("curricular_face"), "curricularface")
    irse = IdentityNet.from_weights(build_standin("model_ir_se50"), "ir_se50")
    ref = face[0]
    ref_pts = cf.landmarks(ref)

    def id_cf():
        pts = cf.landmarks(out_img)
        cf._embed(cf.crop(out_img[None], [pts if pts is not None else ref_pts]))

    cases = {
        "make": lambda: pipe.age_aligned(face, [70]),
        "dex": lambda: dex.estimate_aligned(out_img[None]),
        "id_cf": id_cf,
        "id_irse": lambda: irse._embed(irse.crop(out_img[None])),
    }
    load_before = os.getloadavg()
    times = {k: [] for k in cases}
    for _ in range(args.repeat):  # interleaved: each round runs every case once
        for k, fn in cases.items():
            times[k].append(_best(fn, 1))
    best = {k: min(v) for k, v in times.items()}
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
        platform.processor(),
    )
    flags = sorted(set(open("/proc/cpuinfo").read().split()) & {"avx2", "avx512f", "avx512_bf16", "amx_tile"})
    res = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "flags": flags,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip(),
        "seconds_best": {k: round(v, 4) for k, v in best.items()},
        "report_cf_over_make": round((best["dex"] + best["id_cf"]) / best["make"], 3),
        "report_irse_over_make": round((best["dex"] + best["id_irse"]) / best["make"], 3),
    }
    out = REPO / "benchmarks" / "results" / "report-cost.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
