"""DEX age estimator (VGG-16, 101 age bins), as used by SAM's aging loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VGG16_CONVS = (
    ("conv1", 3, 64, 2),
    ("conv2", 64, 128, 2),
    ("conv3", 128, 256, 3),
    ("conv4", 256, 512, 3),
    ("conv5", 512, 512, 3),
)


class DexVGG(nn.Module):
    """``forward(x)`` returns the 101 age logits for 224x224 input (no normalisation)."""

    def __init__(self):
        super().__init__()
        for name, cin, cout, n in VGG16_CONVS:
            for i in range(n):
                setattr(self, f"{name}_{i + 1}", nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1))
        self.fc6 = nn.Linear(512 * 7 * 7, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8_101 = nn.Linear(4096, 101)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name, _, _, n in VGG16_CONVS:
            for i in range(n):
                x = F.relu(getattr(self, f"{name}_{i + 1}")(x))
            x = F.max_pool2d(x, kernel_size=2, stride=2)
        x = x.flatten(1)
        x = F.relu(self.fc6(x))
        x = F.relu(self.fc7(x))
        return self.fc8_101(x)

    def predict_ages(self, images: torch.Tensor) -> torch.Tensor:
        """Expected age in years, ``sum_j j * softmax(logits)_j``, for images in [-1, 1]."""
        x = F.interpolate(images, size=(224, 224), mode="bilinear", align_corners=False)
        probs = F.softmax(self(x), dim=1)
        bins = torch.arange(probs.shape[1], dtype=probs.dtype, device=probs.device)
        return probs @ bins
