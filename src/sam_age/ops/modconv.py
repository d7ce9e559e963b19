"""Fast inference form of StyleGAN2's modulated convolutions.

The reference (``models.stylegan2.ModulatedConv2d``) builds per-sample weights, runs one
grouped convolution, then the blur, the noise, the bias and the activation as separate
passes. The fast form computes exactly the same function with fewer passes over the
activations, which at 512-1024 px (32-64 channels) cost as much as the convolutions:

- the bias rides inside the convolution (or inside the blur after an upsampling conv);
- the noise is added and the leaky ReLU applied in place;
- the ``* sqrt(2)`` gain of the activation is not applied to the activations at all: it is
  folded into the *next* layers' modulated weights (``in_gain``), which every consumer of
  an activation has (the next conv and the ToRGB), so it costs nothing;
- the modulated, demodulated weights are computed in float32 whatever the activation
  dtype and cast afterwards. Demodulation cancels any scale of the weight, so this is the
  numerical equivalent of NVlabs' fp16 pre-normalisation (no overflow in ``w**2`` sums)
  without its extra pass.

Upsampling stays a stride-2 transposed 3x3 conv followed by the 4x4 blur: folding both into
one 6x6 transposed conv would be exact but costs 4x the multiply-adds of the 3x3 conv (every
output phase then reads 3x3 inputs instead of 2.25 on average), more than the blur it saves.

Which form runs is chosen by the caller (``Generator.synthesis(..., impl=...)``); these
functions hold no state. The per-layer ``sum_k w^2`` that the demodulation needs is passed
in (``sq_norms``): the generator's layers keep it (see ``ModulatedConv2d.squared_norms``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def _acc(weight: torch.Tensor) -> torch.dtype:
    """Accumulation dtype for the modulation math: float32, or float64 for float64 models."""
    return torch.promote_types(weight.dtype, torch.float32)


def squared_norms(weight: torch.Tensor) -> torch.Tensor:
    """``sum_k w_oik^2`` as ``[out, in]`` (float32 at least) for ``weight [1, out, in, k, k]``."""
    return weight[0].to(_acc(weight)).square().sum([2, 3])


def modulation_factors(
    weight: torch.Tensor,
    scale: float,
    styles: torch.Tensor,
    demodulate: bool,
    eps: float = 1e-8,
    sq_norms: Optional[torch.Tensor] = None,
):
    """``(s [B, in], demod [B, out] or None)`` in float32 (at least) such that the reference modulated
    weight is ``weight[0] * s[:, None, :, None, None] * demod[:, :, None, None, None]``.
    The demodulation uses ``sum_i s_i^2 sum_k w_oik^2`` (a small matmul) instead of a pass
    over the ``[B, out, in, k, k]`` weights; ``sq_norms`` is :func:`squared_norms` of the
    weight when the caller keeps it (computed here otherwise)."""
    s = styles.to(_acc(weight)) * scale
    if not demodulate:
        return s, None
    w2 = squared_norms(weight) if sq_norms is None else sq_norms
    return s, torch.rsqrt(s.square() @ w2.t() + eps)


WEIGHT_LAYOUTS = (None, "conv", "deconv")


def _weight_buffer(b: int, c_out: int, c_in: int, k: int, dtype, device, layout: Optional[str]) -> torch.Tensor:
    """An empty ``[B, out, in, k, k]`` whose per-sample slices are already in the memory
    order the convolution wants: ``"conv"`` -> ``w[i]`` is channels-last ``[out, in, k, k]``
    (memory ``[out, k, k, in]``); ``"deconv"`` -> ``w[i].transpose(0, 1)`` is channels-last
    ``[in, out, k, k]`` (memory ``[in, k, k, out]``). Without it oneDNN copies every weight
    into that order on every call (~2-3 ms per 512x512 layer on 2 cores)."""
    if layout == "conv":
        return torch.empty((b, c_out, k, k, c_in), dtype=dtype, device=device).permute(0, 1, 4, 2, 3)
    if layout == "deconv":
        return torch.empty((b, c_in, k, k, c_out), dtype=dtype, device=device).permute(0, 4, 1, 2, 3)
    return torch.empty((b, c_out, c_in, k, k), dtype=dtype, device=device)


def modulated_weight(
    weight: torch.Tensor,
    scale: float,
    styles: torch.Tensor,
    demodulate: bool,
    in_gain: float = 1.0,
    eps: float = 1e-8,
    dtype: Optional[torch.dtype] = None,
    sq_norms: Optional[torch.Tensor] = None,
    layout: Optional[str] = None,
) -> torch.Tensor:
    """``[B, out, in, k, k]`` per-sample weights from ``weight [1, out, in, k, k]`` and the
    modulation ``styles [B, in]``; demodulated like the reference (the demodulation sees
    the weight *before* ``in_gain``, which only compensates an unscaled input).
    ``layout`` ("conv", "deconv"; inference only): the strides the consuming convolution
    wants (:func:`_weight_buffer`); the values are the same."""
    if layout not in WEIGHT_LAYOUTS:
        raise ValueError(f"layout must be one of {WEIGHT_LAYOUTS}, got {layout!r}")
    s, demod = modulation_factors(weight, scale, styles, demodulate, eps, sq_norms)
    coef = (s * in_gain)[:, None, :]
    if demod is not None:
        coef = coef * demod[:, :, None]
    dtype = dtype or weight.dtype
    if torch.is_grad_enabled() and (weight.requires_grad or coef.requires_grad):
        return (weight[0].to(coef.dtype)[None] * coef[..., None, None]).to(dtype)
    # one pass: the (say bf16) weight is read, multiplied in float32, stored in ``dtype``
    _, c_out, c_in, k, _ = weight.shape
    out = _weight_buffer(coef.shape[0], c_out, c_in, k, dtype, weight.device, layout)
    return torch.mul(weight[0][None], coef[..., None, None], out=out)


def _noise_lrelu_(
    out: torch.Tensor, noise: Optional[torch.Tensor], noise_weight: torch.Tensor, negative_slope: float
) -> torch.Tensor:
    if noise is None:
        noise = out.new_empty(out.shape[0], 1, out.shape[2], out.shape[3]).normal_()
    out.add_(noise.to(out.dtype) * noise_weight.to(out.dtype))
    return F.leaky_relu_(out, negative_slope)


class _FixedBlur(torch.autograd.Function):
    """Depthwise conv with a constant kernel that keeps nothing for backward: the input
    gradient is the transposed conv with the same kernel, and the kernel has none. (A
    plain ``F.conv2d`` would keep its input -- one 4x-upsampled activation per upsampling
    layer -- for a weight gradient nobody asks for.)"""

    @staticmethod
    def forward(ctx, x, kernel, bias):
        ctx.kernel = kernel
        ctx.has_bias = bias is not None
        return F.conv2d(x, kernel, bias=bias, padding=1, groups=x.shape[1])

    @staticmethod
    def backward(ctx, grad):
        gx = F.conv_transpose2d(grad, ctx.kernel, padding=1, groups=grad.shape[1])
        gb = grad.sum((0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, None, gb


def _blur(x: torch.Tensor, blur: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    # the kernel is symmetric, so correlation == convolution; pad (1, 1) as the reference Blur
    c = x.shape[1]
    kb = blur.to(x.dtype)[None, None].expand(c, 1, *blur.shape)
    if torch.is_grad_enabled() and (x.requires_grad or (bias is not None and bias.requires_grad)):
        return _FixedBlur.apply(x, kb, bias)
    return F.conv2d(x, kb, bias=bias, padding=1, groups=c)


def styled_conv_fast(
    x: torch.Tensor,
    w: torch.Tensor,
    bias: torch.Tensor,
    noise: Optional[torch.Tensor],
    noise_weight: torch.Tensor,
    upsample: bool = False,
    blur: Optional[torch.Tensor] = None,
    negative_slope: float = 0.2,
) -> torch.Tensor:
    """One StyledConv (modulated conv [+ upsample + blur] + noise + bias + leaky ReLU) with
    per-sample weights ``w [B, out, in, k, k]`` from :func:`modulated_weight` (one grouped
    conv; with ``B == 1`` a plain conv, which keeps a channels-last input channels-last).
    ``blur [4, 4]`` is the upsampling blur kernel (already x4). Returns the activation
    **divided by sqrt(2)**: the consumer multiplies it back through its ``in_gain``."""
    b, c_in, h, wd = x.shape
    c_out, k = w.shape[1], w.shape[-1]
    xg = x if b == 1 else x.reshape(1, b * c_in, h, wd)
    bias_g = bias.to(x.dtype).repeat(b)
    if upsample:
        wt = w.transpose(1, 2).reshape(b * c_in, c_out, k, k)
        out = _blur(F.conv_transpose2d(xg, wt, stride=2, groups=b), blur, bias_g)
    else:
        out = F.conv2d(xg, w.reshape(b * c_out, c_in, k, k), bias=bias_g, padding=k // 2, groups=b)
    if b > 1:
        out = out.view(b, c_out, out.shape[2], out.shape[3])
    return _noise_lrelu_(out, noise, noise_weight, negative_slope)


def styled_conv_shared(
    x: torch.Tensor,
    weight: torch.Tensor,
    scale: float,
    styles: torch.Tensor,
    bias: torch.Tensor,
    noise: Optional[torch.Tensor],
    noise_weight: torch.Tensor,
    upsample: bool = False,
    blur: Optional[torch.Tensor] = None,
    in_gain: float = 1.0,
    negative_slope: float = 0.2,
    sq_norms: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The same StyledConv with one shared-weight conv for the whole batch (NVlabs'
    ``fused_modconv=False``): ``x * s`` -> conv -> ``* demod + bias``. Better where a batch
    is worth more than the extra passes (GPUs)."""
    s, demod = modulation_factors(weight, scale, styles, True, sq_norms=sq_norms)
    xs = x * (s * in_gain).to(x.dtype)[:, :, None, None]
    w = weight[0].to(x.dtype)
    if upsample:
        out = _blur(F.conv_transpose2d(xs, w.transpose(0, 1), stride=2), blur, None)
    else:
        out = F.conv2d(xs, w, padding=w.shape[-1] // 2)
    out = torch.addcmul(bias.to(out.dtype)[None, :, None, None], out, demod.to(out.dtype)[:, :, None, None])
    return _noise_lrelu_(out, noise, noise_weight, negative_slope)


def to_rgb_fast(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """ToRGB's 1x1 modulated conv (no demodulation) + bias: ``w [B, 3, in, 1, 1]``."""
    b, c_in, h, wd = x.shape
    if b == 1:
        return F.conv2d(x, w[0], bias=bias.to(x.dtype))
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        # [b, h*w, c] is a view of a channels-last tensor: no copy of the activations
        xt = x.permute(0, 2, 3, 1).reshape(b, h * wd, c_in)
        out = torch.baddbmm(bias.to(x.dtype).reshape(1, 1, -1), xt, w.reshape(b, -1, c_in).transpose(1, 2))
        return out.view(b, h, wd, -1).permute(0, 3, 1, 2)
    out = torch.baddbmm(bias.to(x.dtype).reshape(1, -1, 1), w.reshape(b, -1, c_in), x.reshape(b, c_in, h * wd))
    return out.view(b, -1, h, wd)
