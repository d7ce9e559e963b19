"""Video benchmark (issue 15): frames/s of ``sam-age video`` and its cost per frame per face
against the one-face-one-age latency, measured in the same process and interleaved.

    .venv/bin/python benchmarks/video.py                 # 1024 px SAM stand-in, 16 frames
    .venv/bin/python benchmarks/video.py --quick         # 256 px stand-in, 6 frames (smoke)
    .venv/bin/python benchmarks/video.py --device cuda --frames 64

The clip is made here: the bundled portrait through a gliding camera, 480 x 480, 25 fps, one
face, with a sine audio track. ``latency`` is ``AgePipeline.age_aligned`` on one aligned
face and one age (pretrained encoder + age encoder + generator), the median of ``--repeat``
runs taken between the video runs. ``video`` is ``VideoAger.run`` (one age, default
smoothing): find faces, track, align, encode, generate, paste, H.264, audio copy.
Results: benchmarks/results/video-<device>[-quick].json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--checkpoint", help="SAM weights (default: the 1024 px stand-in; --quick: 256 px)")
    p.add_argument("--frames", type=int)
    p.add_argument("--repeat", type=int, default=3, help="video runs (latency measured between them)")
    args = p.parse_args(argv)

    import numpy as np
    import torch
    from PIL import Image
    from tests.helpers.clips import camera_frames, smooth_path, write_clip
    from tests.helpers.standins import build_standin

    from sam_age import AgePipeline
    from sam_age.engine import cpu_flags
    from sam_age.pipeline import sample_path
    from sam_age.video import VideoAger, VideoJob

    if args.checkpoint:
        ckpt = Path(args.checkpoint)
    elif args.quick:
        from benchmarks.run import _small_sam

        ckpt = _small_sam()
    else:
        ckpt = build_standin("sam_ffhq_aging")
    n = args.frames or (6 if args.quick else 16)
    repeat = 1 if args.quick else args.repeat
    work = Path(tempfile.mkdtemp(prefix="sam-age-bench-video-"))
    try:
        clip = write_clip(
            camera_frames(
                Image.open(sample_path()), n, (480, 480), (512, 512), smooth_path(n, (0, 0), (4, 2)), jpeg_quality=90
            ),
            work / "clip.mp4",
            (480, 480),
            audio=True,
        )
        load0 = os.getloadavg()[0]
        pipe = AgePipeline.from_pretrained(ckpt, device=args.device, dtype=args.dtype)
        ager = VideoAger(pipe)
        face = torch.zeros(1, 3, 256, 256)
        pipe.age_aligned(face, [70])  # warm-up
        lat, runs = [], []
        for r in range(repeat):
            t = time.perf_counter()
            pipe.age_aligned(face, [70])
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            lat.append(time.perf_counter() - t)
            res = ager.run(clip, work / f"out{r}", VideoJob(ages=[70]), overwrite=True)
            runs.append(res)
        t = time.perf_counter()
        pipe.age_aligned(face, [70])
        lat.append(time.perf_counter() - t)
        latency = statistics.median(lat)
        # fixed vs random generator noise: the same code generated twice
        _, codes = pipe.age_aligned(face, [70])

        def twice(randomize):
            a, b = (np.asarray(pipe.generate(codes[0], randomize_noise=randomize)[0], np.float64) for _ in range(2))
            mse = float(((a - b) ** 2).mean())
            return None if mse == 0 else round(10 * np.log10(255.0**2 / mse), 2)

        noise = {"random_noise_psnr_db": twice(True), "fixed_noise_psnr_db": twice(False)}
        secs = statistics.median([r.seconds for r in runs])
        best = min(runs, key=lambda r: r.seconds)
        faces = sum(len(t.landmarks) for t in best.tracks if t.id in best.aged)
        per_face_frame = secs / max(faces, 1)
        out = {
            "case": "video",
            "date": dt.datetime.now().isoformat(timespec="seconds"),
            "command": "python benchmarks/video.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "device": args.device,
            "dtype": args.dtype,
            "cpu": cpu_name(),
            "cpu_flags": sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx", "avx2"))),
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "load_average_start": round(load0, 2),
            "load_average_end": round(os.getloadavg()[0], 2),
            "checkpoint": str(ckpt),
            "generator_size": pipe.output_size,
            "clip": {"frames": n, "size": "480x480", "fps": 25, "faces": 1},
            "frames_per_second": round(n / secs, 4),
            "seconds_per_frame": round(secs / n, 4),
            "seconds_per_frame_per_face": round(per_face_frame, 4),
            "latency_one_face_one_age_s": round(latency, 4),
            "ratio_to_latency": round(per_face_frame / latency, 3),
            "stage_seconds": best.stage_seconds,
            "steadiness": {"tracks": {str(k): v for k, v in best.steadiness.items()}, "same_code_twice": noise},
            "runs_s": [round(r.seconds, 3) for r in runs],
            "latency_runs_s": [round(x, 4) for x in lat],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"video-{args.device.split(':')[0]}{'-quick' if args.quick else ''}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=2) + "\n")
    md = [
        f"# Video benchmark ({out['device']}, {out['date']})",
        "",
        f"`{out['command']}` -- {out['cpu']}"
        + (f", {out['gpu']}" if out["gpu"] else "")
        + f"; flags {' '.join(out['cpu_flags']) or '-'}; torch {out['torch']}, {out['threads']} threads; "
        f"load average {out['load_average_start']} -> {out['load_average_end']}; "
        f"{out['generator_size']} px generator (stand-in weights), {out['dtype']}.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| clip | {n} frames, 480x480, 25 fps, 1 face, audio |",
        f"| frames/s | {out['frames_per_second']} |",
        f"| s per frame per face | {out['seconds_per_frame_per_face']} |",
        f"| one face, one age latency | {out['latency_one_face_one_age_s']} s |",
        f"| ratio (target <= 1.25) | {out['ratio_to_latency']} |",
        f"| stages (s) | {', '.join(f'{k} {v}' for k, v in out['stage_seconds'].items())} |",
        f"| steadiness (raw -> smoothed) | {json.dumps(out['steadiness']['tracks'])} |",
        f"| same code generated twice | random noise {noise['random_noise_psnr_db']} dB PSNR; "
        f"fixed noise {'identical' if noise['fixed_noise_psnr_db'] is None else noise['fixed_noise_psnr_db']} |",
        "",
    ]
    (RESULTS / f"{stem}.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
