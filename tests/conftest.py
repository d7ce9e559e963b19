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

# The runner is an application like the `sam-age` command: freed heap blocks kept for reuse
# (sam_age.memory.keep_freed_heap; without it each large tensor was faulted in afresh).
from sam_age.memory import keep_freed_heap  # noqa: E402

keep_freed_heap()

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


@pytest.fixture(autouse=True, scope="module")
def _free_models_after_each_module():
    """At the end of each test file: a pipeline the shared model cache took for other
    settings is dropped (the session's one pipeline stays) and cyclic garbage is collected;
    the freed heap goes back to the OS in ``pytest_runtest_protocol`` below, which wraps the
    last test's teardown and so this one. Without this the runner held 7-13 GB of models that
    no later test used, and the training and video tests, which need 8-9 GB of their own,
    ran slower for want of page cache (half again on a 24 GB machine)."""
    yield
    mod = sys.modules.get("sam_age.pipeline")
    if mod is not None and any(all(p is not h for h in _HELD) for p in mod._SHARED.values()):
        mod.clear_shared()
    # FastAPI keeps the endpoints of every app built in the process in bounded lru_caches, and
    # each endpoint holds its server's model queue and pipeline: a test's server outlived it.
    deps = sys.modules.get("fastapi.dependencies.models")
    for fn in vars(deps).values() if deps is not None else ():
        if callable(getattr(fn, "cache_clear", None)):
            fn.cache_clear()
    import gc

    gc.collect()


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


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """After each test, the heap its models and arrays freed goes back to the OS
    (``sam_age.memory.trim_heap``): glibc keeps freed blocks of up to 32 MB in its heap, and
    without a trim the runner grew to ~22 GB of a 24 GB machine over the suite.

    ``SAM_AGE_TEST_RSS=FILE``: one line per test (seconds, the runner's RSS after it and its
    peak so far, in MiB) -- how docs/testing.md finds what holds the runner's memory."""
    import time

    start = time.perf_counter()
    yield
    memory = sys.modules.get("sam_age.memory")
    if memory is not None:
        memory.trim_heap()
    log = os.environ.get("SAM_AGE_TEST_RSS")
    if log and os.path.exists("/proc/self/statm"):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        with open(log, "a") as f:
            f.write(f"{time.perf_counter() - start:8.2f} {_rss_kib() // 1024:6d} {peak:6d} {item.nodeid}\n")
