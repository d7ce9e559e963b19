"""Math with no model in it. Each op has a reference form and, where it pays, a fast form
beside it; ``tests/ops`` holds every fast form to its reference."""

from .bias_act import fused_leaky_relu, fused_leaky_relu_reference
from .upfirdn import make_kernel, upfirdn2d, upfirdn2d_reference

__all__ = [
    "fused_leaky_relu",
    "fused_leaky_relu_reference",
    "make_kernel",
    "upfirdn2d",
    "upfirdn2d_reference",
]
