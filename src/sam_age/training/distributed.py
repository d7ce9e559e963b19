"""The process group of a training run: one process, or several under ``torchrun``.

Invariants: a run not launched by torchrun (``WORLD_SIZE`` unset or 1) never touches
``torch.distributed``; under torchrun every process joins one group (NCCL on GPU, gloo on
CPU), process ``LOCAL_RANK`` takes GPU ``LOCAL_RANK`` when the device flag names no index,
and only rank 0 writes files (``Proc.main``). The device flag is read by
:func:`sam_age.engine.resolve_device`, as in every other command.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ..engine import resolve_device
from ..errors import UsageError


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


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def training_device(flag, local_rank: int) -> torch.device:
    """``--device`` -> this process's device: :func:`resolve_device`, then the local rank's
    GPU under torchrun when no index was given."""
    device = resolve_device(flag or None)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {flag}: CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank if launched_by_torchrun() else torch.cuda.current_device())
    return device


def start_processes(device_flag) -> Proc:
    """Join the torchrun group when launched by torchrun (NCCL on GPU, gloo on CPU)."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = training_device(device_flag, local_rank)
    if not launched_by_torchrun():
        return Proc(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return Proc(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank, device=device)


def end_processes() -> None:
    """Leave the group (a no-op outside torchrun)."""
    if launched_by_torchrun() and dist.is_initialized():
        dist.destroy_process_group()
