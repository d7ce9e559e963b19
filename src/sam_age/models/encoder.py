"""pSp's GradualStyleEncoder: IR-SE-50 feature pyramid -> one style vector per generator layer."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .irse import input_layer, ir_se50_body
from .stylegan2 import EqualLinear

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
            GradualStyleBlock(512, 512, 16 if i < COARSE_END else 32 if i < MIDDLE_END else 64)
            for i in range(n_styles))
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3 = self.features(x)
        latents = [self.styles[j](c3) for j in range(min(COARSE_END, self.style_count))]
        p2 = _upsample_add(c3, self.latlayer1(c2))
        latents += [self.styles[j](p2) for j in range(COARSE_END, min(MIDDLE_END, self.style_count))]
        p1 = _upsample_add(p2, self.latlayer2(c1))
        latents += [self.styles[j](p1) for j in range(MIDDLE_END, self.style_count)]
        return torch.stack(latents, dim=1)
