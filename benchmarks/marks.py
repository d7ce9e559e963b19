"""The cost of marking one output (issue 25): encoding an image with no mark, with the XMP
mark (the default) and with XMP + a signed C2PA manifest, per format and size.

    .venv/bin/python benchmarks/marks.py [--repeats 15] [--output DIR]

The three variants are interleaved (none, xmp, c2pa, none, xmp, c2pa, ...) so machine load
hits them alike; each number is the median over ``--repeats`` of one ``render.image_bytes``
call (what ``render.save_image`` does before its atomic write) or one ``save_mp4``. The
images are the sizes sam-age writes: a 256 px face, a 1024 px face and a 1024 x 768 pasted
photo; noise pixels (the worst case for the encoders, equal for every variant). The C2PA
signer is a test CA made here (EC P-256, ES256) and the ingredient a 1024 x 768 JPEG photo:
C2PA reads and hashes the ingredient for every output. The MP4 is a 48-frame 256 px
animation (imageio-ffmpeg).

Results: ``DIR/marks.json`` and ``DIR/marks.md`` (default DIR: benchmarks/results), with
the CPU, the load average before and after, and the date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return " ".join(f for f in flags if f.startswith(("avx", "amx", "sha")))
    except OSError:
        pass
    return ""


def main(argv=None) -> int:
    import numpy as np
    from PIL import Image
    from tests.helpers.certs import make_ca

    from sam_age.marks import COMPOSITE, Mark, SigningKey
    from sam_age.render import image_bytes, mp4_available, save_mp4

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--output", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="sam-age-marks-bench-"))
    ca = make_ca(tmp / "ca")
    key = SigningKey.load(ca.chain, ca.key)
    photo = tmp / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (768, 1024, 3), dtype=np.uint8)).save(photo, quality=90)
    cases = [("face 256", (256, 256)), ("face 1024", (1024, 1024)), ("pasted 1024x768", (1024, 768))]
    rows = []
    for label, (w, h) in cases:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        source = COMPOSITE if label.startswith("pasted") else None
        for suffix in (".png", ".jpg", ".webp"):
            variants = {"none": None, "xmp": Mark(age="70"), "c2pa": Mark(age="70", signer=key, ingredient=str(photo))}
            if source:
                variants = {k: (v.but(source=source) if v else v) for k, v in variants.items()}
            times = {k: [] for k in variants}
            sizes = {}
            for _ in range(args.repeats + 1):  # the first round warms up, not counted
                for k, mark in variants.items():
                    t = time.perf_counter()
                    data = image_bytes(img, suffix, mark)
                    times[k].append(time.perf_counter() - t)
                    sizes[k] = len(data)
            med = {k: statistics.median(v[1:]) * 1000 for k, v in times.items()}
            rows.append(
                {
                    "output": label,
                    "format": suffix[1:],
                    **{f"{k}_ms": round(v, 2) for k, v in med.items()},
                    "xmp_extra_ms": round(med["xmp"] - med["none"], 2),
                    "c2pa_extra_ms": round(med["c2pa"] - med["none"], 2),
                    "xmp_extra_bytes": sizes["xmp"] - sizes["none"],
                    "c2pa_extra_bytes": sizes["c2pa"] - sizes["none"],
                }
            )
            print(rows[-1], file=sys.stderr)
    if mp4_available():
        frames = [Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)) for _ in range(48)]
        variants = {
            "none": None,
            "xmp": Mark(age="0,50,100"),
            "c2pa": Mark(age="0,50,100", signer=key, ingredient=str(photo)),
        }
        times = {k: [] for k in variants}
        reps = max(3, args.repeats // 3)
        for _ in range(reps + 1):
            for k, mark in variants.items():
                t = time.perf_counter()
                save_mp4(frames, tmp / f"{k}.mp4", mark=mark)
                times[k].append(time.perf_counter() - t)
        med = {k: statistics.median(v[1:]) * 1000 for k, v in times.items()}
        rows.append(
            {
                "output": "animation 48 x 256 px",
                "format": "mp4",
                **{f"{k}_ms": round(v, 2) for k, v in med.items()},
                "xmp_extra_ms": round(med["xmp"] - med["none"], 2),
                "c2pa_extra_ms": round(med["c2pa"] - med["none"], 2),
                "xmp_extra_bytes": (tmp / "xmp.mp4").stat().st_size - (tmp / "none.mp4").stat().st_size,
                "c2pa_extra_bytes": (tmp / "c2pa.mp4").stat().st_size - (tmp / "none.mp4").stat().st_size,
            }
        )
        print(rows[-1], file=sys.stderr)
    load_after = os.getloadavg()
    import c2pa

    meta = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "repeats": args.repeats,
        "c2pa_python": c2pa.__version__,
        "command": "python benchmarks/marks.py " + " ".join(argv or sys.argv[1:]),
    }
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "marks.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        f"# Cost of marking one output ({meta['date']})",
        "",
        f"CPU: {meta['cpu']} ({meta['cores']} cores; {meta['cpu_flags']}); load average "
        f"{meta['load_before']} before, {meta['load_after']} after; c2pa-python {meta['c2pa_python']}.",
        f"Command: `{meta['command']}`. Medians of {args.repeats} interleaved runs (none, xmp, c2pa); "
        "the machine was shared, so compare within a row.",
        "",
        "| output | format | none ms | xmp ms | c2pa ms | xmp extra ms | c2pa extra ms | xmp bytes | c2pa bytes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['output']} | {r['format']} | {r['none_ms']} | {r['xmp_ms']} | {r['c2pa_ms']} | "
            f"{r['xmp_extra_ms']} | {r['c2pa_extra_ms']} | {r['xmp_extra_bytes']} | {r['c2pa_extra_bytes']} |"
        )
    (out / "marks.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
