"""Photos -> aligned faces, in ``DataLoader`` workers, so the model never waits on dlib.

Each item is read with the package's one image reader and aligned with the FFHQ
procedure (:func:`sam_age.face.prepare.prepare_faces`), in a worker process; what comes back
is small and plain: the aligned faces as ``uint8 [F, 256, 256, 3]``, their quads and
scores, the photo itself only when paste-back needs it (torch tensors travel between
processes through shared memory), or the reason the input cannot be used.

Invariants: a bad input never raises out of a worker (it comes back with a status and a
one-line reason, as :mod:`sam_age.errors` words it), so one bad file never stops the
loader; the loader keeps the listing's order; each worker computes with one thread (the
model's process owns the cores).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..errors import InputError, NoFaceError
from ..face.prepare import AlignedFace, prepare_faces
from .manifest import FAILED, NO_FACE, OK


@dataclass
class Prepared:
    index: int  # position in the dataset
    status: str = OK
    reason: Optional[str] = None
    faces: Optional[torch.Tensor] = None  # uint8 [F, 256, 256, 3], best face first
    quads: List[Optional[np.ndarray]] = field(default_factory=list)
    scores: List[float] = field(default_factory=list)
    landmarks: List[Optional[np.ndarray]] = field(default_factory=list)  # [68, 2] per face (paste mask)
    photo: Optional[torch.Tensor] = None  # uint8 [H, W, 3], only when asked for
    seconds: float = 0.0

    @property
    def n_faces(self) -> int:
        return 0 if self.faces is None else int(self.faces.shape[0])

    def prepared_faces(self) -> List[AlignedFace]:
        """As :func:`sam_age.face.prepare.prepare_faces` gave them in the worker (same pixels)."""
        return [
            AlignedFace(Image.fromarray(f.numpy(), "RGB"), q, s, lm)
            for f, q, s, lm in zip(self.faces, self.quads, self.scores, self.landmarks)
        ]

    def photo_image(self) -> Optional[Image.Image]:
        return None if self.photo is None else Image.fromarray(self.photo.numpy(), "RGB")


class PhotoDataset(Dataset):
    def __init__(self, paths: Sequence[Path], align: bool = True, all_faces: bool = False, keep_photo: bool = False):
        self.paths = [Path(p) for p in paths]
        self.align, self.all_faces, self.keep_photo = align, all_faces, keep_photo
        # called as the first photo is read and searched, in this process only (set it
        # only when the loader has no workers: a worker cannot report to the terminal)
        self.on_stage: Optional[Callable[[str, str], None]] = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Prepared:
        t0 = time.perf_counter()
        path = self.paths[i]
        try:
            hook = self.on_stage if i == 0 else None
            photo, faces = prepare_faces(path, all_faces=self.all_faces, align=self.align, on_stage=hook)
        except NoFaceError as e:
            return Prepared(i, NO_FACE, e.reason, seconds=time.perf_counter() - t0)
        except InputError as e:
            return Prepared(i, FAILED, e.reason, seconds=time.perf_counter() - t0)
        except Exception as e:  # a library's own failure on a strange file: that input fails
            reason = " ".join(f"{type(e).__name__}: {e}".split())
            return Prepared(i, FAILED, f"cannot prepare the image ({reason})", seconds=time.perf_counter() - t0)
        arr = np.stack([np.asarray(f.image.convert("RGB"), dtype=np.uint8) for f in faces])
        return Prepared(
            i,
            OK,
            None,
            torch.from_numpy(arr),
            [f.quad for f in faces],
            [float(f.score) for f in faces],
            [f.landmarks for f in faces],
            torch.from_numpy(np.asarray(photo, dtype=np.uint8).copy()) if self.keep_photo else None,
            time.perf_counter() - t0,
        )


def _collate(batch: List[Prepared]) -> List[Prepared]:
    return batch


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)


def make_loader(dataset: PhotoDataset, photos_per_batch: int, workers: int) -> DataLoader:
    """Batches of ``photos_per_batch`` prepared photos, in order; ``workers`` processes
    (0: prepared in this process, between batches)."""
    workers = max(0, int(workers))
    return DataLoader(
        dataset,
        batch_size=max(1, photos_per_batch),
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=2 if workers else None,
        persistent_workers=False,
    )
