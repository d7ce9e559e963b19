"""Shared fixtures: the reference folder and deterministic stand-in checkpoints.

Stand-ins are built by :mod:`tests.helpers.standins` (shared with ``benchmarks/``) from
``../shared/reference/make_checkpoint.py`` (never downloaded) and cached under
``SAM_AGE_TEST_CACHE`` (default: a temp folder), so the 2.2 GB SAM stand-in is written once.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

# No test may reach the real Hugging Face Hub. Its client reads HF_ENDPOINT once, at import,
# for its own side requests: point it at a closed loopback port before anything imports it
# (the weights tests start their own loopback Hub and pass it to each download).
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
# No test times anything (sam_age.autotune): the rule-based forms, no autotune.json written.
os.environ.setdefault("SAM_AGE_AUTOTUNE", "off")

from .helpers.paths import CASES, REFERENCE, REPO, SHARED  # noqa: E402,F401
from .helpers.standins import build_standin, small_sam  # noqa: E402


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
    return small_sam()


@pytest.fixture(scope="session")
def small_pipeline(small_sam_path):
    """The session's one 256 px pipeline (CPU, the measured dtype, batches of 8): the
    pipeline, API, web and CLI tests share it (``shared_pipeline``: the CLI's model cache
    returns this same object for the same settings), instead of one model each."""
    from sam_age.pipeline import shared_pipeline

    pipe = shared_pipeline(small_sam_path, "cpu", None, 8)
    _HELD.append(pipe)  # guarded even after another key has taken the shared slot
    return pipe


_HELD: list = []


@pytest.fixture(autouse=True)
def _restore_shared_pipelines():
    """Whatever a test changes on a shared pipeline (``age_predictor``, ``batch_size``,
    ``report``) is put back afterwards and its per-upload caches are emptied, so no test
    depends on which ran before it."""
    mod = sys.modules.get("sam_age.pipeline")
    pipes = {id(p): p for p in _HELD + (list(mod._SHARED.values()) if mod is not None else [])}.values()
    saved = [(p, p.age_predictor, p.batch_size, p.report) for p in pipes]
    yield
    for p, predictor, batch_size, report in saved:
        p.age_predictor, p.batch_size, p.report = predictor, batch_size, report
        p.clear_cache()


@pytest.fixture(scope="session")
def curricular_face_path(standin) -> Path:
    """CurricularFace IR-101 stand-in (tests/data/curricular_face.manifest.json, 260 MB)."""
    return standin("curricular_face")


@pytest.fixture(scope="module")
def face(tmp_path_factory) -> Path:
    """An aligned-enough 256 px square crop of the sample portrait (--no-align: no dlib)."""
    from PIL import Image

    from sam_age.pipeline import sample_path

    p = tmp_path_factory.mktemp("faces") / "face.png"
    Image.open(sample_path()).convert("RGB").crop((128, 20, 384, 276)).save(p)
    return p


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def pytest_collection_modifyitems(config, items):
    """The torchrun tests first: each launches two ~6 GB processes, which fit beside a fresh
    test runner but not beside one that has built every session fixture's pipeline (on a
    24 GB machine the kernel's OOM killer took the runner). Otherwise the order is kept."""
    items[:] = [i for i in items if i.get_closest_marker("torchrun")] + [
        i for i in items if not i.get_closest_marker("torchrun")
    ]


@pytest.fixture
def disk_full_after_first_image(monkeypatch):
    """Call it to make the disk fill after the first image saved through PIL (ENOSPC on every
    later ``Image.save``): the mid-run disk-full case of the commands that write images."""

    def fill():
        from PIL import Image

        calls = []
        real_save = Image.Image.save

        def save(self, fp, *a, **k):
            calls.append(fp)
            if len(calls) > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_save(self, fp, *a, **k)

        monkeypatch.setattr(Image.Image, "save", save)

    return fill
