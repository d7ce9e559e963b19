"""Shared fixtures: the reference folder and deterministic stand-in checkpoints.

Stand-ins are rebuilt with ``../shared/reference/make_checkpoint.py`` (never downloaded)
and cached per test session under ``SAM_AGE_TEST_CACHE`` (default: a temp folder), so the
2.2 GB SAM stand-in is written once per run.
"""
from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path

import pytest
import torch

# No test may reach the real Hugging Face Hub. Its client reads HF_ENDPOINT once, at import,
# for its own side requests: point it at a closed loopback port before anything imports it
# (the weights tests start their own loopback Hub and pass it to each download).
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from .helpers.paths import CASES, REFERENCE, REPO, SHARED  # noqa: E402,F401

TEST_DATA = Path(__file__).parent / "data"


def _make_checkpoint_module():
    spec = importlib.util.spec_from_file_location("make_checkpoint", REFERENCE / "make_checkpoint.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cache_dir() -> Path:
    d = Path(os.environ.get("SAM_AGE_TEST_CACHE") or Path(tempfile.gettempdir()) / "sam-age-test-cache")
    d.mkdir(parents=True, exist_ok=True)
    return d


def build_standin(name: str, salt: str = "") -> Path:
    """``name`` is a manifest stem (``sam_ffhq_aging``, ``stylegan2-256``, ...) in the
    reference folder, or in tests/data for the files the seed has no manifest of."""
    manifest = REFERENCE / f"{name}.manifest.json"
    if not manifest.exists() and (TEST_DATA / f"{name}.manifest.json").exists():
        manifest = TEST_DATA / f"{name}.manifest.json"
    stamp = int(manifest.stat().st_mtime)
    out = _cache_dir() / f"{name}{'-' + salt if salt else ''}-{stamp}.pt"
    if not out.exists():
        mod = _make_checkpoint_module()
        obj = mod.build(json.loads(manifest.read_text()), salt)
        tmp = out.with_suffix(".tmp")
        torch.save(obj, tmp)
        os.replace(tmp, out)
    return out


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.exists():
        pytest.skip(f"reference folder not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def standin(reference_dir):
    """``standin('stylegan2-256')`` -> path of the stand-in checkpoint."""
    return build_standin


@pytest.fixture(scope="session")
def sam_standin_path(standin) -> Path:
    """The full 1024 px SAM stand-in, in the official layout (2.2 GB, built once)."""
    return standin("sam_ffhq_aging")


@pytest.fixture(scope="session")
def small_sam_path(standin) -> Path:
    """A 256 px SAM (14 styles) built the way training starts one, from the 256 px
    StyleGAN2, IR-SE-50 and pSp stand-ins; cheap enough for pipeline and CLI tests."""
    out = _cache_dir() / "small_sam_256.pt"
    if not out.exists():
        from sam_age import build_sam_for_training, save_sam
        g = torch.Generator().manual_seed(0)
        model = build_sam_for_training(standin("stylegan2-256"), standin("model_ir_se50"),
                                       standin("psp_encode-256"), generator=g)
        save_sam(model, out)
    return out


@pytest.fixture(scope="session")
def curricular_face_path(standin) -> Path:
    """CurricularFace IR-101 stand-in (tests/data/curricular_face.manifest.json, 260 MB)."""
    return standin("curricular_face")
