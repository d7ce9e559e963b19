"""Foreign key names and layouts -> ours (which are the official PyTorch ones)."""

from __future__ import annotations

from typing import Any, Dict, Mapping

import torch

from .formats import to_tensor

PADDLE_SUFFIXES = {"_mean": "running_mean", "_variance": "running_var", "_weight": "weight"}
PADDLE_META_KEYS = {"StructuredToParameterName@@"}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Nested dicts -> ``{'a.b.c': leaf}``; Paddle's ``(name, array)`` tuples are leaves."""
    out: Dict[str, Any] = {}
    for k, v in tree.items():
        if k in PADDLE_META_KEYS:
            continue
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def strip_prefix(state: Mapping[str, Any], prefix: str) -> Dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def strip_module_prefix(state: Mapping[str, Any]) -> Dict[str, Any]:
    """Drop the ``module.`` that DataParallel/DDP put in front of every key."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def paddle_to_torch(flat: Mapping[str, Any], reference: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename Paddle parameter names and un-transpose linear weights.

    ``reference`` is the target module's state dict (names and shapes). Paddle stores
    linear weights as ``[in, out]``; a file may have been written either way, so the
    convention is read off the non-square 2-D weights and then applied to all of them
    (square ones cannot tell by their shape)."""
    renamed: Dict[str, torch.Tensor] = {}
    for key, value in flat.items():
        head, _, last = key.rpartition(".")
        for suffix, ours in PADDLE_SUFFIXES.items():
            if last == suffix:
                last = ours
        new = f"{head}.{last}" if head else last
        renamed[new] = (
            to_tensor(value, key).float() if to_tensor(value, key).is_floating_point() else to_tensor(value, key)
        )
    transposed = None
    for key, t in renamed.items():
        ref = reference.get(key)
        if ref is None or t.ndim != 2 or ref.ndim != 2 or ref.shape[0] == ref.shape[1]:
            continue
        if tuple(t.shape) == tuple(ref.shape[::-1]):
            transposed = True
            break
        if tuple(t.shape) == tuple(ref.shape):
            transposed = False
            break
    if transposed is None:
        transposed = True  # Paddle's documented layout
    if transposed:
        for key, t in renamed.items():
            ref = reference.get(key)
            if ref is not None and t.ndim == 2 and ref.ndim == 2 and key.endswith("weight"):
                renamed[key] = t.t().contiguous()
    return renamed


def dex_to_torch(state: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """DEX files spell ``fc8-101``; Python attributes need ``fc8_101``."""
    return {k.replace("-", "_"): to_tensor(v, k) for k, v in state.items()}


def lpips_lin_to_torch(state: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """``lin{i}.model.1.weight`` (the lpips package) or ``{i}.1.weight`` -> ``lins.{i}.weight``."""
    out = {}
    for k, v in state.items():
        parts = k.replace("lin", "", 1).split(".") if k.startswith("lin") else k.split(".")
        out[f"lins.{int(parts[0])}.weight"] = to_tensor(v, k)
    return out
