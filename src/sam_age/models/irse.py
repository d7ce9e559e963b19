"""IR-SE-50 (ArcFace) in the TreB1eN/pSp layout: the encoder body and the ID-loss network.

Each unit has its reference ``forward`` (the modules as trained) and a folded inference
form (:func:`fold_unit` + :func:`unit_folded`): both BatchNorms folded into the convs
(``sam_age.ops.convbn``), the stride-1 ``MaxPool2d(1, 1)`` shortcut an identity and the
stride-2 one a strided view instead of a copy, and the SE product and the residual sum
one ``addcmul``. Same function (``tests/models/test_encoder_fast.py``: float64 parity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.convbn import BorderFix, bn_scale_shift, fold_bn_after, fold_bn_before, se_residual, squeeze_excite
from ..ops.packed import PackedConv

# (in_channel, depth, units) per stage; the first unit of every stage has stride 2.
IR50_STAGES = ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))


class SEModule(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, padding=0, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, padding=0, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * w


class BottleneckIR(nn.Module):
    """One IR unit: ``res_layer`` (BN, conv 3x3, PReLU, conv 3x3 with the stride, BN, and
    with ``se`` the squeeze-excite ``res_layer.5``) plus ``shortcut_layer``. The state_dict
    names are those of the reference checkpoints: IR-SE-50 (pSp's encoder, the ID loss) has
    ``se``; CurricularFace's IR-101 is the same unit without it (no ``res_layer.5``)."""

    def __init__(self, in_channel: int, depth: int, stride: int, se: bool = True):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            *([SEModule(depth, 16)] if se else []),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def ir_body(stages, se: bool = True) -> nn.Sequential:
    """``body``: per stage ``(in_channel, depth, units)``, the first unit of a stage with
    stride 2; units with or without squeeze-excite (:class:`BottleneckIR`)."""
    units: List[nn.Module] = []
    for in_c, depth, n in stages:
        units.append(BottleneckIR(in_c, depth, 2, se))
        units.extend(BottleneckIR(depth, depth, 1, se) for _ in range(n - 1))
    return nn.Sequential(*units)


def ir_se50_body() -> nn.Sequential:
    return ir_body(IR50_STAGES, se=True)


def input_layer(input_nc: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(input_nc, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))


class IRSEBackbone(nn.Module):
    """ArcFace IR-SE-50 for 112x112 faces; ``forward`` returns L2-normalised 512-d features."""

    def __init__(self, input_size: int = 112, drop_ratio: float = 0.6, affine: bool = True):
        super().__init__()
        if input_size not in (112, 224):
            raise ValueError("input_size must be 112 or 224")
        spatial = 7 if input_size == 112 else 14
        self.input_layer = input_layer(3)
        self.body = ir_se50_body()
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(512 * spatial * spatial, 512),
            nn.BatchNorm1d(512, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.output_layer(self.body(self.input_layer(x)))
        return F.normalize(x, p=2, dim=1)


@dataclass
class FoldedUnit:
    """One :class:`BottleneckIR` (with ``se``) with its BatchNorms folded (see :func:`fold_unit`); the
    convs are :class:`~sam_age.ops.packed.PackedConv` (weights packed once for oneDNN on
    the CPU, dense elsewhere)."""

    conv1: PackedConv
    fix1: BorderFix
    alpha: torch.Tensor
    conv2: PackedConv
    stride: int
    se1: torch.Tensor
    se2: torch.Tensor
    shortcut: Optional[PackedConv] = None  # 1x1 conv (folded BN), or None: subsampling


def fold_unit(
    unit: BottleneckIR,
    dtype: torch.dtype,
    memory_format=torch.contiguous_format,
    pack: bool = True,
    form: Optional[str] = None,
    tuner=None,
) -> FoldedUnit:
    """The unit's weights with both BatchNorms folded in (float64 math, cast to ``dtype``
    once); conv weights in ``memory_format``, packed for oneDNN where it can (``pack``;
    ``form``/``tuner``: see :class:`~sam_age.ops.packed.PackedConv`)."""
    bn0, conv1, prelu, conv2, bn2, se = unit.res_layer
    w1, b1, fix1 = fold_bn_before(conv1.weight, *bn_scale_shift(bn0), padding=conv1.padding[0])
    w2, b2 = fold_bn_after(conv2.weight, None, *bn_scale_shift(bn2))
    ws = bs = None
    if isinstance(unit.shortcut_layer, nn.Sequential):
        conv_s, bn_s = unit.shortcut_layer
        ws, bs = fold_bn_after(conv_s.weight, None, *bn_scale_shift(bn_s))

    def cast(t, weight=False):
        if t is None:
            return None
        t = t.to(device=conv1.weight.device, dtype=dtype)
        return t.contiguous(memory_format=memory_format) if weight else t

    stride = conv2.stride[0]
    kw = dict(pack=pack, form=form, tuner=tuner)
    return FoldedUnit(
        PackedConv(cast(w1, True), cast(b1), 1, fix1.padding, **kw),
        fix1,
        prelu.weight.detach().to(dtype),
        PackedConv(cast(w2, True), cast(b2), stride, 1, **kw),
        stride,
        se.fc1.weight.detach().flatten(1),
        se.fc2.weight.detach().flatten(1),
        None if ws is None else PackedConv(cast(ws, True), cast(bs), stride, 0, **kw),
    )


def unit_folded(x: torch.Tensor, f: FoldedUnit) -> torch.Tensor:
    """The folded unit: ``conv1 -> border fix -> PReLU -> conv2 -> SE * + shortcut``."""
    z = F.prelu(f.fix1.apply_(f.conv1(x)), f.alpha)
    u = f.conv2(z)
    if f.shortcut is None:
        shortcut = x if f.stride == 1 else x[:, :, :: f.stride, :: f.stride]
    else:
        shortcut = f.shortcut(x)
    return se_residual(shortcut, u, squeeze_excite(u, f.se1, f.se2))


def fold_input_layer(
    layer: nn.Sequential,
    dtype: torch.dtype,
    memory_format=torch.contiguous_format,
    pack: bool = True,
    form: Optional[str] = None,
    tuner=None,
):
    """``(conv, alpha)`` of ``conv -> BN -> PReLU`` with the BN folded into the conv."""
    conv, bn, prelu = layer
    w, b = fold_bn_after(conv.weight, None, *bn_scale_shift(bn))
    dev = conv.weight.device
    return (
        PackedConv(
            w.to(device=dev, dtype=dtype).contiguous(memory_format=memory_format),
            b.to(device=dev, dtype=dtype),
            1,
            1,
            pack=pack,
            form=form,
            tuner=tuner,
        ),
        prelu.weight.detach().to(dtype),
    )


def input_layer_folded(x: torch.Tensor, folded) -> torch.Tensor:
    conv, alpha = folded
    return F.prelu(conv(x), alpha)
