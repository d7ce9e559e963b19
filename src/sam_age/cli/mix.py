"""``sam-age mix``: style mixing and reference-guided aging (the original style-mixing script).

The face's W+ codes at each age keep their coarse layers (shape, age) and take the fine
layers (``--latent-mask``, default 8 and up: colour, texture, lighting) from random
styles (``--n-random``, z through the mapping network) or from a reference face aged to
the same age (``--reference``); ``--alpha`` blends instead of replacing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from ..errors import InputError, UsageError
from .common import InputLoop, add_common_arguments, age_label, prepare_run, refuse_existing_result, results_folder

DESCRIPTION = """\
Mix styles into aged faces.

Output, per input NAME:
  DIR/NAME/grid.png               rows: plain aging, then each style source;
                                  columns: the aligned input, then every age; each
                                  tile labelled with its age (--no-labels: bare)
  DIR/NAME/<source>/age_030.png   one per style source and age
                                  (<source> = random_0, random_1, ... or reference)
Exit status: 0 all inputs done, 1 some inputs failed, 2 usage or weights error."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "mix",
        help="style mixing / reference-guided aging",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--reference", metavar="IMG", help="take the styles from this face (aged to each target age)")
    src.add_argument(
        "--n-random",
        "--n_outputs_to_generate",
        dest="n_random",
        type=int,
        default=5,
        help="number of random styles (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random styles (default: %(default)s)")
    p.add_argument(
        "--latent-mask",
        "--latent_mask",
        dest="latent_mask",
        default=None,
        help="comma-separated W+ layers to inject (default: the fine layers 8..n_styles-1)",
    )
    p.add_argument(
        "--alpha",
        "--mix_alpha",
        dest="alpha",
        type=float,
        default=None,
        help="blend: alpha * injected + (1 - alpha) * own (default: replace)",
    )
    p.add_argument(
        "--no-labels",
        dest="labels",
        action="store_false",
        help="leave grid.png's tiles bare (default: each shows its age in a small band at the bottom)",
    )
    p.set_defaults(run=run)
    return p


def parse_mask(text: Optional[str]) -> Optional[List[int]]:
    if text is None:
        return None
    try:
        mask = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise UsageError(f"--latent-mask: cannot read {text!r}; use e.g. 8,9,10,11") from None
    if not mask:
        raise UsageError("--latent-mask: give at least one layer")
    return mask


def run(args) -> int:
    from ..ages import format_age
    from ..face.prepare import prepare_faces
    from ..mixing import StyleMixer, fine_layers
    from ..render import make_grid, save_image, strip_labels

    mask = parse_mask(args.latent_mask)
    if args.alpha is not None and not 0.0 <= args.alpha <= 1.0:
        raise UsageError("--alpha must lie in 0..1")
    if args.reference is None and args.n_random < 1:
        raise UsageError("--n-random must be at least 1")
    setup = prepare_run(args)
    ages, named, missing, get_pipeline = setup.ages, setup.named, setup.missing, setup.get_pipeline
    out_root = Path(args.output)
    reference = None
    if args.reference is not None:
        # A bad reference spoils every input: it is a usage error, not an input failure.
        try:
            reference = prepare_faces(args.reference, align=not args.no_align)
        except InputError as e:
            raise UsageError(f"--reference {e}") from None

    # the bar counts the images the model makes: each age, then each age per style source
    n_sources = 1 if reference is not None else args.n_random
    loop = InputLoop("mix", args, len(named) + len(missing), per_input=len(ages) * (1 + n_sources))
    loop.fail_missing(missing)
    ref_face = {}

    def process(name: str, path: Path) -> dict:
        folder = out_root / name
        refuse_existing_result(folder, args.overwrite)
        photo, faces = prepare_faces(path, align=not args.no_align)
        pipe = get_pipeline()
        base = pipe.age_prepared(photo, faces[:1], ages, size=args.size, progress=loop.advance).faces[0]
        if reference is not None and "face" not in ref_face:  # aged once for the whole batch
            ref_face["face"] = pipe.age_prepared(
                reference[0], reference[1][:1], ages, size=args.size, progress=loop.advance
            ).faces[0]
        mixer = StyleMixer(pipe)
        sources = mixer.style_sources(ages, reference=ref_face.get("face"), n_random=args.n_random, seed=args.seed)
        mixed = mixer.mix_face(base, sources, mask, args.alpha, progress=loop.advance)
        rel, rows = [], [(base.aligned, base.images)]
        mark = setup.mark and setup.mark.but(ingredient=str(path))  # None: --no-mark
        with results_folder(folder, args.overwrite) as staged:  # the folder appears whole, or not at all
            for (label, _), images in zip(sources, mixed):
                for age, img in zip(ages, images):
                    one = mark and mark.but(age=f"{format_age(age)} (style {label})")
                    rel.append(
                        save_image(img, staged / label / f"age_{age_label(age)}.png", mark=one).relative_to(staged)
                    )
                rows.append((base.aligned, images))
            grid = make_grid(rows, [strip_labels(base.ages)] * len(rows) if args.labels else None)
            every = mark and mark.but(age=",".join(format_age(a) for a in ages))
            rel.append(save_image(grid, staged / "grid.png", mark=every).relative_to(staged))
        layers = mask if mask is not None else fine_layers(pipe.model.n_styles)
        return {
            "sources": [s[0] for s in sources],
            "latent_mask": layers,
            "alpha": args.alpha,
            "files": [folder / r for r in rel],
        }

    loop.run_each(named, process)
    return loop.finish()
