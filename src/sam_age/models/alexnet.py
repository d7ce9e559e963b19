"""AlexNet's convolutional part (torchvision layout ``features.*``), the LPIPS backbone."""

from __future__ import annotations

from typing import List

import torch
from torch import nn


class AlexNetFeatures(nn.Module):
    """``forward`` returns the five feature maps after ReLU 1..5 (LPIPS taps)."""

    # indices into ``features`` where each LPIPS slice ends (exclusive)
    SLICE_ENDS = (2, 5, 8, 10, 12)
    CHANNELS = (64, 192, 384, 256, 256)

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(3, 2),
        )

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        outs, start = [], 0
        for end in self.SLICE_ENDS:
            for layer in self.features[start:end]:
                x = layer(x)
            outs.append(x)
            start = end
        return outs
