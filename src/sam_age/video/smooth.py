"""Temporal smoothing of landmarks and W+ codes, and the steadiness measure.

Invariants:
- :func:`gaussian_smooth` is a centred Gaussian over time with a bounded radius
  ``R = radius(sigma) = ceil(3 sigma)`` frames: frame ``t``'s value depends only on frames
  ``t-R .. t+R``. So a streaming caller needs ``R`` frames of look-ahead and look-behind,
  and smoothing a window ``[a-R, b+R)`` gives frames ``[a, b)`` exactly the values that
  smoothing the whole sequence would give (tests hold this).
- At the true ends of a sequence (a track that starts or stops) it extends the data by
  point reflection (``2 x[0] - x[k]``), which keeps a constant velocity exact: a face that
  moves steadily is not pulled back at the ends of its track, unlike the usual
  mirror/nearest padding.
- ``sigma <= 0`` is the identity (smoothing off).

:func:`rms_second_difference` is the steadiness number the docs (guides/video.md) and tests report: the
RMS length of ``q[t+1] - 2 q[t] + q[t-1]`` over time and points (pixels per frame^2). A
smooth camera path has a small second difference; landmark noise makes it large.
"""

from __future__ import annotations

import math

import numpy as np


def radius(sigma: float) -> int:
    return int(math.ceil(3.0 * sigma)) if sigma > 0 else 0


def gaussian_kernel(sigma: float) -> np.ndarray:
    r = radius(sigma)
    t = np.arange(-r, r + 1, dtype=np.float64)
    w = np.exp(-0.5 * (t / sigma) ** 2)
    return w / w.sum()


def gaussian_smooth(
    x: np.ndarray, sigma: float, axis: int = 0, reflect_start: bool = True, reflect_end: bool = True
) -> np.ndarray:
    """Smooth ``x`` along ``axis`` (float64 inside, returned in ``x``'s float dtype).

    ``reflect_start`` / ``reflect_end``: whether that end is a true end of the sequence
    (point reflection) or a cut of a longer one (then the caller has supplied ``R`` extra
    frames there, whose own outputs are not to be used)."""
    from scipy.ndimage import correlate1d

    x = np.asarray(x)
    n = x.shape[axis]
    if sigma <= 0 or n < 2:
        return x.copy()
    w = gaussian_kernel(sigma)
    r = len(w) // 2
    a = np.moveaxis(x.astype(np.float64), axis, 0)
    k = min(r, n - 1)
    head = 2.0 * a[:1] - a[k:0:-1] if reflect_start else np.repeat(a[:1], k, axis=0)
    tail = 2.0 * a[-1:] - a[-2 : -k - 2 : -1] if reflect_end else np.repeat(a[-1:], k, axis=0)
    padded = np.concatenate([head, a, tail], axis=0)
    out = correlate1d(padded, w, axis=0, mode="nearest")[k : k + n]
    return np.moveaxis(out, 0, axis).astype(x.dtype if x.dtype.kind == "f" else np.float64)


def rms_second_difference(points: np.ndarray) -> float:
    """``points [T, P, 2]`` (e.g. the 4 quad corners per frame) -> RMS of the second
    difference's length in pixels; NaN when ``T < 3``."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape[0] < 3:
        return float("nan")
    d2 = p[2:] - 2.0 * p[1:-1] + p[:-2]
    return float(np.sqrt(np.mean(np.sum(d2**2, axis=-1))))
