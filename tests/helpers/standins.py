"""The deterministic stand-in checkpoints, built in one place for the tests and the benchmarks.

Stand-ins are rebuilt with ``../shared/reference/make_checkpoint.py`` (random weights from the
reference manifests: never downloaded, timings real, images meaningless) and cached under
``$SAM_AGE_TEST_CACHE`` (default: ``<tmp>/sam-age-test-cache``), so the 2.2 GB SAM stand-in is
written once per machine. A file is named after its manifest's mtime: a changed manifest makes a
new file. Each is written beside its place and renamed in, so a killed build leaves no half file.

No pytest here: ``tests/conftest.py`` wraps these in fixtures, and ``benchmarks/*.py`` import
this module directly (``from tests.helpers.standins import build_standin, small_sam``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path

from .paths import REFERENCE

TEST_DATA = Path(__file__).resolve().parents[1] / "data"  # manifests of files the seed has none of


def cache_dir() -> Path:
    d = Path(os.environ.get("SAM_AGE_TEST_CACHE") or Path(tempfile.gettempdir()) / "sam-age-test-cache")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _make_checkpoint_module():
    spec = importlib.util.spec_from_file_location("make_checkpoint", REFERENCE / "make_checkpoint.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_standin(name: str, salt: str = "") -> Path:
    """``name`` is a manifest stem (``sam_ffhq_aging``, ``stylegan2-256``, ...) in the
    reference folder, or in tests/data for the files the seed has no manifest of."""
    import torch

    manifest = REFERENCE / f"{name}.manifest.json"
    if not manifest.exists() and (TEST_DATA / f"{name}.manifest.json").exists():
        manifest = TEST_DATA / f"{name}.manifest.json"
    stamp = int(manifest.stat().st_mtime)
    out = cache_dir() / f"{name}{'-' + salt if salt else ''}-{stamp}.pt"
    if not out.exists():
        obj = _make_checkpoint_module().build(json.loads(manifest.read_text()), salt)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        torch.save(obj, tmp)
        os.replace(tmp, out)
    return out


def small_sam() -> Path:
    """A 256 px SAM (14 styles) built the way training starts one, from the 256 px StyleGAN2,
    IR-SE-50 and pSp stand-ins; cheap enough for pipeline, CLI and quick benchmark runs."""
    out = cache_dir() / "small_sam_256.pt"
    if not out.exists():
        import torch

        from sam_age import build_sam_for_training, save_sam

        model = build_sam_for_training(
            build_standin("stylegan2-256"),
            build_standin("model_ir_se50"),
            build_standin("psp_encode-256"),
            generator=torch.Generator().manual_seed(0),
        )
        save_sam(model, out)
    return out
