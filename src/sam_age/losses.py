"""The training losses of SAM (spec §2): identity, aging, LPIPS, w-norm.

Every loss network is frozen (``requires_grad=False``, eval mode, whatever mode the
caller puts it in) but differentiable: gradients flow through it to the image, and from
there into the encoder. That is the point of the aging loss, so a test holds it.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import load_alexnet, load_dex, load_ir_se50, lpips_lin_state

Source = Union[str, Path]

# The face region every "crop" loss looks at (rows 35:223, columns 32:220 of a 256 px face).
FACE_CROP = (slice(None), slice(None), slice(35, 223), slice(32, 220))


def crop_face(images: torch.Tensor) -> torch.Tensor:
    return images[FACE_CROP]


def default_lpips_lin_path() -> Path:
    """The LPIPS v0.1 AlexNet lin weights shipped with the package (BSD-2, see the folder)."""
    return Path(str(resources.files("sam_age") / "data" / "lpips" / "alex_v0.1.pth"))


class _FrozenLoss(nn.Module):
    """Loss module whose networks never train: eval mode always, no parameter gradients."""

    def _freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "_FrozenLoss":
        return super().train(False)


class IDLoss(_FrozenLoss):
    """ArcFace identity loss: ``mean_i w_i (1 - <f(y_hat_i), f(y_i)>)`` on the face crop."""

    def __init__(self, weights_path: Source, device="cpu"):
        super().__init__()
        self.facenet = load_ir_se50(weights_path, device=device)
        self.face_pool = nn.AdaptiveAvgPool2d((112, 112))
        self._freeze()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.facenet(self.face_pool(crop_face(images)))

    def forward(
        self, y_hat: torch.Tensor, y: torch.Tensor, x: torch.Tensor, weights: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, float]:
        loss, improvement = self.loss_and_improvement(y_hat, y, x, weights)
        return loss, float(improvement)

    def loss_and_improvement(
        self, y_hat: torch.Tensor, y: torch.Tensor, x: torch.Tensor, weights: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """As ``forward`` but the improvement stays a tensor (no device sync per step)."""
        f_hat = self.features(y_hat)
        with torch.no_grad():  # the target and the input are constants (the original detaches them)
            f_y = self.features(y)
            f_x = self.features(x)
        sim_target = (f_hat * f_y).sum(dim=1)
        per_sample = 1 - sim_target
        if weights is not None:
            per_sample = weights.to(per_sample.dtype) * per_sample
        sim_views = (f_y * f_x).sum(dim=1)
        improvement = (sim_target.detach() - sim_views).mean()
        return per_sample.mean(), improvement


class AgingLoss(_FrozenLoss):
    """DEX age regression loss: ``mse(age(y_hat) / 100, target)`` with targets in [0, 1]."""

    def __init__(self, weights_path: Source, device="cpu"):
        super().__init__()
        self.age_net = load_dex(weights_path, device=device)
        self._freeze()

    def predict_ages(self, images: torch.Tensor) -> torch.Tensor:
        """Expected age in years for images in [-1, 1] (differentiable)."""
        return self.age_net.predict_ages(images)

    def forward(self, y_hat: torch.Tensor, target_ages: torch.Tensor) -> torch.Tensor:
        ages = self.predict_ages(y_hat) / 100.0
        return F.mse_loss(ages, target_ages.to(ages.dtype))


class LPIPS(_FrozenLoss):
    """LPIPS v0.1 with AlexNet: z-scored input, channel-normalised ReLU taps, squared
    difference, 1x1 lin conv, spatial mean, summed over layers, divided by batch size."""

    SHIFT = (-0.030, -0.088, -0.188)
    SCALE = (0.458, 0.448, 0.450)

    def __init__(self, alexnet_path: Source, lin_path: Optional[Source] = None, device="cpu"):
        super().__init__()
        self.net = load_alexnet(alexnet_path, device=device)
        lins = lpips_lin_state(lin_path if lin_path is not None else default_lpips_lin_path())
        self.lins = nn.ParameterList([nn.Parameter(lins[f"lins.{i}.weight"].float()) for i in range(len(lins))]).to(
            device
        )
        self.register_buffer("shift", torch.tensor(self.SHIFT).view(1, 3, 1, 1).to(device))
        self.register_buffer("scale", torch.tensor(self.SCALE).view(1, 3, 1, 1).to(device))
        self._freeze()

    def _features(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = self.net((x - self.shift.to(x.dtype)) / self.scale.to(x.dtype))
        return [f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10) for f in feats]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        total = a.new_zeros(())
        for fa, fb, w in zip(self._features(a), self._features(b), self.lins):
            total = total + F.conv2d((fa - fb) ** 2, w.to(fa.dtype)).mean(dim=(2, 3)).sum()
        return total / a.shape[0]


def w_norm_loss(codes: torch.Tensor, latent_avg: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``mean_i ||codes_i - latent_avg||_F`` over the [n_styles, 512] code matrices
    (no subtraction when ``latent_avg`` is None, as the original without a start latent)."""
    if latent_avg is not None:
        codes = codes - latent_avg
    return codes.flatten(1).norm(p=2, dim=1).mean()


def id_loss_weights(abs_age_diff: torch.Tensor) -> torch.Tensor:
    """Weighted ID loss: a large age change asks for less identity (``0.25 cos(pi d) + 0.75``)."""
    return 0.25 * torch.cos(math.pi * abs_age_diff) + 0.75
