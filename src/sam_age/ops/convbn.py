"""Convolution + BatchNorm folding for inference, and the ops of a folded IR-SE unit.

An eval-mode BatchNorm is a per-channel affine map ``y = x * scale + shift``. Beside a
convolution it can be folded into the convolution's weights, so that the activations
are not read and written once more for it:

- **after** a conv (``bn(conv(x, w))``): ``w * scale[o]`` and bias ``b * scale + shift``.
  Exact in real arithmetic.
- **before** a conv (``conv(bn(x), w)``, as IR-SE's first BatchNorm): ``w * scale[i]``
  and the shift becomes a bias ``sum_{i,k} w[o,i,k] * shift[i]`` -- but only in the
  interior: the conv's zero padding pads ``bn(x)``, not ``x``, so on the border rows and
  columns the padded taps must *not* see the shift. :func:`fold_bn_before` returns the
  interior bias plus a :class:`BorderFix` (the exact difference on the ``padding``-wide
  border, computed once per input size), which :meth:`BorderFix.apply_` adds in place to
  the few border rows and columns. The result is the reference function exactly (in
  float64 to ~1e-15; in float32 to its rounding).

Folds are computed in float64 and cast to the weights' dtype once, so the folded weights
are the reference weights rounded once. ``tests/ops/test_convbn.py`` holds every form
here to its unfolded reference in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def bn_scale_shift(bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` in float64 with ``bn(x) == x * scale + shift`` (eval mode)."""
    var = bn.running_var.detach().double()
    mean = bn.running_mean.detach().double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().double()
    return scale, shift


def fold_bn_after(
    weight: torch.Tensor, bias: Optional[torch.Tensor], scale: torch.Tensor, shift: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``bn(conv(x, weight, bias))`` as one conv: ``(weight', bias')`` in float64."""
    w = weight.detach().double() * scale.view(-1, 1, 1, 1)
    b = shift if bias is None else bias.detach().double() * scale + shift
    return w, b


@dataclass
class BorderFix:
    """What the bias of a folded pre-conv BatchNorm gets wrong on the zero-padded border.

    ``correction(h, w)`` is ``conv(shift image, weight, padding) - interior`` restricted
    to the border strips (``padding`` wide); only stride 1 is supported (IR-SE's first
    conv). The strips are cached per input size and per dtype/device."""

    weight: torch.Tensor  # float64 [O, I, k, k], the *unscaled* conv weight
    shift: torch.Tensor  # float64 [I]
    padding: int
    _cache: Dict[tuple, Tuple[torch.Tensor, ...]] = field(default_factory=dict, repr=False)

    def strips(self, h: int, w: int, dtype: torch.dtype, device: torch.device) -> Tuple[torch.Tensor, ...]:
        key = (h, w, dtype, device)
        hit = self._cache.get(key)
        if hit is None:
            p = self.padding
            img = self.shift.view(1, -1, 1, 1).expand(1, self.shift.numel(), h, w)
            full = F.conv2d(img, self.weight, padding=p)[0]
            interior = self.weight.sum((2, 3)) @ self.shift
            err = full - interior.view(-1, 1, 1)
            hit = tuple(
                t.to(device=device, dtype=dtype).contiguous()
                for t in (err[:, :p, :], err[:, h - p :, :], err[:, p : h - p, :p], err[:, p : h - p, w - p :])
            )
            self._cache[key] = hit
        return hit

    def apply_(self, out: torch.Tensor) -> torch.Tensor:
        """Add the correction to ``out [N, O, h, w]`` in place (any memory format)."""
        p = self.padding
        if p == 0:
            return out
        h, w = out.shape[-2:]
        top, bottom, left, right = self.strips(h, w, out.dtype, out.device)
        out[:, :, :p, :] += top
        out[:, :, h - p :, :] += bottom
        out[:, :, p : h - p, :p] += left
        out[:, :, p : h - p, w - p :] += right
        return out


def fold_bn_before(
    weight: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, padding: int
) -> Tuple[torch.Tensor, torch.Tensor, BorderFix]:
    """``conv(bn(x), weight, padding=padding)`` (stride 1, no conv bias) as
    ``fix.apply_(conv(x, weight', bias'))``: ``(weight', bias', fix)``, float64."""
    w64 = weight.detach().double()
    folded = w64 * scale.view(1, -1, 1, 1)
    interior = w64.sum((2, 3)) @ shift
    return folded, interior, BorderFix(w64, shift, padding)


def squeeze_excite(u: torch.Tensor, fc1: torch.Tensor, fc2: torch.Tensor) -> torch.Tensor:
    """SE gate ``[N, C]``: ``sigmoid(fc2 @ relu(fc1 @ mean_hw(u)))`` with the 1x1 convs as
    matrices ``fc1 [C/r, C]``, ``fc2 [C, C/r]``."""
    m = u.mean((2, 3), dtype=torch.promote_types(u.dtype, torch.float32))
    return torch.sigmoid(F.relu(m @ fc1.t().to(m.dtype)) @ fc2.t().to(m.dtype)).to(u.dtype)


def se_residual(shortcut: torch.Tensor, u: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """``u * gate + shortcut`` in one pass (the reference does the product, then the sum)."""
    return torch.addcmul(shortcut, u, gate[:, :, None, None])
