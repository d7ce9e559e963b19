"""The encoder's folded inference form against the reference modules."""

import pytest
import torch

from sam_age import load_sam
from sam_age.models.irse import BottleneckIR, fold_unit, unit_folded


def _randomise_bn(module):
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()
            elif isinstance(m, torch.nn.PReLU):
                m.weight.uniform_(-0.5, 0.5)
    return module


@pytest.mark.parametrize("cin,depth,stride", [(16, 16, 1), (16, 16, 2), (16, 32, 2), (16, 32, 1)])
def test_folded_unit_equals_reference(cin, depth, stride):
    torch.manual_seed(0)
    unit = _randomise_bn(BottleneckIR(cin, depth, stride)).double().eval()
    x = torch.randn(2, cin, 13, 10, dtype=torch.float64)
    with torch.no_grad():
        ref = unit(x)
        out = unit_folded(x, fold_unit(unit, torch.float64))
        out_cl = unit_folded(
            x.contiguous(memory_format=torch.channels_last), fold_unit(unit, torch.float64, torch.channels_last)
        )
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out_cl, ref, rtol=1e-12, atol=1e-12)


def test_folded_encoder_equals_reference(small_sam_path):
    """The whole encoder (float32, real-size stand-in): codes within 1e-4 relative."""
    model = load_sam(small_sam_path)
    enc = model.encoder
    _randomise_bn(enc.body[3])  # the stand-in's BatchNorms are near identity: make one bite
    torch.manual_seed(1)
    x = torch.rand(1, 4, 256, 256) * 2 - 1
    with torch.no_grad():
        ref = enc(x, impl="reference")
        assert enc.resolve_impl("auto") == "folded"
        out = enc(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-4 * float(ref.abs().max()))
    # the folded weights follow in-place changes of the module (an optimizer step, a load)
    with torch.no_grad():
        enc.body[5].res_layer[4].running_mean.add_(0.5)
        ref2 = enc(x, impl="reference")
        out2 = enc(x)
    assert not torch.allclose(ref2, ref)
    torch.testing.assert_close(out2, ref2, rtol=0, atol=1e-4 * float(ref2.abs().max()))
    assert enc.resolve_impl("auto") == "reference"  # autograd on
    enc.train()
    with torch.no_grad():
        assert enc.resolve_impl("auto") == "reference"  # training mode: the BatchNorm layers
    with pytest.raises(ValueError):
        enc.resolve_impl("fast")
