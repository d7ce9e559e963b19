"""The paste-back seam, measured (issue 13): both masks, with and without colour matching,
on the sample portrait and on a real group photo.

    .venv/bin/python benchmarks/seam.py [--checkpoint PATH] [--age 70] [--output DIR]

Seam ratio (``sam_age.face.mask.seam_ratio``): mean colour gradient magnitude (Sobel on
R, G, B) of the pasted photo over the band within 2% of the face size of the mask's 0.5
contour, divided by the same band of the original photo. 1.0: the paste added no edge
energy along its border; above 1: a visible seam (an edge the photo did not have).

The aged faces: ``identity`` (the aligned input pasted back unchanged: what any paste must
leave alone) and ``SAM`` (the model's output at ``--age``). Without ``--checkpoint`` the
model is the 256 px stand-in SAM built from the shared reference folder: random weights,
so its "aged face" is coloured noise -- the numbers then say what the mask and colour
matching do at the border, not how good an aged face looks.

The group photo is ``t1.jpg`` from the ``insightface`` wheel (``pip install --no-deps
insightface==2.1``; only the file is read); it is skipped when absent.
Results: ``DIR/seam.json`` and ``DIR/seam.md`` (default DIR: benchmarks/results).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
VARIANTS = (  # name, mask, colour matching
    ("box", "box", False),  # the earlier paste-back
    ("box + colour", "box", True),
    ("face", "face", False),
    ("face + colour (default)", "face", True),
)


def measure(photo, faces, aged_per_face):
    import numpy as np

    from sam_age.face import paste_face, seam_ratio

    rows = {name: [] for name, _, _ in VARIANTS}
    for face, aged in zip(faces, aged_per_face):
        width = max(2.0, 0.02 * float(np.hypot(*(face.quad[3] - face.quad[0]))))
        for name, kind, colour in VARIANTS:
            out, mask = paste_face(
                photo, aged, face.quad, kind, landmarks=face.landmarks, colour_match=colour, return_mask=True
            )
            rows[name].append(round(seam_ratio(photo, out, mask, width), 3))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="SAM weights (default: the 256 px stand-in)")
    p.add_argument("--age", type=float, default=70.0)
    p.add_argument("--output", default=str(REPO / "benchmarks" / "results"))
    args = p.parse_args(argv)

    from benchmarks.run import _commit, cpu_info
    from tests.helpers.images import group_photo_path

    from sam_age.face import align_faces
    from sam_age.images import read_image
    from sam_age.pipeline import AgePipeline, sample_path

    if args.checkpoint:
        ckpt, weights = args.checkpoint, args.checkpoint
    else:
        from benchmarks.run import _small_sam

        ckpt, weights = _small_sam(), "256 px stand-in SAM (random weights: its output is noise)"
    pipe = AgePipeline.from_pretrained(ckpt, device="cpu", dtype="float32")
    photos = [("sample portrait (astronaut.jpg)", sample_path(), False)]  # its best face (dlib also
    group = group_photo_path()  # finds a weak one on the suit)
    if group is not None:
        photos.append(("group photo (insightface t1.jpg)", group, True))
    load = os.getloadavg()[0]
    start = time.perf_counter()
    report = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu_info()["model"],
        "cpu_flags": cpu_info()["flags"],
        "commit": _commit(),
        "command": " ".join(["python benchmarks/seam.py", *(argv or sys.argv[1:])]),
        "weights": weights,
        "age": args.age,
        "load_average": round(load, 2),
        "photos": [],
    }
    for title, path, all_faces in photos:
        photo = read_image(path)
        faces = align_faces(photo, all_faces=all_faces)
        images, _ = pipe.age_aligned([f.image for f in faces], [args.age])
        from sam_age.images import to_pil

        aged = [to_pil(images[i, 0]) for i in range(len(faces))]
        entry = {"photo": title, "faces": len(faces)}
        for label, per_face in (("identity", [f.image for f in faces]), ("SAM", aged)):
            rows = measure(photo, faces, per_face)
            entry[label] = {name: {"per_face": v, "mean": round(sum(v) / len(v), 3)} for name, v in rows.items()}
        report["photos"].append(entry)
    report["seconds"] = round(time.perf_counter() - start, 1)

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "seam.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Paste-back seam",
        "",
        f"{report['date']} - {report['cpu']} ({' '.join(report['cpu_flags'])}) - "
        f"commit {report['commit']} - load average {report['load_average']}",
        "",
        f"Command: `{report['command']}`",
        "",
        f"Weights: {weights}; age {args.age:g}. Seam ratio = mean colour gradient along the mask border, "
        "pasted / original (1.0 = no added edge; mean over the faces).",
        "",
        "| photo | faces | aged face | " + " | ".join(n for n, _, _ in VARIANTS) + " |",
        "|---|---|---|" + "---|" * len(VARIANTS),
    ]
    for e in report["photos"]:
        for label in ("identity", "SAM"):
            lines.append(
                f"| {e['photo']} | {e['faces']} | {label} | "
                + " | ".join(f"{e[label][n]['mean']:.2f}" for n, _, _ in VARIANTS)
                + " |"
            )
    (out / "seam.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
