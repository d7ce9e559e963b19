"""The process group of a training run: one process, or several under ``torchrun``.

Invariants: a run not launched by torchrun (``WORLD_SIZE`` unset or 1) never touches
``torch.distributed``; under torchrun every process joins one group (NCCL on GPU, gloo on
CPU), process ``LOCAL_RANK`` takes GPU ``LOCAL_RANK`` when the device flag names no index,
and only rank 0 writes files (``Proc.main``). Rank, world and device are read by
:mod:`sam_age.launch`, as in every command that runs under torchrun.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ..engine import resolve_device
from ..launch import Ranks, launched_by_torchrun


@dataclass
class Proc:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def start_processes(device_flag) -> Proc:
    """Join the torchrun group when launched by torchrun (NCCL on GPU, gloo on CPU); the
    rank and device come from :mod:`sam_age.launch`, as in every command."""
    ranks = Ranks.from_env()
    device = resolve_device(device_flag, ranks)
    if not ranks.distributed:
        return Proc(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return Proc(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=ranks.local_rank, device=device)


def end_processes() -> None:
    """Leave the group (a no-op outside torchrun)."""
    if launched_by_torchrun() and dist.is_initialized():
        dist.destroy_process_group()
