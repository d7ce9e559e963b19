"""Where this process stands in a ``torchrun`` launch (floor 4).

Read from the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``), nothing else: a process not launched by torchrun is rank 0 of 1,
and nothing here touches ``torch.distributed``. Training (``training/distributed.py``,
which then joins a process group) and dataset runs (``dataset/``, which need none) both
start here, and every command picks a rank's device the same way, with the one resolver
``sam_age.engine.resolve_device(flag, ranks)``: ``--device auto`` or ``cuda`` (no index)
under torchrun -> ``cuda:LOCAL_RANK`` (modulo the GPU count, round-robin), an explicit
index kept, a device this machine lacks -> :class:`~sam_age.errors.UsageError` (exit 2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def launched_by_torchrun() -> bool:
    return _env_int("WORLD_SIZE", 1) > 1


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @classmethod
    def from_env(cls) -> "Ranks":
        if not launched_by_torchrun():
            return cls()
        return cls(
            _env_int("RANK", 0),
            _env_int("WORLD_SIZE", 1),
            _env_int("LOCAL_RANK", 0),
            max(1, _env_int("LOCAL_WORLD_SIZE", 1)),
        )

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0
