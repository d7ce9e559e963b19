"""Checkpoint files -> modules, and back. Every loader takes a path (or an already-read
object) and returns a module in eval mode on ``device``; every failure is a one-line
:class:`~sam_age.errors.CheckpointError`."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from ..errors import CheckpointError
from ..memory import file_mappings, release_mapped, trim_heap
from ..models.alexnet import AlexNetFeatures
from ..models.curricularface import CurricularFaceIR101
from ..models.dex import DexVGG
from ..models.encoder import GradualStyleEncoder
from ..models.irse import IRSEBackbone
from ..models.sam import SAM
from ..models.stylegan2 import Generator
from .formats import read_any, save_safetensors, save_torch, to_tensor
from .keymaps import dex_to_torch, flatten, lpips_lin_to_torch, paddle_to_torch, strip_module_prefix, strip_prefix

Source = Union[str, Path, Mapping[str, Any]]
SAM_PARTS = ("encoder", "decoder", "pretrained_encoder")
OPTIONAL_KEYS = re.compile(r"(^|\.)num_batches_tracked$")


# what weights_identity reads of a file: its first and last bytes (a torch zip's last bytes
# are its central directory, which holds a CRC-32 of every tensor: any change shows)
IDENTITY_SPAN = 1 << 20


def weights_identity(weights: Union[str, Path, nn.Module]) -> str:
    """Which weights, as one short text: the one answer to "same model?" for a dataset
    run's manifest (:class:`sam_age.dataset.outputs.Request`) and a video's resume cache.

    A file: ``"NAME (SIZE bytes, blake2b HEX)"``, the digest over its first and last
    :data:`IDENTITY_SPAN` bytes (cheap on a 1.2 GB checkpoint; a torch file's tail holds a
    CRC-32 of every tensor). Where it was found and when it was written do not count: a
    copied or re-downloaded file is the same weights. A model in memory (no file): ``"in
    memory (blake2b HEX)"`` over its parameters' names, shapes and first values.
    :func:`same_weights` also accepts the ``"NAME (SIZE bytes)"`` text older manifests hold."""
    h = hashlib.blake2b(digest_size=8)
    if isinstance(weights, nn.Module):
        for name, t in weights.state_dict().items():
            h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
            if t.numel():
                h.update(t.detach().reshape(-1)[:256].float().cpu().numpy().tobytes())
        return f"in memory (blake2b {h.hexdigest()})"
    path = Path(weights)
    size = path.stat().st_size
    with open(path, "rb") as f:
        h.update(f.read(IDENTITY_SPAN))
        if size > IDENTITY_SPAN:
            f.seek(max(IDENTITY_SPAN, size - IDENTITY_SPAN))
            h.update(f.read())
    return f"{path.name} ({size} bytes, blake2b {h.hexdigest()})"


def same_weights(recorded, identity: str) -> bool:
    """``recorded`` (a manifest's text) names the weights :func:`weights_identity` calls
    ``identity``: equal, or the ``"NAME (SIZE bytes)"`` an older sam-age wrote for them."""
    if recorded == identity:
        return True
    short = re.sub(r", blake2b [0-9a-f]+\)$", ")", identity)
    return isinstance(recorded, str) and short != identity and recorded == short


def _read(source: Source) -> Tuple[str, Any, Optional[Path]]:
    if isinstance(source, Mapping):
        return "object", source, None
    path = Path(source).expanduser()
    fmt, obj = read_any(path)
    return fmt, obj, path


def _load_state(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    path,
    what: str,
    strict: bool = True,
    optional: Optional[re.Pattern] = OPTIONAL_KEYS,
) -> None:
    """``load_state_dict`` with every mismatch reported as one CheckpointError line."""
    own = module.state_dict()
    missing = [k for k in own if k not in state and not (optional and optional.search(k))]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in state
        if k in own and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if wrong:
        raise CheckpointError(f"{what}: {len(wrong)} tensors have the wrong shape (first: {wrong[0]})", path)
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {unexpected[0]})")
        raise CheckpointError(f"{what}: keys do not match, {', '.join(parts)}", path)
    with torch.no_grad():
        for k, v in state.items():
            if k in own:
                own[k].copy_(v.to(own[k].dtype))


def _describe(obj: Any) -> str:
    """A short guess at what kind of file this is, for error messages."""
    if not isinstance(obj, Mapping):
        return f"a {type(obj).__name__}"
    keys = set(obj)
    if "g_ema" in keys:
        return "a StyleGAN2 generator checkpoint ('g_ema')"
    if "state_dict" in keys and isinstance(obj["state_dict"], Mapping):
        inner = set(k.split(".")[0] for k in obj["state_dict"])
        if inner <= {"encoder", "decoder"} or "pretrained_encoder" not in inner:
            if any(k.startswith("conv1_1") for k in obj["state_dict"]):
                return "a DEX age classifier"
            return "a pSp encoder checkpoint" if "encoder" in inner else "an unknown state dict"
    if any(k.startswith("input_layer") for k in keys) and any(k.startswith("output_layer") for k in keys):
        return "an IR-SE-50 face-recognition backbone"
    if any(k.startswith("features.") for k in keys):
        return "an AlexNet file"
    return "an unknown file"


def _sam_state(fmt: str, obj: Any, path) -> Tuple[Dict[str, torch.Tensor], dict, Optional[torch.Tensor]]:
    """(flat official state dict, opts, latent_avg) from any supported SAM file."""
    if fmt == "safetensors":
        tensors, meta = obj
        if meta.get("kind") not in (None, "sam"):
            raise CheckpointError(f"not a SAM checkpoint (safetensors kind {meta.get('kind')!r})", path)
        opts = json.loads(meta.get("opts", "{}"))
        latent_avg = tensors.pop("latent_avg", None)
        return dict(tensors), opts, latent_avg
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"not a SAM checkpoint (the file holds {_describe(obj)})", path)
    opts = obj.get("opts") or {}
    if not isinstance(opts, Mapping):
        opts = {}
    latent_avg = obj.get("latent_avg")
    state = obj.get("state_dict", obj if any(p in obj for p in SAM_PARTS) else None)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"not a SAM checkpoint (the file holds {_describe(obj)})", path)
    if latent_avg is None and "latent_avg" in state:
        latent_avg = state["latent_avg"]
    state = flatten(state)
    state.pop("latent_avg", None)
    state = strip_module_prefix(state)
    if not any(k.startswith("encoder.") for k in state) or not any(k.startswith("decoder.") for k in state):
        raise CheckpointError(f"not a SAM checkpoint (the file holds {_describe(obj)})", path)
    if latent_avg is not None:
        latent_avg = to_tensor(latent_avg, "latent_avg")
    return state, dict(opts), latent_avg


def _infer_sam_config(state: Mapping[str, Any], opts: Mapping[str, Any], path) -> dict:
    rgb_layers = {int(k.split(".")[2]) for k in state if k.startswith("decoder.to_rgbs.")}
    if not rgb_layers:
        raise CheckpointError("SAM checkpoint has no generator layers (decoder.to_rgbs.*)", path)
    output_size = 2 ** (max(rgb_layers) + 3)
    w = state.get("encoder.input_layer.0.weight")
    if w is None:
        raise CheckpointError("SAM checkpoint has no encoder input layer", path)
    shape = tuple(to_tensor(w).shape)
    input_nc = shape[1] if len(shape) == 4 else int(opts.get("input_nc", 4))
    has_pre = any(k.startswith("pretrained_encoder.") for k in state)
    from_latent_avg = bool(opts.get("start_from_latent_avg", False)) and not has_pre
    return {
        "output_size": output_size,
        "input_nc": input_nc,
        "start_from_encoded_w_plus": has_pre,
        "start_from_latent_avg": from_latent_avg,
    }


def _sam_latent_avg(model: SAM, latent_avg: torch.Tensor, path) -> torch.Tensor:
    """A checkpoint's ``latent_avg`` as ``model``'s ``[n_styles, 512]`` float32 buffer: the
    official files store one row (repeated here to every style) or all of them."""
    latent = latent_avg.float().reshape(-1, model.latent_avg.shape[-1])
    if latent.shape[0] == 1:
        latent = latent.repeat(model.n_styles, 1)
    if tuple(latent.shape) != tuple(model.latent_avg.shape):
        raise CheckpointError(
            f"latent_avg has shape {tuple(latent.shape)}, expected {tuple(model.latent_avg.shape)}", path
        )
    return latent


def load_sam(source: Source, device: Union[str, torch.device] = "cpu", dtype: Optional[torch.dtype] = None) -> SAM:
    """Load a SAM checkpoint: official ``.pt``, Paddle ``.pdparams`` or our ``.safetensors``.

    The generator size, the encoder's input channels and the start mode come from the
    file. Returns the model in **eval mode** on ``device`` (parameters keep
    ``requires_grad``; training code decides what to freeze).

    The model is built on the meta device and the file's tensors are *assigned* to it
    (``load_state_dict(assign=True)``): a ``.pt`` zip is memory-mapped by ``torch.load``,
    so float32 weights on the CPU are never copied, and a ``dtype`` conversion converts
    one tensor at a time (never two full copies of the model), handing the file pages it
    read back to the kernel as it goes (``sam_age.memory``)."""
    fmt, obj, path = _read(source)
    state, opts, latent_avg = _sam_state(fmt, obj, path)
    del obj
    cfg = _infer_sam_config(state, opts, path)
    if latent_avg is None:
        raise CheckpointError("SAM checkpoint has no latent_avg", path)
    if fmt == "pdparams":
        # Paddle files may lack the generator's noise buffers: start from a real module.
        model = SAM(**cfg)
        state = paddle_to_torch(state, model.state_dict())
        _load_state(model, state, path, "SAM", optional=re.compile(r"(^|\.)num_batches_tracked$|^decoder\.noises\."))
    else:
        with torch.device("meta"):
            model = SAM(**cfg)
        state = {k: to_tensor(v, k) for k, v in state.items()}
        _load_state(model, state, path, "SAM")  # checks names and shapes (copies to meta: no-op)
        own = model.state_dict()
        ranges = file_mappings()
        for k in list(state):
            v = state.pop(k)
            if k not in own:
                continue
            want = dtype if dtype is not None and v.is_floating_point() else own[k].dtype
            state[k] = v.to(device=device, dtype=want)
            if state[k].data_ptr() != v.data_ptr():
                # converted (or moved): the file pages just read are not needed again
                release_mapped([v], ranges)
        for k, v in own.items():  # optional keys the file lacked (num_batches_tracked)
            if k not in state:
                state[k] = torch.zeros(v.shape, dtype=v.dtype, device=device)
        model.load_state_dict(state, assign=True)
        model.face_pool = model.face_pool.to(device)
        model.latent_avg = torch.zeros(model.latent_avg.shape, device=device)
    del state  # the file's arrays (pdparams: copied into the model) go before the heap is trimmed
    model.latent_avg.copy_(_sam_latent_avg(model, latent_avg, path))
    model.eval()
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    trim_heap()  # conversion temporaries: give the freed heap back
    return model


def save_sam(model: SAM, path, opts: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ``model`` in the official layout (``.pt``: ``{'state_dict', 'opts',
    'latent_avg'}``) or as ``.safetensors`` (flat tensors + ``latent_avg``, opts in the
    metadata). The write is atomic."""
    path = Path(path)
    full_opts = dict(model.opts)
    full_opts.update(opts or {})
    state = {
        k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu()
        for k, v in model.state_dict().items()
    }
    latent_avg = model.latent_avg.detach().float().cpu().clone()
    if path.suffix == ".safetensors":
        state["latent_avg"] = latent_avg
        return save_safetensors(state, path, {"format": "sam-age", "kind": "sam", "opts": full_opts})
    return save_torch({"state_dict": state, "opts": full_opts, "latent_avg": latent_avg}, path)


# -- the other official files ------------------------------------------------------------


def _plain_state(source: Source, what: str, inner: Optional[str] = None):
    fmt, obj, path = _read(source)
    if fmt == "safetensors":
        obj = obj[0]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"not {what} (the file holds {_describe(obj)})", path)
    if inner is not None:
        if inner not in obj or not isinstance(obj[inner], Mapping):
            raise CheckpointError(f"not {what}: no '{inner}' entry (the file holds {_describe(obj)})", path)
        return fmt, obj, flatten(obj[inner]), path
    return fmt, obj, flatten(obj), path


def load_stylegan2(source: Source, device="cpu") -> Tuple[Generator, Optional[torch.Tensor]]:
    """A rosinality StyleGAN2 checkpoint (``{'g_ema': ..., 'latent_avg': [512]}``) ->
    ``(generator, latent_avg or None)``. The size comes from the file."""
    fmt, obj, state, path = _plain_state(source, "a StyleGAN2 checkpoint", "g_ema")
    state = {k: to_tensor(v, k) for k, v in strip_module_prefix(state).items()}
    rgb = {int(k.split(".")[1]) for k in state if k.startswith("to_rgbs.")}
    if not rgb:
        raise CheckpointError("not a StyleGAN2 checkpoint (g_ema has no to_rgbs)", path)
    gen = Generator(size=2 ** (max(rgb) + 3))
    if fmt == "pdparams":
        state = paddle_to_torch(state, gen.state_dict())
    _load_state(gen, state, path, "StyleGAN2 generator")
    latent_avg = obj.get("latent_avg")
    return gen.eval().to(device), (None if latent_avg is None else to_tensor(latent_avg).float())


def load_psp_encoder(source: Source, device="cpu") -> Tuple[GradualStyleEncoder, Optional[torch.Tensor]]:
    """A pSp checkpoint -> ``(its GradualStyleEncoder, latent_avg or None)``."""
    fmt, obj, path = _read(source)
    if fmt == "safetensors":
        obj = {"state_dict": obj[0]}
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict", obj), Mapping):
        raise CheckpointError(f"not a pSp checkpoint (the file holds {_describe(obj)})", path)
    flat = flatten(obj.get("state_dict", obj))
    state = strip_prefix(strip_module_prefix(flat), "encoder.")
    if "input_layer.0.weight" not in state:
        raise CheckpointError(f"not a pSp checkpoint (no encoder.* weights; the file holds {_describe(obj)})", path)
    styles = {int(k.split(".")[1]) for k in state if k.startswith("styles.")}
    input_nc = tuple(to_tensor(state["input_layer.0.weight"]).shape)[1]
    enc = GradualStyleEncoder(input_nc=input_nc, n_styles=max(styles) + 1)
    state = (
        paddle_to_torch(state, enc.state_dict())
        if fmt == "pdparams"
        else {k: to_tensor(v, k) for k, v in state.items()}
    )
    _load_state(enc, state, path, "pSp encoder")
    latent_avg = obj.get("latent_avg")
    return enc.eval().to(device), (None if latent_avg is None else to_tensor(latent_avg).float())


def ir_se50_state(source: Source) -> Tuple[Dict[str, torch.Tensor], Optional[Path]]:
    fmt, obj, state, path = _plain_state(source, "an IR-SE-50 backbone")
    state = strip_module_prefix(state)
    if "input_layer.0.weight" not in state or not any(k.startswith("body.") for k in state):
        raise CheckpointError(f"not an IR-SE-50 backbone (the file holds {_describe(obj)})", path)
    if fmt == "pdparams":
        return paddle_to_torch(state, IRSEBackbone().state_dict()), path
    return {k: to_tensor(v, k) for k, v in state.items()}, path


def load_ir_se50(source: Source, device="cpu") -> IRSEBackbone:
    state, path = ir_se50_state(source)
    net = IRSEBackbone()
    _load_state(net, state, path, "IR-SE-50")
    return net.eval().to(device)


def load_curricular_face(source: Source, device="cpu") -> CurricularFaceIR101:
    """CurricularFace's IR-101 (``CurricularFace_Backbone.pth``: a flat state dict in the
    layout of HuangYG123/CurricularFace ``backbone/model_irse.py``, ``IR_101([112, 112])``;
    a ``module.`` prefix from DataParallel is dropped). The module maps ``[N, 3, 112, 112]``
    in [-1, 1] to that forward's first output (the embedding, not normalised)."""
    fmt, obj, state, path = _plain_state(source, "a CurricularFace IR-101 backbone")
    state = strip_module_prefix(state)
    if "input_layer.0.weight" not in state or "body.48.res_layer.3.weight" not in state:
        raise CheckpointError(f"not a CurricularFace IR-101 backbone (the file holds {_describe(obj)})", path)
    if any(".res_layer.5." in k for k in state):
        raise CheckpointError(
            "an IR-SE network (its units have squeeze-excite), not CurricularFace's "
            "IR-101: pass it to --ir_se50_weights",
            path,
        )
    net = CurricularFaceIR101()
    _load_state(net, {k: to_tensor(v, k) for k, v in state.items()}, path, "CurricularFace IR-101")
    return net.eval().to(device)


def load_dex(source: Source, device="cpu") -> DexVGG:
    """DEX VGG age classifier (``{'state_dict': ...}`` with ``fc8-101`` names)."""
    fmt, obj, path = _read(source)
    if fmt == "safetensors":
        obj = obj[0]
    state = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(state, Mapping) or not any(k.startswith("conv1_1") for k in state):
        raise CheckpointError(f"not a DEX age classifier (the file holds {_describe(obj)})", path)
    net = DexVGG()
    _load_state(net, dex_to_torch(strip_module_prefix(state)), path, "DEX age classifier")
    return net.eval().to(device)


def load_alexnet(source: Source, device="cpu") -> AlexNetFeatures:
    """torchvision AlexNet weights; only ``features.*`` are used (``classifier.*`` ignored)."""
    fmt, obj, state, path = _plain_state(source, "an AlexNet file")
    feats = {k: to_tensor(v, k) for k, v in state.items() if k.startswith("features.")}
    if not feats:
        raise CheckpointError(f"not an AlexNet file (the file holds {_describe(obj)})", path)
    net = AlexNetFeatures()
    _load_state(net, feats, path, "AlexNet")
    return net.eval().to(device)


def lpips_lin_state(source: Source) -> Dict[str, torch.Tensor]:
    fmt, obj, state, path = _plain_state(source, "LPIPS lin weights")
    try:
        out = lpips_lin_to_torch(state)
    except (ValueError, IndexError, TypeError):
        raise CheckpointError("not LPIPS lin weights (expected keys lin{i}.model.1.weight)", path) from None
    if len(out) != 5:
        raise CheckpointError(f"not LPIPS alex lin weights (expected 5 layers, found {len(out)})", path)
    return out


def build_sam_for_training(
    stylegan_weights: Source,
    ir_se50_weights: Source,
    pretrained_psp_path: Optional[Source] = None,
    input_nc: int = 4,
    start_from_encoded_w_plus: bool = True,
    start_from_latent_avg: bool = False,
    output_size: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device="cpu",
) -> SAM:
    """A fresh SAM as the official training starts it: encoder body from IR-SE-50 (its input
    conv gets the extra age channel, drawn at random), generator and latent_avg from the
    StyleGAN2 file, pretrained encoder from the pSp file. ``output_size`` defaults to the
    generator's."""
    gen, g_latent_avg = load_stylegan2(stylegan_weights)
    size = output_size or gen.size
    if size != gen.size:
        raise CheckpointError(
            f"generator is {gen.size} px but output_size={size}",
            stylegan_weights if not isinstance(stylegan_weights, Mapping) else None,
        )
    if start_from_encoded_w_plus and pretrained_psp_path is None:
        raise CheckpointError("start_from_encoded_w_plus needs --pretrained_psp_path")
    model = SAM(
        output_size=size,
        input_nc=input_nc,
        start_from_encoded_w_plus=start_from_encoded_w_plus,
        start_from_latent_avg=start_from_latent_avg,
    )
    ir_state, ir_path = ir_se50_state(ir_se50_weights)
    w = ir_state["input_layer.0.weight"]
    if input_nc != w.shape[1]:
        altered = torch.randn(w.shape[0], input_nc, w.shape[2], w.shape[3], generator=generator)
        altered[:, : w.shape[1]] = w
        ir_state = dict(ir_state, **{"input_layer.0.weight": altered})
    body = {k: v for k, v in ir_state.items() if k.startswith(("input_layer.", "body."))}
    _load_state(model.encoder, body, ir_path, "IR-SE-50 -> encoder", strict=False)
    model.decoder.load_state_dict(gen.state_dict())
    if g_latent_avg is None:
        raise CheckpointError(
            "StyleGAN2 checkpoint has no latent_avg",
            None if isinstance(stylegan_weights, Mapping) else stylegan_weights,
        )
    model.latent_avg.copy_(g_latent_avg.reshape(1, -1).repeat(model.n_styles, 1))
    if start_from_encoded_w_plus:
        enc, _ = load_psp_encoder(pretrained_psp_path)
        if enc.style_count != model.n_styles or enc.input_nc != 3:
            raise CheckpointError(
                f"pSp encoder writes {enc.style_count} styles from {enc.input_nc} channels; "
                f"SAM at {size} px needs {model.n_styles} from 3",
                None if isinstance(pretrained_psp_path, Mapping) else pretrained_psp_path,
            )
        model.pretrained_encoder.load_state_dict(enc.state_dict())
    model.decoder.requires_grad_(False)
    return model.to(device)
