"""``sam-age align``: photos in, FFHQ-aligned face crops out (training data), as the official
``scripts/align_all_parallel.py``, through the dataset runner (:mod:`sam_age.dataset.align`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from .common import InputLoop, add_quiet_argument, check_output_folder, collect_inputs, finish_ranks

DESCRIPTION = """\
Align the faces of many photos the way SAM was trained (FFHQ alignment from dlib's 68
landmarks, as `sam-age age` aligns them), for `sam-age train`.

Output, per input NAME (the file name without extension):
  DIR/NAME.png               the best face (256 px, or 1024 with --size 1024)
  DIR/NAME_face1.png, ...    with --all-faces: every face, best first
  DIR/train/..., DIR/test/...  with --split F: a fraction F of the inputs (chosen by a hash
                             of NAME: the same every run) goes to test/, the rest to train/
  DIR/manifest.jsonl         one line per input: status, faces, files, request
Running again resumes (inputs done for the same options are skipped); photos without a
face or unreadable are named on stderr, one line each, and the rest goes on.
Many processes or machines: torchrun --nproc_per_node N -m sam_age align ...
Then: sam-age train --train_dir DIR/train --test_dir DIR/test ... (docs/guides/align-and-train.md).
Exit status: 0 all inputs done, 1 some inputs failed, 2 usage error."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "align",
        help="align the faces of photos for training",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs", nargs="*", metavar="INPUT", help="image files, folders or globs ('sample' for the bundled portrait)"
    )
    p.add_argument("--sample", action="store_true", help="also align the bundled sample portrait")
    p.add_argument("--output", "-o", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--size",
        type=int,
        choices=(256, 1024),
        default=256,
        help="crop size: 256 (what SAM trains on; default) or 1024 (FFHQ's)",
    )
    p.add_argument("--all-faces", action="store_true", help="every face of a photo, not only the best detection")
    p.add_argument(
        "--split",
        type=float,
        default=None,
        metavar="F",
        help="also split into train/ and test/: the fraction F (e.g. 0.05) of the inputs goes to test/",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes that read and align photos (default: from the CPU count; 0 = in this process)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace crops already in --output")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_quiet_argument(p)
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from ..dataset.align import AlignRequest, run_align
    from ..dataset.listing import Item
    from ..dataset.runner import NOT_DONE, SKIPPED
    from ..launch import Ranks

    request = AlignRequest(size=args.size, all_faces=args.all_faces, split=args.split)
    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers must be 0 or more, not {args.workers}")
    check_output_folder(args.output)
    named, missing = collect_inputs(args)
    ranks = Ranks.from_env()
    items = [Item(i, name, path) for i, (name, path) in enumerate(named)]
    missing = missing if ranks.main else []
    loop = InputLoop("align", args, len(items[ranks.rank :: ranks.world]) + len(missing), progress=ranks.main)
    loop.fail_missing(missing)

    def report(o) -> None:
        if o.status == NOT_DONE:
            loop.skip_stopped(o.item.name, o.item.path, o.reason)
        elif o.ok:
            extra = {"skipped": True} if o.status == SKIPPED else {}
            loop.add(
                o.item.name,
                o.item.path,
                True,
                faces=o.faces,
                scores=[round(s, 4) for s in o.scores],
                files=[str(f) for f in o.files],
                seconds=round(o.seconds, 3),
                **extra,
            )
        else:
            loop.add(o.item.name, o.item.path, False, o.reason)

    result = run_align(
        items,
        out=Path(args.output),
        request=request,
        ranks=ranks,
        overwrite=args.overwrite,
        workers=args.workers,
        on_outcome=report,
        extra_failed=len(missing),
    )
    if not ranks.distributed:
        return loop.finish()
    return finish_ranks(loop, "align", args, ranks, result)  # under torchrun: per rank, then the launch
