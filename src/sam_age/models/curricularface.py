"""CurricularFace's IR-101 backbone (HuangYG123/CurricularFace, ``backbone/model_irse.py``,
``IR_101([112, 112])``): the identity network of the paper's similarity evaluation.

Layout (the state-dict names of ``CurricularFace_Backbone.pth``, so the file loads as is):

* ``input_layer``: conv 3x3 3->64 (no bias), BN, PReLU: :func:`sam_age.models.irse.input_layer`;
* ``body``: 49 plain IR units (:class:`sam_age.models.irse.BottleneckIR` with ``se=False``: the IR-SE unit of
  the ID loss without squeeze-excite) in stages of 3, 13, 30 and 3 units (64, 128, 256, 512
  channels), the first unit of each stage with stride 2 (112 px -> 7 px);
* ``output_layer``: BN2d(512), Dropout(0.4), flatten, Linear(512*7*7 -> 512),
  BatchNorm1d(512, **affine=False**): no weight or bias, running statistics only.

What differs from the IR-SE-50 of :mod:`sam_age.models.irse`: no SE in the units, 13/30
units in stages 2/3 instead of 4/14, dropout 0.4, the last BN without affine parameters,
and the forward does **not** L2-normalise: the original returns ``(embedding, conv_out)``;
:meth:`CurricularFaceIR101.forward` returns that first output as it is (a cosine similarity
normalises it; :meth:`embed` does). Dropout is inert in eval mode, where this net always runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .irse import input_layer, ir_body

IR101_STAGES = ((64, 64, 3), (64, 128, 13), (128, 256, 30), (256, 512, 3))
INPUT_SIZE = 112


class CurricularFaceIR101(nn.Module):
    """``[N, 3, 112, 112]`` in [-1, 1] -> ``[N, 512]`` (the original forward's first output)."""

    def __init__(self):
        super().__init__()
        self.input_layer = input_layer(3)
        self.body = ir_body(IR101_STAGES, se=False)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(0.4),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, 512),
            nn.BatchNorm1d(512, affine=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(x)))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised embedding (what a cosine similarity compares)."""
        return F.normalize(self(x), p=2, dim=1)
