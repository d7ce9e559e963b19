"""The per-upload caches of AgePipeline: the same photo at another age skips detection and
the pretrained encoder (the web slider's path), and a hit never changes a result."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from sam_age.cache import LRU, content_key
from sam_age.pipeline import AgePipeline

from ..helpers.images import SAMPLE

pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def model(small_sam_path):
    from sam_age import load_sam

    return load_sam(small_sam_path, dtype=torch.float32)


class Counter:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *a, **k):
        self.calls += 1
        return self.fn(*a, **k)


@pytest.fixture
def counted(monkeypatch, model):
    import sam_age.pipeline as pipeline

    prepare = Counter(pipeline.prepare_faces)
    encode = Counter(model.pretrained_encoder.forward)
    age_encoder = Counter(model.encoder.forward)
    monkeypatch.setattr(pipeline, "prepare_faces", prepare)
    monkeypatch.setattr(model.pretrained_encoder, "forward", encode)
    monkeypatch.setattr(model.encoder, "forward", age_encoder)
    return prepare, encode, age_encoder


def test_same_photo_other_age_skips_detection_and_pretrained_encoder(model, counted, tmp_path):
    prepare, encode, age_encoder = counted
    pipe = AgePipeline(model, "cpu", torch.float32)
    first = pipe(str(SAMPLE), [30])
    assert (prepare.calls, encode.calls, age_encoder.calls) == (1, 1, 1)
    # the same upload again under another name (Gradio copies each upload to a new temp file)
    again = tmp_path / "upload-copy.jpg"
    shutil.copyfile(SAMPLE, again)
    second = pipe(str(again), [60])
    assert (prepare.calls, encode.calls, age_encoder.calls) == (1, 1, 2)  # slider: age encoder + generator
    # and a hit gives what a cold pipeline gives
    cold = AgePipeline(model, "cpu", torch.float32, cache_size=0)(str(SAMPLE), [60])
    assert np.array_equal(np.asarray(second.images[0]), np.asarray(cold.images[0]))
    assert torch.equal(second.latents, cold.latents)
    assert not np.array_equal(np.asarray(first.images[0]), np.asarray(second.images[0]))


def test_other_photo_or_settings_miss(model, counted):
    prepare, encode, _ = counted
    pipe = AgePipeline(model, "cpu", torch.float32)
    pipe(str(SAMPLE), [30])
    flipped = Image.open(SAMPLE).transpose(Image.FLIP_LEFT_RIGHT)
    pipe(flipped, [30])
    assert prepare.calls == 2 and encode.calls == 2
    encoded = []
    monkeypatch_faces = encode.fn

    def record(x, *a, **k):
        encoded.append(x.shape[0])
        return monkeypatch_faces(x, *a, **k)

    encode.fn = record
    result = pipe(str(SAMPLE), [30], all_faces=True)  # other detection settings: detect again
    assert prepare.calls == 3 and len(result.faces) == 2
    assert encoded == [1]  # ... but only the face not seen before is encoded


def test_cache_follows_weights(model, counted):
    _, encode, _ = counted
    pipe = AgePipeline(model, "cpu", torch.float32)
    pipe(str(SAMPLE), [30])
    p = next(model.pretrained_encoder.parameters())
    with torch.no_grad():
        p.add_(0.0)  # an in-place update (an optimizer step, a load): the encoding is redone
    pipe(str(SAMPLE), [30])
    assert encode.calls == 2


def test_tensor_keys_any_dtype():
    from sam_age.cache import tensor_key as _tensor_key

    x = torch.rand(3, 8, 8)
    for dt in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        assert _tensor_key(x.to(dt)) == _tensor_key(x.to(dt).clone())
    assert _tensor_key(x) != _tensor_key(x.to(torch.bfloat16))
    assert _tensor_key(x) != _tensor_key(x + 1e-3)
    assert _tensor_key(x) != _tensor_key(x.reshape(8, 3, 8).contiguous())  # same bytes, other shape


def test_content_key_and_lru():
    im = Image.open(SAMPLE).convert("RGB")
    assert content_key(im) == content_key(im.copy())
    assert content_key(np.asarray(im)) == content_key(np.asarray(im).copy())
    assert content_key(str(SAMPLE)) == content_key(SAMPLE) is not None
    assert content_key(object()) is None and content_key("/no/such/file.jpg") is None
    lru = LRU(2)
    for k in "abc":
        lru.put(k, k)
    assert lru.get("a") is None and lru.get("c") == "c" and len(lru) == 2
    off = LRU(0)
    off.put("a", 1)
    assert off.get("a") is None
    small = LRU(10, max_bytes=100)  # bounded by bytes too: a big photo pushes the old ones out
    small.put("a", 1, 60)
    small.put("b", 2, 30)
    small.put("c", 3, 50)
    assert small.get("a") is None and small.get("b") == 2 and small.get("c") == 3
    small.put("huge", 4, 101)  # larger than the bound alone: not kept, nothing evicted for it
    assert small.get("huge") is None and small.get("c") == 3
