"""What an input's results are called, and how they reach ``OUT`` whole or not at all.

Names (``NAME`` = the input's unique stem, ``AGE`` = :func:`sam_age.ages.age_label` of the
age asked: ``030``, ``030.25``, ``+20``; ``EXT`` = ``--format``)::

    --layout per-input (default)            --layout flat (no folders, no strips)
    NAME/age_AGE.EXT                        NAME_age_AGE.EXT
    NAME/strip.EXT                          -
    NAME/animation.gif|.mp4                 NAME_animation.gif|.mp4
    NAME/pasted_AGE.EXT                     NAME_pasted_AGE.EXT
    with --all-faces, face k (1 = best):
    NAME/face_k/age_AGE.EXT, strip, anim.   NAME_facek_age_AGE.EXT, NAME_facek_animation.gif

Invariants:

* An input's files are first written into this process's private staging folder
  (``OUT/.sam-age/staging/<part>/``, same file system as ``OUT``) and then renamed into
  place: with ``per-input`` the whole ``NAME/`` folder moves in one ``rename``, so
  ``OUT/NAME`` is either absent or complete; with ``flat`` each file moves by itself
  (each file whole; an input cut between two renames is recorded ``started`` in the
  manifest, so the next run knows the stray files are its own and redoes it).
* Nothing already in ``OUT`` is replaced unless the caller says so (``replace``: the user
  asked ``--overwrite``, or the manifest shows the result is this request's own), and even
  then only what sam-age wrote for *this* input (:meth:`Layout.foreign`): a ``NAME/``
  folder holds the marker :data:`sam_age.fileio.OWN_MARKER` listing its files, and
  ``own`` (the files the manifest records for the input) counts too; a flat file is
  replaced only when the manifest records it for this input. Anything else in the way
  (a user's folder, a file, a link) is left alone and the input fails
  (:class:`sam_age.fileio.NotOwnError`). An old folder is emptied file by file
  (:func:`sam_age.fileio.remove_own`), never with ``rmtree``.
* :class:`Request` is everything that changes the files: two runs with equal requests
  write the same names with the same meaning, so one may skip what the other finished.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import AbstractSet, List, Optional, Tuple

from ..ages import age_label, format_age, parse_ages
from ..fileio import NotOwnError, foreign_entry, move_in
from .manifest import staging_root

FORMATS = ("png", "jpg", "webp")
LAYOUTS = ("per-input", "flat")


@dataclass(frozen=True)
class Request:
    """What a run asks for each input (recorded in the manifest beside each result)."""

    ages: Tuple[str, ...]  # as asked, normalised (sam_age.ages.format_age): "30", "42.5", "+20"
    checkpoint: str  # sam_age.checkpoints.load.weights_identity of the weights: another model, another request
    size: int = 256
    format: str = "png"
    layout: str = "per-input"
    all_faces: bool = False
    align: bool = True
    paste_back: bool = False
    mask: Optional[str] = "face"  # only with paste-back
    gif: bool = False
    mp4: bool = False
    frames_per_age: Optional[int] = None  # only with an animation
    fps: Optional[float] = None
    labels: Optional[bool] = True  # ages written on strip tiles and animation frames (--no-labels: bare)
    mark: str = "xmp"  # how the files are marked (sam_age.marks.kind_of): xmp | c2pa | none

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        object.__setattr__(self, "ages", tuple(format_age(a) for a in parse_ages(list(self.ages), relative=True)))
        if not (self.paste_back and self.align):  # nothing is pasted: the mask does not matter
            object.__setattr__(self, "mask", None)
        if not (self.gif or self.mp4):  # does not change the files: not part of the request
            object.__setattr__(self, "frames_per_age", None)
            object.__setattr__(self, "fps", None)
        if self.layout == "flat" and not (self.gif or self.mp4):  # no strip, no animation: nothing labelled
            object.__setattr__(self, "labels", None)

    def to_json(self) -> dict:
        d = asdict(self)
        d["ages"] = list(self.ages)
        return d

    def same(self, recorded: Optional[dict]) -> bool:
        """``recorded`` (a manifest's request) asks for what this one asks (the weights as
        :func:`~sam_age.checkpoints.load.same_weights` compares them: an older manifest's
        "NAME (SIZE bytes)" still matches)."""
        from ..checkpoints.load import same_weights  # here: that package imports torch, --help none

        if not isinstance(recorded, dict):
            return False
        mine = self.to_json()
        if same_weights(recorded.get("checkpoint"), mine["checkpoint"]):
            recorded = {**recorded, "checkpoint": mine["checkpoint"]}
        return recorded == mine


@dataclass
class FaceFiles:
    ages: List[str]  # relative paths, one per age
    strip: Optional[str] = None
    gif: Optional[str] = None
    mp4: Optional[str] = None

    def all(self) -> List[str]:
        return [*self.ages, *(p for p in (self.strip, self.gif, self.mp4) if p)]


@dataclass
class Plan:
    """Every file of one input, relative to ``OUT``."""

    faces: List[FaceFiles]
    pasted: List[str] = field(default_factory=list)

    def all(self) -> List[str]:
        return [p for f in self.faces for p in f.all()] + list(self.pasted)


class Layout:
    def __init__(self, request: Request):
        self.r = request
        self.ext = "." + request.format
        self.parsed_ages = parse_ages(list(request.ages), relative=True)  # floats and RelativeAge

    def plan(self, name: str, n_faces: int = 1) -> Plan:
        r, ext = self.r, self.ext
        labels = [age_label(a) for a in self.parsed_ages]
        faces = []
        for k in range(1, max(1, n_faces) + 1):
            if r.layout == "per-input":
                base = f"{name}/face_{k}/" if r.all_faces else f"{name}/"
                faces.append(
                    FaceFiles(
                        [f"{base}age_{a}{ext}" for a in labels],
                        f"{base}strip{ext}",
                        f"{base}animation.gif" if r.gif else None,
                        f"{base}animation.mp4" if r.mp4 else None,
                    )
                )
            else:
                base = f"{name}_face{k}_" if r.all_faces else f"{name}_"
                faces.append(
                    FaceFiles(
                        [f"{base}age_{a}{ext}" for a in labels],
                        None,
                        f"{base}animation.gif" if r.gif else None,
                        f"{base}animation.mp4" if r.mp4 else None,
                    )
                )
        sep = "/" if r.layout == "per-input" else "_"
        pasted = [f"{name}{sep}pasted_{a}{ext}" for a in labels] if r.paste_back and r.align else []
        return Plan(faces, pasted)

    def occupied(self, out: Path, name: str, n_faces: int = 1) -> Optional[Path]:
        """The first thing in ``OUT`` that this input's results would replace, or None.
        (per-input: a non-empty ``NAME`` folder or a file of that name; flat: a planned file.)"""
        if self.r.layout == "per-input":
            p = Path(out) / name
            if p.is_dir():
                return p if any(p.iterdir()) else None
            return p if p.exists() or p.is_symlink() else None
        for rel in self.plan(name, n_faces).all():
            p = Path(out) / rel
            if p.exists() or p.is_symlink():
                return p
        return None

    def foreign(self, out: Path, name: str, own: AbstractSet[str] = frozenset(), n_faces: int = 1) -> Optional[Path]:
        """The first thing in ``OUT`` in this input's way that sam-age did not write for it,
        or None. ``own``: the files (relative to ``OUT``) the manifest records for this
        input. per-input: ``OUT/NAME`` must be absent, an empty folder, or a folder of
        sam-age's own (:func:`sam_age.fileio.foreign_entry`); flat: every planned file
        that exists must be a plain file recorded in ``own``."""
        out = Path(out)
        if self.r.layout == "per-input":
            return foreign_entry(out / name, _inside(own, name))
        for rel in self.plan(name, n_faces).all():
            p = out / rel
            if os.path.lexists(p) and (rel not in own or p.is_symlink() or not p.is_file()):
                return p
        return None


def _inside(own: AbstractSet[str], name: str) -> List[str]:
    """``own``'s paths under ``NAME/``, relative to it."""
    return [rel[len(name) + 1 :] for rel in own if rel.startswith(name + "/")]


class Staging:
    """This process's private folder for results under construction."""

    def __init__(self, out: Path, stem: str):
        self.out = Path(out)
        self.root = staging_root(out) / stem
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def discard(self, name: str, plan: Plan) -> None:
        """Forget what was staged for one input."""
        shutil.rmtree(self.root / name, ignore_errors=True)
        for rel in plan.all():
            try:
                (self.root / rel).unlink()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                pass

    def place(
        self, name: str, plan: Plan, layout: Layout, replace: bool, own: AbstractSet[str] = frozenset()
    ) -> List[Path]:
        """Move one input's staged files into ``OUT`` (per-input: the ``NAME`` folder by
        :func:`sam_age.fileio.move_in`, the swap of :func:`~sam_age.fileio.atomic_dir`).
        Raises FileExistsError (``filename``: what is in the way; nothing moved) when
        something is in the way and ``replace`` is false, and
        :class:`~sam_age.fileio.NotOwnError` (nothing moved) when what is in the way is not
        sam-age's own for this input (:meth:`Layout.foreign`; ``own``: the files the
        manifest records for it)."""
        out = self.out
        if layout.r.layout == "per-input":  # the whole folder in one rename: fileio's swap
            move_in(self.root / name, out / name, replace, known=_inside(own, name))
        else:
            rels = plan.all()
            for rel in rels:
                if os.path.lexists(out / rel) and not replace:
                    raise FileExistsError(errno.EEXIST, "already exists", str(out / rel))
            foreign = layout.foreign(out, name, own, len(plan.faces)) if replace else None
            if foreign is not None:
                raise NotOwnError(foreign, foreign)
            for rel in rels:
                os.replace(self.root / rel, out / rel)
        return [out / rel for rel in plan.all()]

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
