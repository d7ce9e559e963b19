"""``sam-age export``: SAM's three networks as ONNX or OpenVINO files (float32).

    sam-age export --format onnx                  (writes exported-onnx/)
    sam-age export --checkpoint my_sam.pt --format openvino --output exported-ov/

Writes ``pretrained_encoder``, ``age_encoder`` and ``generator`` plus ``manifest.json``
(shapes and the schedule that composes them; see ``sam_age.export``). Each file is run
against torch before it is moved into place (``--no-check`` skips this).
Exit codes: 0 ok; 1 the export or its check failed; 2 usage or checkpoint error.
"""

from __future__ import annotations

import argparse
import sys

from .common import add_checkpoint_argument


def default_output(fmt: str) -> str:
    """``--output``'s default: a folder named after the format, so the two formats never
    meet in one folder (``age`` and ``video`` default to ``results``)."""
    return f"exported-{fmt}"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export",
        help="write the networks as ONNX or OpenVINO files",
        description="Export the pretrained encoder, the age encoder and the generator (float32, "
        "dynamic batch, fixed noise) for other runtimes, with a manifest of how they "
        "compose. Needs `pip install 'sam-age[export]'` (ONNX) or 'sam-age[bench]' (OpenVINO).",
    )
    add_checkpoint_argument(p)  # --checkpoint, alias --checkpoint_path, as in every command
    p.add_argument("--format", choices=("onnx", "openvino"), default="onnx", help="file format (default onnx)")
    p.add_argument(
        "--output",
        "-o",
        default=None,
        metavar="DIR",
        help="folder for the exported files (default: exported-onnx or exported-openvino, after --format)",
    )
    p.add_argument(
        "--networks",
        default=",".join(("pretrained_encoder", "age_encoder", "generator")),
        help="comma-separated subset of pretrained_encoder,age_encoder,generator (default: all)",
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--overwrite", action="store_true", help="replace exported files already in DIR")
    p.add_argument(
        "--no-check", dest="check", action="store_false", help="do not run the files against torch before writing them"
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    import logging
    import warnings

    from ..checkpoints.load import load_sam
    from ..errors import UsageError
    from ..export import check_output, export_sam
    from ..weights.store import resolve_weights
    from .common import check_output_folder

    if args.output is None:
        args.output = default_output(args.format)
    names = [n.strip() for n in args.networks.split(",") if n.strip()]
    if not names:
        raise UsageError("--networks names no network")
    check_output_folder(args.output)
    out = check_output(args.output, args.format, args.overwrite, names)  # before the model is loaded
    say = (lambda m: None) if args.quiet else (lambda m: print(f"sam-age export: {m}", file=sys.stderr, flush=True))
    model = load_sam(resolve_weights(args.checkpoint, progress=not args.quiet, kind="sam"), device="cpu")
    logging.getLogger("torch").setLevel(logging.ERROR)  # the exporter's chatter (torchvision ops, ...)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = export_sam(
            model,
            out,
            args.format,
            names=names,
            opset=args.opset,
            overwrite=args.overwrite,
            check=args.check,
            on_note=say,
        )
    for name, path in result.files.items():
        check = f" (max relative error vs torch {result.parity[name]:.1e})" if name in result.parity else ""
        say(f"wrote {path}{check}")
    return 0
