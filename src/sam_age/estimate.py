"""How old does a face look? DEX, the age predictor of SAM's training recipe, on the aligned face.

    from sam_age.estimate import AgeEstimator
    est = AgeEstimator.from_pretrained("dex_age")          # or a path; device=
    est("portrait.jpg").age                                # years, best face
    [f.age for f in est("group.jpg", all_faces=True).faces]

The estimate is what training's :class:`~sam_age.losses.AgingLoss` computes for an input
face (``predict_ages``: the aligned 256 px face in [-1, 1], resized bilinearly to 224,
softmax over DEX's 101 one-year bins, expected value), so a relative age ("+20") means
"20 years older than SAM's own loss thinks this face is". Here the logits are turned
into probabilities in float32 whatever the network's dtype (101 bins sum badly in
half precision); in float32 the two are the same computation (a test holds it).

``sam-age estimate``, :class:`~sam_age.pipeline.AgePipeline` (relative ages) and the web
demo all go through :class:`AgeEstimator`. The weights are the registry's ``dex_age``
unless another file is given, and are loaded only when an estimate is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .face.prepare import INPUT_SIZE, prepare_faces
from .images import to_batch
from .models.dex import DexVGG

DEFAULT_AGE_PREDICTOR = "dex_age"  # registry name, as in `train` and `evaluate`
DEX_INPUT = 224


@dataclass
class FaceEstimate:
    age: float  # years
    aligned: Image.Image  # the 256 px face DEX saw
    quad: Optional[np.ndarray]  # crop corners in the photo (None without alignment)
    score: float = 0.0  # detector score


@dataclass
class EstimateResult:
    source: Image.Image
    faces: List[FaceEstimate]  # best detection first

    @property
    def age(self) -> float:
        return self.faces[0].age


class AgeEstimator:
    """DEX on aligned faces. ``estimate_aligned`` for crops, ``__call__`` for photos."""

    def __init__(self, net: DexVGG, device=None, dtype=None, batch_size: Optional[int] = None):
        from .engine import batch_size_for, resolve_device

        self.device = resolve_device(device) if device is not None else next(net.parameters()).device
        self.dtype = (
            dtype if isinstance(dtype, torch.dtype) else (torch.float32 if dtype in (None, "auto") else _dtype(dtype))
        )
        self.net = net.to(device=self.device, dtype=self.dtype).eval().requires_grad_(False)
        self.batch_size = batch_size_for(self.device, batch_size)  # None: per device

    @classmethod
    def from_pretrained(
        cls,
        weights: Union[str, Path, DexVGG, None] = DEFAULT_AGE_PREDICTOR,
        device=None,
        dtype=None,
        batch_size: Optional[int] = None,
        progress: bool = False,
    ) -> "AgeEstimator":
        """``weights``: a registry name (fetched into the cache when missing), a path, or
        a built :class:`DexVGG`. ``dtype`` defaults to float32 (the estimate is cheap)."""
        from .engine import resolve_device

        dev = resolve_device(device)
        if isinstance(weights, DexVGG):
            return cls(weights, dev, dtype, batch_size)
        from .checkpoints.load import load_dex

        path = resolve_age_predictor(weights, progress=progress)
        return cls(load_dex(path, device=dev), dev, dtype, batch_size)

    @torch.no_grad()
    def estimate_aligned(self, faces: Union[torch.Tensor, Sequence[Image.Image]]) -> List[float]:
        """Aligned faces (``[N, 3, 256, 256]`` in [-1, 1], or PIL images) -> years, one each."""
        batch = to_batch(faces, INPUT_SIZE)
        out: List[float] = []
        for start in range(0, batch.shape[0], self.batch_size):
            x = batch[start : start + self.batch_size].to(device=self.device, dtype=self.dtype)
            x = F.interpolate(x, size=(DEX_INPUT, DEX_INPUT), mode="bilinear", align_corners=False)
            probs = F.softmax(self.net(x).float(), dim=1)
            bins = torch.arange(probs.shape[1], dtype=probs.dtype, device=probs.device)
            out += (probs @ bins).cpu().tolist()
        return out

    def estimate_prepared(self, photo: Image.Image, faces: Sequence) -> EstimateResult:
        """For faces from :func:`sam_age.face.prepare.prepare_faces`."""
        ages = self.estimate_aligned([f[0] for f in faces])
        return EstimateResult(photo, [FaceEstimate(age, f[0], f[1], float(f[2])) for f, age in zip(faces, ages)])

    def __call__(self, image, all_faces: bool = False, align: bool = True) -> EstimateResult:
        """The best face (or every face) of ``image`` (path, bytes, PIL or numpy).
        Raises ImageReadError / NoFaceError (one-line messages naming the file)."""
        photo, faces = prepare_faces(image, all_faces=all_faces, align=align)
        return self.estimate_prepared(photo, faces)


def _dtype(name) -> torch.dtype:
    from .engine import DTYPE_NAMES

    if name not in DTYPE_NAMES:
        from .errors import UsageError

        raise UsageError(f"unknown dtype {name!r}")
    return DTYPE_NAMES[name]


def resolve_age_predictor(weights=None, progress: bool = False) -> Path:
    """The ``--age_predictor_weights`` value (None: the registry's ``dex_age``) -> a file,
    fetched into the cache when it is a registry name that is missing."""
    from .weights.store import resolve_weights

    return Path(resolve_weights(weights, DEFAULT_AGE_PREDICTOR, progress=progress))
