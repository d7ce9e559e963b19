"""``sam-age video``: age the people in a clip, steadily, with the sound kept."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..defaults import DEFAULT_VIDEO_AGE, DEFAULT_VIDEO_CRF
from ..errors import UsageError
from .common import (
    InputLoop,
    add_age_predictor_argument,
    add_batch_size_argument,
    add_checkpoint_argument,
    add_device_arguments,
    add_mark_arguments,
    add_report_arguments,
    apply_report,
    check_batch_size,
    check_device,
    check_output_folder,
    report_options,
    resolve_mark,
)

DESCRIPTION = """\
Age every person in a video clip (or one: --face N, --largest).

Output, per input clip NAME.EXT, in DIR:
  DIR/NAME_age070.mp4          one per --ages value
  DIR/NAME_age020-080.mp4      with --age-ramp 20:80 (the age moves over the clip)
  ..._sbs.mp4                  with --side-by-side (input | aged in one frame)
Same frame rate, frame count, size and duration as the input (odd sizes padded by one
pixel, rotated phone clips turned upright), H.264 yuv420p, the input's audio copied.

Faces are tracked across frames; landmarks and codes are smoothed over time and the
generator's noise is fixed, so the aged face holds still. Work is cached per chunk under
DIR/.sam-age-video/: an interrupted run continues where it stopped when run again with
the same arguments. An output that exists is left alone (that input fails) unless
--overwrite.
Exit status: 0 all inputs done, 1 some inputs failed, 2 usage or weights error."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "video",
        help="age the people in a video clip",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files (mp4, mov, mkv, webm, avi, ...)")
    add_checkpoint_argument(p)
    ages = p.add_mutually_exclusive_group()
    ages.add_argument("--age", type=float, help=f"target age (default {DEFAULT_VIDEO_AGE:g})")
    ages.add_argument(
        "--ages", help="several target ages, one output each: '30,70' or '20:80:20' (one analysis pass for all)"
    )
    ages.add_argument("--age-ramp", metavar="START:END", help="the age moves linearly over the clip, e.g. 20:80")
    p.add_argument("--output", "-o", default="results", metavar="DIR", help="output folder (default: %(default)s)")
    p.add_argument("--side-by-side", action="store_true", help="write input | aged side by side")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--face", type=int, metavar="N", help="age only track N (ids in order of appearance; see --json)")
    who.add_argument("--largest", action="store_true", help="age only the person with the largest face")
    p.add_argument(
        "--size",
        type=int,
        choices=(256, 1024),
        default=256,
        help="generated face size before paste-back: 256 or 1024 (for large faces)",
    )
    add_device_arguments(p)
    add_batch_size_argument(p)
    p.add_argument(
        "--detect-every",
        type=int,
        default=1,
        metavar="K",
        help="run the face detector on every K-th frame, carrying landmarks between (default: %(default)s)",
    )
    p.add_argument(
        "--smooth-landmarks",
        type=float,
        default=2.0,
        metavar="SIGMA",
        help="temporal Gaussian on landmarks, in frames (0 = off; default: %(default)s)",
    )
    p.add_argument(
        "--smooth-codes",
        type=float,
        default=1.5,
        metavar="SIGMA",
        help="temporal Gaussian on each track's W+ codes, in frames (0 = off; default: %(default)s)",
    )
    p.add_argument(
        "--max-gap",
        type=int,
        default=5,
        metavar="FRAMES",
        help="frames without a detection bridged inside a track (default: %(default)s)",
    )
    p.add_argument(
        "--min-track",
        type=int,
        default=3,
        metavar="FRAMES",
        help="faces detected in fewer frames are ignored as detector flukes (default: %(default)s)",
    )
    p.add_argument("--max-frames", type=int, metavar="N", help="process only the first N frames")
    p.add_argument(
        "--crf",
        type=int,
        default=DEFAULT_VIDEO_CRF,
        help="H.264 quality, 0..51, lower is better (default: %(default)s)",
    )
    p.add_argument("--keep-cache", action="store_true", help="keep the per-chunk cache after a finished run")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout (per input and track)")
    add_report_arguments(p)
    add_age_predictor_argument(p)  # DEX, for --report's achieved age
    add_mark_arguments(p)
    p.set_defaults(run=run)
    return p


def _job(args):
    from ..ages import parse_ages
    from ..video import VideoJob

    if args.age_ramp:
        parts = args.age_ramp.split(":")
        try:
            ramp = tuple(float(x) for x in parts)
        except ValueError:
            ramp = ()
        if len(ramp) != 2:
            raise UsageError(f"--age-ramp: use START:END, e.g. 20:80 (got {args.age_ramp!r})")
        job = VideoJob(ramp=ramp)
    elif args.ages:
        job = VideoJob(ages=parse_ages(args.ages, "--ages"))
    else:
        job = VideoJob(ages=[DEFAULT_VIDEO_AGE if args.age is None else args.age])
    job.side_by_side, job.face, job.largest, job.size = args.side_by_side, args.face, args.largest, args.size
    job.detect_every, job.smooth_landmarks, job.smooth_codes = (
        args.detect_every,
        args.smooth_landmarks,
        args.smooth_codes,
    )
    job.max_gap, job.max_frames, job.crf, job.min_track = args.max_gap, args.max_frames, args.crf, args.min_track
    check_batch_size(args.batch_size)
    return job.check()


def run(args) -> int:
    from ..engine import resolve_device
    from ..errors import CheckpointError
    from ..video import VideoAger, probe_video
    from ..video.io import ffmpeg_exe
    from ..weights.store import resolve_weights

    job = _job(args)
    mark = resolve_mark(args, "video")  # a certificate c2pa refuses: exit 2 now
    check_device(args.device)
    check_output_folder(args.output)
    ffmpeg_exe()  # exit 2 at once when imageio-ffmpeg is missing
    weights = resolve_weights(args.checkpoint, progress=not args.json, kind="sam")
    if not Path(weights).is_file():
        raise CheckpointError("file not found", weights)
    reporting = report_options(args, "video")
    device = resolve_device(args.device)
    dtype = None if args.dtype == "auto" else args.dtype
    loop = InputLoop("video", args, len(args.inputs))
    loop.bar.unit = "clip"
    ager = None

    def process(path: Path) -> dict:
        nonlocal ager
        probe_video(path)  # bad input fails before the model loads
        if ager is None:
            from ..pipeline import shared_pipeline

            pipe = apply_report(shared_pipeline(weights, device, dtype, args.batch_size), reporting)
            ager = VideoAger(pipe, weights=weights)
        result = ager.run(
            path,
            args.output,
            job,
            overwrite=args.overwrite,
            progress=not args.json,
            keep_cache=args.keep_cache,
            mark=mark,
        )
        from ..video.report import report_notes

        for note in result.notes + report_notes(result.report):
            loop.bar.write(f"sam-age video: {path}: {note}", file=sys.stderr)
        rec = result.to_json()
        rec.pop("input")
        return rec

    for raw in args.inputs:
        path = Path(raw)
        loop.run(path.stem, path, lambda: process(path))
    return loop.finish()
