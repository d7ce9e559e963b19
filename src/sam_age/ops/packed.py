"""Convolutions with weights pre-packed once for oneDNN (CPU inference), used where they pay.

``F.conv2d`` on the CPU hands oneDNN a plain ``[out, in, k, k]`` weight, which oneDNN
reorders into its blocked layout on *every* call. For the encoders' 512-channel convs at
1x1..32x32 pixels (most of their 1 GB of weights) the reorder costs more than the
arithmetic: measured 2-4x per conv on a 2-core Xeon with AMX (bf16 and float32). A
:class:`PackedConv` reorders once (``torch._C._nn.mkldnn_reorder_conv2d_weight``, what
Inductor's freezing pass does) and runs ``torch.ops.mkldnn._convolution_pointwise``, which
can also apply a leaky ReLU in the same pass. The arithmetic is oneDNN's either way: the
results equal ``F.conv2d``'s to float rounding (``tests/ops/test_packed.py``).

The blocked layout oneDNN picks depends on the ISA *and on the input size*: packed without
the input size, the weight suited AVX-512 but not the AVX2 primitive, which then reordered
it again on every call (~70-250 ms for a 512x512x3x3 conv: 5-20x slower than ``F.conv2d``).
So the weight is packed at the first call, for that call's input size (``input_size=``),
which gives the layout the primitive of this ISA wants.

Forms (``form=``): ``"packed"``; ``"plain"`` (``F.conv2d`` on the dense weight, the
reference); ``"auto"``: at the first call a :class:`~sam_age.autotune.Tuner` (when given)
times both on that input, keeps the faster (never a packed form slower than the plain
one) and caches the choice per conv shape and input size; without a tuner, ``"packed"``
(the rule). Where packing is not possible (not a CPU tensor, float64, a torch without
these ops) every form is the plain one -- same function, so callers never branch. Once the
form is known the other copy of the weight is dropped: one copy in memory.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

PACKABLE = (torch.float32, torch.bfloat16)
CONV_FORMS = ("auto", "packed", "plain")


def packing_available() -> bool:
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops, "mkldnn")
        and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
        and hasattr(torch._C._nn, "mkldnn_reorder_conv2d_weight")
    )


def _pair(v) -> list:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


class PackedConv:
    """``conv2d(x, weight, bias, stride, padding, groups)`` (then ``leaky_relu(slope)``
    when ``slope`` is given), the weight packed for oneDNN at the first call where the
    form says so (see the module docstring). ``pack=False`` is ``form="plain"``."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: Optional[torch.Tensor] = None,
        stride=1,
        padding=0,
        groups: int = 1,
        slope: Optional[float] = None,
        pack: bool = True,
        form: Optional[str] = None,
        tuner=None,
    ):
        form = ("auto" if pack else "plain") if form is None else form
        if form not in CONV_FORMS:
            raise ValueError(f"conv form must be one of {CONV_FORMS}, got {form!r}")
        self.stride, self.padding, self.groups, self.slope = _pair(stride), _pair(padding), int(groups), slope
        self.bias = None if bias is None else bias.detach()
        self.weight = weight.detach()
        self.packed = None
        self.tuner = tuner
        packable = weight.device.type == "cpu" and weight.dtype in PACKABLE and packing_available()
        self.form = form if packable else "plain"

    def _pack(self, x: torch.Tensor) -> bool:
        try:
            self.packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                self.weight.contiguous().to_mkldnn(), self.padding, self.stride, [1, 1], self.groups, list(x.shape)
            )
            return True
        except RuntimeError:  # an op or a dtype this build cannot pack: the dense form
            self.packed = None
            return False

    def _run_packed(self, x: torch.Tensor) -> torch.Tensor:
        attr, scalars = ("leaky_relu", [self.slope]) if self.slope is not None else ("none", [])
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.packed, self.bias, self.padding, self.stride, [1, 1], self.groups, attr, scalars, ""
        )

    def _run_plain(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.weight is not None else self.packed.to_dense()
        out = F.conv2d(
            x,
            weight.to(x.dtype),
            None if self.bias is None else self.bias.to(x.dtype),
            self.stride,
            self.padding,
            1,
            self.groups,
        )
        return out if self.slope is None else F.leaky_relu_(out, self.slope)

    def key(self, x: torch.Tensor) -> str:
        """The tuner's name for this conv on this input: shape, stride, padding, input size."""
        w = self.weight if self.weight is not None else self.packed
        return (
            f"conv:{str(x.dtype).replace('torch.', '')}:w{'x'.join(map(str, w.shape))}"
            f":s{self.stride[0]}p{self.padding[0]}g{self.groups}{':lrelu' if self.slope is not None else ''}"
            f":in{'x'.join(map(str, x.shape))}"
        )

    def _decide(self, x: torch.Tensor):
        """First call: settle the form (packing for this input size); returns the output
        when the decision already computed it, else None."""
        out = None
        if self.form in ("packed", "auto") and (x.dtype != self.weight.dtype or not self._pack(x)):
            self.form = "plain"
        if self.form == "auto":
            if self.tuner is None:
                self.form = "packed"
            else:
                self.form, out = self.tuner.pick(
                    self.key(x),
                    {"packed": lambda: self._run_packed(x), "plain": lambda: self._run_plain(x)},
                    plain="plain",
                    rule="packed",
                )
        if self.form == "packed":
            self.weight = None  # the packed copy replaces it (no second copy kept here)
        else:
            self.packed = None
        return out

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "auto" or (self.form == "packed" and self.packed is None and self.weight is not None):
            out = self._decide(x)
            if out is not None:
                return out
        if self.packed is not None and x.dtype == self.packed.dtype:
            return self._run_packed(x)
        return self._run_plain(x)


def pack_conv(
    conv: torch.nn.Conv2d, slope: Optional[float] = None, pack: bool = True, form: Optional[str] = None, tuner=None
) -> PackedConv:
    """A :class:`PackedConv` of an ``nn.Conv2d`` (its weights as they are now)."""
    return PackedConv(conv.weight, conv.bias, conv.stride, conv.padding, conv.groups, slope, pack, form, tuner)
