"""How the last rank of a ``torchrun`` launch to finish learns that it is last.

A dataset run needs no collective operation: the split is computed, not sent
(:mod:`sam_age.dataset.listing`), and the results meet in files (:mod:`sam_age.dataset.manifest`).
The one thing ranks tell each other is their end, through the launch's key-value store
(:func:`torch.distributed.rendezvous` ``"env://"``: the store torchrun's agent hosts):
each rank adds its counts and then 1 to a ``finished`` counter, without waiting for
anyone. The rank that brings the counter to ``WORLD_SIZE`` is last: it merges the
manifest and alone exits 1 when some input anywhere failed. The others exit 0 whatever
their inputs did, because torchrun stops every process of a launch as soon as one exits
non-zero: a rank that finished early with a bad file must not stop the others' work.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Dict, Optional

from ..launch import Ranks

STORE_TIMEOUT = timedelta(minutes=5)  # connecting to the store, and any one store call


class Finish:
    """The end-of-run handshake (a no-op in a single process)."""

    def __init__(self, ranks: Ranks):
        self.ranks = ranks
        self.store = None
        if ranks.distributed:
            import torch.distributed as dist

            store, _, _ = next(
                dist.rendezvous("env://", rank=ranks.rank, world_size=ranks.world, timeout=STORE_TIMEOUT)
            )
            launch = os.environ.get("TORCHELASTIC_RUN_ID", "none")
            attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
            self.store = dist.PrefixStore(f"sam-age/age/{launch}/{attempt}/", store)
            # Without torchrun's agent store (another launcher), rank 0 hosts the store and
            # must outlive the others' last call.
            self._host = ranks.rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True"

    def report(self, counts: Dict[str, int]) -> Optional[Dict[str, int]]:
        """Add this rank's ``counts``; -> the totals over all ranks if this rank is the last
        to report (always so in a single process), else None."""
        if self.store is None:
            return dict(counts)
        for key, value in counts.items():
            self.store.add(key, int(value))
        last = self.store.add("finished", 1) == self.ranks.world
        if not last and getattr(self, "_host", False):
            self._wait_all()
            return None
        return {key: self.store.add(key, 0) for key in counts} if last else None

    def _wait_all(self) -> None:
        while self.store.add("finished", 0) < self.ranks.world:
            time.sleep(1.0)
