"""pSp's GradualStyleEncoder: IR-SE-50 feature pyramid -> one style vector per generator layer.

``forward(x, impl=...)`` runs one of two forms of the same function:

- ``"reference"``: the modules as trained (BatchNorm layers, the SE product then the
  residual sum, ``MaxPool2d(1, 1)`` shortcuts that copy);
- ``"folded"``: the inference form -- both BatchNorms of every IR-SE unit folded into
  its convs, the shortcut a view, the SE gate and the residual one ``addcmul``
  (``sam_age.models.irse.unit_folded``), every conv in the layout the device's kernels
  prefer (channels-last on CPU and CUDA). The folded weights are computed once and kept
  beside the module, keyed by the identity and version of every parameter and buffer,
  so a ``.to()``, a ``load_state_dict`` or an optimizer step refolds on the next call;
- ``"auto"`` (default): folded in eval mode without autograd, the reference otherwise
  (training needs the BatchNorm layers themselves).

``impl`` is an argument of ``forward`` (default ``self.impl``, itself "auto"), as the
generator's (``models.stylegan2``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..memory import file_mappings, release_mapped, trim_heap
from ..ops.packed import pack_conv
from .irse import fold_input_layer, fold_unit, input_layer, input_layer_folded, ir_se50_body, unit_folded
from .stylegan2 import EqualLinear

ENCODER_IMPLS = ("auto", "reference", "folded")

# feature taps after these body units: c1 (128ch, 1/4), c2 (256ch, 1/8), c3 (512ch, 1/16)
TAP_C1, TAP_C2, TAP_C3 = 6, 20, 23
COARSE_END, MIDDLE_END = 3, 7


class GradualStyleBlock(nn.Module):
    """log2(spatial) stride-2 convs + LeakyReLU(0.01), then an equalised linear."""

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        self.out_c = out_c
        layers = [nn.Conv2d(in_c, out_c, 3, stride=2, padding=1), nn.LeakyReLU()]
        for _ in range(int(math.log2(spatial)) - 1):
            layers += [nn.Conv2d(out_c, out_c, 3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.out_c))

    def packed(self, pack: bool = True, form: Optional[str] = None, tuner=None):
        """``(convs, weight, bias)``: each conv + LeakyReLU as one :class:`PackedConv`
        (``form``/``tuner``: see it), and the equalised linear's effective weight and bias."""
        convs = [m for m in self.convs if isinstance(m, nn.Conv2d)]
        slopes = [m.negative_slope for m in self.convs if isinstance(m, nn.LeakyReLU)]
        lin = self.linear
        bias = None if lin.bias is None else lin.bias.detach() * lin.lr_mul
        return (
            [pack_conv(c, s, pack, form, tuner) for c, s in zip(convs, slopes)],
            lin.weight.detach() * lin.scale,
            bias,
        )

    @staticmethod
    def forward_packed(x: torch.Tensor, packed) -> torch.Tensor:
        """Same as ``forward`` (inference) from :meth:`packed`."""
        convs, weight, bias = packed
        for conv in convs:
            x = conv(x)
        return F.linear(x.reshape(x.shape[0], -1), weight, bias)


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class GradualStyleEncoder(nn.Module):
    """``[N, input_nc, 256, 256] -> [N, n_styles, 512]``. SAM uses input_nc=4 (RGB + age)."""

    def __init__(self, input_nc: int = 4, n_styles: int = 18):
        super().__init__()
        self.input_nc = input_nc
        self.style_count = n_styles
        self.input_layer = input_layer(input_nc)
        self.body = ir_se50_body()
        self.styles = nn.ModuleList(
            GradualStyleBlock(512, 512, 16 if i < COARSE_END else 32 if i < MIDDLE_END else 64) for i in range(n_styles)
        )
        self.latlayer1 = nn.Conv2d(256, 512, 1, 1, 0)
        self.latlayer2 = nn.Conv2d(128, 512, 1, 1, 0)

    def features(self, x: torch.Tensor):
        x = self.input_layer(x)
        c1 = c2 = None
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i == TAP_C1:
                c1 = x
            elif i == TAP_C2:
                c2 = x
        return c1, c2, x

    impl = "auto"  # the form when a call does not name one (see the module docstring)

    def resolve_impl(self, impl: Optional[str] = None) -> str:
        impl = self.impl if impl is None else impl
        if impl not in ENCODER_IMPLS:
            raise ValueError(f"encoder impl must be one of {ENCODER_IMPLS}, got {impl!r}")
        if impl == "auto":
            return "folded" if not self.training and not torch.is_grad_enabled() else "reference"
        return impl

    def forward(self, x: torch.Tensor, impl: Optional[str] = None) -> torch.Tensor:
        if self.resolve_impl(impl) == "folded":
            return self.forward_folded(x)
        c1, c2, c3 = self.features(x)
        latents = [self.styles[j](c3) for j in range(min(COARSE_END, self.style_count))]
        p2 = _upsample_add(c3, self.latlayer1(c2))
        latents += [self.styles[j](p2) for j in range(COARSE_END, min(MIDDLE_END, self.style_count))]
        p1 = _upsample_add(p2, self.latlayer2(c1))
        latents += [self.styles[j](p1) for j in range(MIDDLE_END, self.style_count)]
        return torch.stack(latents, dim=1)

    # -- the folded inference form ------------------------------------------------------
    pack_heads = True  # pack the style heads' weights too (a copy of ~0.9 GB in float32)
    # the convs' form in the folded path (``sam_age.ops.packed``): "auto" (measured by
    # ``tuner`` at the first call where one is given, else packed), "packed" or "plain";
    # set by the caller (``AgePipeline(forms=...)``), like ``impl``
    conv_form = "auto"
    tuner = None
    # reclaim the memory-mapped file pages behind the parameters once their folded copies
    # exist (``sam_age.memory.release_mapped``: values never change; CPU RSS 4.3 -> 2.4 GB)
    reclaim_file_pages = True

    def _fold_key(self) -> tuple:
        return (self.pack_heads, self.conv_form, id(self.tuner)) + tuple(
            (t.data_ptr(), t._version, t.dtype, t.device) for t in list(self.parameters()) + list(self.buffers())
        )

    def folded(self) -> dict:
        """The folded and packed weights (built on first use, rebuilt when a weight
        changes): the body's BatchNorms folded into its convs, every conv packed for
        oneDNN on the CPU (``sam_age.ops.packed``; the style heads with their LeakyReLU
        fused, when ``pack_heads``)."""
        key = self._fold_key()
        hit: Optional[tuple] = self.__dict__.get("_folded_cache")
        if hit is not None and hit[0] == key:
            return hit[1]
        self.__dict__["_folded_cache"] = None  # drop the old copy before building the new
        dtype = self.input_layer[0].weight.dtype
        fmt = torch.channels_last
        ranges = file_mappings() if self.reclaim_file_pages else []

        def built(module: nn.Module, value):
            # the folded/packed copy exists: the file pages behind the module's own
            # parameters are reclaimed (re-read if ever needed: ``sam_age.memory``)
            if ranges:
                release_mapped(list(module.parameters()) + list(module.buffers()), ranges)
            return value

        kw = dict(form=self.conv_form, tuner=self.tuner)
        head = dict(form=self.conv_form if self.pack_heads else "plain", tuner=self.tuner)
        with torch.no_grad():
            data = {
                "input": built(self.input_layer, fold_input_layer(self.input_layer, dtype, fmt, **kw)),
                "body": [built(u, fold_unit(u, dtype, fmt, **kw)) for u in self.body],
                "heads": [built(s, s.packed(**head)) for s in self.styles],
                "lat1": built(self.latlayer1, pack_conv(self.latlayer1, **head)),
                "lat2": built(self.latlayer2, pack_conv(self.latlayer2, **head)),
            }
        self.__dict__["_folded_cache"] = (key, data)
        trim_heap()  # the packing temporaries (oneDNN copies) back to the OS
        return data

    def features_folded(self, x: torch.Tensor):
        f = self.folded()
        x = input_layer_folded(x.contiguous(memory_format=torch.channels_last), f["input"])
        c1 = c2 = None
        for i, unit in enumerate(f["body"]):
            x = unit_folded(x, unit)
            if i == TAP_C1:
                c1 = x
            elif i == TAP_C2:
                c2 = x
        return c1, c2, x

    def forward_folded(self, x: torch.Tensor) -> torch.Tensor:
        f = self.folded()
        c1, c2, c3 = self.features_folded(x)
        heads, n = f["heads"], self.style_count
        run = GradualStyleBlock.forward_packed
        latents = [run(c3, heads[j]) for j in range(min(COARSE_END, n))]
        p2 = _upsample_add(c3, f["lat1"](c2))
        latents += [run(p2, heads[j]) for j in range(COARSE_END, min(MIDDLE_END, n))]
        p1 = _upsample_add(p2, f["lat2"](c1))
        latents += [run(p1, heads[j]) for j in range(MIDDLE_END, n)]
        return torch.stack(latents, dim=1)
