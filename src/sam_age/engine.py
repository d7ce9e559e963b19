"""Tensor-level inference shared by the pipeline, the CLI, the web demo, evaluation and
the benchmarks: aligned faces in, aged faces out.

The original inference script runs the pretrained encoder again for every age and one
age at a time; here it runs once per face and all ages of a face go through the
age encoder and the generator together (in batches of ``batch_size`` images).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch

from .models.sam import SAM

DeviceLike = Union[str, torch.device, None]


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: DeviceLike) -> torch.device:
    if device in (None, "auto"):
        return default_device()
    return torch.device(device)


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """``None``/"auto" -> the default fast path for the device; otherwise the dtype asked.
    (float32 is the exact path; it is the only one until the fast paths are in.)"""
    if dtype in (None, "auto"):
        return torch.float32
    if isinstance(dtype, str):
        names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                 "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
        if dtype not in names:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(names)}")
        return names[dtype]
    return dtype


def age_channel(faces: torch.Tensor, ages: Sequence[float]) -> torch.Tensor:
    """``[N,3,H,W]`` faces x ``A`` ages -> ``[N*A, 4, H, W]`` inputs (face-major order),
    the fourth channel filled with ``age / 100``; built on the faces' device."""
    n, _, h, w = faces.shape
    a = torch.as_tensor(list(ages), dtype=faces.dtype, device=faces.device) / 100.0
    rgb = faces[:, None].expand(n, len(ages), 3, h, w)
    age = a.view(1, -1, 1, 1, 1).expand(n, len(ages), 1, h, w)
    return torch.cat([rgb, age], dim=2).reshape(n * len(ages), 4, h, w)


@torch.no_grad()
def age_faces(model: SAM, faces: torch.Tensor, ages: Sequence[float], batch_size: int = 8,
              resize: bool = True, randomize_noise: bool = False,
              generator_input: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Age every face to every age.

    ``faces``: ``[N, 3, 256, 256]`` in [-1, 1] (aligned). Returns ``(images, codes)`` with
    ``images [N, A, 3, S, S]`` (S = 256 with ``resize``, else the generator size) and
    ``codes [N, A, n_styles, 512]``."""
    param = next(model.parameters())
    faces = faces.to(device=param.device, dtype=param.dtype)
    n, a = faces.shape[0], len(ages)
    base = model.encode_w_plus(faces) if model.start_from_encoded_w_plus else None
    inputs = age_channel(faces, ages)
    if base is not None:
        base = base.repeat_interleave(a, dim=0)
    images: List[torch.Tensor] = []
    codes: List[torch.Tensor] = []
    for start in range(0, n * a, batch_size):
        stop = min(start + batch_size, n * a)
        c = model.age_codes(inputs[start:stop], None if base is None else base[start:stop])
        images.append(model.generate(c, resize=resize, randomize_noise=randomize_noise))
        codes.append(c)
    img = torch.cat(images)
    cod = torch.cat(codes)
    return img.reshape(n, a, *img.shape[1:]), cod.reshape(n, a, *cod.shape[1:])
