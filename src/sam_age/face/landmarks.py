"""Face detection and 68-point landmarks with dlib.

The landmark model ships in ``face-recognition-models``; its ``.dat`` file is the registry
entry ``dlib_68``, located by the registry's packaged-file lookup (without importing that
package, which needs ``pkg_resources``).

The original alignment keeps the *last* detection, which can be a false positive; here
detections are ranked by the detector's score and the best one wins (``all_faces``
returns every face, best first).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import numpy as np
from PIL import Image

from ..errors import SamAgeError
from ..weights.registry import get, package_file

LANDMARKS_ENTRY = get("dlib_68")
LANDMARKS_FILE = LANDMARKS_ENTRY.filename
DETECT_MAX_SIDE = 1024  # larger photos are detected on a downscaled copy (fast, same faces)
UPSAMPLE = 1  # as the original: dlib.get_frontal_face_detector()(img, 1)

_lock = threading.Lock()
_models = {}


@dataclass
class Detection:
    box: tuple  # (left, top, right, bottom) in source pixels
    score: float
    landmarks: np.ndarray  # [68, 2] float64, (x, y) in source pixels


def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise SamAgeError(
            "face alignment needs dlib: pip install 'sam-age[face]' "
            "(dlib-bin and face-recognition-models), or use --no-align for "
            "faces that are already aligned"
        ) from None
    return dlib


def landmarks_model_path() -> Path:
    path = package_file(LANDMARKS_ENTRY)
    if path is not None:
        return path
    raise SamAgeError(f"the dlib landmark model {LANDMARKS_FILE} was not found: pip install face-recognition-models")


def _get_models():
    with _lock:
        if not _models:
            dlib = _import_dlib()
            _models["detector"] = dlib.get_frontal_face_detector()
            _models["predictor"] = dlib.shape_predictor(str(landmarks_model_path()))
            _models["rect"] = dlib.rectangle
        return _models


def rank_detections(boxes: Sequence[tuple], scores: Sequence[float], all_faces: bool = False) -> List[int]:
    """Indices of the detections to keep: the highest score only, or all by score."""
    order = sorted(range(len(boxes)), key=lambda i: -float(scores[i]))
    return order if all_faces else order[:1]


def detect_faces(
    image: Image.Image, all_faces: bool = False, threshold: float = 0.0, upsample: int = UPSAMPLE
) -> List[Detection]:
    """Faces in ``image`` (PIL RGB) with their 68 landmarks, best score first.

    ``threshold`` is dlib's ``adjust_threshold`` (0 = its default operating point; lower
    finds more faces and more false positives)."""
    models = _get_models()
    rgb = np.asarray(image.convert("RGB"))
    scale = min(1.0, DETECT_MAX_SIDE / max(image.size))
    small = (
        rgb
        if scale == 1.0
        else np.asarray(
            image.convert("RGB").resize(
                (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR
            )
        )
    )
    with _lock:  # dlib objects are not documented as thread-safe (the web demo shares them)
        rects, scores, _ = models["detector"].run(small, upsample, threshold)
        boxes = [tuple(int(round(v / scale)) for v in (r.left(), r.top(), r.right(), r.bottom())) for r in rects]
        out = []
        for i in rank_detections(boxes, scores, all_faces):
            shape = models["predictor"](rgb, models["rect"](*boxes[i]))
            lm = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            out.append(Detection(boxes[i], float(scores[i]), lm))
    return out


def landmarks_in_boxes(image: Image.Image, boxes: Sequence[tuple]) -> List[np.ndarray]:
    """The 68 landmarks inside each given box (left, top, right, bottom), without running the
    detector: the video tracker carries faces between detection frames this way."""
    models = _get_models()
    rgb = np.asarray(image.convert("RGB"))
    out = []
    with _lock:
        for box in boxes:
            left, top, right, bottom = (int(round(float(v))) for v in box)
            shape = models["predictor"](rgb, models["rect"](left, top, right, bottom))
            out.append(np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64))
    return out
