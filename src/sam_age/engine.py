"""Tensor-level inference shared by the pipeline, the CLI, the web demo, evaluation and
the benchmarks: aligned faces in, aged faces out.

The original inference script runs the pretrained encoder again for every age and one
age at a time; here it runs once per face and all ages of a face go through the
age encoder and the generator together (in batches of ``batch_size`` images). Without
autograd the networks take their inference forms (the encoders' folded BatchNorms,
``models.encoder``; the generator's fast forms, ``models.stylegan2``), which also put
the activations in the layout the device's kernels prefer -- so there is no separate
"prepare the model for this device" step: the one place that decides a layout is the
inference form itself.

Precision policy (:func:`resolve_dtype`): float32 is the exact path and what you get when
you ask for it. ``None``/"auto" picks the fast path of the device: float16 on CUDA (the
modulated weights are built in float32, which does what NVlabs' fp16 pre-normalisation
does), bfloat16 on CPUs that compute it natively (avx512_bf16 / AMX), float32 on every
other CPU -- without native bf16 units oneDNN emulates it and runs 10-100x *slower*
than float32 (measured on an AMD EPYC with AVX2 only). Asking for a half precision the
CPU only emulates still works, with one :class:`EmulatedPrecisionWarning`. An ISA cap
(``ONEDNN_MAX_CPU_ISA=AVX2``, ``AVX512_CORE``: what a faster CPU is told to use) counts:
below ``AVX512_CORE_BF16`` bf16 is emulated even where the CPU has the units.

Measured choices (:func:`choose_dtype`, :func:`make_tuner`): where the CPU has native bf16
and the dtype was not given, bfloat16 is kept only when a probe of the networks' main conv
shapes measures it faster than float32 (``sam_age.autotune``, cached per machine); the
encoders' packed convs and the generator's form are measured the same way at first use.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import torch

from . import autotune
from .errors import UsageError
from .models.sam import SAM
from .weights.store import cache_dir

DeviceLike = Union[str, torch.device, None]
DTYPE_NAMES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
NATIVE_FP16_FLAGS = ("amx_fp16",)
CPU_MAX_BATCH = 4
DEFAULT_BATCH = {"cuda": 16, "cpu": CPU_MAX_BATCH, "other": 8}


class EmulatedPrecisionWarning(UserWarning):
    """A half precision asked for on a CPU that only emulates it (slower than float32)."""


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def available_devices() -> List[str]:
    """The devices torch can use here: ``cpu``, ``cuda:0``... ``mps``, ``xpu:0``..."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and getattr(xpu, "is_available", lambda: False)():
        found += [f"xpu:{i}" for i in range(xpu.device_count())]
    return found


def _listing() -> str:
    return f"this machine has {', '.join(available_devices())} (or use auto)"


def resolve_device(device: DeviceLike, ranks=None, option: str = "--device") -> torch.device:
    """The one device resolver: every command, the pipeline and each ``torchrun`` rank pick
    their device here.

    ``None``/"auto" -> CUDA, else MPS, else the CPU (:func:`default_device`). A name torch
    does not parse, or a device this machine does not have (``cuda`` without CUDA,
    ``cuda:3`` beside one GPU), is a :class:`~sam_age.errors.UsageError` (exit 2) naming
    ``option`` and listing :func:`available_devices`. With ``ranks`` (a
    :class:`sam_age.launch.Ranks`: where this process stands in a torchrun launch) a CUDA
    device without an index becomes ``cuda:LOCAL_RANK`` under torchrun (modulo the GPU
    count: more ranks than GPUs share them round-robin), else the current CUDA device; an
    explicit index is kept."""
    if device in (None, "", "auto"):
        resolved = default_device()
    else:
        try:
            resolved = torch.device(device)
        except (RuntimeError, ValueError):
            raise UsageError(f"{option} {device}: not a device name; {_listing()}") from None
        if resolved.type not in ("cpu", "meta"):
            have = available_devices()
            if resolved.index is None:
                ok = any(d.split(":")[0] == resolved.type for d in have)
            else:
                ok = str(resolved) in have
            if not ok:
                raise UsageError(f"{option} {device}: no such device here; {_listing()}")
    if ranks is not None and resolved.type == "cuda" and resolved.index is None:
        count = max(1, torch.cuda.device_count())
        index = ranks.local_rank % count if ranks.distributed else torch.cuda.current_device()
        resolved = torch.device("cuda", index)
    return resolved


def cpu_flags(cpuinfo: Union[str, Path] = "/proc/cpuinfo") -> frozenset:
    """The CPU feature flags the kernel reports (empty where there is no /proc/cpuinfo)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


# oneDNN ISA caps under which bf16 has no native units (ONEDNN_MAX_CPU_ISA)
CAPS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


def cpu_has_native_bf16(flags: Optional[Iterable[str]] = None) -> bool:
    """True when the CPU has bf16 dot-product units (avx512_bf16 or AMX) and no ISA cap
    hides them: the only case where a bfloat16 model is faster than float32 on the CPU."""
    if autotune.isa_cap() in CAPS_WITHOUT_BF16:
        return False
    return _flags_have_bf16(None if flags is None else frozenset(flags))


@functools.lru_cache(maxsize=None)
def _flags_have_bf16(flags: Optional[frozenset] = None) -> bool:
    flags = frozenset(flags) if flags is not None else cpu_flags()
    if any(f in flags for f in NATIVE_BF16_FLAGS):
        return True
    capability = str(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")())
    return "AMX" in capability.upper()


def cpu_has_native_fp16(flags: Optional[Iterable[str]] = None) -> bool:
    """True when the CPU has float16 matrix units (AMX-FP16); without them oneDNN converts
    float16 to float32 and back around every op (no faster than float32, often much slower)."""
    flags = frozenset(flags) if flags is not None else cpu_flags()
    return any(f in flags for f in NATIVE_FP16_FLAGS)


def emulation_note(dtype: torch.dtype, device: DeviceLike) -> Optional[str]:
    """One line saying that ``dtype`` is emulated on ``device`` (a CPU without the units),
    or None where it is native."""
    device = torch.device(device)
    if device.type != "cpu":
        return None
    if dtype == torch.bfloat16 and not cpu_has_native_bf16():
        need = "avx512_bf16/AMX"
    elif dtype == torch.float16 and not cpu_has_native_fp16():
        need = "AMX-FP16"
    else:
        return None
    name = str(dtype).replace("torch.", "")
    return (
        f"{name} is emulated on this CPU (no {need}): expect it to run many times slower than "
        f"float32; use --dtype auto or float32 here"
    )


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    """``None``/"auto" -> the default fast path for the device (see the module docstring);
    otherwise the dtype asked (a ``torch.dtype`` or a name such as "float32", "bf16"). A
    half precision the CPU only emulates is kept (it was asked for) with one
    :class:`EmulatedPrecisionWarning`."""
    device = torch.device(device)
    if dtype in (None, "auto"):
        if device.type == "cuda":
            return torch.float16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    if isinstance(dtype, str):
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPE_NAMES)} or auto")
        dtype = DTYPE_NAMES[dtype]
    note = emulation_note(dtype, device)
    if note:
        warnings.warn(note, EmulatedPrecisionWarning, stacklevel=2)
    return dtype


def cpu_kind(flags: Optional[Iterable[str]] = None) -> str:
    """The CPU kind that decides the fast paths, as the docs' speed page names it:
    "AMX", "AVX-512 bf16", "AVX-512", "AVX2" or "other" (the ISA cap counted)."""
    flags = frozenset(flags) if flags is not None else cpu_flags()
    cap = autotune.isa_cap()
    order = ["other", "AVX2", "AVX-512", "AVX-512 bf16", "AMX"]
    have = (
        "AMX"
        if "amx_bf16" in flags
        else "AVX-512 bf16"
        if "avx512_bf16" in flags
        else "AVX-512"
        if "avx512f" in flags
        else "AVX2"
        if "avx2" in flags
        else "other"
    )
    allowed = {
        "AVX2": "AVX2",
        "AVX2_VNNI": "AVX2",
        "AVX2_VNNI_2": "AVX2",
        "AVX512_CORE": "AVX-512",
        "AVX512_CORE_VNNI": "AVX-512",
        "AVX512_CORE_BF16": "AVX-512 bf16",
    }.get(cap)
    if allowed is not None and order.index(allowed) < order.index(have):
        return allowed
    return have


def make_tuner(mode: Optional[str] = None) -> autotune.Tuner:
    """The tuner of this process: choices cached in the weights cache folder
    (``$SAM_AGE_HOME``/platform cache, ``autotune.json``), mode from ``SAM_AGE_AUTOTUNE``."""
    return autotune.Tuner(cache_dir() / autotune.FILENAME, autotune.mode_from_env() if mode is None else mode)


def _dtype_probe(dtype: torch.dtype) -> Callable[[], torch.Tensor]:
    """The networks' main conv shapes in ``dtype`` (the encoders' 512 ch at 16 px, the
    generator's 256 ch at 128 px), one call each: what bf16 against float32 is timed on."""
    g = torch.Generator().manual_seed(0)
    shapes = [(512, 16), (256, 128)]
    data = [
        (
            torch.randn(1, c, s, s, generator=g).to(dtype).contiguous(memory_format=torch.channels_last),
            (torch.randn(c, c, 3, 3, generator=g) / (3 * c)).to(dtype),
        )
        for c, s in shapes
    ]
    return lambda: [torch.nn.functional.conv2d(x, w, padding=1) for x, w in data]


def choose_dtype(dtype, device: DeviceLike, tuner: Optional[autotune.Tuner] = None) -> Tuple[torch.dtype, str]:
    """:func:`resolve_dtype`, measured where it matters, and why: ``(dtype, reason)``.
    Given a dtype, it is kept ("asked"). "auto" on a CPU with native bf16 and a tuner:
    bfloat16 only if it measures faster than float32 on :func:`_dtype_probe`'s shapes."""
    device = torch.device(device)
    rule = resolve_dtype(dtype, device)
    name = str(rule).replace("torch.", "")
    if dtype not in (None, "auto"):
        return rule, f"asked: {name}"
    if device.type != "cpu":
        return rule, f"{device.type}: {name}"
    kind = cpu_kind()
    if rule != torch.bfloat16:
        return rule, f"{kind}: {name} (no native bf16)" if kind in ("AVX2", "AVX-512", "other") else f"{kind}: {name}"
    if tuner is None:
        return rule, f"{kind}: native bf16"
    probes = {"bfloat16": _dtype_probe(torch.bfloat16), "float32": _dtype_probe(torch.float32)}
    with torch.no_grad():
        form, _ = tuner.pick("dtype:cpu", probes, plain="float32", rule="bfloat16")
    if form == "bfloat16":
        return torch.bfloat16, f"{kind}: native bf16, measured faster"
    return torch.float32, f"{kind}: float32 (bf16 measured no faster)"


def apply_forms(model: SAM, forms: Optional[dict] = None, tuner: Optional[autotune.Tuner] = None) -> dict:
    """Set the inference forms on ``model`` (explicit, per model): ``forms["conv"]`` for the
    encoders' convs ("auto", "packed", "plain"), ``forms["generator"]`` for the generator's
    ``impl``; "auto" is measured by ``tuner`` (when given). Returns the forms set."""
    from .models.stylegan2 import SYNTHESIS_IMPLS
    from .ops.packed import CONV_FORMS

    forms = {"conv": "auto", "generator": "auto", **(forms or {})}
    unknown = set(forms) - {"conv", "generator"}
    if unknown:
        raise ValueError(f"unknown forms {sorted(unknown)}; use conv and generator")
    if forms["conv"] not in CONV_FORMS:
        raise ValueError(f"conv form must be one of {CONV_FORMS}, got {forms['conv']!r}")
    if forms["generator"] not in SYNTHESIS_IMPLS:
        raise ValueError(f"generator form must be one of {SYNTHESIS_IMPLS}, got {forms['generator']!r}")
    for enc in (model.encoder, model.pretrained_encoder):
        if enc is not None:
            enc.conv_form, enc.tuner = forms["conv"], tuner
    model.decoder.impl, model.decoder.tuner = forms["generator"], tuner
    return forms


def age_channel(faces: torch.Tensor, ages) -> torch.Tensor:
    """``[N,3,H,W]`` faces x ages -> ``[N*A, 4, H, W]`` inputs (face-major order), the
    fourth channel filled with ``age / 100``; built on the faces' device. ``ages``: one
    list of ``A`` ages for every face, or one list per face (``[N][A]``: a ramp's age per
    frame)."""
    n, _, h, w = faces.shape
    a = torch.as_tensor(ages, dtype=faces.dtype, device=faces.device) / 100.0
    a = a.reshape(-1, a.shape[-1]).expand(n, a.shape[-1]) if a.dim() else a.reshape(1, 1).expand(n, 1)
    na = a.shape[1]
    rgb = faces[:, None].expand(n, na, 3, h, w)
    age = a.reshape(n, na, 1, 1, 1).expand(n, na, 1, h, w)
    return torch.cat([rgb, age], dim=2).reshape(n * na, 4, h, w)


class CudaGraphs:
    """Captured CUDA graphs of fixed-shape calls, replayed (``torch.cuda.CUDAGraph``).

    On a GPU one face at one age is a few hundred small kernels: launching them costs more
    than running them. A graph launches them all at once. ``run(key, fn, *inputs)``
    captures ``fn`` on first use for these input shapes (after two warm-up calls on a side
    stream, which also fill the folded-weight caches) and replays it afterwards, with the
    inputs copied into the graph's own buffers and the outputs cloned out. Only for
    inference with fixed noise (nothing random, nothing that syncs with the host).

    Every graph of a device draws on one shared memory pool (``_POOLS``): without it each
    captured shape keeps a private pool as large as its peak, and a benchmark that captures
    a dozen shapes of two models ran an H100 out of its 80 GB. Sharing is safe here because
    graphs replay one at a time on one stream and their outputs are cloned out at once, so
    no graph's memory has to outlive the next replay."""

    _POOLS: dict = {}

    def __init__(self):
        self._graphs = {}

    @classmethod
    def _pool(cls, device: torch.device):
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index not in cls._POOLS:
            cls._POOLS[index] = torch.cuda.graph_pool_handle()
        return cls._POOLS[index]

    def run(self, key, fn, *inputs: torch.Tensor):
        entry = self._graphs.get(key)
        if entry is None:
            static = [x.clone() for x in inputs]
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    fn(*static)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool(static[0].device)):
                out = fn(*static)
            entry = self._graphs[key] = (graph, static, out)
        graph, static, out = entry
        for buf, x in zip(static, inputs):
            buf.copy_(x)
        graph.replay()
        return tuple(o.clone() for o in out) if isinstance(out, tuple) else out.clone()


def _graphs_of(model: SAM) -> CudaGraphs:
    graphs = model.__dict__.get("_cuda_graphs")
    if graphs is None:
        graphs = model.__dict__["_cuda_graphs"] = CudaGraphs()
    return graphs


def cpu_batch_cap(threads: Optional[int] = None) -> int:
    """The most images per forward pass on the CPU: one per two threads, at most
    :data:`CPU_MAX_BATCH`. The CPU generator runs image by image anyway, and on a few cores
    a batch of encoder inputs buys nothing (2-core Zen 4, float32 and bf16: 4 images one by
    one as fast as one batch of 4, within 2%) while every image in a batch adds ~70 MB of
    float32 activations to the peak RSS; many cores need a batch to be kept busy."""
    threads = torch.get_num_threads() if threads is None else threads
    return max(1, min(CPU_MAX_BATCH, int(threads) // 2))


def batch_size_for(device: DeviceLike, batch_size: Optional[int] = None) -> int:
    """The package's one batch policy: images per forward pass on ``device``. ``None``
    (``--batch-size`` not given): :data:`DEFAULT_BATCH` for the device type; on the CPU
    never more than :func:`cpu_batch_cap`."""
    device = torch.device(device if device is not None else "cpu")
    if batch_size is None:
        batch_size = DEFAULT_BATCH[device.type] if device.type in DEFAULT_BATCH else DEFAULT_BATCH["other"]
    if device.type == "cpu":
        batch_size = min(batch_size, cpu_batch_cap())
    return max(1, int(batch_size))


@torch.no_grad()
def encode_faces(
    model: SAM, faces: torch.Tensor, batch_size: Optional[int] = None, cuda_graphs: bool = False
) -> Optional[torch.Tensor]:
    """The age-independent part, once per face: ``encode_w_plus`` ``[N, n_styles, 512]``
    in the model's dtype (None for a SAM that starts from ``latent_avg``). Keep it to age
    the same face again (:func:`age_encoded`: one age encoder + one generator per age)."""
    if not model.start_from_encoded_w_plus:
        return None
    param = next(model.parameters())
    faces = faces.to(device=param.device, dtype=param.dtype)
    bs = batch_size_for(param.device, batch_size)
    graphs = _graphs_of(model) if cuda_graphs and param.device.type == "cuda" else None
    out = []
    for i in range(0, faces.shape[0], bs):
        chunk = faces[i : i + bs]
        if graphs is not None:
            out.append(graphs.run(("encode", tuple(chunk.shape), chunk.dtype), model.encode_w_plus, chunk))
        else:
            out.append(model.encode_w_plus(chunk))
    return torch.cat(out)


@torch.no_grad()
def age_encoded(
    model: SAM,
    faces: torch.Tensor,
    base: Optional[torch.Tensor],
    ages: Sequence[float],
    batch_size: Optional[int] = None,
    resize: bool = True,
    randomize_noise: bool = False,
    cuda_graphs: bool = False,
    progress: Optional[Callable[[int], None]] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Age faces whose :func:`encode_faces` result ``base`` is known: per image one age
    encoder and one generator call. Returns what :func:`age_faces` returns;
    ``progress(k)`` after each forward pass (k face-ages done: a progress bar's hook).
    The same ages for every face: :func:`age_encoded_per_face` with ``ages`` repeated."""
    per_face = [list(ages)] * faces.shape[0]
    return age_encoded_per_face(
        model, faces, base, per_face, batch_size, resize, randomize_noise, cuda_graphs, progress
    )


@torch.no_grad()
def age_encoded_per_face(
    model: SAM,
    faces: torch.Tensor,
    base: Optional[torch.Tensor],
    ages: Sequence[Sequence[float]],
    batch_size: Optional[int] = None,
    resize: bool = True,
    randomize_noise: bool = False,
    cuda_graphs: bool = False,
    progress: Optional[Callable[[int], None]] = None,
    generate: bool = True,
) -> Tuple[Optional[torch.Tensor], torch.Tensor]:
    """:func:`age_encoded` with ages of their own per face (``ages[i]``: face i's ``A``
    ages, the same count for every face: a video's ramp gives each frame its own age).
    Batches of ``batch_size`` face-ages (per device, capped on the CPU: :func:`batch_size_for`).
    ``generate=False``: the codes only (``(None, codes)``; a video smooths its codes over
    time before generating)."""
    param = next(model.parameters())
    faces = faces.to(device=param.device, dtype=param.dtype)
    bs = batch_size_for(param.device, batch_size)
    n = faces.shape[0]
    if len(ages) != n or len({len(a) for a in ages}) > 1:
        raise ValueError(f"ages: one list of the same length per face, got {[len(a) for a in ages]} for {n} faces")
    a = len(ages[0]) if n else 0
    if base is not None:
        base = base.to(device=param.device, dtype=param.dtype).repeat_interleave(a, dim=0)
    graphs = _graphs_of(model) if cuda_graphs and param.device.type == "cuda" and not randomize_noise else None

    def step(x, b=None):
        c = model.age_codes(x, b)
        if not generate:
            return c
        return model.generate(c, resize=resize, randomize_noise=randomize_noise), c

    inputs = age_channel(faces, [list(x) for x in ages])
    images: List[torch.Tensor] = []
    codes: List[torch.Tensor] = []
    for start in range(0, n * a, bs):
        stop = min(start + bs, n * a)
        args = (inputs[start:stop],) if base is None else (inputs[start:stop], base[start:stop])
        key = ("age" if generate else "codes", tuple(args[0].shape), args[0].dtype, resize, len(args))
        out = graphs.run(key, step, *args) if graphs is not None else step(*args)
        img, c = out if generate else (None, out)
        if img is not None:
            images.append(img.float())
        codes.append(c.float())
        if progress is not None:
            progress(stop - start)
    cod = torch.cat(codes)
    cod = cod.reshape(n, a, *cod.shape[1:])
    if not generate:
        return None, cod
    img = torch.cat(images)
    return img.reshape(n, a, *img.shape[1:]), cod


def age_faces(
    model: SAM,
    faces: torch.Tensor,
    ages: Sequence[float],
    batch_size: Optional[int] = None,
    resize: bool = True,
    randomize_noise: bool = False,
    cuda_graphs: bool = False,
    progress: Optional[Callable[[int], None]] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Age every face to every age (``progress(k)`` after each forward pass: k face-ages done).

    ``faces``: ``[N, 3, 256, 256]`` in [-1, 1] (aligned). Returns ``(images, codes)`` with
    ``images [N, A, 3, S, S]`` (S = 256 with ``resize``, else the generator size) and
    ``codes [N, A, n_styles, 512]``, both float32 whatever the model's dtype. The model
    runs in its own dtype and device (``load_sam(path, device, dtype)``). ``batch_size``
    images go through the networks together (default per device: :data:`DEFAULT_BATCH`);
    ``cuda_graphs`` replays captured CUDA graphs per batch shape (CUDA, fixed noise only;
    ignored elsewhere), which removes the kernel-launch cost that bounds small batches."""
    base = encode_faces(model, faces, batch_size, cuda_graphs=cuda_graphs)
    return age_encoded(model, faces, base, ages, batch_size, resize, randomize_noise, cuda_graphs, progress)
