"""``sam-age age``: photos in, per-age faces, a strip, an animation and pasted-back photos out."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

from ..errors import InputError, UsageError
from .main import add_device_arguments
from ..pipeline import parse_ages, sample_path  # noqa: F401  (shared with web and evaluate)

SAMPLE = "sample"
DESCRIPTION = """\
Age the face in each photo to every target age.

Output, per input NAME (the file name without extension):
  DIR/NAME/age_030.png      one per age (256 px, or 1024 with --size 1024)
  DIR/NAME/strip.png        the aligned input, then every age, in one row
  DIR/NAME/animation.gif    with --gif: young -> old -> young, interpolated (also --mp4)
  DIR/NAME/pasted_030.png   with --paste-back: the whole photo with the aged face put back
With --all-faces every detected face (best first) gets DIR/NAME/face_1/, face_2/, ...
(age files, strip, animation); pasted_*.png stay in DIR/NAME and show every face aged.

Inputs are files, folders (their images) or globs; 'sample' (or --sample) is a bundled
portrait (NASA's astronaut photo from scikit-image, public domain). An output folder
that already has files is left alone (that input fails) unless --overwrite.
Exit status: 0 all inputs done, 1 some inputs failed, 2 usage or weights error."""


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``age`` and ``mix``."""
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders or globs ('sample' for the bundled portrait)")
    p.add_argument("--sample", action="store_true", help="also process the bundled sample portrait")
    p.add_argument("--checkpoint", default="sam_ffhq_aging",
                   help="SAM weights: a file (.pt/.pdparams/.safetensors) or a registry name, fetched into "
                        "the cache when missing (default: %(default)s)")
    p.add_argument("--ages", default="0:100:10",
                   help="target ages: a list '0,10,20' and/or inclusive ranges 'START:STOP:STEP' "
                        "(default %(default)s = 11 ages)")
    p.add_argument("--output", "-o", default="results", metavar="DIR", help="output folder (default: %(default)s)")
    p.add_argument("--size", type=int, choices=(256, 1024), default=256,
                   help="output size: 256 (pooled, as the original) or 1024 (the generator's own)")
    add_device_arguments(p)
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default: %(default)s)")
    p.add_argument("--no-align", action="store_true", help="inputs are already aligned 256 px face crops")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")


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
    p.add_argument("--all-faces", action="store_true", help="age every face, not only the best detection")
    p.set_defaults(run=run)
    return p


# -- helpers shared with ``mix`` ------------------------------------------------------------
def age_label(age: float) -> str:
    return f"{int(age):03d}" if float(age).is_integer() else f"{age:05.1f}"


def collect_inputs(args) -> tuple:
    """-> (list of (name, path)), missing-argument messages). Names are unique stems."""
    from ..images import list_inputs
    raw = [a for a in args.inputs if a != SAMPLE]
    paths, missing = list_inputs(raw)
    if args.sample or SAMPLE in args.inputs:
        paths.insert(0, sample_path())
    if not paths and not missing:
        raise UsageError("no input images (give files, folders, globs, or 'sample')")
    named, used = [], set()
    for p in paths:
        name, k = p.stem or "image", 1
        while name in used:
            k += 1
            name = f"{p.stem}_{k}"
        used.add(name)
        named.append((name, p))
    return named, missing


_PIPELINE_CACHE: Dict[tuple, object] = {}


def load_pipeline(path: Path, device, dtype, batch_size):
    """Load once per process and settings (tests and the web demo call the CLI in-process)."""
    from ..pipeline import AgePipeline
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_mtime_ns, st.st_size, str(device), str(dtype))
    pipe = _PIPELINE_CACHE.get(key)
    if pipe is None:
        _PIPELINE_CACHE.clear()  # keep one model in memory
        pipe = AgePipeline.from_pretrained(path, device=device, dtype=dtype, batch_size=batch_size)
        _PIPELINE_CACHE[key] = pipe
    pipe.batch_size = max(1, int(batch_size or 8))
    return pipe


def check_output_dir(folder: Path, overwrite: bool) -> None:
    if folder.exists() and not overwrite and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"output {folder} already exists (use --overwrite to replace it)")


class Batch:
    """The per-input loop every command shares: progress bar, one stderr line per failed
    input, JSON summary, exit code."""

    def __init__(self, command: str, args, total: int):
        from tqdm import tqdm
        self.command, self.args = command, args
        self.records: List[dict] = []
        self.start = time.perf_counter()
        self.bar = tqdm(total=total, unit="image", file=sys.stderr, disable=True if args.json else None,
                        dynamic_ncols=True, desc=f"sam-age {command}")

    def fail(self, name: str, reason: str, path=None) -> None:
        self.records.append({"input": str(path) if path else name, "name": name, "ok": False,
                             "error": reason, "files": []})
        self.bar.write(f"sam-age {self.command}: {path or name}: {reason}", file=sys.stderr)

    def run(self, name: str, path: Path, work: Callable[[], dict]) -> None:
        t0 = time.perf_counter()
        try:
            rec = work()
        except InputError as e:
            self.fail(name, e.reason, path)
        else:
            rec.update({"input": str(path), "name": name, "ok": True,
                        "seconds": round(time.perf_counter() - t0, 3)})
            rec["files"] = [str(f) for f in rec.get("files", [])]
            self.records.append(rec)
        finally:
            self.bar.update(1)

    def finish(self) -> int:
        self.bar.close()
        ok = sum(r["ok"] for r in self.records)
        failed = len(self.records) - ok
        seconds = round(time.perf_counter() - self.start, 3)
        if self.args.json:
            print(json.dumps({"command": self.command, "output": str(self.args.output), "ok": ok,
                              "failed": failed, "seconds": seconds, "inputs": self.records}, indent=2))
        else:
            n_files = sum(len(r["files"]) for r in self.records)
            print(f"{ok} of {len(self.records)} inputs done, {n_files} files in {self.args.output} "
                  f"({seconds:.1f} s)")
        return 1 if failed else 0


def prepare_run(args):
    """Check flags, resolve the weights (may download; exit 2 early when unavailable),
    list inputs. The model itself loads at the first face (bad inputs cost nothing)."""
    from ..engine import resolve_device
    from ..pipeline import resolve_weights
    ages = parse_ages(args.ages, "--ages")
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    named, missing = collect_inputs(args)
    weights = resolve_weights(args.checkpoint, progress=not args.json)
    if not Path(weights).is_file():
        from ..errors import CheckpointError
        raise CheckpointError("file not found", weights)
    device = resolve_device(args.device)
    dtype = None if args.dtype == "auto" else args.dtype
    return ages, named, missing, lambda: load_pipeline(weights, device, dtype, args.batch_size)


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
    for msg in missing:
        arg, _, reason = msg.partition(": ")
        batch.fail(arg, reason)
        batch.bar.update(1)

    def process(name: str, path: Path) -> dict:
        folder = out_root / name
        check_output_dir(folder, args.overwrite)
        photo, faces = prepare_faces(path, all_faces=args.all_faces, align=not args.no_align)
        pipe = get_pipeline()
        result = pipe.age_prepared(photo, faces, ages, paste_back=args.paste_back, size=args.size)
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
        return {"faces": len(result.faces), "scores": [round(f.score, 4) for f in result.faces], "files": files}

    for name, path in named:
        batch.run(name, path, lambda: process(name, path))
    return batch.finish()
