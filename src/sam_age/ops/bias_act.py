"""Bias + leaky ReLU * sqrt(2), StyleGAN2's "fused" activation, in plain PyTorch."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def fused_leaky_relu_reference(
    x: torch.Tensor, bias: Optional[torch.Tensor] = None, negative_slope: float = 0.2, scale: float = SQRT2
) -> torch.Tensor:
    if bias is not None:
        x = x + bias.reshape(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


def fused_leaky_relu(
    x: torch.Tensor, bias: Optional[torch.Tensor] = None, negative_slope: float = 0.2, scale: float = SQRT2
) -> torch.Tensor:
    """Same result as the reference; the scale is folded into the two slopes, so the chain
    is one add and one ``where`` (one pass fewer over the tensor)."""
    if bias is not None:
        x = x + bias.to(x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))
    return torch.where(x >= 0, x * scale, x * (negative_slope * scale))
