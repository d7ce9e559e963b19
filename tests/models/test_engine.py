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
