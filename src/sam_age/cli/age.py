"""``sam-age age``: photos in, per-age faces, a strip, an animation and pasted-back photos out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..dataset.outputs import FORMATS, LAYOUTS
from ..errors import UsageError
from ..fileio import shown
from .common import (
    InputLoop,
    add_common_arguments,
    add_report_arguments,
    apply_report,
    finish_ranks,
    note,
    prepare_run,
    report_options,
)
from .stages import Stages, compute_path, compute_path_line, model_detail

DESCRIPTION = """\
Age the face in each photo to every target age.

Output, per input NAME (the file name without extension):
  DIR/NAME/age_030.png      one per age (256 px, or 1024 with --size 1024)
  DIR/NAME/strip.png        the aligned input, then every age, in one row, each tile labelled
                            with its age (--no-labels: bare; the animation's frames likewise)
  DIR/NAME/animation.gif    with --gif: young -> old -> young, interpolated (also --mp4)
  DIR/NAME/pasted_030.png   with --paste-back: the whole photo with the aged face put back
  DIR/manifest.jsonl        one line per input: status, faces, ages, files, request
                            (with --report: per output achieved_age, identity, caption, check)
With --all-faces every detected face (best first) gets DIR/NAME/face_1/, face_2/, ...
(age files, strip, animation); pasted_*.png stay in DIR/NAME and show every face aged.
--layout flat writes DIR/NAME_age_030.png (NAME_face2_age_030.png, ...) and no strips;
--format jpg|webp changes the still images' format.

Ages (--ages): absolute ages 0..100 ('30', '0,30,60', ranges START:STOP:STEP with
STOP included, '0:100:10'); a leading + or - makes an age relative to the face's
estimated age (DEX, as `sam-age estimate` prints it): '+20', '-10,+10', '-10:+30:10';
results outside 0..100 are clamped, with a note. Relative ages name their files by the
request (age_+20.png); fractional ages keep their decimals (age_030.25.png).

Inputs are files, folders (their images) or globs; 'sample' is a bundled
portrait (NASA's astronaut photo from scikit-image, public domain).
Running again resumes: inputs the manifest records as done for the same ages and options
are skipped (and count as done), interrupted ones are redone. An existing result for
another request is left alone (that input fails) unless --overwrite.
Many processes, GPUs or machines: torchrun --nproc_per_node N -m sam_age age ... splits
the inputs between them (see docs/guides/datasets.md).
Exit status: 0 all inputs done, 1 some inputs failed, 2 usage or weights error."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "age",
        help="age the faces in photos",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(p)
    p.add_argument("--gif", action="store_true", help="write animation.gif (young -> old -> young)")
    p.add_argument("--mp4", action="store_true", help="write animation.mp4 (needs imageio-ffmpeg)")
    p.add_argument(
        "--frames-per-age",
        type=int,
        default=4,
        metavar="K",
        help="animation frames from one age to the next, the age's own frame included: "
        "1 = the ages only, 4 = each age and 3 in between (default: %(default)s)",
    )
    p.add_argument(
        "--no-labels",
        dest="labels",
        action="store_false",
        help="leave the strip's tiles and the animation's frames bare (default: each shows its age "
        "in a small band at the bottom)",
    )
    p.add_argument("--fps", type=float, default=12.0, help="animation frame rate (default: %(default)s)")
    p.add_argument("--paste-back", action="store_true", help="also write the whole photo with the aged face, per age")
    p.add_argument(
        "--mask",
        choices=("face", "box"),
        default="face",
        help="paste-back mask: face (from the 68 landmarks, feathered; default) or box "
        "(the rounded square); the aged face's colours are matched to the photo",
    )
    p.add_argument("--all-faces", action="store_true", help="age every face, not only the best detection")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="png",
        help="still images as png (lossless), jpg or webp (quality 95) (default: %(default)s)",
    )
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="per-input",
        help="per-input: a folder per input; flat: every file in DIR (default: %(default)s)",
    )
    add_report_arguments(p)
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes that read and align photos ahead of the model (default: from the "
        "CPU count; 0 = in this process)",
    )
    p.set_defaults(run=run)
    return p


def flag_notes(args, ages) -> None:
    """A note for each flag that the other flags make do nothing (or little)."""
    if args.paste_back and args.no_align:
        note(
            "age",
            "--paste-back does nothing with --no-align (the input is already the face): no pasted_*.png are written",
            args,
        )
    if (args.gif or args.mp4) and len(ages) < 2:
        flags = " and ".join(f for f, on in (("--gif", args.gif), ("--mp4", args.mp4)) if on)
        note(
            "age",
            f"{flags} with one age: the animation is a single still frame (give two or more --ages to animate)",
            args,
        )


def run(args) -> int:
    from ..checkpoints.load import weights_identity
    from ..dataset.listing import drop_own_results, name_items, recorded_names
    from ..dataset.manifest import read_state
    from ..dataset.outputs import Request
    from ..dataset.runner import NOT_DONE, SKIPPED, run_shard
    from ..engine import resolve_device
    from ..launch import Ranks
    from ..marks import kind_of
    from ..render import mp4_available

    if args.mp4 and not mp4_available():
        raise UsageError("--mp4 needs imageio and imageio-ffmpeg: pip install 'sam-age[demo]' (or use --gif)")
    if args.frames_per_age < 1 or args.fps <= 0:
        raise UsageError("--frames-per-age must be >= 1 and --fps > 0")
    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers must be 0 or more, not {args.workers}")
    ranks = Ranks.from_env()
    setup = prepare_run(args)
    flag_notes(args, setup.ages)
    reporting = report_options(args, "age")
    shared = setup.get_pipeline
    setup.get_pipeline = lambda: apply_report(shared(), reporting)
    request = Request(
        ages=setup.ages,
        checkpoint=weights_identity(setup.weights),
        size=args.size,
        format=args.format,
        layout=args.layout,
        all_faces=args.all_faces,
        align=not args.no_align,
        paste_back=args.paste_back,
        mask=args.mask,
        gif=args.gif,
        mp4=args.mp4,
        frames_per_age=args.frames_per_age,
        fps=args.fps,
        labels=args.labels,
        mark=kind_of(setup.mark),
    )
    # Names the manifest records stay their inputs' own; sam-age's own results are no inputs.
    state = read_state(Path(args.output))
    paths, own = drop_own_results([path for _, path in setup.named], Path(args.output), state)
    if own and ranks.main:
        note(
            "age",
            f"left out {len(own)} input(s) that are sam-age's own results in {shown(args.output)} "
            f"(recorded in its manifest), e.g. {shown(own[0])}",
            args,
        )
    items = name_items(paths, recorded_names(state))
    missing = setup.missing if ranks.main else []  # every rank lists them; rank 0 reports them
    n_ages = len(setup.ages)  # the bar counts face-ages: one per image the model makes
    loop = InputLoop(
        "age",
        args,
        len(items[ranks.rank :: ranks.world]) + len(missing),
        per_input=n_ages,
        unit="face-age",
        progress=ranks.main,
    )
    loop.fail_missing(missing)
    stages = Stages("age", None if loop.bar.disable else lambda line: loop.bar.write(line, file=sys.stderr))

    loaded: list = []  # the pipeline, once loaded

    def get_pipeline():  # the model loads at the first face: say so, and where it runs
        stages.start("load", model_detail(setup.weights))
        pipe = setup.get_pipeline()
        loaded[:] = [pipe]
        path = compute_path(pipe, args.dtype)
        stages.note("compute_path", path, compute_path_line(path))
        stages.start("first_pass", f"({n_ages} age{'s' if n_ages != 1 else ''} per face)")
        loop.bar.unpause()  # the bar's rate (ETA) starts with the model's work, not the load
        return pipe

    def advance(n: int) -> None:
        stages.first_image()
        loop.advance(n)

    def report(o) -> None:
        for line in o.notes:  # the estimated age, clamped relative ages
            loop.bar.write(f"sam-age age: {shown(o.item.path)}: {line}", file=sys.stderr)
        units = o.faces * n_ages if o.aged else 0  # (already counted, pass by pass)
        if o.status == NOT_DONE:
            loop.skip_stopped(o.item.name, o.item.path, o.reason)
        elif o.ok:
            extra = {"skipped": True} if o.status == SKIPPED else {}
            loop.add(
                o.item.name,
                o.item.path,
                True,
                units=units,
                faces=o.faces,
                scores=[round(s, 4) for s in o.scores],
                files=[str(f) for f in o.files],
                seconds=round(o.seconds, 3),
                **o.report,
                **extra,
            )
        else:
            loop.add(o.item.name, o.item.path, False, o.reason, units=units)

    result = run_shard(
        items,
        out=Path(args.output),
        request=request,
        get_pipeline=get_pipeline,
        ranks=ranks,
        overwrite=args.overwrite,
        batch_size=args.batch_size,
        workers=args.workers,
        extra_failed=len(missing),
        on_outcome=report,
        on_progress=advance,
        on_prepared=lambda item, faces: loop.expect(item.name, faces * n_ages),
        on_stage=stages.start,
        device=str(resolve_device(args.device, ranks)),
        mark=setup.mark,
    )
    if loaded:  # the forms left "auto" are named now that the first call has chosen them
        stages.notes["compute_path"] = compute_path(loaded[0], args.dtype)
    loop.json_extra = stages.as_json()  # stage timings and the compute path, in --json
    if not ranks.distributed:
        return loop.finish()
    return finish_ranks(loop, "age", args, ranks, result)  # under torchrun: per rank, then the launch
