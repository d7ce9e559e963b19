"""StyleGAN2 generator (config-f), parameter names as in rosinality's port.

The state dict of :class:`Generator` has exactly the keys of a ``g_ema`` checkpoint, so
official files load without renaming. The math follows the spec §1.1; everything runs in
plain PyTorch (see ``sam_age.ops``).

The synthesis network runs in one of several forms of the same function, chosen by
``impl`` (an argument of :meth:`Generator.synthesis` and ``forward``, default
``Generator.impl``, itself "auto"), as NVlabs' ops take ``impl=``:

- ``"reference"``: module by module, as the original code (autograd-friendly, the spec);
- ``"per_sample"``: the fast form (``sam_age.ops.modconv``: per-sample modulated weights,
  bias/noise/activation fused, ``sqrt(2)`` folded into the next weights) image by image in
  channels-last -- the CPU's best (one image's activations at a time stay in cache);
- ``"grouped"``: the fast form for the whole batch in one grouped conv per layer; under
  autograd it keeps about one activation per layer for backward (the reference keeps
  three to four), so it is the memory-lean training form;
- ``"shared"``: the fast form with shared-weight convs for the whole batch and the
  activations modulated (NVlabs' ``fused_modconv=False``), channels-last -- the GPU's best;
- ``"auto"``: without autograd ``per_sample`` on the CPU and ``shared`` elsewhere; with
  autograd the reference. On the CPU with a ``tuner`` (``sam_age.autotune``, set by the
  caller) the first call per output size, dtype and batch instead times ``shared`` (and
  ``grouped`` for batches) against ``per_sample``, two calls each, and keeps the faster;
  the choice is cached per machine. ``per_sample`` is the baseline there, not the
  reference: the reference runs module by module (2.5x slower than any fast form on a
  2-core AVX2 EPYC at 1024 px: 27 s against 11 s per_sample, 5 s shared, under load), so
  timing it would cost a first run seconds for a form that never wins. Measured there:
  ``shared`` beats ``per_sample`` on AVX2, where a per-sample weight is reordered by
  oneDNN on every call.

``tests/models/test_fast_paths.py`` holds every form to the reference in float64
(outputs, and gradients for the forms used in training).
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import fused_leaky_relu, make_kernel, upfirdn2d
from ..ops.modconv import SQRT2, modulated_weight, squared_norms, styled_conv_fast, styled_conv_shared, to_rgb_fast

BLUR_KERNEL = (1, 3, 3, 1)
SYNTHESIS_IMPLS = ("auto", "reference", "per_sample", "grouped", "shared")


def channels_for(channel_multiplier: int = 2) -> dict:
    m = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * m, 128: 128 * m, 256: 64 * m, 512: 32 * m, 1024: 16 * m}


def n_latents(size: int) -> int:
    """Number of style vectors a generator of this output size reads (18 for 1024)."""
    return int(math.log2(size)) * 2 - 2


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Equalised-learning-rate linear: ``x @ (W * lr_mul / sqrt(in)).T + b * lr_mul``;
    with ``activation=True`` followed by leaky ReLU(0.2) * sqrt(2)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: bool = False,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias=bias)


class Blur(nn.Module):
    def __init__(self, kernel: Sequence[int], pad, upsample_factor: int = 1):
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * (upsample_factor**2)
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self, kernel: Sequence[int], factor: int = 2):
        super().__init__()
        self.factor = factor
        k = make_kernel(kernel) * (factor**2)
        self.register_buffer("kernel", k)
        p = k.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Per-sample modulated (and demodulated) convolution, optionally upsampling x2 by a
    transposed conv followed by a blur."""

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[int] = BLUR_KERNEL,
    ):
        super().__init__()
        self.eps = 1e-8
        self.kernel_size = kernel_size
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.upsample = upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)
        self.demodulate = demodulate

    def squared_norms(self) -> torch.Tensor:
        """``sum_k w^2`` per (out, in) for the fast forms' demodulation. Without autograd it
        is kept beside the module, keyed by the weight's identity and version (so a
        ``.to()``, a load or an optimizer step recomputes it on the next call)."""
        w = self.weight
        if (torch.is_grad_enabled() and w.requires_grad) or torch.compiler.is_compiling():
            return squared_norms(w)  # (a graph being traced keeps no state)
        key = (w.data_ptr(), w._version, w.dtype, w.device)
        hit = self.__dict__.get("_sq_norms")
        if hit is None or hit[0] != key:
            hit = (key, squared_norms(w.detach()))
            self.__dict__["_sq_norms"] = hit
        return hit[1]

    def style_scales(self, style: torch.Tensor) -> torch.Tensor:
        """``self.modulation(style)`` for the fast forms, in float32 at least whatever the
        model's dtype: half-precision GEMVs of a single style are slow on CPUs and the
        demodulation wants the precision. A half-precision model's modulation weights are
        kept as float32 copies beside the module (small: 512 x 512 per layer)."""
        lin = self.modulation
        acc = torch.promote_types(lin.weight.dtype, torch.float32)
        if (
            lin.weight.dtype == acc
            or (torch.is_grad_enabled() and lin.weight.requires_grad)
            or torch.compiler.is_compiling()
        ):
            return lin(style.to(lin.weight.dtype)).to(acc)
        key = (lin.weight.data_ptr(), lin.weight._version, lin.bias.data_ptr(), lin.bias._version, lin.weight.device)
        hit = self.__dict__.get("_style_fp32")
        if hit is None or hit[0] != key:
            hit = (key, lin.weight.detach().to(acc) * lin.scale, lin.bias.detach().to(acc) * lin.lr_mul)
            self.__dict__["_style_fp32"] = hit
        return F.linear(style.to(acc), hit[1], hit[2])

    def modulated_weight(self, style: torch.Tensor) -> torch.Tensor:
        """``[B, out, in, k, k]`` weights for each sample: scale, modulate, demodulate."""
        batch = style.shape[0]
        s = self.modulation(style).view(batch, 1, self.in_channel, 1, 1)
        weight = self.scale * self.weight * s
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps)
            weight = weight * demod.view(batch, self.out_channel, 1, 1, 1)
        return weight

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, in_ch, height, width = x.shape
        k = self.kernel_size
        weight = self.modulated_weight(style)
        x = x.reshape(1, batch * in_ch, height, width)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * in_ch, self.out_channel, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=batch)
            out = out.view(batch, self.out_channel, out.shape[2], out.shape[3])
            return self.blur(out)
        weight = weight.view(batch * self.out_channel, in_ch, k, k)
        out = F.conv2d(x, weight, padding=self.padding, groups=batch)
        return out.view(batch, self.out_channel, out.shape[2], out.shape[3])


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image: torch.Tensor, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        if noise is None:
            b, _, h, w = image.shape
            noise = image.new_empty(b, 1, h, w).normal_()
        return image + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class FusedLeakyReLU(nn.Module):
    def __init__(self, channel: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class StyledConv(nn.Module):
    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[int] = BLUR_KERNEL,
    ):
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channel, out_channel, kernel_size, style_dim, upsample=upsample, blur_kernel=blur_kernel
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x, style, noise=None):
        return self.activate(self.noise(self.conv(x, style), noise=noise))


class ToRGB(nn.Module):
    def __init__(
        self, in_channel: int, style_dim: int, upsample: bool = True, blur_kernel: Sequence[int] = BLUR_KERNEL
    ):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class Generator(nn.Module):
    """StyleGAN2 synthesis + mapping network. ``forward(styles, input_is_latent=...)``
    follows the rosinality signature (a list of style tensors) and returns
    ``(image, latent or None)``."""

    def __init__(
        self,
        size: int = 1024,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[int] = BLUR_KERNEL,
        lr_mlp: float = 0.01,
    ):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"generator size must be a power of two >= 8, got {size}")
        self.size = size
        self.style_dim = style_dim
        layers: List[nn.Module] = [PixelNorm()]
        for _ in range(n_mlp):
            layers.append(EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True))
        self.style = nn.Sequential(*layers)

        self.channels = channels_for(channel_multiplier)
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)

        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = (layer_idx + 5) // 2
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, 2**res, 2**res))
        in_channel = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2**i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim))
            in_channel = out_channel

    def fixed_noise(self) -> List[torch.Tensor]:
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    @torch.no_grad()
    def mean_latent(self, n_latent: int = 4096) -> torch.Tensor:
        z = torch.randn(n_latent, self.style_dim, device=self.input.input.device)
        return self.style(z).mean(0, keepdim=True)

    impl = "auto"  # the synthesis form when a call does not name one (see the module docstring)
    tuner = None  # a sam_age.autotune.Tuner: "auto" on the CPU is measured (set by the caller)

    def _tuned(self, latent, noise, pool_to, rule: str):
        """``(form, image or None)``: the measured form for this call's shape (CPU, no
        autograd, a tuner given)."""
        forms = ["per_sample", "shared"] + (["grouped"] if latent.shape[0] > 1 else [])
        name = f"generator:{self.size}:{str(latent.dtype).replace('torch.', '')}:n{latent.shape[0]}:pool{pool_to}"
        fns = {f: (lambda f=f: self.synthesis(latent, noise, impl=f, pool_to=pool_to)) for f in forms}
        return self.tuner.pick(name, fns, plain="per_sample", rule=rule, reps=2, warmup=False)

    def resolve_impl(self, impl: Optional[str], device: torch.device) -> str:
        impl = self.impl if impl is None else impl
        if impl not in SYNTHESIS_IMPLS:
            raise ValueError(f"synthesis impl must be one of {SYNTHESIS_IMPLS}, got {impl!r}")
        if impl == "auto":
            if torch.is_grad_enabled():
                return "reference"
            return "per_sample" if device.type == "cpu" else "shared"
        return impl

    def synthesis(
        self,
        latent: torch.Tensor,
        noise: Optional[Sequence[Optional[torch.Tensor]]] = None,
        impl: Optional[str] = None,
        pool_to: Optional[int] = None,
    ) -> torch.Tensor:
        """``latent`` is W+ ``[N, n_latent, style_dim]``; returns the image ``[N, 3, size, size]``
        (float32 at least: the RGB skip is accumulated in float32 in the fast forms).
        ``impl``: see the module docstring (default ``self.impl``, "auto").
        ``pool_to``: return the image average-pooled to ``pool_to`` px (what SAM's
        ``face_pool`` does; a divisor of ``size``). The fast forms pool the last layer's
        activations *before* its 1x1 ToRGB (both linear, so they commute): the full-size
        RGB image and its skip sum are never made."""
        if noise is None:
            noise = [None] * self.num_layers
        asked = self.impl if impl is None else impl
        impl = self.resolve_impl(impl, latent.device)
        if asked == "auto" and impl != "reference" and self.tuner is not None and latent.device.type == "cpu":
            impl, image = self._tuned(latent, noise, pool_to, impl)
            if image is not None:
                return image
        if pool_to is not None and (pool_to <= 0 or self.size % pool_to):
            raise ValueError(f"pool_to must divide the generator size {self.size}, got {pool_to}")
        if pool_to == self.size:
            pool_to = None
        if impl == "reference":
            image = self.synthesis_reference(latent, noise)
            return image if pool_to is None else F.avg_pool2d(image, self.size // pool_to)
        if impl == "per_sample":
            images = []
            for i in range(latent.shape[0]):
                sample_noise = [n if n is None or n.shape[0] == 1 else n[i : i + 1] for n in noise]
                images.append(self._synthesis_fast(latent[i : i + 1], sample_noise, shared=False, pool_to=pool_to))
            return torch.cat(images).contiguous()
        return self._synthesis_fast(latent, noise, shared=impl == "shared", pool_to=pool_to).contiguous()

    def synthesis_reference(self, latent: torch.Tensor, noise: Sequence[Optional[torch.Tensor]]) -> torch.Tensor:
        out = self.input(latent.shape[0])
        out = self.conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv1, conv2, noise1, noise2, to_rgb in zip(
            self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs
        ):
            out = conv1(out, latent[:, i], noise=noise1)
            out = conv2(out, latent[:, i + 1], noise=noise2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip

    def _synthesis_fast(self, latent, noise, shared: bool, pool_to: Optional[int] = None) -> torch.Tensor:
        # activations are carried divided by sqrt(2); consumers fold it into their weights
        one = latent.shape[0] == 1  # per-sample weights laid out as the conv reads them

        def styled(layer: StyledConv, x, style, noise_i, gain):
            conv = layer.conv
            blur = conv.blur.kernel if conv.upsample else None
            if shared:
                return styled_conv_shared(
                    x,
                    conv.weight,
                    conv.scale,
                    conv.style_scales(style),
                    layer.activate.bias,
                    noise_i,
                    layer.noise.weight,
                    conv.upsample,
                    blur,
                    gain,
                    sq_norms=conv.squared_norms(),
                )
            layout = ("deconv" if conv.upsample else "conv") if one else None
            w = modulated_weight(
                conv.weight,
                conv.scale,
                conv.style_scales(style),
                True,
                gain,
                dtype=x.dtype,
                sq_norms=conv.squared_norms(),
                layout=layout,
            )
            return styled_conv_fast(
                x, w, layer.activate.bias, noise_i, layer.noise.weight, upsample=conv.upsample, blur=blur
            )

        def rgb(layer: ToRGB, x, style):
            conv = layer.conv
            w = modulated_weight(conv.weight, conv.scale, conv.style_scales(style), False, SQRT2, dtype=x.dtype)
            return to_rgb_fast(x, w, layer.bias.reshape(-1))

        out = self.input(latent.shape[0]).to(latent.dtype).contiguous(memory_format=torch.channels_last)
        out = styled(self.conv1, out, latent[:, 0], noise[0], 1.0)
        # the RGB skip sums 2 * log2(size) - 2 layers: it is kept in float32 whatever the
        # activations are (3 channels, so it costs nothing)
        acc = torch.promote_types(latent.dtype, torch.float32)
        skip = rgb(self.to_rgb1, out, latent[:, 1]).to(acc)
        i = 1
        last = len(self.to_rgbs) - 1
        for j, (conv1, conv2, noise1, noise2, to_rgb) in enumerate(
            zip(self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs)
        ):
            out = styled(conv1, out, latent[:, i], noise1, SQRT2)
            out = styled(conv2, out, latent[:, i + 1], noise2, SQRT2)
            if j == last and pool_to is not None:
                f = self.size // pool_to  # pool(rgb(x) + up(skip)) == rgb(pool(x)) + pool(up(skip))
                return rgb(to_rgb, F.avg_pool2d(out, f), latent[:, i + 2]).to(acc) + F.avg_pool2d(
                    to_rgb.upsample(skip), f
                )
            skip = rgb(to_rgb, out, latent[:, i + 2]).to(acc) + to_rgb.upsample(skip)
            i += 2
        return skip

    def forward(
        self,
        styles: Sequence[torch.Tensor],
        return_latents: bool = False,
        inject_index: Optional[int] = None,
        truncation: float = 1.0,
        truncation_latent: Optional[torch.Tensor] = None,
        input_is_latent: bool = False,
        noise: Optional[Sequence[Optional[torch.Tensor]]] = None,
        randomize_noise: bool = True,
        impl: Optional[str] = None,
        pool_to: Optional[int] = None,
    ):
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        if noise is None:
            noise = [None] * self.num_layers if randomize_noise else self.fixed_noise()
        if truncation < 1:
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        if len(styles) < 2:
            inject_index = self.n_latent
            latent = styles[0] if styles[0].ndim >= 3 else styles[0].unsqueeze(1).repeat(1, inject_index, 1)
        else:
            if inject_index is None:
                inject_index = int(torch.randint(1, self.n_latent - 1, ()).item())
            latent = styles[0].unsqueeze(1).repeat(1, inject_index, 1)
            latent2 = styles[1].unsqueeze(1).repeat(1, self.n_latent - inject_index, 1)
            latent = torch.cat([latent, latent2], 1)
        image = self.synthesis(latent, noise, impl=impl, pool_to=pool_to)
        return (image, latent) if return_latents else (image, None)
