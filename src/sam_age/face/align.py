"""FFHQ face alignment from 68 landmarks (spec §3), keeping the crop quad for paste-back.

The oriented square (the "quad") is built from the eyes and the mouth corners; the photo
is shrunk when the face is much larger than the output, cropped around the quad, padded
by reflection with a blurred, median-faded border when the quad leaves the photo (so the
network never sees hard black edges), then the quad is warped to the output square.
SAM's own alignment uses a 256 px output and a 256 px transform.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional

import numpy as np
from PIL import Image

from ..errors import NoFaceError
from .landmarks import detect_faces

OUTPUT_SIZE = 256


class AlignedFace(NamedTuple):
    """A face found in a photo, before the model (the one aligned-face type: alignment,
    :func:`sam_age.face.prepare.prepare_faces`, the dataset loader and the pipeline)."""

    image: Image.Image  # output_size x output_size RGB
    quad: Optional[np.ndarray]  # float32 [4, 2]: TL, BL, BR, TR corners (source px); None unaligned
    score: float = 0.0  # detector score (0 without detection)
    landmarks: Optional[np.ndarray] = None  # [68, 2] in the photo (the paste mask)


def face_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop quad (float64 [4, 2], source pixel coordinates) from 68 landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    mouth_left, mouth_right = lm[48], lm[54]
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _fade_padding(img: np.ndarray, pad, qsize: float) -> np.ndarray:
    """Blur the reflected border and fade it towards the median colour (FFHQ)."""
    from scipy.ndimage import gaussian_filter

    h, w, _ = img.shape
    y, x, _ = np.ogrid[:h, :w, :1]
    left, top, right, bottom = (max(float(p), 1.0) for p in pad)
    mask = np.maximum(
        1.0 - np.minimum(np.float32(x) / left, np.float32(w - 1 - x) / right),
        1.0 - np.minimum(np.float32(y) / top, np.float32(h - 1 - y) / bottom),
    )
    blur = qsize * 0.02
    img += (gaussian_filter(img, [blur, blur, 0]) - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    img += (np.median(img, axis=(0, 1)) - img) * np.clip(mask, 0.0, 1.0)
    return img


def align_face(
    image: Image.Image,
    landmarks: np.ndarray,
    output_size: int = OUTPUT_SIZE,
    transform_size: Optional[int] = None,
    enable_padding: bool = True,
) -> AlignedFace:
    """Align one face. Returns the aligned crop and the quad in *source* coordinates
    (where the crop's corners lie in ``image``), for :func:`sam_age.face.paste.paste_face`."""
    transform_size = transform_size or output_size
    img = image.convert("RGB")
    src_w, src_h = img.size
    quad = face_quad(landmarks)
    qsize = np.hypot(*(quad[3] - quad[0])) * 1.0  # = 2|x|
    # Track how processed coordinates map back to the source: src = (q + offset) * scale.
    offset = np.zeros(2)
    scale = np.ones(2)

    # Shrink: a face much larger than the output is first downsampled (quality + speed).
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(float(img.size[0]) / shrink)), int(np.rint(float(img.size[1]) / shrink)))
        img = img.resize(rsize, Image.LANCZOS)
        quad = quad / shrink
        qsize /= shrink
        scale = np.array([src_w / rsize[0], src_h / rsize[1]])

    # Crop around the quad, with a border.
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (
        int(np.floor(min(quad[:, 0]))),
        int(np.floor(min(quad[:, 1]))),
        int(np.ceil(max(quad[:, 0]))),
        int(np.ceil(max(quad[:, 1]))),
    )
    crop = (
        max(crop[0] - border, 0),
        max(crop[1] - border, 0),
        min(crop[2] + border, img.size[0]),
        min(crop[3] + border, img.size[1]),
    )
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad = quad - crop[0:2]
        offset += crop[0:2]

    # Pad by reflection where the quad leaves the photo.
    pad = (
        int(np.floor(min(quad[:, 0]))),
        int(np.floor(min(quad[:, 1]))),
        int(np.ceil(max(quad[:, 0]))),
        int(np.ceil(max(quad[:, 1]))),
    )
    pad = (
        max(-pad[0] + border, 0),
        max(-pad[1] + border, 0),
        max(pad[2] - img.size[0] + border, 0),
        max(pad[3] - img.size[1] + border, 0),
    )
    if enable_padding and max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        arr = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        arr = _fade_padding(arr, pad, qsize)
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad = quad + pad[:2]
        offset -= pad[:2]

    # Warp the quad to the output square (PIL's QUAD is exact for this parallelogram).
    img = img.transform((transform_size, transform_size), Image.QUAD, tuple((quad + 0.5).flatten()), Image.BILINEAR)
    if output_size < transform_size:
        img = img.resize((output_size, output_size), Image.LANCZOS)
    source_quad = ((quad + offset) * scale).astype(np.float32)
    return AlignedFace(img, source_quad)


def align_faces(
    image: Image.Image, all_faces: bool = False, output_size: int = OUTPUT_SIZE, name: Optional[str] = None
) -> List[AlignedFace]:
    """Detect and align the best face (or every face, best first); NoFaceError if none."""
    detections = detect_faces(image, all_faces=all_faces)
    if not detections:
        raise NoFaceError("no face found", name)
    out = []
    for det in detections:
        face = align_face(image, det.landmarks, output_size)
        out.append(face._replace(score=det.score, landmarks=det.landmarks))
    return out
