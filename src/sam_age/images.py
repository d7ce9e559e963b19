"""The one image reader of the package (CLI, web demo, evaluation and training use it).

Whatever arrives (a path, bytes, a PIL image or a numpy array) leaves as an 8-bit RGB PIL
image, upright per its EXIF orientation, or as an :class:`ImageReadError` whose message
is one line naming the file and the reason. Conversions:

* greyscale, palette, CMYK, 16-bit and float images become 8-bit RGB (16-bit values are
  scaled by 1/257, not clipped);
* transparency (RGBA, LA, palette with a transparent colour) is composited on **white**,
  so a cut-out portrait does not turn into a face on black;
* images with more than ``MAX_PIXELS`` pixels are refused before being decoded
  (decompression bombs), and so are images whose shorter side is under ``MIN_SIDE``.
"""

from __future__ import annotations

import glob
import io
import os
import warnings
from pathlib import Path
from typing import Iterable, List, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageReadError

MAX_PIXELS = 100_000_000  # a 100-megapixel photo is fine; anything larger is refused
MIN_SIDE = 32  # a face needs some pixels to be aligned and aged
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")

ImageSource = Union[str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray]


def _name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return "<%s>" % type(source).__name__


def _open(source) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, (bytes, bytearray)):
        return Image.open(io.BytesIO(bytes(source)))
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError("file not found")
    if path.is_dir():
        raise IsADirectoryError("is a folder, not an image")
    return Image.open(path)


def _from_array(array: np.ndarray) -> Image.Image:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # CHW -> HWC
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"array of shape {tuple(array.shape)} is not an image")
    if a.dtype != np.uint8:
        a = _to_uint8(a.astype(np.float64), 65535 if a.dtype == np.uint16 else None)
    return Image.fromarray(a)


def _to_uint8(a: np.ndarray, full_scale=None) -> np.ndarray:
    """Scale a wide-range array to 0..255 (16-bit -> /257; floats in [0, 1] -> *255)."""
    if full_scale is None:
        top = float(np.nanmax(a)) if a.size else 0.0
        full_scale = 1.0 if top <= 1.0 else 255.0 if top <= 255.0 else 65535.0
    return np.clip(np.rint(a * (255.0 / full_scale)), 0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(img)
        wide = mode.startswith("I;16") or (mode == "I" and a.size and a.max() > 255)
        img = Image.fromarray(_to_uint8(a.astype(np.float64), 65535 if wide else None), "L")
        mode = "L"
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "1":
        img = img.convert("L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def read_image(
    source: ImageSource, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE, name: Optional[str] = None
) -> Image.Image:
    """Read ``source`` into an upright 8-bit RGB PIL image, or raise ImageReadError
    (``name`` is what error messages call it; default: the path)."""
    name = name or _name(source)
    try:
        with warnings.catch_warnings():
            # PIL warns above its own limit and raises above twice that; both are bombs here.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = _open(source)
            w, h = img.size
            if w * h > max_pixels:
                raise ImageReadError(
                    f"image too large ({w}x{h} pixels, limit {max_pixels}): possible decompression bomb", name
                )
            img.load()
            try:
                img = ImageOps.exif_transpose(img)
            except Exception:  # a broken EXIF block should not reject a readable picture
                pass
            img = _to_rgb(img)
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageReadError(
            "image too large (over PIL's pixel limit): possible decompression bomb, refused before decoding", name
        ) from None
    except FileNotFoundError:
        raise ImageReadError("file not found", name) from None
    except IsADirectoryError:
        raise ImageReadError("is a folder, not an image", name) from None
    except UnidentifiedImageError:
        raise ImageReadError("not an image (unrecognised or corrupt file)", name) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason.lower():
            reason = "truncated image file"
        raise ImageReadError(f"unreadable image: {reason}", name) from None
    w, h = img.size
    if min(w, h) < min_side:
        raise ImageReadError(f"image too small ({w}x{h}; need at least {min_side} px a side)", name)
    return img


def to_tensor(img: Image.Image):
    """PIL RGB -> float32 tensor ``[3, H, W]`` in [-1, 1] (the original's ToTensor+Normalize)."""
    import torch

    a = np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(a.transpose(2, 0, 1).copy())


def to_batch(faces, size: Optional[int] = None):
    """Faces -> float32 tensor ``[N, 3, S, S]`` in [-1, 1] (:func:`to_tensor` each): PIL
    images, resized (LANCZOS) to ``size`` when given and different; a tensor passes as is
    (``[3, S, S]`` gets its batch axis). The one PIL -> batch conversion of the package."""
    import torch

    if isinstance(faces, torch.Tensor):
        return faces if faces.ndim == 4 else faces[None]
    same = [size is None or f.size == (size, size) for f in faces]
    return torch.stack(
        [to_tensor(f if ok else f.convert("RGB").resize((size, size), Image.LANCZOS)) for f, ok in zip(faces, same)]
    )


def to_uint8(tensor) -> np.ndarray:
    """Tensor ``[..., 3, H, W]`` in [-1, 1] -> uint8 array ``[..., H, W, 3]`` (clamped, then
    truncated to 8 bits like the original ``tensor2im``); one pass for a whole batch."""
    t = tensor.detach().float().cpu()
    return ((t.clamp(-1, 1) + 1) / 2 * 255).movedim(-3, -1).numpy().astype(np.uint8)


def to_pil(tensor) -> Image.Image:
    """Tensor ``[3, H, W]`` in [-1, 1] -> PIL RGB (:func:`to_uint8`)."""
    t = tensor[0] if tensor.ndim == 4 else tensor
    return Image.fromarray(to_uint8(t), "RGB")


def _has_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def list_inputs(args: Iterable[str], extensions=IMAGE_EXTENSIONS) -> Tuple[List[Path], List[str]]:
    """Expand files, globs and folders into a sorted, de-duplicated list of paths.

    A file named explicitly is kept whatever its extension (reading it will say if it is
    not an image); folders and globs contribute files with image extensions only.
    Returns ``(paths, missing)`` where ``missing`` lists the arguments that matched nothing."""
    found: List[Path] = []
    missing: List[str] = []
    seen = set()

    def add(p: Path):
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            found.append(p)

    def is_image(p: Path) -> bool:
        return p.is_file() and p.suffix.lower() in extensions

    for arg in args:
        p = Path(arg).expanduser()
        if p.is_dir():
            files = sorted(q for q in p.iterdir() if is_image(q))
            if not files:
                missing.append(f"{arg}: folder has no images")
            for q in files:
                add(q)
        elif p.exists():
            add(p)
        elif _has_glob(arg):
            files = sorted(Path(q) for q in glob.glob(os.path.expanduser(arg), recursive=True) if is_image(Path(q)))
            if not files:
                missing.append(f"{arg}: no image matches this pattern")
            for q in files:
                add(q)
        else:
            missing.append(f"{arg}: file not found")
    return found, missing
