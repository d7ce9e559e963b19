"""SAM: age-conditioned pSp encoder + frozen pretrained pSp encoder + StyleGAN2 generator.

    codes = encoder([rgb, age]) + pretrained_encoder(rgb) + latent_avg   (start_from_encoded_w_plus)
    codes = encoder([rgb, age]) + latent_avg                             (start_from_latent_avg)
    image = avg_pool_to_256(generator(codes))                            (resize=True)

``forward`` has the original signature and semantics. The pieces (``encode_w_plus``,
``age_codes``, ``generate``) are public so that the pipeline can run the pretrained encoder
once per face and every age in one batch.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .encoder import GradualStyleEncoder
from .stylegan2 import Generator, n_latents


class SAM(nn.Module):
    def __init__(
        self,
        output_size: int = 1024,
        input_nc: int = 4,
        start_from_encoded_w_plus: bool = True,
        start_from_latent_avg: bool = False,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
    ):
        super().__init__()
        self.output_size = output_size
        self.n_styles = n_latents(output_size)
        self.input_nc = input_nc
        self.start_from_encoded_w_plus = start_from_encoded_w_plus
        self.start_from_latent_avg = start_from_latent_avg
        self.encoder = GradualStyleEncoder(input_nc, self.n_styles)
        self.decoder = Generator(output_size, style_dim, n_mlp, channel_multiplier)
        self.pretrained_encoder: Optional[GradualStyleEncoder] = None
        if start_from_encoded_w_plus:
            self.pretrained_encoder = GradualStyleEncoder(3, self.n_styles)
            self.pretrained_encoder.requires_grad_(False)
        self.face_pool = nn.AdaptiveAvgPool2d((256, 256))
        # Kept beside the state dict (as in the official files), not inside it.
        self.register_buffer("latent_avg", torch.zeros(self.n_styles, style_dim), persistent=False)

    @property
    def opts(self) -> dict:
        """The options the official code stores beside the weights."""
        return {
            "output_size": self.output_size,
            "input_nc": self.input_nc,
            "encoder_type": "GradualStyleEncoder",
            "start_from_encoded_w_plus": self.start_from_encoded_w_plus,
            "start_from_latent_avg": self.start_from_latent_avg,
            "dataset_type": "ffhq_aging",
            "label_nc": 0,
        }

    def train(self, mode: bool = True) -> "SAM":
        # The pretrained encoder is a frozen feature extractor: it never updates its
        # BatchNorm statistics, whatever mode the rest of the model is in.
        super().train(mode)
        if self.pretrained_encoder is not None:
            self.pretrained_encoder.eval()
        return self

    # -- pieces -------------------------------------------------------------------------
    @torch.no_grad()
    def encode_w_plus(self, rgb: torch.Tensor) -> torch.Tensor:
        """Pretrained pSp encoding of the RGB face plus latent_avg (no gradient): the
        age-independent base that SAM's codes are offsets from."""
        if self.pretrained_encoder is None:
            raise RuntimeError("this SAM has no pretrained encoder (start_from_encoded_w_plus=False)")
        return self.pretrained_encoder(rgb) + self.latent_avg

    def base_codes(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        if self.start_from_latent_avg:
            return self.latent_avg
        if self.start_from_encoded_w_plus:
            return self.encode_w_plus(x[:, :-1])
        return None

    def age_codes(self, x: torch.Tensor, base: Optional[torch.Tensor] = None) -> torch.Tensor:
        """W+ codes for the 4-channel input ``x``; ``base`` is ``encode_w_plus(rgb)`` when
        it has been computed already (for instance once for many ages)."""
        codes = self.encoder(x)
        if base is None:
            base = self.base_codes(x)
        return codes if base is None else codes + base

    def generate(
        self,
        codes: torch.Tensor,
        resize: bool = True,
        randomize_noise: bool = True,
        input_is_latent: bool = True,
        return_latents: bool = False,
        impl: Optional[str] = None,
    ):
        """Codes -> images; ``impl`` picks the generator's form (``Generator.synthesis``)."""
        pool_to = 256 if resize and self.output_size % 256 == 0 else None
        images, latents = self.decoder(
            [codes],
            input_is_latent=input_is_latent,
            randomize_noise=randomize_noise,
            return_latents=return_latents,
            impl=impl,
            pool_to=pool_to,
        )
        if resize and images.shape[-1] != 256:
            images = self.face_pool(images)
        return (images, latents) if return_latents else images

    @staticmethod
    def inject_latents(
        codes: torch.Tensor,
        latent_mask: Sequence[int],
        inject_latent: Optional[torch.Tensor] = None,
        alpha: Optional[float] = None,
    ) -> torch.Tensor:
        """The original forward's latent-mask injection, on a copy of ``codes`` ``[N, L, 512]``:
        each layer ``i`` in ``latent_mask`` takes ``inject_latent``'s (or ``alpha * inject +
        (1 - alpha) * own``; zeros without ``inject_latent``). Style mixing uses it too."""
        codes = codes.clone()
        for i in latent_mask:
            if inject_latent is not None:
                if alpha is not None:
                    codes[:, i] = alpha * inject_latent[:, i] + (1 - alpha) * codes[:, i]
                else:
                    codes[:, i] = inject_latent[:, i]
            else:
                codes[:, i] = 0
        return codes

    # -- the original entry point -------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        resize: bool = True,
        latent_mask: Optional[Sequence[int]] = None,
        input_code: bool = False,
        randomize_noise: bool = True,
        inject_latent: Optional[torch.Tensor] = None,
        return_latents: bool = False,
        alpha: Optional[float] = None,
        input_is_full: bool = False,
    ):
        codes = x if input_code else self.age_codes(x)
        if latent_mask is not None:
            codes = self.inject_latents(codes, latent_mask, inject_latent, alpha)
        input_is_latent = (not input_code) or input_is_full
        return self.generate(
            codes,
            resize=resize,
            randomize_noise=randomize_noise,
            input_is_latent=input_is_latent,
            return_latents=return_latents,
        )
