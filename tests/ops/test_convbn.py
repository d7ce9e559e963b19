"""BatchNorm folding (sam_age.ops.convbn) against the unfolded modules, in float64."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sam_age.models.irse import SEModule
from sam_age.ops.convbn import bn_scale_shift, fold_bn_after, fold_bn_before, se_residual, squeeze_excite


def _bn(c: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c).double().eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.3, 3.0)
        bn.weight.normal_()
        bn.bias.normal_()
    return bn


def test_bn_scale_shift():
    torch.manual_seed(0)
    bn = _bn(5)
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    scale, shift = bn_scale_shift(bn)
    torch.testing.assert_close(x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1), bn(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("bias", [False, True])
def test_fold_bn_after(stride, bias):
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 6, 3, stride, 1, bias=bias).double()
    bn = _bn(6)
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    w, b = fold_bn_after(conv.weight, conv.bias, *bn_scale_shift(bn))
    torch.testing.assert_close(F.conv2d(x, w, b, stride=stride, padding=1), bn(conv(x)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (7, 5), (16, 16)])
@pytest.mark.parametrize("k,pad", [(3, 1), (5, 2), (1, 0)])
def test_fold_bn_before_is_exact_on_the_border(size, k, pad):
    """The shift of a BatchNorm before a zero-padded conv is not a plain bias: the border
    fix makes the fold exact on every pixel, at any size (strips cached per size)."""
    if min(size) < 2 * pad:
        pytest.skip("border wider than the image")
    torch.manual_seed(2)
    conv = nn.Conv2d(5, 3, k, 1, pad, bias=False).double()
    bn = _bn(5)
    x = torch.randn(2, 5, *size, dtype=torch.float64)
    w, b, fix = fold_bn_before(conv.weight, *bn_scale_shift(bn), padding=pad)
    ref = conv(bn(x))
    plain = F.conv2d(x, w, b, padding=pad)
    out = fix.apply_(plain.clone())
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    if pad and size == (16, 16):
        assert not torch.allclose(plain, ref)  # without the fix the border is wrong
    cl = fix.apply_(F.conv2d(x.contiguous(memory_format=torch.channels_last), w, b, padding=pad))
    torch.testing.assert_close(cl, ref, rtol=1e-12, atol=1e-12)  # any memory format


def test_squeeze_excite_residual():
    torch.manual_seed(3)
    se = SEModule(32).double()
    u = torch.randn(2, 32, 5, 5, dtype=torch.float64)
    shortcut = torch.randn_like(u)
    gate = squeeze_excite(u, se.fc1.weight.flatten(1), se.fc2.weight.flatten(1))
    torch.testing.assert_close(se_residual(shortcut, u, gate), se(u) + shortcut, rtol=1e-12, atol=1e-12)
