"""upfirdn2d: upsample (zero insertion), pad, FIR filter, downsample.

``upfirdn2d_reference`` spells out the definition step by step (as the original CUDA op
computes it). ``upfirdn2d`` is the same math with the zero insertion done by a strided
transposed convolution, which avoids materialising the zero-filled tensor.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F


def make_kernel(k: Sequence[float]) -> torch.Tensor:
    """2-D FIR kernel from a 1-D one (outer product), normalised to sum 1."""
    k = torch.tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def _pads(pad: Sequence[int]) -> Tuple[int, int]:
    if len(pad) == 2:
        return int(pad[0]), int(pad[1])
    raise ValueError(f"pad must be (before, after), got {pad}")


def upfirdn2d_reference(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: Sequence[int] = (0, 0)
) -> torch.Tensor:
    """Definition: insert ``up-1`` zeros after every pixel, pad ``p0`` before and ``p1``
    after on both axes (negative pads crop), convolve with ``kernel`` (true convolution),
    keep every ``down``-th pixel."""
    p0, p1 = _pads(pad)
    n, c, h, w = x.shape
    out = x.reshape(n * c, 1, h, 1, w, 1)
    out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1])
    out = out.reshape(n * c, 1, h * up, w * up)
    out = F.pad(out, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    out = out[:, :, max(-p0, 0) : out.shape[2] - max(-p1, 0), max(-p0, 0) : out.shape[3] - max(-p1, 0)]
    weight = torch.flip(kernel, [0, 1]).to(out)[None, None]
    out = F.conv2d(out, weight)
    out = out[:, :, ::down, ::down]
    return out.reshape(n, c, out.shape[2], out.shape[3])


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: Sequence[int] = (0, 0)
) -> torch.Tensor:
    """Fast form: depthwise conv (or depthwise transposed conv for ``up > 1``)."""
    p0, p1 = _pads(pad)
    if p0 < 0 or p1 < 0:
        return upfirdn2d_reference(x, kernel, up, down, pad)
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    weight = torch.flip(kernel, [0, 1]).to(x)[None, None].expand(c, 1, kh, kw)
    if up > 1:
        # Zero insertion + pad + correlate == transposed conv with the flipped-back kernel.
        # Transposed conv pads k-1 implicitly; compensate through its padding argument
        # so that the output matches the definition exactly.
        # conv_transpose2d computes the *full* true convolution of the zero-inserted
        # signal with the kernel: full[m] = sum_k z[m - k] K[k]. The definition's output
        # is y[o] = full[o + k - 1 - p0], so it is a window of that.
        full = F.conv_transpose2d(x, kernel.to(x)[None, None].expand(c, 1, kh, kw), stride=up, groups=c)
        sh, sw = kh - 1 - p0, kw - 1 - p0
        lh, lw = h * up + p0 + p1 - kh + 1, w * up + p0 + p1 - kw + 1
        if sh < 0 or sw < 0 or sh + lh > full.shape[2] or sw + lw > full.shape[3]:
            return upfirdn2d_reference(x, kernel, up, down, pad)
        out = full[:, :, sh : sh + lh, sw : sw + lw]
    else:
        out = F.conv2d(F.pad(x, [p0, p1, p0, p1]), weight, groups=c)
    if down > 1:
        out = out[:, :, ::down, ::down]
    return out
