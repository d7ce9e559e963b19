"""PackedConv (weights packed once for oneDNN) against F.conv2d."""

import pytest
import torch
import torch.nn.functional as F

from sam_age.ops import packed
from sam_age.ops.packed import PackedConv, pack_conv


@pytest.mark.parametrize("stride,padding,slope", [(1, 1, None), (2, 1, 0.01), (2, 0, None), (1, 0, 0.2)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_packed_conv_equals_conv2d(stride, padding, slope, channels_last):
    torch.manual_seed(0)
    k = 1 if padding == 0 else 3
    w = torch.randn(24, 16, k, k) / 12
    b = torch.randn(24)
    x = torch.randn(2, 16, 11, 9)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    conv = PackedConv(w, b, stride, padding, slope=slope)
    ref64 = F.conv2d(x.double(), w.double(), b.double(), stride=stride, padding=padding)
    if slope is not None:
        ref64 = F.leaky_relu(ref64, slope)
    out = conv(x)  # packed at the first call, for this input size
    assert (conv.packed is not None) == packed.packing_available()
    assert out.shape == ref64.shape and out.dtype == torch.float32
    # as exact as F.conv2d itself (float32 rounding), on any input shape after packing
    torch.testing.assert_close(out.double(), ref64, rtol=0, atol=1e-5 * float(ref64.abs().max()))
    torch.testing.assert_close(conv(x[:1]).double(), ref64[:1], rtol=0, atol=1e-5 * float(ref64.abs().max()))


def test_packed_bf16_and_dense_fallbacks(monkeypatch):
    torch.manual_seed(1)
    w, b = torch.randn(8, 8, 3, 3) / 8, torch.randn(8)
    x = torch.randn(1, 8, 6, 6)
    ref = F.conv2d(x, w, b, padding=1)
    half = PackedConv(w.bfloat16(), b.bfloat16(), 1, 1)
    out = half(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=0, atol=0.05 * float(ref.abs().max()))
    # float64 (the parity tests' dtype) is never packed: the dense conv, same function
    exact = PackedConv(w.double(), b.double(), 1, 1)
    torch.testing.assert_close(exact(x.double()), F.conv2d(x.double(), w.double(), b.double(), padding=1))
    assert exact.packed is None and exact.form == "plain"
    # a packed conv called with another dtype unpacks instead of failing
    torch.testing.assert_close(
        PackedConv(w, b, 1, 1)(x.double()),
        F.conv2d(x.double(), w.double(), b.double(), padding=1),
        rtol=1e-6,
        atol=1e-6,
    )
    monkeypatch.setattr(packed, "packing_available", lambda: False)
    plain = pack_conv(torch.nn.Conv2d(8, 8, 3, 1, 1))
    assert plain.packed is None and plain(x).shape == (1, 8, 6, 6)


class FakeTuner:
    """Stands in for sam_age.autotune.Tuner: returns the form it is told, records names."""

    def __init__(self, form):
        self.form, self.names = form, []

    def pick(self, name, fns, plain, rule, reps=None):
        self.names.append(name)
        assert plain == "plain" and rule == "packed" and set(fns) == {"packed", "plain"}
        return self.form, fns[self.form]()


@pytest.mark.parametrize("chosen", ["packed", "plain"])
def test_auto_form_keeps_what_the_tuner_chose_and_one_weight_copy(chosen):
    torch.manual_seed(2)
    w, b = torch.randn(16, 8, 3, 3) / 8, torch.randn(16)
    x = torch.randn(1, 8, 10, 10).contiguous(memory_format=torch.channels_last)
    ref64 = F.leaky_relu(F.conv2d(x.double(), w.double(), b.double(), stride=2, padding=1), 0.2)
    tuner = FakeTuner(chosen)
    conv = PackedConv(w, b, 2, 1, slope=0.2, form="auto", tuner=tuner)
    for _ in range(2):  # the deciding call and a later one: the same function
        torch.testing.assert_close(conv(x).double(), ref64, rtol=0, atol=1e-5 * float(ref64.abs().max()))
    assert tuner.names == ["conv:float32:w16x8x3x3:s2p1g1:lrelu:in1x8x10x10"]  # asked once
    if packed.packing_available():
        assert conv.form == chosen
        assert (conv.packed is None) == (chosen == "plain") and (conv.weight is None) == (chosen == "packed")


def test_input_size_is_passed_to_the_reorder(monkeypatch):
    """The root of the AVX2 regression: packed without the input size, the weight had a
    layout the AVX2 primitive reordered again on every call."""
    if not packed.packing_available():
        pytest.skip("no oneDNN packing in this torch")
    seen = []
    real = torch._C._nn.mkldnn_reorder_conv2d_weight

    def spy(*args):
        seen.append(args)
        return real(*args)

    monkeypatch.setattr(torch._C._nn, "mkldnn_reorder_conv2d_weight", spy)
    conv = PackedConv(torch.randn(8, 4, 3, 3), None, 1, 1, form="packed")
    conv(torch.randn(2, 4, 7, 5))
    assert len(seen) == 1 and list(seen[0][-1]) == [2, 4, 7, 5]


def test_plain_form_never_packs():
    conv = PackedConv(torch.randn(8, 4, 3, 3), None, 1, 1, form="plain")
    x = torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, None, 1, 1))
    assert conv.packed is None
    with pytest.raises(ValueError, match="conv form"):
        PackedConv(torch.randn(8, 4, 3, 3), form="fast")
