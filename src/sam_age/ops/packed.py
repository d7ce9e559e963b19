"""Convolutions with weights pre-packed once for oneDNN (CPU inference).

``F.conv2d`` on the CPU hands oneDNN a plain ``[out, in, k, k]`` weight, which oneDNN
reorders into its blocked layout on *every* call. For the encoders' 512-channel convs at
1x1..32x32 pixels (most of their 1 GB of weights) the reorder costs more than the
arithmetic: measured 2-4x per conv on a 2-core Xeon with AMX (bf16 and float32). A
:class:`PackedConv` reorders once (``torch._C._nn.mkldnn_reorder_conv2d_weight``, what
Inductor's freezing pass does) and runs ``torch.ops.mkldnn._convolution_pointwise``, which
can also apply a leaky ReLU in the same pass. The arithmetic is oneDNN's either way: the
results equal ``F.conv2d``'s to float rounding (``tests/ops/test_packed.py``).

Where packing is not possible (not a CPU tensor, float64, a torch without these ops) the
object holds the dense weight and calls ``F.conv2d`` -- same function, so callers never
branch. A packed weight is a copy: it costs the weight's size in memory.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

PACKABLE = (torch.float32, torch.bfloat16)


def packing_available() -> bool:
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops, "mkldnn")
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
            and hasattr(torch._C._nn, "mkldnn_reorder_conv2d_weight"))


def _pair(v) -> list:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


class PackedConv:
    """``conv2d(x, weight, bias, stride, padding, groups)`` (then ``leaky_relu(slope)``
    when ``slope`` is given) with the weight packed once where oneDNN can."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, stride=1, padding=0,
                 groups: int = 1, slope: Optional[float] = None, pack: bool = True):
        self.stride, self.padding, self.groups, self.slope = _pair(stride), _pair(padding), int(groups), slope
        self.bias = None if bias is None else bias.detach()
        self.packed = None
        self.weight = weight.detach()
        if pack and weight.device.type == "cpu" and weight.dtype in PACKABLE and packing_available():
            try:
                self.packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                    self.weight.contiguous().to_mkldnn(), self.padding, self.stride, [1, 1], self.groups)
                self.weight = None  # the packed copy replaces it (no second copy kept here)
            except RuntimeError:  # an op or a dtype this build cannot pack: the dense form
                self.packed = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None and x.dtype == self.packed.dtype:
            attr, scalars = ("leaky_relu", [self.slope]) if self.slope is not None else ("none", [])
            return torch.ops.mkldnn._convolution_pointwise(x, self.packed, self.bias, self.padding, self.stride,
                                                           [1, 1], self.groups, attr, scalars, "")
        weight = self.weight if self.weight is not None else self.packed.to_dense()
        out = F.conv2d(x, weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype),
                       self.stride, self.padding, 1, self.groups)
        return out if self.slope is None else F.leaky_relu_(out, self.slope)


def pack_conv(conv: torch.nn.Conv2d, slope: Optional[float] = None, pack: bool = True) -> PackedConv:
    """A :class:`PackedConv` of an ``nn.Conv2d`` (its weights as they are now)."""
    return PackedConv(conv.weight, conv.bias, conv.stride, conv.padding, conv.groups, slope, pack)

