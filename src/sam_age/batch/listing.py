"""Which inputs a run has, what each one's results are called, and which rank does it.

Invariants:

* The listing is a pure function of the command line and the file system: every rank of a
  ``torchrun`` launch (on every node, given the same shared folders) builds the same list
  in the same order (:func:`sam_age.images.list_inputs` sorts each folder and glob), so
  the split below needs no communication.
* Output names are the inputs' file stems, made unique over the *whole* listing before it
  is split (``a``, ``a_2``, ...), so a name does not depend on the number of ranks.
* :func:`shard` deals the listing out round-robin: rank ``r`` of ``w`` takes items
  ``r, r + w, r + 2w, ...``. Every input goes to exactly one rank; neighbouring inputs
  (often similar in size) go to different ranks, which balances the load.
* An input's key in the manifest is its absolute path (``Item.key``): a re-run from
  another working folder still recognises it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Sequence


@dataclass(frozen=True)
class Item:
    index: int  # position in the whole listing
    name: str  # unique output name (the file stem, made unique)
    path: Path  # as listed

    @property
    def key(self) -> str:
        return os.path.abspath(self.path)


RESERVED = frozenset({"manifest.jsonl", ".sam-age"})  # the run's own names in OUT


def name_items(paths: Iterable[Path]) -> List[Item]:
    """Paths -> items with unique names (the first ``a.jpg`` is ``a``, the next ``a_2``;
    never one of the run's own names in ``OUT``)."""
    items: List[Item] = []
    used = set(RESERVED)
    for p in paths:
        p = Path(p)
        stem = p.stem or "image"
        name, k = stem, 1
        while name in used:
            k += 1
            name = f"{stem}_{k}"
        used.add(name)
        items.append(Item(len(items), name, p))
    return items


def shard(items: Sequence[Item], rank: int, world: int) -> List[Item]:
    """This rank's share of ``items``: every ``world``-th item from ``rank`` on."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} is not in a world of {world}")
    return list(items[rank::world])
