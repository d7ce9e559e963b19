"""Where this process stands in a ``torchrun`` launch, and which device it takes (floor 4).

Read from the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``), nothing else: a process not launched by torchrun is rank 0 of 1,
and nothing here touches ``torch.distributed``. Training (``training/distributed.py``,
which then joins a process group) and dataset runs (``batch/``, which need none) both
start here, so a rank picks its device the same way in every command:

* ``--device auto`` or ``cuda`` (no index) under torchrun -> ``cuda:LOCAL_RANK`` (modulo
  the GPU count: more ranks than GPUs share them round-robin);
* an explicit index (``cuda:1``) is kept; CPU processes stay on the CPU;
* ``cuda`` where torch has no CUDA -> :class:`~sam_age.errors.UsageError` (exit 2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .engine import resolve_device
from .errors import UsageError


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

    def device(self, flag) -> torch.device:
        """``--device`` -> this rank's device (see the module docstring)."""
        device = resolve_device(flag or None)
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise UsageError(f"--device {flag}: CUDA is not available")
            if device.index is None:
                index = (
                    self.local_rank % max(1, torch.cuda.device_count())
                    if self.distributed
                    else torch.cuda.current_device()
                )
                device = torch.device("cuda", index)
        return device
