"""``sam-age video --report``: per track and output, the age and identity reached over the
frames, and how much the face flickers.

* ``achieved_age`` / ``identity`` (:mod:`sam_age.report`: DEX on the generated face, the
  identity network's cosine similarity with the input frame's aligned face): ``mean``,
  ``min`` (and ``max`` for the age) over a sample of the track's frames, every
  ``stride``-th frame so that a track is measured at most ``MAX_SAMPLES`` times (each
  sample costs one DEX and one identity forward per output).
* ``flicker``: the mean absolute frame-to-frame change (0..255 per channel) inside the
  pasted face region (the track's quad) and outside every face, on every frame rendered in
  this run, for the output and for the input clip. A steady aged face has an inside/outside
  ratio close to the input's; generated-face flicker shows as a larger ratio.

Frames of chunks resumed from an earlier run are not rendered again and are not measured
(``frames_measured`` says how many were).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..images import to_tensor

MAX_SAMPLES = 24


def _stat(values: List[float], with_max: bool = False) -> Optional[dict]:
    if not values:
        return None
    d = {"mean": round(float(np.mean(values)), 4), "min": round(float(np.min(values)), 4)}
    if with_max:
        d["max"] = round(float(np.max(values)), 4)
    return d


class VideoReport:
    """Accumulates the measures while :class:`~sam_age.video.ager.VideoAger` renders."""

    def __init__(self, pipeline, tracks: Sequence, n_outputs: int, labels: Sequence[str]):
        self.pipeline = pipeline
        self.labels = list(labels)
        self.stride = {t.id: max(1, -(-(t.last + 1 - t.first) // MAX_SAMPLES)) for t in tracks}
        self.first = {t.id: t.first for t in tracks}
        self.ages: Dict[tuple, List[float]] = {}
        self.ids: Dict[tuple, List[float]] = {}
        self.asked: Dict[tuple, List[float]] = {}
        self.inside: Dict[tuple, List[float]] = {}  # (track, output or "input") -> [sum, count]
        self.outside: Dict[object, List[float]] = {}
        self.prev: Dict[object, tuple] = {}  # output or "input" -> (frame index, array)
        self.frames = 0
        self.identity_model: Optional[str] = None

    def wants(self, tid: int, f: int) -> bool:
        return (f - self.first[tid]) % self.stride[tid] == 0

    def measure(
        self, tid: int, photo: Image.Image, landmarks: np.ndarray, outputs: Sequence[Image.Image], ages: Sequence[float]
    ) -> None:
        """One sampled frame of one track: its outputs (one per output file) at ``ages``."""
        from ..face.align import align_face
        from ..identity import as_batch

        aligned = align_face(photo, landmarks).image
        batch = as_batch(outputs)
        achieved = self.pipeline.estimator.estimate_aligned(batch)
        sim = self.pipeline.identity_net.similarities(to_tensor(aligned), batch)
        self.identity_model = sim.model
        for o, (a, s, asked) in enumerate(zip(achieved, sim.values, ages)):
            self.ages.setdefault((tid, o), []).append(float(a))
            self.ids.setdefault((tid, o), []).append(float(s))
            self.asked.setdefault((tid, o), []).append(float(asked))

    def frame(self, f: int, key, arr: np.ndarray, quads: Dict[int, np.ndarray]) -> None:
        """Frame ``f`` of output ``key`` (an int, or ``"input"``), ``[H, W, 3]`` uint8, with
        the quads of the faces pasted on it."""
        if key == "input":
            self.frames += 1
        prev = self.prev.get(key)
        self.prev[key] = (f, arr)
        if prev is None or prev[0] != f - 1 or prev[1].shape != arr.shape:
            return
        diff = np.abs(arr.astype(np.int16) - prev[1].astype(np.int16)).mean(axis=2)
        any_face = np.zeros(diff.shape, bool)
        for tid, quad in quads.items():
            mask = Image.new("L", (diff.shape[1], diff.shape[0]), 0)
            ImageDraw.Draw(mask).polygon([tuple(p) for p in np.asarray(quad, float)], fill=1)
            m = np.asarray(mask, bool)
            any_face |= m
            if m.any():
                acc = self.inside.setdefault((tid, key), [0.0, 0])
                acc[0] += float(diff[m].mean())
                acc[1] += 1
        if (~any_face).any():
            acc = self.outside.setdefault(key, [0.0, 0])
            acc[0] += float(diff[~any_face].mean())
            acc[1] += 1

    def _flicker(self, tid: int, key) -> Optional[dict]:
        inside, outside = self.inside.get((tid, key)), self.outside.get(key)
        if not inside or not inside[1]:
            return None
        i = inside[0] / inside[1]
        o = outside[0] / outside[1] if outside and outside[1] else None
        return {
            "inside": round(i, 4),
            "outside": None if o is None else round(o, 4),
            "ratio": None if not o else round(i / o, 4),
        }

    def _check(self, rec: dict, ages: List[float], asked: List[float], ids: List[float]) -> dict:
        """``--max-age-error`` on the mean |achieved - asked| over the samples, ``--min-identity``
        on the lowest identity sampled."""
        y, x = getattr(self.pipeline, "max_age_error", None), getattr(self.pipeline, "min_identity", None)
        if (y is None and x is None) or not ages:
            return rec
        misses = []
        err = float(np.mean(np.abs(np.asarray(ages) - np.asarray(asked))))
        if y is not None and err > y:
            misses.append(f"looks {err:.1f} years off the age asked on average (more than --max-age-error {y:g})")
        if x is not None and min(ids) < x:
            misses.append(f"identity down to {min(ids):.3f}, below --min-identity {x:g}")
        rec.update(check="failed" if misses else "ok", misses=misses)
        return rec

    def to_json(self, tracks: Sequence) -> List[dict]:
        out = []
        for t in tracks:
            per_output = []
            for o, label in enumerate(self.labels):
                ages = self.ages.get((t.id, o), [])
                rec = {
                    "output": label,
                    "achieved_age": _stat(ages, with_max=True),
                    "age_asked": _stat(self.asked.get((t.id, o), []), with_max=True),
                    "identity": _stat(self.ids.get((t.id, o), [])),
                    "frames_sampled": len(ages),
                    "flicker": self._flicker(t.id, o),
                }
                per_output.append(self._check(rec, ages, self.asked.get((t.id, o), []), self.ids.get((t.id, o), [])))
            out.append(
                {
                    "track": t.id,
                    "identity_model": self.identity_model,
                    "sample_every": self.stride[t.id],
                    "input_flicker": self._flicker(t.id, "input"),
                    "outputs": per_output,
                }
            )
        return out


def report_notes(report: Optional[list]) -> List[str]:
    """One line per track and output that missed a threshold."""
    return [
        f"check failed: track {t['track']}, {o['output']}: " + "; ".join(o["misses"])
        for t in report or []
        for o in t["outputs"]
        if o.get("check") == "failed"
    ]
