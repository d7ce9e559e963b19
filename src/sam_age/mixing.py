"""Style mixing and reference-guided aging (the original style-mixing script), on top of
an :class:`~sam_age.pipeline.AgePipeline` (floor 4, beside the pipeline).

    from sam_age import AgePipeline
    from sam_age.mixing import StyleMixer
    mixer = StyleMixer(AgePipeline.from_pretrained("sam_ffhq_aging"))
    result = mixer("portrait.jpg", ages=[20, 60], n_random=3)      # or reference="other.jpg"
    result.images[0][1].save("random_0_age60.png")

A face's W+ codes at each age keep their coarse layers (shape, age) and take the fine
layers (``latent_mask``, default 8 and up: colour, texture, lighting) from a style source:
random styles (z through the mapping network) or a reference face aged to the same age.
The injection itself is :meth:`SAM.inject_latents`, the one the original forward uses.

Randomness: ``seed`` draws z with numpy's ``RandomState(seed)`` (the stream earlier
releases used, so ``--seed`` keeps giving the same styles); a ``generator=``
(:class:`torch.Generator`, as diffusers takes it) draws z with ``torch.randn`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from .ages import absolute_ages
from .errors import UsageError
from .models.sam import SAM
from .pipeline import AgePipeline
from .results import FaceResult

FINE_LAYERS_FROM = 8  # the original style-mixing examples inject layers 8.. (colour, texture)

StyleSource = Tuple[str, torch.Tensor]  # (label, codes [A, n_styles, 512])


def fine_layers(n_styles: int) -> List[int]:
    return list(range(FINE_LAYERS_FROM, n_styles))


@dataclass
class MixResult:
    """Style mixing: ``images[s][a]`` is the face at ``ages[a]`` with style source ``s``."""

    aligned: Image.Image
    quad: Optional[np.ndarray]
    ages: List[float]
    labels: List[str]  # "random_0", ... or "reference"
    images: List[List[Image.Image]]
    plain: List[Image.Image] = field(default_factory=list)  # the unmixed aging, per age


class StyleMixer:
    """Style mixing with ``pipeline``'s model (shared, not copied)."""

    def __init__(self, pipeline: AgePipeline):
        self.pipeline = pipeline

    @property
    def model(self) -> SAM:
        return self.pipeline.model

    @torch.no_grad()
    def random_styles(
        self, n: int, seed: Optional[int] = 0, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """``n`` W+ codes from random z through the mapping network (as the original
        ``net(z, input_code=True, return_latents=True)``): ``[n, n_styles, 512]``."""
        if generator is not None:
            z = torch.randn(n, 512, generator=generator, device=generator.device)
        else:
            z = torch.from_numpy(np.random.RandomState(seed).randn(n, 512).astype(np.float32))
        p = self.pipeline
        w = self.model.decoder.style(z.to(device=p.device, dtype=p.dtype))
        return w[:, None].expand(n, self.model.n_styles, w.shape[-1]).float().cpu()

    @torch.no_grad()
    def mix_codes(
        self, codes: torch.Tensor, inject: torch.Tensor, latent_mask: Sequence[int], alpha: Optional[float] = None
    ) -> torch.Tensor:
        """Layers in ``latent_mask`` take ``inject``'s code (or ``alpha * inject + (1 - alpha)
        * code``); ``codes`` and ``inject`` are ``[A, n_styles, 512]``."""
        mask = list(latent_mask)
        for i in mask:
            if not 0 <= i < codes.shape[-2]:
                raise UsageError(f"latent mask layer {i} is out of range 0..{codes.shape[-2] - 1}")
        return SAM.inject_latents(codes, mask, inject, alpha)

    def style_sources(
        self,
        ages: Sequence[float],
        *,
        reference: Optional[FaceResult] = None,
        n_random: int = 5,
        seed: Optional[int] = 0,
        generator: Optional[torch.Generator] = None,
    ) -> List[StyleSource]:
        """``[(label, codes [A, n_styles, 512])]``: the reference face's codes at each age,
        or ``n_random`` random styles (the same style for every age)."""
        if reference is not None:
            return [("reference", reference.latents)]
        if n_random < 1:
            raise UsageError("n_random must be at least 1")
        styles = self.random_styles(n_random, seed, generator)
        return [(f"random_{i}", styles[i : i + 1].expand(len(ages), *styles.shape[1:])) for i in range(n_random)]

    def mix_face(
        self,
        face: FaceResult,
        sources: Sequence[StyleSource],
        latent_mask: Optional[Sequence[int]] = None,
        alpha: Optional[float] = None,
        randomize_noise: bool = False,
        generator: Optional[torch.Generator] = None,
        progress: Optional[Callable[[int], None]] = None,
    ) -> List[List[Image.Image]]:
        """``face``'s aging with each source's styles in ``latent_mask`` (default: fine layers);
        ``progress(k)`` after each forward pass (k images made)."""
        mask = list(latent_mask) if latent_mask is not None else fine_layers(self.model.n_styles)
        return [
            self.pipeline.generate(
                self.mix_codes(face.latents, inject, mask, alpha),
                size=face.size,
                randomize_noise=randomize_noise,
                generator=generator,
                progress=progress,
            )
            for _, inject in sources
        ]

    def __call__(
        self,
        image,
        ages: Sequence[float],
        *,
        reference=None,
        n_random: int = 5,
        seed: Optional[int] = 0,
        latent_mask: Optional[Sequence[int]] = None,
        alpha: Optional[float] = None,
        align: bool = True,
        size: int = 256,
        randomize_noise: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> MixResult:
        """Style mixing (random styles) or reference-guided aging (the reference face's
        styles at the same target age) injected into ``latent_mask`` layers (default: the
        fine layers 8..), as the original style-mixing script."""
        ages = absolute_ages(ages)
        pipe = self.pipeline
        face = pipe(image, ages, align=align, size=size, randomize_noise=randomize_noise, generator=generator).faces[0]
        ref = None
        if reference is not None:
            ref = pipe(
                reference, ages, align=align, size=size, randomize_noise=randomize_noise, generator=generator
            ).faces[0]
        sources = self.style_sources(ages, reference=ref, n_random=n_random, seed=seed, generator=generator)
        images = self.mix_face(face, sources, latent_mask, alpha, randomize_noise, generator)
        return MixResult(face.aligned, face.quad, list(ages), [s[0] for s in sources], images, face.images)
