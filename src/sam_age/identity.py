"""How much of the person is left: cosine similarity of face embeddings, input vs output.

Two identity networks, named by ``model``:

* ``curricularface`` (default, as the paper): CurricularFace's IR-101
  (:mod:`sam_age.models.curricularface`), the network pSp's and SAM's papers measure
  identity with. Its crop follows their evaluation script (pSp ``scripts/calc_id_loss_parallel.py``:
  MTCNN's five points -> the ArcFace 112x112 reference points of ``align_trans.py``
  (``get_reference_facial_points(default_square=True)``) by a least-squares similarity
  transform, ``cv2.warpAffine`` bilinear with black borders, ``ToTensor`` + ``Normalize(0.5,
  0.5)``). One difference, stated: the five points here come from dlib's 68 landmarks
  (the eye centres as the means of 36-41 / 42-47, the nose tip 30, the mouth corners 48
  and 54), not from MTCNN, whose weights sam-age does not fetch.
* ``ir_se50``: the IR-SE-50 of training's ID loss, on the training crop (rows 35:223,
  columns 32:220 of the 256 px face, adaptive average pool to 112): exactly what
  :class:`sam_age.losses.IDLoss` computes, so it measures what training optimised.

Landmarks on a generated face can fail (a stand-in model's noise, a very young or old
face); then the input face's points stand in for the output's (both sit in the same FFHQ
frame). If the input face has none either, every image of the pair takes the fixed
training crop, so the two embeddings always come from the same kind of crop; ``crop``
on each result says which one was used.

Floor 4 (a service beside :mod:`sam_age.estimate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import SamAgeError, WeightsUnavailableError
from .images import to_tensor

ID_MODELS = ("curricularface", "ir_se50")
DEFAULT_ID_MODEL = "curricularface"
REGISTRY_NAMES = {"curricularface": "curricular_face", "ir_se50": "ir_se50"}
LABELS = {"curricularface": "CurricularFace IR-101", "ir_se50": "IR-SE-50"}
ID_SIZE = 112
# align_trans.py's REFERENCE_FACIAL_POINTS for the 96x112 crop, moved 8 px right for the
# square 112x112 one (default_square=True): left eye, right eye, nose, mouth left, mouth right
ARCFACE_POINTS_112 = np.array(
    [
        [30.29459953, 51.69630051],
        [65.53179932, 51.50139999],
        [48.02519989, 71.73660278],
        [33.54930115, 92.3655014],
        [62.72990036, 92.20410156],
    ]
) + np.array([8.0, 0.0])
FACE_CROP = (slice(None), slice(None), slice(35, 223), slice(32, 220))  # as sam_age.losses
CROP_LANDMARKS, CROP_FIXED = "five-point", "fixed"


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """dlib's 68 landmarks -> MTCNN's five points, in its order (image left first)."""
    lm = np.asarray(landmarks68, dtype=np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, shift; no reflection) taking
    ``src`` points to ``dst`` (Umeyama 1991), as a 2x3 matrix on (x, y, 1)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / s.var(0).sum()
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def warp_to_112(images: torch.Tensor, matrices: Sequence[np.ndarray]) -> torch.Tensor:
    """``[N, 3, H, W]`` in [-1, 1] -> ``[N, 3, 112, 112]``: output pixel (x, y) reads the
    input at ``M^-1 (x, y)`` (pixel centres at integers, as ``cv2.warpAffine``), bilinear,
    black (-1) outside."""
    n, _, h, w = images.shape
    ys, xs = torch.meshgrid(
        torch.arange(ID_SIZE, dtype=torch.float64), torch.arange(ID_SIZE, dtype=torch.float64), indexing="ij"
    )
    dst = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(-1, 3)
    grids = []
    for m in matrices:
        full = np.vstack([m, [0.0, 0.0, 1.0]])
        inv = torch.from_numpy(np.linalg.inv(full)[:2])
        src = dst @ inv.T  # [112*112, 2] source pixel coordinates
        grid = torch.stack([(2 * src[:, 0] + 1) / w - 1, (2 * src[:, 1] + 1) / h - 1], -1)
        grids.append(grid.reshape(ID_SIZE, ID_SIZE, 2))
    grid = torch.stack(grids).to(images.device, images.dtype)
    return F.grid_sample(images + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1


def _landmarks_of(image: torch.Tensor) -> Optional[np.ndarray]:
    """Five points of the best face in one ``[3, H, W]`` image in [-1, 1], or None."""
    from .face.landmarks import detect_faces

    arr = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    try:
        found = detect_faces(Image.fromarray(arr, "RGB"))
    except SamAgeError:  # dlib missing: every image takes the fixed crop
        return None
    return five_points(found[0].landmarks) if found else None


@dataclass
class Similarity:
    values: List[float]  # one per output, cosine in [-1, 1]
    crop: str  # CROP_LANDMARKS or CROP_FIXED
    model: str  # "curricularface" or "ir_se50"


class IdentityNet:
    """One identity network with its crop. ``features`` for a batch, ``similarities`` for
    an input face against its outputs (all ``[.., 3, 256, 256]`` in [-1, 1])."""

    def __init__(
        self,
        net: torch.nn.Module,
        model: str,
        device="cpu",
        batch_size: int = 8,
        landmarks: Optional[Callable[[torch.Tensor], Optional[np.ndarray]]] = None,
    ):
        if model not in ID_MODELS:
            raise ValueError(f"model must be one of {ID_MODELS}")
        self.model = model
        self.device = torch.device(device)
        self.net = net.to(self.device).eval().requires_grad_(False)
        self.batch_size = max(1, int(batch_size))
        self.landmarks = landmarks or _landmarks_of
        self.path: Optional[Path] = None  # the weights file, when loaded from one

    @property
    def label(self) -> str:
        return LABELS[self.model]

    @classmethod
    def from_weights(
        cls, path: Union[str, Path], model: str = DEFAULT_ID_MODEL, device="cpu", batch_size: int = 8
    ) -> "IdentityNet":
        from .checkpoints import load_curricular_face, load_ir_se50

        load = load_curricular_face if model == "curricularface" else load_ir_se50
        net = cls(load(path), model, device=device, batch_size=batch_size)
        net.path = Path(path)
        return net

    @torch.no_grad()
    def _embed(self, crops: torch.Tensor) -> torch.Tensor:
        out = []
        for start in range(0, crops.shape[0], self.batch_size):
            x = crops[start : start + self.batch_size].to(self.device, torch.float32)
            out.append(F.normalize(self.net(x).float(), p=2, dim=1).cpu())
        return torch.cat(out)

    def crop(self, images: torch.Tensor, points: Optional[Sequence[Optional[np.ndarray]]] = None) -> torch.Tensor:
        """The 112 px crops the network reads: five-point warps where ``points`` has them
        (CurricularFace), else the fixed training crop pooled to 112."""
        images = images.float()
        if self.model == "curricularface" and points is not None and all(p is not None for p in points):
            return warp_to_112(images, [similarity_transform(p, ARCFACE_POINTS_112) for p in points])
        return F.adaptive_avg_pool2d(images[FACE_CROP], (ID_SIZE, ID_SIZE))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, 256, 256]`` -> L2-normalised ``[N, 512]``, each image on its own
        landmarks where found (CurricularFace), else on the fixed crop."""
        if self.model != "curricularface":
            return self._embed(self.crop(images))
        pts = [self.landmarks(im) for im in images]
        out = torch.empty(images.shape[0], 512)
        have = [i for i, p in enumerate(pts) if p is not None]
        rest = [i for i, p in enumerate(pts) if p is None]
        if have:
            out[have] = self._embed(self.crop(images[have], [pts[i] for i in have]))
        if rest:
            out[rest] = self._embed(self.crop(images[rest]))
        return out

    def similarities(self, reference: torch.Tensor, outputs: torch.Tensor) -> Similarity:
        """Cosine similarity of ``reference`` (``[3, 256, 256]``, the input face) with each
        of ``outputs`` (``[K, 3, 256, 256]``), on one kind of crop for the whole set."""
        batch = torch.cat([reference[None].float(), outputs.float()])
        if self.model == "curricularface":
            ref_pts = self.landmarks(reference)
            if ref_pts is not None:
                pts = [ref_pts] + [p if p is not None else ref_pts for p in map(self.landmarks, outputs)]
                feats = self._embed(self.crop(batch, pts))
                return Similarity((feats[1:] @ feats[0]).tolist(), CROP_LANDMARKS, self.model)
        feats = self._embed(self.crop(batch))
        return Similarity((feats[1:] @ feats[0]).tolist(), CROP_FIXED, self.model)


def resolve_identity_weights(
    model: Optional[str] = None,
    curricular_face_weights=None,
    ir_se50_weights=None,
    progress: bool = True,
    on_note: Optional[Callable[[str], None]] = None,
) -> Tuple[str, Path]:
    """``(model, weights file)`` for an identity measure.

    ``model`` given (``evaluate --id-model``): that network's flag, or its registry name,
    must resolve (errors as every weights flag: exit 2). ``model=None`` (``--report``):
    CurricularFace when its weights resolve (given, cached or fetched), else IR-SE-50, with
    a note naming the fallback and why."""
    from .weights.store import resolve_weights

    flags = {"curricularface": curricular_face_weights, "ir_se50": ir_se50_weights}
    if model is not None:
        if model not in ID_MODELS:
            from .errors import UsageError

            raise UsageError(f"--id-model must be one of {', '.join(ID_MODELS)}, not {model!r}")
        return model, Path(resolve_weights(flags[model], REGISTRY_NAMES[model], progress=progress))
    if curricular_face_weights is not None:
        return "curricularface", Path(resolve_weights(curricular_face_weights, "curricular_face", progress=progress))
    try:
        return "curricularface", Path(resolve_weights(None, "curricular_face", progress=progress))
    except WeightsUnavailableError as e:
        path = Path(resolve_weights(ir_se50_weights, "ir_se50", progress=progress))
        if on_note is not None:
            on_note(
                f"identity measured with IR-SE-50 (the training loss's network): the CurricularFace "
                f"weights are not available ({str(e).splitlines()[0]})"
            )
        return "ir_se50", path


def as_batch(faces: Sequence[Image.Image]) -> torch.Tensor:
    """PIL faces -> ``[N, 3, 256, 256]`` in [-1, 1] (resized to 256 where they are not)."""
    return torch.stack(
        [
            to_tensor(f.convert("RGB") if f.size == (256, 256) else f.convert("RGB").resize((256, 256), Image.LANCZOS))
            for f in faces
        ]
    )
