"""Training data: folders of FFHQ-aligned faces -> 256x256 tensors in [-1, 1].

A folder is listed recursively (FFHQ ships in numbered subfolders). Files whose header
cannot be read are dropped when the folder is listed; a file that fails later, while it
is decoded, is replaced by the next readable one. Either way the path is reported once
and counted (``SkipLog``), so a few broken files never stop a run of several days.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Sequence, Set, Tuple

import torch
from PIL import Image
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ..errors import ImageReadError, SamAgeError
from ..images import IMAGE_EXTENSIONS, read_image, to_tensor

IMAGE_SIZE = 256


@dataclass
class SkipLog:
    """Unreadable files seen so far (each reported once)."""

    paths: Set[str] = field(default_factory=set)
    verbose: bool = True  # only one process of a multi-process run speaks

    def add(self, path: str, reason: str) -> None:
        if path not in self.paths:
            self.paths.add(path)
            if self.verbose:
                print(f"warning: skipping unreadable image {path}: {reason}", file=sys.stderr, flush=True)

    def __len__(self) -> int:
        return len(self.paths)


def list_images(folder: Path, skipped: SkipLog, role: str) -> List[Path]:
    """Image files under ``folder`` whose header PIL can read; SamAgeError if none."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise SamAgeError(f"{role} folder not found", folder)
    candidates = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    good = []
    for p in candidates:
        try:
            with Image.open(p) as im:  # header only: cheap even for 70k FFHQ files
                w, h = im.size
            if min(w, h) < 1:
                raise ValueError("empty image")
            good.append(p)
        except Exception as e:  # any reason at all: the file is not usable
            skipped.add(str(p), str(e).splitlines()[0] if str(e) else type(e).__name__)
    if not good:
        extra = f" ({len(candidates)} unreadable)" if candidates else ""
        raise SamAgeError(f"{role} folder has no readable images{extra}", folder)
    return good


def load_face(path: Path, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Read an aligned face and resize it like the original transforms (PIL bilinear)."""
    img = read_image(path)
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return to_tensor(img)


class FaceFolder(Dataset):
    """``dataset[i] -> (face [3,256,256], [paths that failed on the way])``."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, List[Tuple[str, str]]]:
        failed = []
        for k in range(len(self.paths)):
            path = self.paths[(index + k) % len(self.paths)]
            try:
                return load_face(path), failed
            except ImageReadError as e:
                failed.append((str(path), e.reason))
        raise SamAgeError("no image in the folder can be decoded")


def collate(items) -> Tuple[torch.Tensor, List[Tuple[str, str]]]:
    faces = torch.stack([face for face, _ in items])
    return faces, [f for _, failed in items for f in failed]


class ResumableSampler(Sampler):
    """A DistributedSampler whose first epoch after a resume starts ``start`` indices in,
    so a resumed run sees the batches the uninterrupted run would have seen."""

    def __init__(self, sampler: DistributedSampler):
        self.sampler = sampler
        self.start = 0

    def set_epoch(self, epoch: int, start_batch: int = 0, batch_size: int = 1) -> None:
        self.sampler.set_epoch(epoch)
        self.start = start_batch * batch_size

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(iter(self.sampler), self.start, None)

    def __len__(self) -> int:
        return max(len(self.sampler) - self.start, 0)


def make_loader(
    paths: Sequence[Path],
    batch_size: int,
    workers: int,
    rank: int,
    world: int,
    seed: int,
    train: bool,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    dataset = FaceFolder(paths)
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=train, seed=seed, drop_last=False)
    if train and len(sampler) < batch_size:
        raise SamAgeError(
            f"the training folder has {len(dataset)} readable images; each of the {world} "
            f"process(es) needs at least --batch_size={batch_size}"
        )
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=ResumableSampler(sampler) if train else sampler,
        num_workers=workers,
        collate_fn=collate,
        drop_last=train,
        pin_memory=pin_memory,
        persistent_workers=False,
    )


def images_per_epoch(loader) -> int:
    """Training batches per epoch for this process."""
    return len(loader.sampler.sampler) // loader.batch_size
