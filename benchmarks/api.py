"""The REST API's throughput and latency against offline batch work, in one process, one run.

    PYTHONPATH=src python benchmarks/api.py                      # 256 px stand-in SAM, CPU
    PYTHONPATH=src python benchmarks/api.py --checkpoint sam_ffhq_aging --device cuda

One server (``sam_age.api.build_server``, API only, uvicorn on 127.0.0.1) and one pipeline.
For each of 1, 4, 16 concurrent clients (httpx, a thread each) ``--requests`` POST /v1/age
(multipart, ``--ages``, JSON answers) of ``--photos`` different photos; images/s = aged faces
made / wall time, and p50/p99 request latency. "offline" is the same work without HTTP in the
same process: every photo read and its faces found (``prepare_faces``), the faces aged
together (``AgePipeline.age_prepared_many``, batches of the engine's size) and each image
encoded as PNG. Offline runs before and after the server runs (interleaved), the ratio uses
their mean. Writes benchmarks/results/api-<host>-<date>.json and .md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import run as bench  # noqa: E402  (cpu_info, the stand-in builder)


def photos(n: int) -> list:
    from PIL import Image, ImageOps

    from sam_age.pipeline import sample_path

    src = Image.open(sample_path()).convert("RGB")
    out = []
    for k in range(n):
        im = ImageOps.mirror(src) if k % 2 else src
        im = Image.eval(im, lambda v, k=k: min(255, int(v * (0.8 + 0.02 * (k // 2)))))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=95)
        out.append(buf.getvalue())
    return out


def offline(pipe, data: list, ages) -> dict:
    from sam_age.face.prepare import prepare_faces

    start = time.perf_counter()
    prepared = [prepare_faces(d) for d in data]
    results = pipe.age_prepared_many([(None, faces) for _, faces in prepared], ages)
    n = 0
    for r in results:
        for f in r.faces:
            for im in f.images:
                im.save(io.BytesIO(), "PNG")
                n += 1
    wall = time.perf_counter() - start
    return {"images": n, "seconds": round(wall, 3), "images_per_s": round(n / wall, 3)}


def served(url: str, data: list, ages: str, clients: int, requests: int) -> dict:
    import httpx

    latencies, made, lock = [], [0], threading.Lock()

    def client(k):
        with httpx.Client(base_url=url, timeout=1800) as c:
            for j in range(k, requests, clients):
                t = time.perf_counter()
                r = c.post("/v1/age", files={"image": (f"p{j}.jpg", data[j % len(data)])}, data={"ages": ages})
                dt = time.perf_counter() - t
                r.raise_for_status()
                n = sum(len(f["images"]) for f in r.json()["faces"])
                with lock:
                    latencies.append(dt)
                    made[0] += n

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else latencies * 99
    return {
        "clients": clients,
        "requests": len(latencies),
        "images": made[0],
        "seconds": round(wall, 3),
        "images_per_s": round(made[0] / wall, 3),
        "p50_s": round(statistics.median(latencies), 3),
        "p99_s": round(q[98], 3),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="weights (default: the 256 px stand-in SAM)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--ages", default="30")
    p.add_argument("--photos", type=int, default=16)
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--clients", default="1,4,16")
    p.add_argument("--wait-ms", type=float, default=5.0)
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)

    import torch
    import uvicorn

    from sam_age.ages import parse_ages
    from sam_age.api import Limits, build_server
    from sam_age.pipeline import AgePipeline

    checkpoint = args.checkpoint or str(bench._small_sam())
    pipe = AgePipeline(
        AgePipeline.from_pretrained(checkpoint, device=args.device).model, cache_size=0
    )  # no per-upload caches: every request and run does all the work
    data = photos(args.photos)
    ages = parse_ages(args.ages, relative=True)
    server = build_server(pipe, Limits(max_queue=max(64, args.requests), wait_ms=args.wait_ms), demo=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(server.app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    threading.Thread(target=uv.run, daemon=True).start()
    while not uv.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    load0 = os.getloadavg()
    offline(pipe, data[:2], ages)  # warm-up (detector, first passes)
    served(url, data[:2], args.ages, 1, 2)
    runs = {"offline_before": server.queue.call(lambda: offline(pipe, data, ages)).result()}
    for c in [int(x) for x in args.clients.split(",")]:
        runs[f"clients_{c}"] = served(url, data, args.ages, c, args.requests)
    runs["offline_after"] = server.queue.call(lambda: offline(pipe, data, ages)).result()
    load1 = os.getloadavg()
    uv.should_exit = True
    base = (runs["offline_before"]["images_per_s"] + runs["offline_after"]["images_per_s"]) / 2
    for k, v in runs.items():
        if k.startswith("clients_"):
            v["vs_offline"] = round(v["images_per_s"] / base, 3)
    report = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "cpu": bench.cpu_info(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "checkpoint": Path(checkpoint).name,
        "ages": args.ages,
        "photos": args.photos,
        "requests": args.requests,
        "wait_ms": args.wait_ms,
        "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_after": [round(x, 2) for x in load1],
        "command": "PYTHONPATH=src python benchmarks/api.py " + " ".join(argv or sys.argv[1:]),
        "offline_images_per_s": round(base, 3),
        "runs": runs,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"api-{platform.node()}-{datetime.now(timezone.utc):%Y%m%d-%H%M}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# REST API vs offline, {report['date']}",
        "",
        f"{report['cpu']['model']} ({report['cpu']['cores']} cores, flags {' '.join(report['cpu']['flags'])}), "
        f"torch {report['torch']}, {report['threads']} threads, {args.device}, {report['checkpoint']}, "
        f"ages {args.ages}, {args.requests} requests of {args.photos} photos, wait {args.wait_ms:g} ms. "
        f"Load average {load0[0]:.1f} before, {load1[0]:.1f} after (a shared machine: read the ratios).",
        "",
        f"Offline (same process, no HTTP): {base:.2f} images/s (before {runs['offline_before']['images_per_s']}, "
        f"after {runs['offline_after']['images_per_s']}).",
        "",
        "| clients | images/s | vs offline | p50 s | p99 s |",
        "|---|---|---|---|---|",
    ]
    for k, v in runs.items():
        if k.startswith("clients_"):
            lines.append(f"| {v['clients']} | {v['images_per_s']} | {v['vs_offline']} | {v['p50_s']} | {v['p99_s']} |")
    lines += ["", f"Command: `{report['command']}`", ""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
