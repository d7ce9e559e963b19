"""Which inputs a run has, what each one's results are called, and which rank does it.

Invariants:

* The listing is a pure function of the command line and the file system: every rank of a
  ``torchrun`` launch (on every node, given the same shared folders) builds the same list
  in the same order (:func:`sam_age.images.list_inputs` sorts each folder and glob), so
  the split below needs no communication.
* Output names are the inputs' file stems, made safe (:func:`safe_stem`: one path
  component that is never ``.``/``..``, hidden, or holding control characters or
  undecodable bytes) and unique over the *whole* listing before it is split (``a``,
  ``a_2``, ...), so a name does not depend on the number of ranks.
* A name the manifest records for an input belongs to that input for good
  (``recorded``): the input keeps it on every later run, and no other input ever gets it,
  whether or not its owner is in this run's listing. The rest are named in listing order
  around them; every rank reads the same records, or a later superset that holds only
  names this same rule gave, so ranks agree.
* Files sam-age wrote in ``OUT`` (recorded in its manifest, or under its state folder)
  are never inputs (:func:`drop_own_results`): a flat run into the photos' own folder
  does not age its results on the next run.
* :func:`shard` deals the listing out round-robin: rank ``r`` of ``w`` takes items
  ``r, r + w, r + 2w, ...``. Every input goes to exactly one rank; neighbouring inputs
  (often similar in size) go to different ranks, which balances the load.
* An input's key in the manifest is its absolute path (``Item.key``): a re-run from
  another working folder still recognises it.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .manifest import MANIFEST, STATE_DIR


@dataclass(frozen=True)
class Item:
    index: int  # position in the whole listing
    name: str  # unique output name (the file stem, made unique)
    path: Path  # as listed

    @property
    def key(self) -> str:
        return os.path.abspath(self.path)


RESERVED = frozenset({MANIFEST, STATE_DIR})  # the run's own names in OUT


NAME_BYTES = 120  # a name's length in UTF-8 bytes: with "_face12_pasted_030.25.webp", under NAME_MAX


def safe_stem(path: Path) -> str:
    """``path``'s stem as a name for its results: bytes that are not UTF-8 read as Latin-1
    (an old camera's ``caf\\xe9`` is ``café``), control characters and ``\\`` as ``_``, leading dots
    and spaces dropped (never ``.``, ``..`` or a hidden file: ``...jpg`` is ``image``),
    at most :data:`NAME_BYTES` bytes; ``image`` when nothing is left."""
    raw = os.fsencode(Path(path).name)
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        name = raw.decode("latin-1")
    stem = Path(name).stem if Path(name).suffix else name
    stem = "".join("_" if _control(c) or c in "/\\" else c for c in stem)
    stem = stem.lstrip(". ").rstrip(" ")
    while len(stem.encode("utf-8")) > NAME_BYTES:
        stem = stem[:-1]
    return stem or "image"


def valid_name(name) -> bool:
    """A name :func:`safe_stem` could give: one plain path component, not hidden."""
    return (
        isinstance(name, str)
        and bool(name)
        and name not in RESERVED
        and not name.startswith((".", " "))
        and "/" not in name
        and "\\" not in name
        and len(name.encode("utf-8", "replace")) <= 2 * NAME_BYTES
        and not any(_control(c) for c in name)
    )


def _control(c: str) -> bool:
    """A character that breaks a line or a terminal: C0/C1 controls, surrogates, line and
    paragraph separators."""
    return unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")


def name_items(paths: Iterable[Path], recorded: Optional[Mapping[str, str]] = None) -> List[Item]:
    """Paths -> items with unique names (the first ``a.jpg`` is ``a``, the next ``a_2``;
    never one of the run's own names in ``OUT``). ``recorded``: ``{input key: name}`` from
    the manifest (:func:`recorded_names`): such an input keeps its name, and no other input
    takes any recorded name."""
    recorded = dict(recorded or {})
    paths = [Path(p) for p in paths]
    used = set(RESERVED) | set(recorded.values())
    names: List[Optional[str]] = [recorded.get(os.path.abspath(p)) for p in paths]
    items: List[Item] = []
    for i, p in enumerate(paths):
        name = names[i]
        if name is None:
            stem = safe_stem(p)
            name, k = stem, 1
            while name in used:
                k += 1
                name = f"{stem}_{k}"
            used.add(name)
        items.append(Item(i, name, p))
    return items


def recorded_names(state: Mapping[str, dict]) -> Dict[str, str]:
    """``{input key: name}`` from the manifest's records (:func:`sam_age.dataset.manifest.read_state`).
    Where two inputs record one name (a manifest written before names were kept for
    good), the input with the latest line keeps it (its results are the ones in place)."""
    owner: Dict[str, Tuple[str, str]] = {}
    for key, rec in state.items():
        name = rec.get("name")
        if not valid_name(name):  # (an older version's "..": never used again)
            continue
        when = str(rec.get("time", ""))
        if name not in owner or (when, key) > (owner[name][1], owner[name][0]):
            owner[name] = (key, when)
    return {key: name for name, (key, _) in owner.items()}


def recorded_files(out: Path, state: Mapping[str, dict]) -> set:
    """The absolute paths of every file the manifest records in ``OUT`` (``files`` and
    ``earlier_files``, see :mod:`sam_age.dataset.runner`)."""
    out = os.path.abspath(out)
    return {
        os.path.normpath(os.path.join(out, f))
        for rec in state.values()
        for key in ("files", "earlier_files")
        for f in rec.get(key, [])
        if isinstance(f, str)
    }


def drop_own_results(paths: Sequence[Path], out: Path, state: Mapping[str, dict]) -> Tuple[List[Path], List[Path]]:
    """-> (``paths`` without sam-age's own files in ``OUT``, the ones left out): the files
    its manifest records, and anything under ``OUT/.sam-age`` (its working state)."""
    own = recorded_files(out, state)
    own |= {os.path.realpath(f) for f in own}  # (OUT or an input named through a link)
    state_dir = os.path.realpath(os.path.join(os.path.abspath(out), STATE_DIR))
    keep, dropped = [], []
    for p in paths:
        a, r = os.path.abspath(p), os.path.realpath(p)
        if a in own or r in own or r == state_dir or r.startswith(state_dir + os.sep):
            dropped.append(Path(p))
        else:
            keep.append(Path(p))
    return keep, dropped


def shard(items: Sequence[Item], rank: int, world: int) -> List[Item]:
    """This rank's share of ``items``: every ``world``-th item from ``rank`` on."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in a world of {world}")
    return list(items[rank::world])
