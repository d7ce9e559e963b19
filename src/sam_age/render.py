"""Turning results into files: strips, animations, atomic image writes (floor 1).

Labels (``age 30`` under each strip tile and on each animation frame) are drawn in a band
along the bottom edge of the tile, ``label_band(height)`` pixels high; nothing above the
band changes, and without labels the pixels are exactly the unlabelled ones.

Every image and animation is encoded through :mod:`sam_age.marks` (``mark=``: the AI-edit
XMP and, with a signer, C2PA; the default is a generated face's mark; ``mark=None`` writes
the plain encoder's bytes, as ``--no-mark`` asks).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
from PIL import Image, ImageDraw, ImageFont

from .errors import SamAgeError
from .fileio import atomic_write
from .marks import DEFAULT as DEFAULT_MARK  # a generated face, no age: what a caller that names no mark gets
from .marks import Mark, encode_image, ffmpeg_metadata, mark_video_file


def label_band(height: int) -> int:
    """Height in pixels of the label band at the bottom of a tile ``height`` high
    (small: 1/12 of the tile, at least 12 px)."""
    return max(12, int(round(height / 12)))


def _font(px: int):
    try:
        return ImageFont.load_default(size=px)  # a scalable font (Pillow >= 10.1)
    except TypeError:  # older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def age_caption(age) -> str:
    """``age 30``, ``age 42.5`` (in-between animation frames: rounded to whole years)."""
    from .ages import format_age

    return f"age {format_age(age)}"


def draw_label(img: Image.Image, text: str) -> Image.Image:
    """A copy of ``img`` with ``text`` centred in a dark band along its bottom edge
    (``label_band``); the pixels above the band are untouched."""
    out = img.convert("RGB")
    out = out.copy() if out is img else out
    w, h = out.size
    band = label_band(h)
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, h - band, w - 1, h - 1), fill=(0, 0, 0))
    font = _font(max(8, int(band * 0.8)))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = (w - (right - left)) // 2 - left
    y = h - band + (band - (bottom - top)) // 2 - top
    draw.text((x, y), text, fill=(255, 255, 255), font=font)
    return out


def strip_labels(ages: Sequence) -> List[str]:
    """The strip's captions: ``input``, then ``age A`` for each tile."""
    return ["input", *(age_caption(a) for a in ages)]


def animation_ages(ages: Sequence[float], frames_per_age: int) -> List[float]:
    """The age each frame of ``AgePipeline.animate`` shows, in its order: the ages
    sorted, ``frames_per_age`` linear steps between neighbours, then back (ping-pong);
    in-between frames rounded to whole years."""
    order = sorted(float(a) for a in ages)
    k = max(1, int(frames_per_age))
    if len(order) < 2:
        return order[:1]
    out = []
    for a, b in zip(order[:-1], order[1:]):
        out += [a] + [float(round(a + (b - a) * j / k)) for j in range(1, k)]
    out.append(order[-1])
    return ping_pong(out)


def label_frames(frames: Sequence[Image.Image], ages: Sequence[float], frames_per_age: int) -> List[Image.Image]:
    """Each animation frame with its age (``animation_ages``)."""
    shown = animation_ages(ages, frames_per_age)
    if len(shown) != len(frames):
        raise ValueError(f"{len(frames)} frames for {len(shown)} ages")
    return [draw_label(f, age_caption(a)) for f, a in zip(frames, shown)]


def make_strip(
    aligned: Image.Image, images: Sequence[Image.Image], labels: Optional[Sequence[str]] = None
) -> Image.Image:
    """One row of equal square tiles: the aligned input, then every age.
    The tile size is the outputs' size (the input is resized to match). ``labels``: one
    caption per tile (``strip_labels(ages)``), drawn in each tile's bottom band; None
    leaves the tiles bare."""
    return make_grid([(aligned, images)], None if labels is None else [labels])


def make_grid(
    rows: Sequence[Tuple[Image.Image, Sequence[Image.Image]]],
    labels: Optional[Sequence[Sequence[str]]] = None,
) -> Image.Image:
    """Strips stacked into one image, each tile drawn once straight into it: ``rows`` are
    ``(aligned input, images)`` pairs (``make_strip``'s arguments; every row as long as
    the first), ``labels`` one list of captions per row (None: bare). The tile size is the
    first row's outputs' size; a row's tiles of another size are resized to it."""
    first_aligned, first_images = rows[0]
    tile = first_images[0].size if first_images else first_aligned.size
    width = 1 + len(first_images)
    grid = Image.new("RGB", (tile[0] * width, tile[1] * len(rows)))
    if labels is not None and len(labels) != len(rows):
        raise ValueError(f"{len(labels)} label rows for {len(rows)} rows")
    for r, (aligned, images) in enumerate(rows):
        tiles = [aligned, *images]
        if len(tiles) != width:
            raise ValueError(f"row {r} has {len(tiles)} tiles, the first {width}")
        captions = labels[r] if labels is not None else None
        if captions is not None and len(captions) != len(tiles):
            raise ValueError(f"{len(captions)} labels for {len(tiles)} tiles")
        for i, im in enumerate(tiles):
            if im.size != tile:
                im = im.resize(tile, Image.LANCZOS)
            im = im.convert("RGB")
            if captions is not None:
                im = draw_label(im, captions[i])
            grid.paste(im, (i * tile[0], r * tile[1]))
    return grid


def interpolate_codes(codes: torch.Tensor, frames_per_age: int) -> torch.Tensor:
    """Codes ``[A, n_styles, 512]`` at consecutive ages -> ``[(A-1)*k + 1, ...]`` with
    ``k = frames_per_age`` linear steps between neighbours (as the original animation
    notebook interpolates W+ codes rather than cross-fading images)."""
    k = max(1, int(frames_per_age))
    if codes.shape[0] < 2:
        return codes
    out = []
    for a, b in zip(codes[:-1], codes[1:]):
        for j in range(k):
            t = j / k
            out.append(torch.lerp(a.float(), b.float(), t).to(codes.dtype))
    out.append(codes[-1])
    return torch.stack(out)


def ping_pong(frames: List[Image.Image]) -> List[Image.Image]:
    """Young -> old -> young, without showing the turning points twice."""
    return list(frames) + list(frames[-2:0:-1])


# still-image formats by file suffix: (PIL format, save options). Lossy ones at quality 95
# (the faces are data for other models more often than thumbnails).
IMAGE_FORMATS = {
    ".png": ("PNG", {}),
    ".jpg": ("JPEG", {"quality": 95}),
    ".jpeg": ("JPEG", {"quality": 95}),
    ".webp": ("WEBP", {"quality": 95}),
}


def image_bytes(img: Image.Image, suffix: str = ".png", mark: Optional[Mark] = DEFAULT_MARK) -> bytes:
    """``img`` encoded as the format ``suffix`` names (PNG when unknown), marked."""
    fmt, options = IMAGE_FORMATS.get(suffix.lower(), IMAGE_FORMATS[".png"])
    return encode_image(img, fmt, mark, **options)


def save_image(img: Image.Image, path, mark: Optional[Mark] = DEFAULT_MARK) -> Path:
    """Write ``img`` in the format its suffix names (PNG when the suffix is unknown),
    marked (:mod:`sam_age.marks`), atomically."""
    # encoded inside the atomic write: an error while encoding names the target file
    return atomic_write(path, lambda f: f.write(image_bytes(img, Path(path).suffix, mark)))


def gif_bytes(frames: Sequence[Image.Image], fps: float = 12.0, mark: Optional[Mark] = DEFAULT_MARK) -> bytes:
    duration = int(round(1000.0 / fps))
    return encode_image(
        frames[0],
        "GIF",
        mark,
        save_all=True,
        append_images=list(frames[1:]),
        duration=duration,
        loop=0,
        optimize=False,
        disposal=1,
    )


def save_gif(frames: Sequence[Image.Image], path, fps: float = 12.0, mark: Optional[Mark] = DEFAULT_MARK) -> Path:
    return atomic_write(path, lambda f: f.write(gif_bytes(frames, fps, mark)))


def mp4_available() -> bool:
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def save_mp4(frames: Sequence[Image.Image], path, fps: float = 12.0, mark: Optional[Mark] = DEFAULT_MARK) -> Path:
    """H.264 MP4 through imageio + imageio-ffmpeg (``pip install 'sam-age[demo]'``), marked
    in its container metadata (:func:`sam_age.marks.mark_video_file`)."""
    if not mp4_available():
        raise SamAgeError("writing MP4 needs imageio and imageio-ffmpeg: pip install 'sam-age[demo]' (or use --gif)")
    import imageio.v2 as imageio
    import numpy as np

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        # ffmpeg needs a real file name; write next to the target, then rename (atomic).
        with imageio.get_writer(
            str(tmp),
            fps=fps,
            codec="libx264",
            quality=8,
            macro_block_size=1,
            ffmpeg_log_level="error",
            output_params=ffmpeg_metadata(mark),
        ) as writer:
            for fr in frames:
                writer.append_data(np.asarray(fr.convert("RGB")))
        mark_video_file(tmp, mark)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
