"""``sam-age estimate``: how old each face looks (DEX, the age predictor of SAM's training
recipe, on the aligned face) -- the estimate that relative ages (``--ages +20``) start from.

The per-input report of relative ages that ``age`` prints (estimate, ages made, clamping)
is :func:`sam_age.results.relative_report` / ``relative_notes``; the
``--age_predictor_weights`` flag and its lazy resolution live in :mod:`sam_age.cli.common`
with the other shared flags.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import List, Optional

from ..errors import EXIT_OK, EXIT_SOME_FAILED, InputError, UsageError, exists_error
from ..fileio import not_own_file, note_own, shown
from .common import (
    add_age_predictor_argument,
    add_batch_size_argument,
    add_device_arguments,
    add_sample_alias,
    check_batch_size,
    check_device,
    check_output_folder,
    collect_inputs,
)

OUTPUT_FILES = ("estimates.csv", "estimates.json")
DESCRIPTION = """\
Print the estimated age of the face in each photo: DEX (the VGG-16 age classifier SAM's
training uses) on the FFHQ-aligned 256 px face, the expected value over its 101 one-year
bins. It is the age that `sam-age age --ages +20` counts from.

Prints one line per face (`photo.jpg: 37.4`), or with --json a summary on stdout;
--output DIR also writes DIR/estimates.csv and DIR/estimates.json.
Exit status: 0 all inputs done, 1 some inputs failed, 2 usage or weights error."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "estimate",
        help="print each face's estimated age (DEX)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs", nargs="*", metavar="INPUT", help="image files, folders or globs ('sample' for the bundled portrait)"
    )
    add_sample_alias(p)
    add_age_predictor_argument(p)
    p.add_argument(
        "--output",
        "-o",
        default=None,
        metavar="DIR",
        help="also write estimates.csv and estimates.json into DIR (default: print only)",
    )
    p.add_argument("--all-faces", action="store_true", help="every face, not only the best detection")
    p.add_argument("--no-align", action="store_true", help="inputs are already aligned 256 px face crops")
    add_device_arguments(p)
    add_batch_size_argument(p)
    p.add_argument("--overwrite", action="store_true", help="replace estimates.csv/json already in --output")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(run=run)
    return p


# -- the command ---------------------------------------------------------------------------------


def _check_output(args) -> Optional[Path]:
    if args.output is None:
        return None
    out = check_output_folder(args.output)
    existing = [n for n in OUTPUT_FILES if os.path.lexists(out / n)]
    if existing and not args.overwrite:
        raise exists_error(out / existing[0], error=UsageError)
    theirs = not_own_file(out, OUTPUT_FILES) if existing else None
    if theirs is not None:  # --overwrite replaces only what sam-age wrote (issue 22)
        raise UsageError(
            f"{shown(theirs)} was not written by sam-age: left alone, even with --overwrite "
            "(move it away or choose another --output)"
        )
    return out


def _write_outputs(out: Path, summary: dict) -> List[Path]:
    from ..checkpoints.formats import atomic_write

    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["input", "face", "estimated_age", "score"])
    for rec in summary["inputs"]:
        for face in rec.get("faces", []):
            writer.writerow([shown(rec["input"]), face["face"], face["age"], face["score"]])
    paths = [out / n for n in OUTPUT_FILES]
    atomic_write(paths[0], lambda f: f.write(table.getvalue().encode()))
    atomic_write(paths[1], lambda f: f.write((json.dumps(summary, indent=2) + "\n").encode()))
    note_own(out, OUTPUT_FILES)
    return paths


def run(args) -> int:
    check_batch_size(args.batch_size)
    check_device(args.device)
    named, missing = collect_inputs(args)
    out = _check_output(args)
    from ..engine import resolve_device
    from ..estimate import AgeEstimator, resolve_age_predictor
    from ..face.prepare import prepare_faces

    weights = resolve_age_predictor(args.age_predictor_weights, progress=not args.json)
    device = resolve_device(args.device)
    estimator = None
    start = time.perf_counter()
    records = []

    def fail(name, path, reason):
        records.append({"input": str(path) if path else name, "name": name, "ok": False, "error": reason, "faces": []})
        print(f"sam-age estimate: {shown(path or name)}: {shown(reason)}", file=sys.stderr)

    for msg in missing:
        arg, _, reason = msg.partition(": ")
        fail(arg, None, reason)
    for name, path in named:
        try:
            photo, faces = prepare_faces(path, all_faces=args.all_faces, align=not args.no_align)
            if estimator is None:  # loaded at the first face: bad inputs cost nothing
                estimator = AgeEstimator.from_pretrained(
                    weights, device=device, dtype=args.dtype, batch_size=args.batch_size
                )
            result = estimator.estimate_prepared(photo, faces)
        except InputError as e:
            fail(name, path, e.reason)
            continue
        rec = {
            "input": str(path),
            "name": name,
            "ok": True,
            "faces": [
                {
                    "face": i + 1,
                    "age": round(f.age, 2),
                    "score": round(f.score, 4),
                    "quad": None if f.quad is None else [[round(float(v), 1) for v in p] for p in f.quad],
                }
                for i, f in enumerate(result.faces)
            ],
        }
        records.append(rec)
        if not args.json:
            for face in rec["faces"]:
                where = f"face {face['face']}: " if args.all_faces else ""
                print(f"{path}: {where}{face['age']:.1f}", flush=True)

    ok = sum(r["ok"] for r in records)
    summary = {
        "command": "estimate",
        "age_predictor": str(weights),
        "output": None if out is None else str(out),
        "ok": ok,
        "failed": len(records) - ok,
        "seconds": round(time.perf_counter() - start, 3),
        "inputs": records,
    }
    if out is not None:
        _write_outputs(out, summary)
    if args.json:
        print(json.dumps(summary, indent=2))
    elif out is not None:
        print(f"sam-age estimate: {ok} of {len(records)} inputs done; estimates in {out}", file=sys.stderr)
    return EXIT_SOME_FAILED if len(records) - ok else EXIT_OK
