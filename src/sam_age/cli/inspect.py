"""``sam-age inspect FILE...``: what a file says about itself (the AI-edit XMP and C2PA)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import EXIT_OK, EXIT_SOME_FAILED

DESCRIPTION = """\
Print what each file says about how it was made: the XMP fields (the IPTC digital
source type: trainedAlgorithmicMedia for a generated face, compositeWithTrainedAlgorithmicMedia
for a face pasted into a photo; the tool, its version and the age asked) and the C2PA
manifest (Content Credentials) with its validation state as c2pa-python reports it
(Valid: the signature and hashes hold; Trusted: also chains to --trust; Invalid: changed
after signing, or a bad signature).

A file without these (re-saved by an editor that drops metadata, or written with
--no-mark) is reported "unmarked".
Exit status: 0 every file was read (1 with --strict if one is unmarked or its C2PA is
Invalid), 1 some file could not be read, 2 usage error."""

FIELDS = (
    ("Iptc4xmpExt:DigitalSourceType", "digital source type"),
    ("Iptc4xmpExt:AISystemUsed", "AI system"),
    ("Iptc4xmpExt:AISystemVersionUsed", "AI system version"),
    ("Iptc4xmpExt:AIPromptInformation", "asked"),
    ("xmp:CreatorTool", "creator tool"),
    ("dc:description", "description"),
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "inspect",
        help="show the AI-edit marks and C2PA of files",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="images (PNG, JPEG, WebP, GIF) or MP4 videos")
    p.add_argument("--json", action="store_true", help="one JSON object per file, as a list on stdout")
    p.add_argument(
        "--trust",
        metavar="PEM",
        default=None,
        help="C2PA trust anchors (PEM): a signature that chains to them is reported Trusted",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a file is unmarked or its C2PA is Invalid")
    p.set_defaults(run=run)
    return p


def _text(rec: dict) -> str:
    lines = [f"{rec['file']}: {'marked' if rec['marked'] else 'unmarked'}"]
    xmp = rec.get("xmp") or {}
    for key, label in FIELDS:
        if xmp.get(key):
            lines.append(f"  {label}: {xmp[key]}")
    if xmp.get("samage:AgeRequested"):
        lines.append(f"  age asked: {xmp['samage:AgeRequested']}")
    if rec.get("xmp_error"):
        lines.append(f"  XMP: {rec['xmp_error']}")
    if not xmp and not rec.get("xmp_error"):
        lines.append("  XMP: none")
    if rec.get("comment"):
        lines.append(f"  container comment: {rec['comment']}")
    c = rec.get("c2pa")
    if c is None:
        lines.append("  C2PA: none")
    elif "error" in c:
        lines.append(f"  C2PA: {c['error']}")
    else:
        who = c.get("signer") or {}
        signer = ", ".join(str(who[k]) for k in ("common_name", "issuer") if who.get(k))
        lines.append(f"  C2PA: {c['state']}" + (f" (signed by {signer}, {who.get('alg', '?')})" if signer else ""))
        for f in c.get("failures") or []:
            lines.append(f"    status: {f}")
        for a in c.get("actions") or []:
            src = f" [{a['digitalSourceType'].rsplit('/', 1)[-1]}]" if a.get("digitalSourceType") else ""
            lines.append(f"    action: {a.get('action')}{src}")
        for i in c.get("ingredients") or []:
            lines.append(f"    ingredient: {i.get('title')} ({i.get('format')}, {i.get('relationship')})")
    return "\n".join(lines)


def run(args) -> int:
    from ..errors import UsageError
    from ..marks import read_marks

    if args.trust is not None and not Path(args.trust).is_file():
        raise UsageError(f"--trust {args.trust}: no such file")
    records, failed, strict_failed = [], 0, 0
    for name in args.files:
        path = Path(name)
        try:
            if not path.is_file():
                raise OSError(f"{'no such file' if not path.exists() else 'not a file'}")
            rec = read_marks(path, trust_anchors=args.trust)
        except (OSError, ValueError) as e:
            failed += 1
            reason = (e.strerror if isinstance(e, OSError) and e.strerror else str(e)) or type(e).__name__
            records.append({"file": str(path), "error": reason})
            print(f"sam-age inspect: {path}: {reason}", file=sys.stderr)
            continue
        records.append(rec)
        c = rec.get("c2pa") or {}
        if not rec["marked"] or c.get("state") == "Invalid":
            strict_failed += 1
        if not args.json:
            print(_text(rec))
    if args.json:
        print(json.dumps(records, indent=2, default=str))
    if failed or (args.strict and strict_failed):
        return EXIT_SOME_FAILED
    return EXIT_OK
