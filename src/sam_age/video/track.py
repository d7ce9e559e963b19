"""Faces followed across frames: one track per person.

Online assignment, frame by frame: each live track predicts its landmarks for this frame
(constant velocity from its last two observations), and detections are matched to tracks by
the Hungarian method on ``(1 - IoU of boxes) + landmark distance``, the distance being the
mean landmark offset divided by the face size (eye-to-mouth scale). A pair is allowed when
the boxes overlap (IoU >= ``min_iou``) *or* the landmarks are close (distance <=
``max_distance``), so a fast pan (little overlap) and two people side by side (overlap,
far landmarks) are both right. Unmatched detections start new tracks; a track not seen for
more than ``max_gap`` frames ends (a person who comes back later gets a new track).

After the last frame, :meth:`Tracker.finish` turns each track into dense per-frame arrays
over ``[first, last]``: frames without a detection inside the track (at most ``max_gap``
in a row) are bridged by linear interpolation of the landmarks, and tracks detected in
fewer than ``min_frames`` frames are dropped as detector flukes (a weak false detection that
comes and goes would otherwise be bridged into a track and aged). Frames outside a track are left untouched.
Track ids are given in order of appearance (left to right within a frame), from 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

MIN_IOU = 0.3
MAX_DISTANCE = 0.5  # mean landmark offset, in face sizes
MAX_GAP = 5  # frames without a detection bridged inside a track
MIN_FRAMES = 3


@dataclass
class FrameFaces:
    """What the detector (or the landmark carrier) gave for one frame."""

    boxes: np.ndarray  # [K, 4] float (left, top, right, bottom)
    scores: np.ndarray  # [K]
    landmarks: np.ndarray  # [K, 68, 2]


@dataclass
class Track:
    id: int
    first: int  # first frame index
    landmarks: np.ndarray  # [L, 68, 2] float64, L = last - first + 1 (bridged)
    observed: np.ndarray  # [L] bool: detected (not bridged) in that frame
    scores: np.ndarray  # [L] detector score (0 where bridged)

    @property
    def last(self) -> int:
        return self.first + len(self.landmarks) - 1

    @property
    def bridged(self) -> int:
        return int((~self.observed).sum())

    def face_size(self) -> float:
        return float(np.median([face_scale(lm) for lm in self.landmarks[self.observed]]))

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "first_frame": self.first,
            "last_frame": self.last,
            "frames": len(self.landmarks),
            "bridged_frames": self.bridged,
            "mean_score": round(float(self.scores[self.observed].mean()), 4),
            "face_size_px": round(self.face_size(), 1),
        }


def face_scale(lm: np.ndarray) -> float:
    """Eye-to-eye and eye-to-mouth scale of a face (px), as the FFHQ quad uses."""
    lm = np.asarray(lm, dtype=np.float64)
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    mouth = (lm[48] + lm[54]) / 2
    eyes = (eye_l + eye_r) / 2
    return max(float(np.hypot(*(eye_r - eye_l))) * 2.0, float(np.hypot(*(mouth - eyes))) * 1.8, 1.0)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a [N, 4]`` x ``b [M, 4]`` -> ``[N, M]``."""
    a = np.asarray(a, dtype=np.float64)[:, None]
    b = np.asarray(b, dtype=np.float64)[None]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


@dataclass
class _Live:
    id: int
    frames: List[int] = field(default_factory=list)
    landmarks: List[np.ndarray] = field(default_factory=list)
    scores: List[float] = field(default_factory=list)
    boxes: List[np.ndarray] = field(default_factory=list)

    def predict(self, frame: int):
        lm, box = self.landmarks[-1], self.boxes[-1]
        if len(self.frames) >= 2:
            dt = self.frames[-1] - self.frames[-2]
            v = (self.landmarks[-1] - self.landmarks[-2]) / dt
            step = v * (frame - self.frames[-1])
            lm = lm + step
            box = box + np.tile(step.mean(0), 2)
        return lm, box


class Tracker:
    def __init__(
        self,
        max_gap: int = MAX_GAP,
        min_frames: int = MIN_FRAMES,
        min_iou: float = MIN_IOU,
        max_distance: float = MAX_DISTANCE,
    ):
        self.max_gap, self.min_frames = int(max_gap), int(min_frames)
        self.min_iou, self.max_distance = float(min_iou), float(max_distance)
        self.live: List[_Live] = []
        self.done: List[_Live] = []
        self._next_id = 0  # provisional; final ids follow the order of appearance

    def update(self, frame: int, faces: FrameFaces) -> List[int]:
        """Assign this frame's faces; returns the provisional track index of each face."""
        from scipy.optimize import linear_sum_assignment

        for t in [t for t in self.live if frame - t.frames[-1] > self.max_gap + 1]:
            self.live.remove(t)
            self.done.append(t)
        k = len(faces.boxes)
        owner = [-1] * k
        if self.live and k:
            preds = [t.predict(frame) for t in self.live]
            ious = iou(np.stack([p[1] for p in preds]), faces.boxes)
            dist = np.array(
                [
                    [np.mean(np.hypot(*(faces.landmarks[j] - p[0]).T)) / face_scale(p[0]) for j in range(k)]
                    for p in preds
                ]
            )
            allowed = (ious >= self.min_iou) | (dist <= self.max_distance)
            cost = np.where(allowed, (1.0 - ious) + dist, 1e6)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if allowed[r, c]:
                    owner[c] = r
        order = sorted(range(k), key=lambda j: faces.boxes[j][0])  # new tracks left to right
        ids = []
        for j in range(k):
            if owner[j] >= 0:
                t = self.live[owner[j]]
            else:
                t = None
            ids.append(t)
        for j in order:
            if ids[j] is None:
                t = _Live(self._next_id)
                self._next_id += 1
                self.live.append(t)
                ids[j] = t
        for j, t in enumerate(ids):
            t.frames.append(frame)
            t.landmarks.append(np.asarray(faces.landmarks[j], dtype=np.float64))
            t.scores.append(float(faces.scores[j]))
            t.boxes.append(np.asarray(faces.boxes[j], dtype=np.float64))
        return [t.id for t in ids]

    def finish(self, n_frames: Optional[int] = None) -> List[Track]:
        """Dense, bridged tracks (longer than ``min_frames``), ids 1.. in order of appearance."""
        everything = sorted(self.done + self.live, key=lambda t: (t.frames[0], t.boxes[0][0]))
        self.live, self.done = [], []
        min_frames = self.min_frames if n_frames is None else min(self.min_frames, n_frames)
        out: List[Track] = []
        for t in everything:
            f = np.asarray(t.frames)
            n = f[-1] - f[0] + 1
            if len(f) < min_frames:  # detected in too few frames: a detector fluke
                continue
            lm = np.stack(t.landmarks)
            dense = np.empty((n, 68, 2))
            grid = np.arange(f[0], f[-1] + 1)
            flat = lm.reshape(len(f), -1)
            for c in range(flat.shape[1]):
                dense.reshape(n, -1)[:, c] = np.interp(grid, f, flat[:, c])
            observed = np.zeros(n, bool)
            observed[f - f[0]] = True
            scores = np.zeros(n)
            scores[f - f[0]] = t.scores
            out.append(Track(len(out) + 1, int(f[0]), dense, observed, scores))
        return out


def select_tracks(tracks: Sequence[Track], face: Optional[int] = None, largest: bool = False) -> List[Track]:
    """All tracks, track number ``face`` (1-based id), or the one with the largest faces."""
    tracks = list(tracks)
    if face is not None:
        return [t for t in tracks if t.id == face]
    if largest and tracks:
        return [max(tracks, key=lambda t: (t.face_size(), len(t.landmarks)))]
    return tracks
