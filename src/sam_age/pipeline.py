"""Photos in, the same person at other ages out: the public Python API.

    from sam_age import AgePipeline
    pipe = AgePipeline.from_pretrained("sam_ffhq_aging")        # or a path
    result = pipe("portrait.jpg", ages=[10, 40, 80], paste_back=True)
    result.images[0].save("age_10.png"); result.pasted[0].save("photo_10.png")

The CLI, the web demo and the evaluation all go through this class, and it goes through
:mod:`sam_age.engine` for the tensors (``encode_faces``: the pretrained encoder once per
face; ``age_encoded``: all ages of a face batched). Style mixing builds on it in :mod:`sam_age.mixing`.

Per-upload caches (what the web demo's age slider relies on): the pipeline keeps the
found and aligned faces of the last few photos (keyed by their *content*, so the same upload
under another temp name hits) and the pretrained encoding of the last few aligned faces
(keyed by their pixels, the model's weights, dtype and device). Asking again for the same
photo at another age costs one age encoder + one generator call per face: no detection,
no pretrained encoder. DEX's age estimates (relative ages) are kept per face the same way.
The caches are small LRUs (``cache_size`` photos and at most ``PHOTO_CACHE_BYTES`` of
decoded pixels; encodings are ``[18, 512]`` each) and never change a result: a hit
returns what the miss computed.

Randomness, as diffusers pipelines take it: every method with ``randomize_noise`` also
takes ``generator=`` (a :class:`torch.Generator`); with one, the noise maps are drawn from
a seed taken from that generator, so a run repeats exactly and the global RNG is left
alone. Without ``randomize_noise`` (the default) the generator's fixed noise is used and
nothing is random.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from .ages import (
    ResolvedAge,
    absolute_ages,
    clamp_note,  # noqa: F401
    format_age,
    is_relative,
    parse_ages,
    resolve_ages,
)
from .checkpoints.load import load_sam
from .defaults import DEFAULT_BATCH_SIZE, DEFAULT_CHECKPOINT
from .engine import age_encoded, apply_forms, choose_dtype, encode_faces, make_tuner, resolve_device
from .errors import UsageError
from .estimate import AgeEstimator
from .face.align import AlignedFace
from .face.paste import paste_face
from .face.prepare import INPUT_SIZE, landmarks_of, prepare_faces
from .images import to_batch, to_uint8
from .models.sam import SAM
from .render import interpolate_codes, ping_pong
from .weights.store import resolve_weights

PHOTO_CACHE_BYTES = 256 * 2**20  # decoded photos the per-upload cache may hold (a web server's memory)


@dataclass
class FaceResult:
    aligned: Image.Image  # the 256 px network input
    quad: Optional[np.ndarray]  # float32 [4, 2] crop corners in the photo (None with align=False)
    ages: List[float]
    images: List[Image.Image]  # one per age
    latents: torch.Tensor  # [A, n_styles, 512] W+ codes, on the CPU
    score: float = 0.0  # detector score (0 with align=False)
    size: int = 256  # the output size the images were made at
    landmarks: Optional[np.ndarray] = None  # [68, 2] in the photo (for the paste mask)
    estimated_age: Optional[float] = None  # DEX's estimate (when relative ages were asked)
    requested: Optional[list] = None  # the ages asked, per image: floats and RelativeAge
    resolved: List[ResolvedAge] = field(default_factory=list)
    report: Optional[list] = None  # with report=True: one sam_age.report.OutputReport per age

    @property
    def note(self) -> Optional[str]:
        """One line when some relative age was clamped to 0..100, else None."""
        return clamp_note(self.estimated_age, self.resolved) if self.estimated_age is not None else None


@dataclass
class AgingResult:
    source: Image.Image  # the photo as read (upright RGB)
    ages: List[float]  # the ages generated for the first face (relative ages resolved)
    faces: List[FaceResult]  # best detection first
    pasted: Optional[List[Image.Image]] = None  # whole photo per age asked (paste_back=True)
    requested: Optional[list] = None  # the ages asked: floats and RelativeAge ("+20")

    @property
    def estimated_age(self) -> Optional[float]:
        """The first face's estimated age (None when no relative age was asked)."""
        return self.faces[0].estimated_age

    @property
    def notes(self) -> List[str]:
        """Lines worth telling the user (clamped relative ages), per face."""
        return [
            f"face {i + 1}: {f.note}" if len(self.faces) > 1 else f.note for i, f in enumerate(self.faces) if f.note
        ]

    @property
    def images(self) -> List[Image.Image]:
        return self.faces[0].images

    @property
    def aligned(self) -> Image.Image:
        return self.faces[0].aligned

    @property
    def latents(self) -> torch.Tensor:
        return self.faces[0].latents


def check_ages(ages) -> List[float]:
    """Absolute ages only (a list, a number or the ``--ages`` text) -> floats in 0..100,
    repeats kept (:func:`sam_age.ages.absolute_ages`)."""
    return absolute_ages(ages)


def sample_path() -> Path:
    """The bundled sample portrait (scikit-image's public-domain astronaut)."""
    return Path(__file__).resolve().parent / "data" / "astronaut.jpg"


def _images_to_pil(batch: torch.Tensor) -> List[Image.Image]:
    return [Image.fromarray(a, "RGB") for a in to_uint8(batch)]  # one conversion for the batch


@contextlib.contextmanager
def noise_from(generator: Optional[torch.Generator], device: torch.device) -> Iterator[None]:
    """Inside: the global RNG of ``device`` seeded from ``generator`` (one draw), restored
    afterwards. Nothing changes without a generator."""
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class LRU:
    """A small least-recently-used map: at most ``maxsize`` entries (0 keeps nothing) and,
    with ``max_bytes``, at most that many bytes as told by ``put(..., nbytes=)`` (an entry
    larger than that alone is not kept)."""

    def __init__(self, maxsize: int, max_bytes: Optional[int] = None):
        self.maxsize = max(0, int(maxsize))
        self.max_bytes = max_bytes
        self._data: "OrderedDict" = OrderedDict()
        self._sizes: dict = {}

    def get(self, key):
        if key in self._data:
            self._data.move_to_end(key)
            return self._data[key]
        return None

    def get_many(self, keys: Sequence, compute: Callable[[List[int]], Sequence]) -> list:
        """The values of ``keys``; the missing ones computed together by
        ``compute(indices)`` (one value per index, in order) and kept."""
        got = [self.get(k) for k in keys]
        todo = [i for i, g in enumerate(got) if g is None]
        if todo:
            for i, value in zip(todo, compute(todo)):
                got[i] = value
                self.put(keys[i], value)
        return got

    def put(self, key, value, nbytes: int = 0) -> None:
        if self.maxsize == 0 or (self.max_bytes is not None and nbytes > self.max_bytes):
            return
        self._data[key] = value
        self._sizes[key] = nbytes
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize or (
            self.max_bytes is not None and sum(self._sizes.values()) > self.max_bytes
        ):
            old, _ = self._data.popitem(last=False)
            self._sizes.pop(old, None)

    def clear(self) -> None:
        self._data.clear()
        self._sizes.clear()

    def __len__(self) -> int:
        return len(self._data)


def content_key(image) -> Optional[str]:
    """A digest of what ``image`` holds (file bytes, bytes, a PIL image's pixels or an
    array), or None for anything else (not cached). Reading a file twice costs far less
    than detecting its faces again."""
    h = hashlib.blake2b(digest_size=20)
    try:
        if isinstance(image, (str, Path)):
            with open(image, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            h.update(b"file")
        elif isinstance(image, (bytes, bytearray, memoryview)):
            h.update(bytes(image))
            h.update(b"bytes")
        elif isinstance(image, Image.Image):
            h.update(f"{image.mode}{image.size}".encode())
            h.update(image.tobytes())
        elif isinstance(image, np.ndarray):
            h.update(f"{image.dtype}{image.shape}".encode())
            h.update(np.ascontiguousarray(image).tobytes())
        else:
            return None
    except OSError:  # unreadable: let the reader say why, uncached
        return None
    return h.hexdigest()


def _tensor_key(t: torch.Tensor) -> str:
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    raw = flat.view(torch.uint8).numpy().tobytes()  # the bytes, whatever the dtype (bf16 has no numpy type)
    return hashlib.blake2b(raw, digest_size=20).hexdigest() + f"{tuple(t.shape)}{t.dtype}"


class AgePipeline:
    """SAM on photos. ``age_predictor``: the DEX weights used for relative ages ("+20"):
    a registry name (default ``dex_age``), a path, or an :class:`~sam_age.estimate.AgeEstimator`;
    loaded (and fetched when missing) only when a relative age is first asked for.
    ``cache_size``: photos whose faces (and their pretrained encodings) are kept, so the
    same photo at another age skips detection and the pretrained encoder (the web demo's
    slider); 0 turns the caches off. See the module docstring.
    ``forms``: the inference forms, ``{"conv": "auto"|"packed"|"plain", "generator":
    "auto"|"per_sample"|"shared"|"grouped"|"reference"}`` (default all "auto": measured on
    this machine at first use by ``tuner``, default :func:`sam_age.engine.make_tuner`,
    cached per machine; see :attr:`compute_path`).

    ``report=True``: every face result carries ``report`` (:mod:`sam_age.report`: the age
    DEX sees on each output and its identity similarity with the input), checked against
    ``max_age_error`` / ``min_identity`` where given. ``identity``: the identity network,
    an :class:`~sam_age.identity.IdentityNet`, or a dict of ``curricular_face_weights`` /
    ``ir_se50_weights`` (None: CurricularFace when its weights resolve, else IR-SE-50),
    loaded at the first report."""

    def __init__(
        self,
        model: SAM,
        device=None,
        dtype=None,
        batch_size: Optional[int] = None,
        age_predictor=None,
        cache_size: int = 4,
        forms: Optional[dict] = None,
        tuner=None,
        report: bool = False,
        max_age_error: Optional[float] = None,
        min_identity: Optional[float] = None,
        identity=None,
    ):
        self.report = bool(report)
        self.max_age_error, self.min_identity = max_age_error, min_identity
        self.identity = identity
        self.identity_note: Optional[str] = None
        self.model = model
        self._prepared = LRU(cache_size, max_bytes=PHOTO_CACHE_BYTES)
        self._encoded = LRU(16 * cache_size)
        self._estimates = LRU(16 * cache_size)
        self.tuner = make_tuner() if tuner is None else tuner
        self.forms = apply_forms(model, forms, self.tuner)
        self._why = None
        self.to(device, dtype)
        self.batch_size = int(batch_size) if batch_size else DEFAULT_BATCH_SIZE
        self._estimator = None
        self.age_predictor = age_predictor

    def clear_cache(self) -> None:
        """Forget the cached faces, encodings and age estimates."""
        for c in (self._prepared, self._encoded, self._estimates):
            c.clear()

    def _model_key(self) -> tuple:
        """What an encoding depends on besides the face: the weights (identity and version
        of the pretrained encoder's parameters), dtype and device."""
        enc = self.model.pretrained_encoder
        params = () if enc is None else tuple((p.data_ptr(), p._version) for p in enc.parameters())
        return (
            id(self.model),
            self.dtype,
            str(self.device),
            hash(params),
            self.model.latent_avg.data_ptr(),
            self.model.latent_avg._version,
        )

    def prepare(self, image, all_faces: bool = False, align: bool = True):
        """:func:`~sam_age.face.prepare.prepare_faces` through the per-photo cache: ``(photo, faces)``."""
        key = content_key(image)
        key = None if key is None else (key, bool(all_faces), bool(align))
        hit = None if key is None else self._prepared.get(key)
        if hit is not None:
            return hit
        out = prepare_faces(image, all_faces=all_faces, align=align)
        if key is not None:
            photo, faces = out
            nbytes = photo.width * photo.height * 3 + len(faces) * INPUT_SIZE * INPUT_SIZE * 3
            self._prepared.put(key, out, nbytes)
        return out

    def encode(self, faces: torch.Tensor) -> Optional[torch.Tensor]:
        """The pretrained encodings (:func:`sam_age.engine.encode_faces`) of aligned faces
        ``[N, 3, 256, 256]`` through the per-face cache; None for a SAM without a
        pretrained encoder."""
        if not self.model.start_from_encoded_w_plus:
            return None
        model_key = self._model_key()
        keys = [(model_key, _tensor_key(f)) for f in faces]
        return torch.stack(
            self._encoded.get_many(keys, lambda todo: encode_faces(self.model, faces[todo], batch_size=self.batch_size))
        )

    def to(self, device=None, dtype=None) -> "AgePipeline":
        """Move the model to ``device`` (``"auto"``, ``"cpu"``, ``"cuda:1"``, ...) and/or
        ``dtype`` (``"auto"`` = the device's fast default, ``"float32"`` = exact); ``None``
        keeps the current one. In place (parameter by parameter); returns the pipeline."""
        param = next(self.model.parameters())
        self.device = resolve_device(device) if device is not None else param.device
        if dtype is not None:
            self.dtype, self._why = choose_dtype(dtype, self.device, self.tuner)
        else:
            self.dtype = param.dtype
            self._why = self._why or f"as loaded: {str(self.dtype).replace('torch.', '')}"
        self.model = self.model.to(device=self.device, dtype=self.dtype).eval()
        self._estimator = None  # a loaded age predictor follows at its next use
        self._encoded.clear()
        self._estimates.clear()
        return self

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: Union[str, Path, SAM] = DEFAULT_CHECKPOINT,
        device=None,
        dtype=None,
        batch_size: Optional[int] = None,
        progress: bool = False,
        age_predictor=None,
        forms: Optional[dict] = None,
        **options,
    ) -> "AgePipeline":
        """``checkpoint``: a registry name (fetched into the cache when missing), a path
        (.pt, .pdparams, .safetensors) or an already built :class:`SAM`.
        ``age_predictor``: see the class (default: the registry's ``dex_age``, lazily).
        ``forms`` and ``options`` (``report=True``, ``identity=``, ...): see the class.
        ``dtype`` "auto"/None: the measured choice (:func:`sam_age.engine.choose_dtype`)."""
        dev = resolve_device(device)
        tuner = make_tuner()
        dt, why = choose_dtype(dtype, dev, tuner)
        if isinstance(checkpoint, SAM):
            pipe = cls(checkpoint, dev, dt, batch_size, age_predictor, forms=forms, tuner=tuner, **options)
        else:
            path = resolve_weights(checkpoint, progress=progress, kind="sam")
            pipe = cls(
                load_sam(path, device=dev, dtype=dt),
                dev,
                dt,
                batch_size,
                age_predictor,
                forms=forms,
                tuner=tuner,
                **options,
            )
        pipe._why = why if dtype in (None, "auto") else pipe._why
        return pipe

    @property
    def compute_path(self) -> dict:
        """What this pipeline runs (read-only): ``{"device", "dtype", "why" (one short
        reason), "forms": {"conv", "generator", "autotune"}}``. A form left "auto" is named
        once it has been chosen (at the first call: measured, or read from the cache)."""
        used = {"conv": self.tuner.summary("conv:"), "generator": self.tuner.summary("generator:")}
        forms = {
            k: (used[k] or ("auto (chosen at first use)" if v == "auto" else v)) if v == "auto" else v
            for k, v in self.forms.items()
        }
        if self.device.type != "cpu":
            gen = self.forms["generator"]
            forms = {"conv": "plain", "generator": "shared" if gen == "auto" else gen}
        forms["autotune"] = self.tuner.mode
        return {
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "why": self._why or "",
            "forms": forms,
        }

    # -- the estimated age (relative ages) ---------------------------------------------------
    @property
    def age_predictor(self):
        return self._age_predictor

    @age_predictor.setter
    def age_predictor(self, value) -> None:
        """A new name, path or estimator; the loaded one is dropped only when it changes."""
        old = getattr(self, "_age_predictor", None)
        same = old is value or (
            isinstance(old, (str, Path)) and isinstance(value, (str, Path)) and str(old) == str(value)
        )
        if not same:
            self._estimator = None
            self._estimates.clear()
        self._age_predictor = value

    @property
    def estimator(self):
        """The :class:`~sam_age.estimate.AgeEstimator`, loaded at first use."""
        if self._estimator is None:
            value = self._age_predictor
            if hasattr(value, "estimate_aligned"):
                self._estimator = value
            else:
                dtype = torch.float32 if self.device.type == "cpu" else self.dtype
                self._estimator = AgeEstimator.from_pretrained(value, device=self.device, dtype=dtype)
        return self._estimator

    @property
    def identity_net(self):
        """The :class:`~sam_age.identity.IdentityNet` of reports, loaded at first use."""
        from .identity import IdentityNet, resolve_identity_weights

        if not isinstance(self.identity, IdentityNet):
            spec = dict(self.identity or {})
            notes: List[str] = []
            model, path = resolve_identity_weights(
                spec.get("model"),
                spec.get("curricular_face_weights"),
                spec.get("ir_se50_weights"),
                progress=False,
                on_note=notes.append,
            )
            self.identity_note = notes[0] if notes else None
            self.identity = IdentityNet.from_weights(path, model, device=self.device)
        return self.identity

    def report_faces(self, faces: Sequence[FaceResult]) -> None:
        """Fill ``face.report`` for each face (see :mod:`sam_age.report`)."""
        from .report import measure_face

        for f in faces:
            f.report = measure_face(
                f.aligned, f.images, f.ages, self.estimator, self.identity_net, self.max_age_error, self.min_identity
            )

    def _estimate_aligned(self, faces: Sequence[Image.Image]) -> List[float]:
        """DEX's estimates of aligned faces through the per-face cache (relative ages)."""
        keys = [content_key(f) for f in faces]  # (cleared whenever the estimator changes)
        return self._estimates.get_many(keys, lambda todo: self.estimator.estimate_aligned([faces[i] for i in todo]))

    def estimate(self, image, all_faces: bool = False, align: bool = True):
        """The estimated age of the face(s) in ``image``: an :class:`~sam_age.estimate.EstimateResult`."""
        return self.estimator(image, all_faces=all_faces, align=align)

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

    def age_aligned(
        self,
        faces: Union[torch.Tensor, Sequence[Image.Image]],
        ages: Sequence[float],
        size: int = 256,
        randomize_noise: bool = False,
        generator: Optional[torch.Generator] = None,
        progress: Optional[Callable[[int], None]] = None,
    ):
        """Aligned faces (tensor ``[N,3,256,256]`` in [-1,1], or PIL images) -> ``(images
        [N,A,3,S,S], codes [N,A,n_styles,512])`` as float32 CPU tensors. ``progress(k)``
        is called as each forward pass finishes (k face-ages done): a progress bar's hook."""
        ages = check_ages(ages)
        resize = self._check_size(size)
        faces = to_batch(faces, INPUT_SIZE)
        with torch.no_grad():
            base = self.encode(faces)
        with noise_from(generator if randomize_noise else None, self.device):
            images, codes = age_encoded(
                self.model,
                faces,
                base,
                ages,
                batch_size=self.batch_size,
                resize=resize,
                randomize_noise=randomize_noise,
                progress=progress,
            )
        return images.float().cpu(), codes.float().cpu()

    def __call__(
        self,
        image,
        ages,
        *,
        all_faces: bool = False,
        align: bool = True,
        paste_back: bool = False,
        size: int = 256,
        randomize_noise: bool = False,
        generator: Optional[torch.Generator] = None,
        mask: str = "face",
        colour_match: bool = True,
        report: Optional[bool] = None,
    ) -> AgingResult:
        """Age the best face in ``image`` (path, bytes, PIL or numpy) to every age.

        ``ages``: as ``--ages`` (:func:`sam_age.ages.parse_ages`): ``[10, 40]``, ``30``,
        ``"0:100:50"``, and relative ages ``"+20"``, ``["-10", "+10"]`` (years from the
        face's DEX estimate, clamped to 0..100: see ``result.notes``). ``all_faces`` ages
        every detected face; ``align=False`` takes the image as an already aligned square
        crop (resized to 256; not square: InputError); ``paste_back`` also returns the whole
        photo with the aged face(s) put back, per age, through ``mask`` ("face": the landmark mask, "box": the rounded
        box) with ``colour_match``; ``size`` is 256 or the generator's size. ``report``
        (default: the pipeline's): measure each output (``face.report``, see the class)."""
        requested = parse_ages(ages, relative=True)
        self._check_size(size)
        _check_mask(mask)
        photo, aligned = self.prepare(image, all_faces=all_faces, align=align)
        result = self.age_prepared(
            photo,
            aligned,
            requested,
            paste_back=paste_back,
            size=size,
            randomize_noise=randomize_noise,
            generator=generator,
            mask=mask,
            colour_match=colour_match,
            report=report,
        )
        return result

    def age_prepared(
        self,
        photo: Image.Image,
        aligned: Sequence[AlignedFace],
        ages,
        *,
        paste_back: bool = False,
        size: int = 256,
        randomize_noise: bool = False,
        generator: Optional[torch.Generator] = None,
        mask: str = "face",
        colour_match: bool = True,
        progress: Optional[Callable[[int], None]] = None,
        report: Optional[bool] = None,
    ) -> AgingResult:
        """The model half of ``__call__``, for faces from :func:`~sam_age.face.prepare.prepare_faces`. Relative
        ages are resolved per face against its estimated age (DEX on the aligned face).
        ``progress``: see :meth:`age_aligned`."""
        return self.age_prepared_many(
            [(photo, aligned)],
            ages,
            paste_back=paste_back,
            size=size,
            randomize_noise=randomize_noise,
            generator=generator,
            mask=mask,
            colour_match=colour_match,
            progress=progress,
            report=report,
        )[0]

    def age_prepared_many(
        self,
        photos: Sequence[Tuple[Optional[Image.Image], Sequence[AlignedFace]]],
        ages,
        *,
        paste_back: bool = False,
        size: int = 256,
        randomize_noise: bool = False,
        generator: Optional[torch.Generator] = None,
        mask: str = "face",
        colour_match: bool = True,
        progress: Optional[Callable[[int], None]] = None,
        report: Optional[bool] = None,
    ) -> List[AgingResult]:
        """:meth:`age_prepared` for several photos at once, ``[(photo, faces), ...]`` -> one
        result per photo (dataset runs). The faces of all the photos that share their list
        of ages (all of them, unless relative) go through the model together, so forward
        passes stay full however few faces each photo has; each face's images depend on
        that face alone. ``photo`` may be None when nothing is pasted back; ``progress``: see
        :meth:`age_aligned`."""
        requested = parse_ages(ages, relative=True)
        _check_mask(mask)
        flat = [(p, face) for p, (_, faces) in enumerate(photos) for face in faces]
        estimates: List[Optional[float]] = [None] * len(flat)
        if flat and any(is_relative(a) for a in requested):
            estimates = self._estimate_aligned([face[0] for _, face in flat])
        resolved = [resolve_ages(requested, e) for e in estimates]
        groups = {}
        for i, r in enumerate(resolved):
            groups.setdefault(tuple(x.age for x in r), []).append(i)
        made = {}
        for key, idx in groups.items():
            images, codes = self.age_aligned(
                [flat[i][1][0] for i in idx],
                list(key),
                size=size,
                randomize_noise=randomize_noise,
                generator=generator,
                progress=progress,
            )
            for j, i in enumerate(idx):
                made[i] = (images[j], codes[j])
        faces = [
            FaceResult(
                a[0],
                a[1],
                [x.age for x in resolved[i]],
                _images_to_pil(made[i][0]),
                made[i][1],
                float(a[2]),
                size,
                landmarks_of(a),
                estimates[i],
                list(requested),
                resolved[i],
            )
            for i, (_, a) in enumerate(flat)
        ]
        if self.report if report is None else report:
            self.report_faces(faces)
        results, start = [], 0
        for photo, aligned in photos:
            mine = faces[start : start + len(aligned)]
            start += len(aligned)
            pasted = None
            if paste_back and photo is not None and any(a[1] is not None for a in aligned):
                pasted = [
                    self.paste(photo, mine, k, mask=mask, colour_match=colour_match) for k in range(len(requested))
                ]
            results.append(AgingResult(photo, list(mine[0].ages) if mine else [], mine, pasted, list(requested)))
        return results

    @staticmethod
    def paste(
        photo: Image.Image, faces: Sequence[FaceResult], age_index: int, mask: str = "face", colour_match: bool = True
    ) -> Image.Image:
        """The photo with every face's ``age_index``-th result put back (the best face
        last, so it wins where crops overlap). ``mask``: "face" (the landmark mask; the
        box for faces without landmarks) or "box"; colours are matched to the original."""
        _check_mask(mask)
        out = photo
        for f in reversed(list(faces)):
            if f.quad is not None:
                out = paste_face(
                    out,
                    f.images[age_index],
                    f.quad,
                    mask,
                    landmarks=f.landmarks,
                    colour_match=colour_match,
                    reference=photo,
                )
        return out

    # -- animation -----------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        codes: torch.Tensor,
        size: int = 256,
        randomize_noise: bool = False,
        generator: Optional[torch.Generator] = None,
        progress: Optional[Callable[[int], None]] = None,
    ) -> List[Image.Image]:
        """W+ codes ``[K, n_styles, 512]`` -> images, in batches (``progress(k)`` after each)."""
        resize = self._check_size(size)
        out: List[Image.Image] = []
        with noise_from(generator if randomize_noise else None, self.device):
            for start in range(0, codes.shape[0], self.batch_size):
                c = codes[start : start + self.batch_size].to(device=self.device, dtype=self.dtype)
                out += _images_to_pil(self.model.generate(c, resize=resize, randomize_noise=randomize_noise))
                if progress is not None:
                    progress(c.shape[0])
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
        frames = [face.images[order[i // k]] if (reuse and i % k == 0) else next(made) for i in range(steps.shape[0])]
        return ping_pong(frames)


MASKS = ("face", "box")


def _check_mask(mask: str) -> None:
    if mask not in MASKS:
        raise UsageError(f"mask must be one of {', '.join(MASKS)}, not {mask!r}")


# -- what relative ages did, for reports ------------------------------------------------------


def relative_report(result: AgingResult) -> dict:
    """Per input, for JSON summaries and the dataset manifest: the ages asked and made per
    face, with relative ages the estimate per face and what was clamped, and with
    ``report=True`` what each output reached (``report``: :func:`sam_age.report.report_json`)."""
    from .report import report_json

    rec = {
        "requested": [format_age(a) for a in (result.requested or result.ages)],
        "ages": [[round(a, 6) for a in f.ages] for f in result.faces],
        **report_json(result.faces),
    }
    if any(f.estimated_age is not None for f in result.faces):
        rec["estimated_ages"] = [None if f.estimated_age is None else round(f.estimated_age, 2) for f in result.faces]
        rec["clamped"] = [
            {"face": i + 1, "request": str(r.request), "asked": r.asked, "age": r.age}
            for i, f in enumerate(result.faces)
            for r in f.resolved
            if r.clamped
        ]
    return rec


def relative_notes(result: AgingResult) -> List[str]:
    """Lines for stderr: the estimate(s) and what was clamped (one line per input), and
    one line per output that missed a ``--max-age-error`` / ``--min-identity`` check."""
    from .report import report_notes

    return _estimate_notes(result) + report_notes(result.faces)


def _estimate_notes(result: AgingResult) -> List[str]:
    if not any(f.estimated_age is not None for f in result.faces):
        return []
    ests = ", ".join(f"{f.estimated_age:.1f}" for f in result.faces)
    n = len(result.faces)
    line = f"estimated age {ests}" if n == 1 else f"estimated ages {ests} (faces 1..{n})"
    clamped = [
        f"face {i + 1}: " * (len(result.faces) > 1) + f"{r.request} -> {r.asked:g} clamped to {r.age:g}"
        for i, f in enumerate(result.faces)
        for r in f.resolved
        if r.clamped
    ]
    if clamped:
        line += "; " + "; ".join(clamped) + " (SAM ages within 0..100)"
    return [line]
