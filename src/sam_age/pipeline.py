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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from PIL import Image

from .ages import absolute_ages, is_relative, parse_ages, resolve_ages
from .cache import LRU, PHOTO_CACHE_BYTES, content_key, tensor_key
from .checkpoints.load import load_sam, weights_identity
from .defaults import DEFAULT_CHECKPOINT
from .engine import (
    age_encoded,
    apply_forms,
    batch_size_for,
    choose_dtype,
    encode_faces,
    make_tuner,
    resolve_device,
)
from .errors import UsageError
from .estimate import AgeEstimator
from .face.align import AlignedFace
from .face.paste import paste_face
from .face.prepare import INPUT_SIZE, landmarks_of, prepare_faces
from .images import to_batch, to_uint8
from .models.sam import SAM
from .render import interpolate_codes, ping_pong
from .results import AgingResult, FaceResult, check_mask
from .weights.store import resolve_weights


def sample_path() -> Path:
    """The bundled sample portrait (scikit-image's public-domain astronaut)."""
    return Path(__file__).resolve().parent / "data" / "astronaut.jpg"


def _images_to_pil(batch: torch.Tensor) -> List[Image.Image]:
    return [Image.fromarray(a, "RGB") for a in to_uint8(batch)]  # one conversion for the batch


# -- one loaded model per process (the CLI, dataset runs and tests share it) --------------------

_SHARED: dict = {}  # key -> AgePipeline; at most one entry (one model in memory)


def shared_pipeline(path, device=None, dtype=None, batch_size: Optional[int] = None) -> "AgePipeline":
    """The process's one loaded :class:`AgePipeline` for the weights file ``path`` on
    ``device`` in ``dtype`` (None: the measured choice): loaded at the first call, returned
    again while the weights (:func:`~sam_age.checkpoints.load.weights_identity`, the one
    answer to "same model?"), device and dtype stay the same; another key drops the old
    model first. Each call sets ``batch_size`` (None: per device)
    and turns ``report`` off, so a run keeps nothing of an earlier run's settings."""
    p = Path(path)
    key = (weights_identity(p), str(device), str(dtype))
    pipe = _SHARED.get(key)
    if pipe is None:
        _SHARED.clear()  # keep one model in memory
        pipe = AgePipeline.from_pretrained(p, device=device, dtype=dtype, batch_size=batch_size)
        _SHARED[key] = pipe
    pipe.batch_size = batch_size
    pipe.report = False  # a shared pipeline keeps no earlier run's --report (apply_report turns it on)
    return pipe


def clear_shared() -> None:
    """Forget the shared pipeline (its memory goes with the last reference)."""
    _SHARED.clear()


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


@dataclass(frozen=True)
class AgeOptions:
    """What the aging methods (``__call__``, ``age_prepared``, ``age_prepared_many``) take
    besides the faces and the ages, as keywords.

    ``paste_back``: also return the whole photo with the aged face(s) put back, per age,
    through ``mask`` ("face": the landmark mask, "box": the rounded box) with
    ``colour_match``; ``size``: 256 or the generator's size; ``randomize_noise`` /
    ``generator``: see the module docstring; ``progress(k)``: see
    :meth:`AgePipeline.age_aligned`; ``report`` (None: the pipeline's): measure each
    output (``face.report``, see :class:`AgePipeline`)."""

    paste_back: bool = False
    size: int = 256
    randomize_noise: bool = False
    generator: Optional[torch.Generator] = None
    mask: str = "face"
    colour_match: bool = True
    progress: Optional[Callable[[int], None]] = None
    report: Optional[bool] = None


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
        self.batch_size = batch_size
        self._estimator = None
        self.age_predictor = age_predictor

    @property
    def batch_size(self) -> int:
        """Images per forward pass: as set, or (set to None) the engine's per-device default
        (:func:`sam_age.engine.batch_size_for`)."""
        return self._batch_size if self._batch_size is not None else batch_size_for(self.device)

    @batch_size.setter
    def batch_size(self, value: Optional[int]) -> None:
        self._batch_size = None if not value else max(1, int(value))

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
        keys = [(model_key, tensor_key(f)) for f in faces]
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
            given = Path(checkpoint).expanduser()  # a file is taken as is (resolved once, by the caller)
            path = given if given.is_file() else resolve_weights(checkpoint, progress=progress, kind="sam")
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

    def check_size(self, size: int) -> bool:
        """UsageError unless ``size`` is 256 or the generator's size; else ``resize`` for
        the engine (256 px outputs are the generator's, pooled)."""
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
        ages = absolute_ages(ages)
        resize = self.check_size(size)
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

    def __call__(self, image, ages, *, all_faces: bool = False, align: bool = True, **options) -> AgingResult:
        """Age the best face in ``image`` (path, bytes, PIL or numpy) to every age.

        ``ages``: as ``--ages`` (:func:`sam_age.ages.parse_ages`): ``[10, 40]``, ``30``,
        ``"0:100:50"``, and relative ages ``"+20"``, ``["-10", "+10"]`` (years from the
        face's DEX estimate, clamped to 0..100: see ``result.notes``). ``all_faces`` ages
        every detected face; ``align=False`` takes the image as an already aligned square
        crop (resized to 256; not square: InputError). ``options``: the fields of
        :class:`AgeOptions` (``paste_back``, ``size``, ``mask``, ``report``, ...), checked
        before the photo is read."""
        requested = parse_ages(ages, relative=True)
        opts = self._options(options)
        photo, aligned = self.prepare(image, all_faces=all_faces, align=align)
        return self._age_many([(photo, aligned)], requested, opts)[0]

    def age_prepared(self, photo: Image.Image, aligned: Sequence[AlignedFace], ages, **options) -> AgingResult:
        """The model half of ``__call__``, for faces from :func:`~sam_age.face.prepare.prepare_faces`.
        Relative ages are resolved per face against its estimated age (DEX on the aligned
        face). ``options``: the fields of :class:`AgeOptions`."""
        return self._age_many([(photo, aligned)], ages, self._options(options))[0]

    def age_prepared_many(
        self, photos: Sequence[Tuple[Optional[Image.Image], Sequence[AlignedFace]]], ages, **options
    ) -> List[AgingResult]:
        """:meth:`age_prepared` for several photos at once, ``[(photo, faces), ...]`` -> one
        result per photo (dataset runs). The faces of all the photos that share their list
        of ages (all of them, unless relative) go through the model together, so forward
        passes stay full however few faces each photo has; each face's images depend on
        that face alone. ``photo`` may be None when nothing is pasted back. ``options``: the
        fields of :class:`AgeOptions`."""
        return self._age_many(photos, ages, self._options(options))

    def _options(self, options: dict) -> "AgeOptions":
        """The keyword options of the aging methods, checked (UsageError) before any work."""
        opts = AgeOptions(**options)
        self.check_size(opts.size)
        check_mask(opts.mask)
        return opts

    def _age_many(self, photos, ages, opts: "AgeOptions") -> List[AgingResult]:
        """The one path of ``__call__``, :meth:`age_prepared` and :meth:`age_prepared_many`."""
        requested = parse_ages(ages, relative=True)
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
                size=opts.size,
                randomize_noise=opts.randomize_noise,
                generator=opts.generator,
                progress=opts.progress,
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
                opts.size,
                landmarks_of(a),
                estimates[i],
                list(requested),
                resolved[i],
            )
            for i, (_, a) in enumerate(flat)
        ]
        if self.report if opts.report is None else opts.report:
            self.report_faces(faces)
        results, start = [], 0
        for photo, aligned in photos:
            mine = faces[start : start + len(aligned)]
            start += len(aligned)
            pasted = None
            if opts.paste_back and photo is not None and any(a[1] is not None for a in aligned):
                pasted = [
                    self.paste(photo, mine, k, mask=opts.mask, colour_match=opts.colour_match)
                    for k in range(len(requested))
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
        check_mask(mask)
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
        resize = self.check_size(size)
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
