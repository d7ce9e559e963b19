import torch

from sam_age import load_sam
from sam_age.engine import age_channel, age_faces


def test_age_channel_layout():
    faces = torch.rand(2, 3, 8, 8)
    x = age_channel(faces, [0, 50, 100])
    assert x.shape == (6, 4, 8, 8)
    assert torch.equal(x[4, :3], faces[1]) and float(x[4, 3, 0, 0]) == 0.5


def test_age_faces_equals_forward(small_sam_path):
    model = load_sam(small_sam_path)
    torch.manual_seed(0)
    faces = torch.rand(2, 3, 256, 256) * 2 - 1
    ages = [10, 70]
    images, codes = age_faces(model, faces, ages, batch_size=3)
    assert images.shape == (2, 2, 3, 256, 256) and codes.shape == (2, 2, 14, 512)
    with torch.no_grad():
        ref, ref_codes = model(age_channel(faces, ages), randomize_noise=False, return_latents=True)
    torch.testing.assert_close(codes.reshape(4, 14, 512), ref_codes, rtol=0, atol=1e-5)
    # batch composition changes float summation order: hold to 1e-4 of the image range
    torch.testing.assert_close(images.reshape(4, 3, 256, 256), ref, rtol=0, atol=1e-4 * float(ref.abs().max()))


def test_emulated_half_precision_warns_once_per_call(monkeypatch):
    import warnings

    import pytest

    from sam_age import engine

    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda flags=None: False)
    monkeypatch.setattr(engine, "cpu_has_native_fp16", lambda flags=None: False)
    for name in ("bfloat16", "float16"):
        with pytest.warns(engine.EmulatedPrecisionWarning, match=f"{name} is emulated on this CPU.*float32"):
            assert engine.resolve_dtype(name, "cpu") == getattr(torch, name)  # still what was asked
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert engine.resolve_dtype(None, "cpu") == torch.float32  # auto never picks an emulated dtype
        assert engine.resolve_dtype("float32", "cpu") == torch.float32
        assert engine.resolve_dtype("bfloat16", "cuda") == torch.bfloat16  # native on GPUs
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda flags=None: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert engine.resolve_dtype("bfloat16", "cpu") == torch.bfloat16
        assert engine.resolve_dtype(None, "cpu") == torch.bfloat16


def test_cli_prints_the_warning_on_one_line():
    from sam_age import engine
    from sam_age.cli.main import _one_line_warning

    note = engine.emulation_note(torch.bfloat16, "cpu") or "bfloat16 is emulated on this CPU"
    text = _one_line_warning(note, engine.EmulatedPrecisionWarning, "x.py", 1)
    assert text.count("\n") == 1 and text.startswith("sam-age: warning: bfloat16 is")


def test_encode_once_then_age_equals_age_faces(small_sam_path):
    """The slider's path (face encoded once, then one age encoder + one generator per age)
    gives what age_faces gives; cuda_graphs is ignored off CUDA."""
    from sam_age.engine import age_encoded, encode_faces

    model = load_sam(small_sam_path)
    torch.manual_seed(1)
    faces = torch.rand(1, 3, 256, 256) * 2 - 1
    images, codes = age_faces(model, faces, [30, 60], cuda_graphs=True)
    base = encode_faces(model, faces)
    assert base.shape == (1, 14, 512)
    one_img, one_code = age_encoded(model, faces, base, [60])
    torch.testing.assert_close(one_code[0, 0], codes[0, 1], rtol=0, atol=1e-5)
    torch.testing.assert_close(one_img[0, 0], images[0, 1], rtol=0, atol=1e-4 * float(images.abs().max()))


def test_resolve_device_is_the_one_resolver(monkeypatch):
    """Flags, torchrun ranks and the missing-device error all go through resolve_device."""
    import pytest

    from sam_age import engine
    from sam_age.errors import UsageError
    from sam_age.launch import Ranks

    assert engine.resolve_device("cpu") == torch.device("cpu")
    assert engine.resolve_device("cpu", Ranks(1, 2, 1, 2)) == torch.device("cpu")  # CPU ranks stay on the CPU
    with pytest.raises(UsageError, match=r"^--gpu nonsense: not a device name; this machine has cpu"):
        engine.resolve_device("nonsense", option="--gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match=r"^--device cuda: no such device here; this machine has cpu"):
        engine.resolve_device("cuda", Ranks())
    # two GPUs (as torch reports them): ranks share them round-robin, an index is kept
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert "cuda:1" in engine.available_devices()
    assert [engine.resolve_device("cuda", Ranks(r, 3, r, 3)) for r in range(3)] == [
        torch.device("cuda", i) for i in (0, 1, 0)
    ]
    assert engine.resolve_device("cuda", Ranks()) == torch.device("cuda", 0)  # not launched: the current one
    assert engine.resolve_device("cuda:1", Ranks(0, 2, 0, 2)) == torch.device("cuda", 1)
    assert engine.resolve_device("cuda") == torch.device("cuda")  # no ranks: as named
    with pytest.raises(UsageError, match="no such device here"):
        engine.resolve_device("cuda:2")


def test_per_face_ages_equal_one_call_per_face_and_the_old_video_loop(small_sam_path):
    """age_encoded_per_face (a video's ramp: each face its own ages) gives, at batch 1, what
    age_encoded gives face by face, bit for bit; and the codes of the per-face loop the
    video ager had before it went through the engine (within float summation order)."""
    from sam_age.engine import age_encoded, age_encoded_per_face, encode_faces

    model = load_sam(small_sam_path)
    g = torch.Generator().manual_seed(2)
    faces = torch.rand(2, 3, 256, 256, generator=g) * 2 - 1
    ages = [[30.0, 70.0], [55.5, 20.0]]
    base = encode_faces(model, faces, batch_size=1)
    none, codes = age_encoded_per_face(model, faces, base, ages, batch_size=1, generate=False)
    assert none is None and codes.shape == (2, 2, 14, 512)
    images, again = age_encoded_per_face(model, faces, base, ages, batch_size=1)
    assert torch.equal(again, codes) and images.shape == (2, 2, 3, 256, 256)
    for i in range(2):
        one_img, one_code = age_encoded(model, faces[i : i + 1], base[i : i + 1], ages[i], batch_size=1)
        assert torch.equal(one_code[0], codes[i]) and torch.equal(one_img[0], images[i])
    with torch.no_grad():  # the video ager's own loop before (one batch of faces x their ages)
        a = torch.tensor(ages) / 100.0
        rgb = faces[:, None].expand(2, 2, 3, 256, 256)
        inp = torch.cat([rgb, a[:, :, None, None, None].expand(2, 2, 1, 256, 256)], 2).reshape(4, 4, 256, 256)
        old = model.age_codes(inp, model.encode_w_plus(faces).repeat_interleave(2, 0)).reshape(2, 2, 14, 512)
    torch.testing.assert_close(codes, old, rtol=0, atol=1e-5)
