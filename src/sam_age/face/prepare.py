"""A photo -> its faces, ready for the model: the one place that reads and aligns for SAM.

:func:`prepare_faces` is what every path shares before a network runs (``age``, ``mix``,
``estimate``, the web demo, the HTTP API, the dataset runner's ``DataLoader`` workers):
read the photo (:func:`sam_age.images.read_image`), find and align its faces to
``INPUT_SIZE`` (:func:`sam_age.face.align.align_faces`), best detection first. It loads no
model, so it runs in worker processes. A face is an :class:`~sam_age.face.align.AlignedFace`
(``image, quad, score, landmarks``; a tuple, so ``face[0]`` is the 256 px image);
``align=False`` takes the photo as an already aligned square crop (``quad`` None, score 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from ..errors import InputError
from ..images import read_image
from .align import AlignedFace, align_faces

INPUT_SIZE = 256  # SAM's encoder always sees 256 px aligned faces


def landmarks_of(face: Sequence) -> Optional[np.ndarray]:
    """The 68 landmarks of ``face`` (None when not known): an :class:`AlignedFace` or a
    plain ``(image, quad, score)`` tuple."""
    return face[3] if len(face) > 3 else None


def prepare_faces(
    image,
    all_faces: bool = False,
    align: bool = True,
    name: Optional[str] = None,
    on_stage: Optional[Callable[[str, str], None]] = None,
) -> Tuple[Image.Image, List[AlignedFace]]:
    """Read ``image`` and find its face(s), without the model: ``(photo, faces)``.
    Raises ImageReadError / NoFaceError (one-line messages naming the file).
    ``on_stage(stage, name)``: called as reading (``"read"``) and the face search
    (``"faces"``) begin (the CLI's stage lines).

    ``align=False``: the image is an aligned square face crop; a square of another size
    is resized to 256 (as the original's transforms do), a photo that is not square is
    refused (InputError) rather than squashed."""
    if name is None and isinstance(image, (str, Path)):
        name = str(image)
    if on_stage is not None:
        on_stage("read", name or "the photo")
    photo = read_image(image, name=name)
    if not align:
        w, h = photo.size
        if w != h:
            raise InputError(
                f"is {w}x{h}, not a square aligned face crop (what --no-align takes); "
                "without --no-align the face is found and aligned",
                name,
            )
        face = (
            photo if photo.size == (INPUT_SIZE, INPUT_SIZE) else photo.resize((INPUT_SIZE, INPUT_SIZE), Image.LANCZOS)
        )
        return photo, [AlignedFace(face, None, 0.0)]
    if on_stage is not None:
        on_stage("faces", name or "the photo")
    return photo, align_faces(photo, all_faces=all_faces, output_size=INPUT_SIZE, name=name)
