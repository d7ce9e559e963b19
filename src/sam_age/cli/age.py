"""``sam-age age``: photos in, per-age faces, a strip, an animation and pasted-back photos out."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UsageError
from .common import Batch, add_common_arguments, age_label, check_output_dir, prepare_run
from .estimate import relative_notes, relative_report

DESCRIPTION = """\
Age the face in each photo to every target age.

Output, per input NAME (the file name without extension):
  DIR/NAME/age_030.png      one per age (256 px, or 1024 with --size 1024)
  DIR/NAME/strip.png        the aligned input, then every age, in one row
  DIR/NAME/animation.gif    with --gif: young -> old -> young, interpolated (also --mp4)
  DIR/NAME/pasted_030.png   with --paste-back: the whole photo with the aged face put back
With --all-faces every detected face (best first) gets DIR/NAME/face_1/, face_2/, ...
(age files, strip, animation); pasted_*.png stay in DIR/NAME and show every face aged.

Ages (--ages): absolute ages 0..100 ('30', '0,30,60', ranges START:STOP:STEP with
STOP included, '0:100:10'); a leading + or - makes an age relative to the face's
estimated age (DEX, as `sam-age estimate` prints it): '+20', '-10,+10', '-10:+30:10';
results outside 0..100 are clamped, with a note. Relative ages name their files by the
request (age_+20.png); fractional ages keep their decimals (age_030.25.png).

Inputs are files, folders (their images) or globs; 'sample' (or --sample) is a bundled
portrait (NASA's astronaut photo from scikit-image, public domain). An output folder
that already has files is left alone (that input fails) unless --overwrite.
Exit status: 0 all inputs done, 1 some inputs failed, 2 usage or weights error."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("age", help="age the faces in photos", description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(p)
    p.add_argument("--gif", action="store_true", help="write animation.gif (young -> old -> young)")
    p.add_argument("--mp4", action="store_true", help="write animation.mp4 (needs imageio-ffmpeg)")
    p.add_argument("--frames-per-age", type=int, default=4,
                   help="interpolated frames between neighbouring ages in the animation (default: %(default)s)")
    p.add_argument("--fps", type=float, default=12.0, help="animation frame rate (default: %(default)s)")
    p.add_argument("--paste-back", action="store_true", help="also write the whole photo with the aged face, per age")
    p.add_argument("--mask", choices=("face", "box"), default="face",
                   help="paste-back mask: face (from the 68 landmarks, feathered; default) or box "
                        "(the rounded square); the aged face's colours are matched to the photo")
    p.add_argument("--all-faces", action="store_true", help="age every face, not only the best detection")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from ..pipeline import prepare_faces
    from ..render import make_strip, mp4_available, save_gif, save_image, save_mp4

    if args.mp4 and not mp4_available():
        raise UsageError("--mp4 needs imageio and imageio-ffmpeg: pip install 'sam-age[demo]' (or use --gif)")
    if args.frames_per_age < 1 or args.fps <= 0:
        raise UsageError("--frames-per-age must be >= 1 and --fps > 0")
    ages, named, missing, get_pipeline = prepare_run(args)
    out_root = Path(args.output)
    batch = Batch("age", args, len(named) + len(missing))
    batch.fail_missing(missing)

    def process(name: str, path: Path) -> dict:
        folder = out_root / name
        check_output_dir(folder, args.overwrite)
        photo, faces = prepare_faces(path, all_faces=args.all_faces, align=not args.no_align)
        pipe = get_pipeline()
        result = pipe.age_prepared(photo, faces, ages, paste_back=args.paste_back, size=args.size,
                                   mask=args.mask)
        for note in relative_notes(result):
            batch.bar.write(f"sam-age age: {path}: {note}", file=sys.stderr)
        files = []
        for i, face in enumerate(result.faces):
            sub = folder / f"face_{i + 1}" if args.all_faces else folder
            for age, img in zip(ages, face.images):
                files.append(save_image(img, sub / f"age_{age_label(age)}.png"))
            files.append(save_image(make_strip(face.aligned, face.images), sub / "strip.png"))
            if args.gif or args.mp4:
                frames = pipe.animate(face, frames_per_age=args.frames_per_age)
                if args.gif:
                    files.append(save_gif(frames, sub / "animation.gif", fps=args.fps))
                if args.mp4:
                    files.append(save_mp4(frames, sub / "animation.mp4", fps=args.fps))
        for age, img in zip(ages, result.pasted or []):
            files.append(save_image(img, folder / f"pasted_{age_label(age)}.png"))
        return {"faces": len(result.faces), "scores": [round(f.score, 4) for f in result.faces], "files": files,
                **relative_report(result)}

    for name, path in named:
        batch.run(name, path, lambda: process(name, path))
    return batch.finish()
