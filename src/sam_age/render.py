"""Turning results into files: strips, animations, atomic image writes (floor 1).

Every image and animation is encoded through :mod:`sam_age.marks` (``mark=``: the AI-edit
XMP and, with a signer, C2PA; the default is a generated face's mark; ``mark=None`` writes
the plain encoder's bytes, as ``--no-mark`` asks)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import torch
from PIL import Image

from .errors import SamAgeError
from .fileio import atomic_write
from .marks import DEFAULT as DEFAULT_MARK  # a generated face, no age: what a caller that names no mark gets
from .marks import Mark, encode_image, ffmpeg_metadata, mark_video_file


def make_strip(aligned: Image.Image, images: Sequence[Image.Image]) -> Image.Image:
    """One row of equal square tiles: the aligned input, then every age.
    The tile size is the outputs' size (the input is resized to match)."""
    tile = images[0].size if images else aligned.size
    strip = Image.new("RGB", (tile[0] * (1 + len(images)), tile[1]))
    for i, im in enumerate([aligned, *images]):
        if im.size != tile:
            im = im.resize(tile, Image.LANCZOS)
        strip.paste(im.convert("RGB"), (i * tile[0], 0))
    return strip


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
    return encode_image(frames[0], "GIF", mark, save_all=True, append_images=list(frames[1:]),
                        duration=duration, loop=0, optimize=False, disposal=1)


def save_gif(frames: Sequence[Image.Image], path, fps: float = 12.0,
             mark: Optional[Mark] = DEFAULT_MARK) -> Path:
    return atomic_write(path, lambda f: f.write(gif_bytes(frames, fps, mark)))


def mp4_available() -> bool:
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def save_mp4(frames: Sequence[Image.Image], path, fps: float = 12.0,
             mark: Optional[Mark] = DEFAULT_MARK) -> Path:
    """H.264 MP4 through imageio + imageio-ffmpeg (``pip install 'sam-age[demo]'``), marked
    in its container metadata (:func:`sam_age.marks.mark_video_file`)."""
    if not mp4_available():
        raise SamAgeError("writing MP4 needs imageio and imageio-ffmpeg: "
                          "pip install 'sam-age[demo]' (or use --gif)")
    import imageio.v2 as imageio
    import numpy as np
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        # ffmpeg needs a real file name; write next to the target, then rename (atomic).
        with imageio.get_writer(str(tmp), fps=fps, codec="libx264", quality=8,
                                macro_block_size=1, ffmpeg_log_level="error",
                                output_params=ffmpeg_metadata(mark)) as writer:
            for fr in frames:
                writer.append_data(np.asarray(fr.convert("RGB")))
        mark_video_file(tmp, mark)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
