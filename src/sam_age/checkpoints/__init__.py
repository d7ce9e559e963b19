"""Files <-> modules: safe readers, foreign key maps, and the loaders."""

from .formats import read_any, save_safetensors, save_torch
from .load import (
    build_sam_for_training,
    load_alexnet,
    load_curricular_face,
    load_dex,
    load_ir_se50,
    load_psp_encoder,
    load_sam,
    load_stylegan2,
    lpips_lin_state,
    save_sam,
)

__all__ = [
    "build_sam_for_training",
    "load_alexnet",
    "load_curricular_face",
    "load_dex",
    "load_ir_se50",
    "load_psp_encoder",
    "load_sam",
    "load_stylegan2",
    "lpips_lin_state",
    "read_any",
    "save_safetensors",
    "save_sam",
    "save_torch",
]
