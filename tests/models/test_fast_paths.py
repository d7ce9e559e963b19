"""The generator's fast form, the precision policy and the no-copy loader against their
references."""

import math

import pytest
import torch

from sam_age import engine, load_sam
from sam_age.models.stylegan2 import Generator


def _psnr(a: torch.Tensor, ref: torch.Tensor) -> float:
    mse = float(((a.double() - ref.double()) ** 2).mean())
    peak = float(ref.max() - ref.min())
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


@pytest.fixture(scope="module")
def small_generator():
    torch.manual_seed(0)
    return Generator(32, style_dim=64, n_mlp=2, channel_multiplier=1).eval()


@pytest.mark.parametrize("impl", ["per_sample", "grouped", "shared"])
@pytest.mark.parametrize("fixed_noise", [True, False])
def test_fast_synthesis_equals_reference(small_generator, impl, fixed_noise):
    g = small_generator.double()
    torch.manual_seed(1)
    latent = torch.randn(3, g.n_latent, 64, dtype=torch.float64)
    noise = (
        g.fixed_noise()
        if fixed_noise
        else [torch.randn(3, 1, n.shape[2], n.shape[3], dtype=torch.float64) for n in g.fixed_noise()]
    )
    with torch.no_grad():
        ref = g.synthesis(latent, noise, impl="reference")
        fast = g.synthesis(latent, noise, impl=impl)
    g.float()
    assert fast.shape == ref.shape and fast.is_contiguous()
    torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-10 * float(ref.abs().max()))


@pytest.mark.parametrize("impl", ["reference", "per_sample", "grouped", "shared"])
def test_pooled_synthesis_equals_pooled_reference(small_generator, impl):
    """``pool_to``: the fast forms pool the last activations before the 1x1 ToRGB; the
    result is the reference image average-pooled (SAM's face_pool)."""
    g = small_generator.double()
    torch.manual_seed(3)
    latent = torch.randn(2, g.n_latent, 64, dtype=torch.float64)
    with torch.no_grad():
        full = g.synthesis(latent, g.fixed_noise(), impl="reference")
        pooled = g.synthesis(latent, g.fixed_noise(), impl=impl, pool_to=8)
        same = g.synthesis(latent, g.fixed_noise(), impl=impl, pool_to=32)
    g.float()
    ref = torch.nn.AdaptiveAvgPool2d((8, 8))(full)
    assert pooled.shape == (2, 3, 8, 8)
    torch.testing.assert_close(pooled, ref, rtol=1e-9, atol=1e-10 * float(ref.abs().max()))
    torch.testing.assert_close(same, full, rtol=1e-9, atol=1e-10 * float(full.abs().max()))
    with pytest.raises(ValueError):
        g.synthesis(latent, impl=impl, pool_to=12)


@pytest.mark.parametrize("impl", ["grouped", "shared"])
def test_fast_synthesis_gradients_equal_reference(impl):
    """The batched fast forms are differentiable: same gradients as the reference for the
    latent and for every parameter (training may use them)."""
    torch.manual_seed(0)
    g = Generator(16, style_dim=32, n_mlp=1, channel_multiplier=1).double()
    latent = torch.randn(2, g.n_latent, 32, dtype=torch.float64)
    noise = [torch.randn(2, 1, n.shape[2], n.shape[3], dtype=torch.float64) for n in g.fixed_noise()]
    target = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    grads = {}
    for which in ("reference", impl):
        g.zero_grad(set_to_none=True)
        lat = latent.clone().requires_grad_(True)
        loss = ((g.synthesis(lat, noise, impl=which) - target) ** 2).sum()
        loss.backward()
        grads[which] = [lat.grad] + [p.grad if p.grad is not None else torch.zeros_like(p) for p in g.parameters()]
    for ref, fast in zip(grads["reference"], grads[impl]):
        torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-9 * max(1.0, float(ref.abs().max())))


def test_auto_impl(small_generator, monkeypatch):
    calls = []
    real = Generator._synthesis_fast
    monkeypatch.setattr(Generator, "_synthesis_fast", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    latent = torch.randn(1, small_generator.n_latent, 64)
    assert small_generator.resolve_impl(None, torch.device("cpu")) == "reference"  # autograd on
    with torch.no_grad():
        assert small_generator.resolve_impl(None, torch.device("cpu")) == "per_sample"
        assert small_generator.resolve_impl("auto", torch.device("cuda")) == "shared"
        assert small_generator.resolve_impl("grouped", torch.device("cpu")) == "grouped"
        small_generator.synthesis(latent)
    assert calls == [1]
    small_generator.synthesis(latent)  # autograd on: the reference
    assert calls == [1]
    with pytest.raises(ValueError):
        small_generator.resolve_impl("quick", torch.device("cpu"))
    g = Generator(32, style_dim=64, n_mlp=2, channel_multiplier=1)
    g.impl = "reference"  # an instance default, as a call's impl= would
    with torch.no_grad():
        assert g.resolve_impl(None, torch.device("cpu")) == "reference"


def test_bf16_generator_agrees_with_float32(small_generator):
    torch.manual_seed(2)
    latent = torch.randn(2, small_generator.n_latent, 64)
    g16 = Generator(32, style_dim=64, n_mlp=2, channel_multiplier=1).eval()
    g16.load_state_dict(small_generator.state_dict())
    g16.to(torch.bfloat16)
    with torch.no_grad():
        ref = small_generator.synthesis(latent, small_generator.fixed_noise(), impl="reference")
        out = g16.synthesis(latent.bfloat16(), g16.fixed_noise())
    assert out.dtype == torch.float32  # the RGB skip is accumulated in float32
    assert _psnr(out, ref) >= 35.0


def test_cpu_bf16_detection(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512_bf16 amx_tile\n")
    assert "avx512_bf16" in engine.cpu_flags(info)
    assert engine.cpu_flags(tmp_path / "missing") == frozenset()
    assert engine.cpu_has_native_bf16(frozenset({"avx2", "avx512_bf16"}))
    assert engine.cpu_has_native_bf16(frozenset({"amx_bf16"}))
    if "AMX" not in torch.backends.cpu.get_cpu_capability().upper():
        assert not engine.cpu_has_native_bf16(frozenset({"avx2", "avx512f"}))


def test_dtype_policy(monkeypatch):
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: True)
    assert engine.resolve_dtype(None, torch.device("cpu")) == torch.bfloat16
    assert engine.resolve_dtype("auto", "cpu") == torch.bfloat16
    assert engine.resolve_dtype("float32", "cpu") == torch.float32  # asked: always exact
    assert engine.resolve_dtype(torch.float32, "cpu") == torch.float32
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: False)
    assert engine.resolve_dtype(None, "cpu") == torch.float32
    assert engine.resolve_dtype(None, torch.device("cuda")) == torch.float16
    assert engine.resolve_dtype("bf16", "cuda") == torch.bfloat16
    with pytest.raises(ValueError):
        engine.resolve_dtype("float8", "cpu")


def test_load_sam_mmap_equals_copy(small_sam_path):
    mapped = load_sam(small_sam_path)  # torch.load(mmap=True) + assign
    copied = load_sam(torch.load(small_sam_path, map_location="cpu", weights_only=True))  # in-memory object
    a, b = mapped.state_dict(), copied.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(mapped.latent_avg, copied.latent_avg)
    assert not mapped.training and all(p.device.type == "cpu" for p in mapped.parameters())
    half = load_sam(small_sam_path, dtype=torch.bfloat16)
    assert all(v.dtype == torch.bfloat16 for v in half.state_dict().values() if v.is_floating_point())
    assert torch.equal(half.decoder.convs[0].conv.weight, a["decoder.convs.0.conv.weight"].bfloat16())


def test_grouped_form_keeps_about_half_for_backward():
    """The memory-lean training form: what autograd keeps for backward (parameters not
    counted) is at most 60% of what the reference keeps."""
    torch.manual_seed(0)
    g = Generator(64, style_dim=64, n_mlp=1, channel_multiplier=1)
    params = {p.untyped_storage().data_ptr() for p in g.parameters()}
    latent = torch.randn(2, g.n_latent, 64)
    kept = {}
    for impl in ("reference", "grouped"):
        seen = {}

        def pack(t):
            ptr = t.untyped_storage().data_ptr()
            if ptr not in params:
                seen[ptr] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            g.synthesis(latent, None, impl=impl)
        kept[impl] = sum(seen.values())
    assert kept["grouped"] <= 0.6 * kept["reference"], kept
