"""``sam-age evaluate``: age a folder of faces and measure the results like the paper.

    sam-age evaluate --checkpoint sam_ffhq_aging --data faces/ --ages 0:100:10 --output eval/

writes ``results.csv``, ``summary.json`` and two plots into ``--output``. Bad images are
named on stderr and counted in the summary (exit 1); bad flags or weights exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import EXIT_OK, EXIT_SOME_FAILED, UsageError, exists_error
from .common import (
    add_ages_argument,
    add_batch_size_argument,
    add_checkpoint_argument,
    add_device_arguments,
    check_batch_size,
    check_device,
    check_output_folder,
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="measure aging accuracy (DEX) and identity (CurricularFace or IR-SE-50) on a folder of faces",
        description="Age every face in --data to every age in --ages and measure the outputs: "
        "the age DEX predicts (and its error against the target) and the identity "
        "similarity between input and output (CurricularFace IR-101 on the five-point "
        "112 px crop, as the paper; or IR-SE-50 on the training crop). Writes results.csv, "
        "summary.json and plots into --output.",
    )
    add_checkpoint_argument(p)
    p.add_argument("--data", required=True, metavar="DIR", help="folder of face photos")
    add_ages_argument(p)
    p.add_argument("--output", required=True, metavar="DIR", help="folder for the results")
    p.add_argument(
        "--id-model",
        dest="id_model",
        choices=("curricularface", "ir_se50"),
        default=None,
        help="identity network: curricularface (the paper's; default) or ir_se50 (the training "
        "loss's). Without this flag, --ir_se50_weights alone picks ir_se50",
    )
    p.add_argument(
        "--curricular_face_weights",
        default=None,
        metavar="PATH_OR_NAME",
        help="CurricularFace IR-101 identity net (default: the registry's curricular_face)",
    )
    p.add_argument(
        "--ir_se50_weights",
        default=None,
        metavar="PATH_OR_NAME",
        help="IR-SE-50 identity net (default: the registry's ir_se50)",
    )
    p.add_argument(
        "--age_predictor_weights",
        default=None,
        metavar="PATH_OR_NAME",
        help="DEX age classifier (default: the registry's dex_age)",
    )
    p.add_argument(
        "--fid",
        action="store_true",
        help="also FID per age group against the inputs (needs torch-fidelity or "
        "clean-fid with their Inception weights on disk; skipped otherwise)",
    )
    add_device_arguments(p)
    add_batch_size_argument(p)
    p.add_argument(
        "--no-align", dest="align", action="store_false", help="the images are already aligned 256 px FFHQ crops"
    )
    p.add_argument(
        "--all-faces",
        dest="all_faces",
        action="store_true",
        help="evaluate every face of a photo, not only the most confident one",
    )
    p.add_argument("--overwrite", action="store_true", help="replace results already in --output")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from ..ages import parse_ages
    from ..images import list_inputs
    from ..weights.store import resolve_weights

    ages = parse_ages(args.ages, "--ages")
    check_device(args.device)
    data = Path(args.data).expanduser()
    if not data.exists():
        raise UsageError(f"--data {data}: does not exist")
    if not data.is_dir():
        raise UsageError(f"--data {data}: is a file, expected a folder of images")
    check_batch_size(args.batch_size)
    paths, _ = list_inputs([str(data)])
    if not paths:
        raise UsageError("no images in this folder", data)

    from ..evaluation import OUTPUT_FILES

    output = check_output_folder(args.output)
    existing = [name for name in OUTPUT_FILES if (output / name).exists()]
    if existing and not args.overwrite:
        raise exists_error(output / existing[0], error=UsageError)
    from ..fileio import not_own_file, shown

    theirs = not_own_file(output, existing) if existing else None
    if theirs is not None:  # --overwrite replaces only what sam-age wrote (issue 22)
        raise UsageError(
            f"{shown(theirs)} was not written by sam-age: left alone, even with --overwrite "
            "(move it away or choose another --output)"
        )

    from ..identity import resolve_identity_weights

    id_model = args.id_model or (
        "ir_se50" if args.ir_se50_weights and not args.curricular_face_weights else "curricularface"
    )
    id_model, id_weights = resolve_identity_weights(id_model, args.curricular_face_weights, args.ir_se50_weights)
    dex = resolve_weights(args.age_predictor_weights, "dex_age")

    from ..engine import resolve_device
    from ..evaluation import Evaluator, run_evaluation, summarize
    from ..pipeline import AgePipeline

    device = resolve_device(args.device)
    pipeline = AgePipeline.from_pretrained(
        args.checkpoint, device=device, dtype=args.dtype, batch_size=args.batch_size, progress=True
    )
    evaluator = Evaluator.from_weights(
        pipeline, id_weights, dex, device=device, batch_size=args.batch_size, id_model=id_model
    )

    from tqdm.auto import tqdm

    def on_note(message: str) -> None:  # through tqdm, so the progress bar stays whole
        tqdm.write(f"sam-age evaluate: {message}", file=sys.stderr)

    def on_error(name: str, message: str) -> None:
        on_note(f"skipped {message}")

    report = run_evaluation(
        evaluator,
        paths,
        ages,
        output,
        align=args.align,
        all_faces=args.all_faces,
        fid=args.fid,
        on_error=on_error,
        on_note=on_note,
        progress=True,
    )
    _print_summary(summarize(report), output)
    return EXIT_SOME_FAILED if report.failures else EXIT_OK


def _print_summary(summary: dict, output: Path) -> None:
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    fid = (summary.get("fid") or {}).get("per_target_age") or {}
    print(f"{'target age':>10}  {'n':>4}  {'mean |age error|':>16}  {'mean identity':>13}" + ("  FID" if fid else ""))
    for age, s in summary["per_target_age"].items():
        line = (
            f"{age:>10}  {s['n']:>4}  {fmt(s['mean_age_error'], '16.2f')}  "
            f"{fmt(s['mean_identity_similarity'], '13.3f')}"
        )
        print(line + (f"  {fmt(fid.get(age), '.2f')}" if fid else ""))
    o, c = summary["overall"], summary["counts"]
    print(
        f"{'overall':>10}  {o['n']:>4}  {fmt(o['mean_age_error'], '16.2f')}  "
        f"{fmt(o['mean_identity_similarity'], '13.3f')}"
    )
    if summary.get("identity_model"):
        print(f"identity: {summary['identity_model']['network']} cosine similarity")
    print(
        f"{c['succeeded']} of {c['inputs']} images evaluated ({c['faces']} faces), "
        f"{c['failed']} failed; results in {output}"
    )
