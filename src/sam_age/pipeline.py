"""Photos in, the same person at other ages out: the public Python API.

    from sam_age import AgePipeline
    pipe = AgePipeline.from_pretrained("sam_ffhq_aging")        # or a path
    result = pipe("portrait.jpg", ages=[10, 40, 80], paste_back=True)
    result.images[0].save("age_10.png"); result.pasted[0].save("photo_10.png")

The CLI, the web demo and the evaluation all go through this class, and it goes through
:func:`sam_age.engine.age_faces` for the tensors (the pretrained encoder once per face,
all ages of a face batched). Style mixing builds on it in :mod:`sam_age.mixing`.

Randomness, as diffusers pipelines take it: every method with ``randomize_noise`` also
takes ``generator=`` (a :class:`torch.Generator`); with one, the noise maps are drawn from
a seed taken from that generator, so a run repeats exactly and the global RNG is left
alone. Without ``randomize_noise`` (the default) the generator's fixed noise is used and
nothing is random.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from .checkpoints.load import load_sam
from .defaults import DEFAULT_BATCH_SIZE, DEFAULT_CHECKPOINT
from .engine import age_faces, resolve_device, resolve_dtype
from .errors import UsageError
from .face.align import align_faces
from .face.paste import paste_face
from .images import read_image, to_pil, to_tensor
from .models.sam import SAM
from .render import interpolate_codes, ping_pong
from .weights.store import resolve_weights

INPUT_SIZE = 256  # SAM's encoder always sees 256 px aligned faces


@dataclass
class FaceResult:
    aligned: Image.Image  # the 256 px network input
    quad: Optional[np.ndarray]  # float32 [4, 2] crop corners in the photo (None with align=False)
    ages: List[float]
    images: List[Image.Image]  # one per age
    latents: torch.Tensor  # [A, n_styles, 512] W+ codes, on the CPU
    score: float = 0.0  # detector score (0 with align=False)
    size: int = 256  # the output size the images were made at


@dataclass
class AgingResult:
    source: Image.Image  # the photo as read (upright RGB)
    ages: List[float]
    faces: List[FaceResult]  # best detection first
    pasted: Optional[List[Image.Image]] = None  # whole photo per age (paste_back=True)

    @property
    def images(self) -> List[Image.Image]:
        return self.faces[0].images

    @property
    def aligned(self) -> Image.Image:
        return self.faces[0].aligned

    @property
    def latents(self) -> torch.Tensor:
        return self.faces[0].latents


def check_ages(ages: Sequence[float]) -> List[float]:
    try:
        out = [float(a) for a in ages]
    except (TypeError, ValueError):
        raise UsageError(f"ages must be numbers, got {ages!r}") from None
    if not out:
        raise UsageError("give at least one target age")
    bad = [a for a in out if not (0.0 <= a <= 100.0)]
    if bad:
        raise UsageError(f"ages must lie in 0..100 (SAM was trained on that range), got {bad}")
    return out


def parse_ages(text: str, what: str = "ages") -> List[float]:
    """'0,10,20' / '0:100:10' (inclusive, like the original's 0..100 by 10) / mixed."""
    ages: List[float] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        try:
            if ":" in part:
                bits = [float(b) for b in part.split(":")]
                if len(bits) == 2:
                    bits.append(1.0 if bits[1] >= bits[0] else -1.0)
                start, stop, step = bits
                if step == 0 or (stop - start) * step < 0:
                    raise ValueError
                n = int(np.floor((stop - start) / step + 1e-9)) + 1
                ages += [round(start + i * step, 6) for i in range(n)]
            else:
                ages.append(float(part))
        except ValueError:
            raise UsageError(f"{what}: cannot read {part!r}; use '0,10,20' or '0:100:10'") from None
    seen = set()
    ages = [a for a in ages if not (a in seen or seen.add(a))]
    if not ages:
        raise UsageError(f"{what}: give at least one age")
    return check_ages(ages)


def sample_path() -> Path:
    """The bundled sample portrait (scikit-image's public-domain astronaut)."""
    return Path(__file__).resolve().parent / "data" / "astronaut.jpg"


def _images_to_pil(batch: torch.Tensor) -> List[Image.Image]:
    return [to_pil(t) for t in batch]


@contextlib.contextmanager
def noise_from(generator: Optional[torch.Generator], device: torch.device) -> Iterator[None]:
    """Inside: the global RNG of ``device`` seeded from ``generator`` (one draw), restored
    afterwards. Nothing changes without a generator."""
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=generator.device))
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


PreparedFace = Tuple[Image.Image, Optional[np.ndarray], float]  # (aligned 256 px, quad, score)


def prepare_faces(image, all_faces: bool = False, align: bool = True,
                  name: Optional[str] = None) -> Tuple[Image.Image, List[PreparedFace]]:
    """Read ``image`` and find its face(s), without the model: ``(photo, faces)``.
    Raises ImageReadError / NoFaceError (one-line messages naming the file)."""
    if name is None and isinstance(image, (str, Path)):
        name = str(image)
    photo = read_image(image, name=name)
    if not align:
        face = photo if photo.size == (INPUT_SIZE, INPUT_SIZE) else photo.resize((INPUT_SIZE, INPUT_SIZE), Image.LANCZOS)
        return photo, [(face, None, 0.0)]
    found = align_faces(photo, all_faces=all_faces, output_size=INPUT_SIZE, name=name)
    return photo, [(f.image, f.quad, f.score) for f in found]


class AgePipeline:
    def __init__(self, model: SAM, device=None, dtype=None, batch_size: Optional[int] = None):
        self.model = model
        self.to(device, dtype)
        self.batch_size = int(batch_size) if batch_size else DEFAULT_BATCH_SIZE

    def to(self, device=None, dtype=None) -> "AgePipeline":
        """Move the model to ``device`` (``"auto"``, ``"cpu"``, ``"cuda:1"``, ...) and/or
        ``dtype`` (``"auto"`` = the device's fast default, ``"float32"`` = exact); ``None``
        keeps the current one. In place (parameter by parameter); returns the pipeline."""
        param = next(self.model.parameters())
        self.device = resolve_device(device) if device is not None else param.device
        self.dtype = resolve_dtype(dtype, self.device) if dtype is not None else param.dtype
        self.model = self.model.to(device=self.device, dtype=self.dtype).eval()
        return self

    @classmethod
    def from_pretrained(cls, checkpoint: Union[str, Path, SAM] = DEFAULT_CHECKPOINT, device=None, dtype=None,
                        batch_size: Optional[int] = None, progress: bool = False) -> "AgePipeline":
        """``checkpoint``: a registry name (fetched into the cache when missing), a path
        (.pt, .pdparams, .safetensors) or an already built :class:`SAM`."""
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        if isinstance(checkpoint, SAM):
            return cls(checkpoint, dev, dt, batch_size)
        path = resolve_weights(checkpoint, progress=progress)
        return cls(load_sam(path, device=dev, dtype=dt), dev, dt, batch_size)

    @property
    def output_size(self) -> int:
        return self.model.output_size

    def _check_size(self, size: int) -> bool:
        """-> ``resize`` for the engine: 256 px outputs are the generator's, pooled."""
        if size == INPUT_SIZE:
            return True
        if size == self.model.output_size:
            return False
        raise UsageError(f"size must be {INPUT_SIZE} or {self.model.output_size} for this checkpoint, got {size}")

    def age_aligned(self, faces: Union[torch.Tensor, Sequence[Image.Image]], ages: Sequence[float],
                    size: int = 256, randomize_noise: bool = False,
                    generator: Optional[torch.Generator] = None):
        """Aligned faces (tensor ``[N,3,256,256]`` in [-1,1], or PIL images) -> ``(images
        [N,A,3,S,S], codes [N,A,n_styles,512])`` as float32 CPU tensors."""
        ages = check_ages(ages)
        resize = self._check_size(size)
        if not isinstance(faces, torch.Tensor):
            faces = torch.stack([to_tensor(f.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.LANCZOS)
                                           if f.size != (INPUT_SIZE, INPUT_SIZE) else f) for f in faces])
        with noise_from(generator if randomize_noise else None, self.device):
            images, codes = age_faces(self.model, faces, ages, batch_size=self.batch_size, resize=resize,
                                      randomize_noise=randomize_noise)
        return images.float().cpu(), codes.float().cpu()

    def __call__(self, image, ages: Sequence[float], *, all_faces: bool = False, align: bool = True,
                 paste_back: bool = False, size: int = 256, randomize_noise: bool = False,
                 generator: Optional[torch.Generator] = None) -> AgingResult:
        """Age the best face in ``image`` (path, bytes, PIL or numpy) to every age.

        ``all_faces`` ages every detected face; ``align=False`` takes the image as an
        already aligned crop (resized to 256); ``paste_back`` also returns the whole photo
        with the aged face(s) put back, per age; ``size`` is 256 or the generator's size."""
        ages = check_ages(ages)
        self._check_size(size)
        photo, aligned = prepare_faces(image, all_faces=all_faces, align=align)
        return self.age_prepared(photo, aligned, ages, paste_back=paste_back, size=size,
                                 randomize_noise=randomize_noise, generator=generator)

    def age_prepared(self, photo: Image.Image, aligned: Sequence[PreparedFace], ages: Sequence[float], *,
                     paste_back: bool = False, size: int = 256, randomize_noise: bool = False,
                     generator: Optional[torch.Generator] = None) -> AgingResult:
        """The model half of ``__call__``, for faces from :func:`prepare_faces`."""
        ages = check_ages(ages)
        images, codes = self.age_aligned([a[0] for a in aligned], ages, size=size,
                                         randomize_noise=randomize_noise, generator=generator)
        faces = [FaceResult(img, quad, list(ages), _images_to_pil(images[i]), codes[i], score, size)
                 for i, (img, quad, score) in enumerate(aligned)]
        pasted = None
        if paste_back and any(a[1] is not None for a in aligned):
            pasted = [self.paste(photo, faces, a) for a in range(len(ages))]
        return AgingResult(photo, list(ages), faces, pasted)

    @staticmethod
    def paste(photo: Image.Image, faces: Sequence[FaceResult], age_index: int) -> Image.Image:
        """The photo with every face's ``age_index``-th result put back (the best face
        last, so it wins where crops overlap)."""
        out = photo
        for f in reversed(list(faces)):
            if f.quad is not None:
                out = paste_face(out, f.images[age_index], f.quad)
        return out

    # -- animation -----------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, codes: torch.Tensor, size: int = 256, randomize_noise: bool = False,
                 generator: Optional[torch.Generator] = None) -> List[Image.Image]:
        """W+ codes ``[K, n_styles, 512]`` -> images, in batches."""
        resize = self._check_size(size)
        out: List[Image.Image] = []
        with noise_from(generator if randomize_noise else None, self.device):
            for start in range(0, codes.shape[0], self.batch_size):
                c = codes[start:start + self.batch_size].to(device=self.device, dtype=self.dtype)
                out += _images_to_pil(self.model.generate(c, resize=resize, randomize_noise=randomize_noise))
        return out

    def animate(self, face: FaceResult, frames_per_age: int = 4, size: Optional[int] = None) -> List[Image.Image]:
        """Frames young -> old -> young: the face's codes sorted by age, ``frames_per_age``
        interpolated W+ steps between neighbouring ages, then played back."""
        order = sorted(range(len(face.ages)), key=lambda i: face.ages[i])
        codes = face.latents[order]
        if len(order) < 2:
            return [face.images[order[0]]]
        k = max(1, int(frames_per_age))
        steps = interpolate_codes(codes, k)
        size = size or face.size
        # The key frames are the ages already generated: only the in-between ones cost.
        reuse = size == face.size
        todo = [i for i in range(steps.shape[0]) if not (reuse and i % k == 0)]
        made = iter(self.generate(steps[todo], size=size)) if todo else iter(())
        frames = [face.images[order[i // k]] if (reuse and i % k == 0) else next(made)
                  for i in range(steps.shape[0])]
        return ping_pong(frames)
