"""Image grids for the training logs: input, target, output, recovered, with ages."""

from __future__ import annotations

from typing import Optional

import torch
from PIL import Image, ImageDraw

from ..images import to_pil

LABEL_HEIGHT = 14


def _tile(face: torch.Tensor, label: str) -> Image.Image:
    img = to_pil(face)
    tile = Image.new("RGB", (img.width, img.height + LABEL_HEIGHT), (255, 255, 255))
    tile.paste(img, (0, LABEL_HEIGHT))
    ImageDraw.Draw(tile).text((3, 1), label, fill=(0, 0, 0))
    return tile


def face_grid(
    x: torch.Tensor,
    y_hat: torch.Tensor,
    y_rec: Optional[torch.Tensor],
    input_ages: torch.Tensor,
    target_ages: torch.Tensor,
    output_ages: torch.Tensor,
    recovered_ages: Optional[torch.Tensor],
) -> Image.Image:
    """One row per face; ages in years (input ages are DEX's estimate of the input)."""
    ia, ta, oa = input_ages.tolist(), target_ages.tolist(), output_ages.tolist()
    ra = None if recovered_ages is None else recovered_ages.tolist()
    rows = []
    for i in range(x.shape[0]):
        tiles = [
            _tile(x[i], f"input (DEX {ia[i]:.0f})"),
            _tile(x[i], "target"),
            _tile(y_hat[i], f"output {ta[i]:.0f} (DEX {oa[i]:.0f})"),
        ]
        if y_rec is not None:
            tiles.append(_tile(y_rec[i], f"recovered {ia[i]:.0f} (DEX {ra[i]:.0f})"))
        rows.append(tiles)
    w, h = rows[0][0].size
    grid = Image.new("RGB", (w * max(len(r) for r in rows), h * len(rows)), (255, 255, 255))
    for r, tiles in enumerate(rows):
        for c, tile in enumerate(tiles):
            grid.paste(tile, (c * w, r * h))
    return grid
