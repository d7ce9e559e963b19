"""Every fast modulated-conv op against the reference modules (float64, small sizes)."""

import math

import pytest
import torch

from sam_age.models.stylegan2 import StyledConv, ToRGB
from sam_age.ops.modconv import modulated_weight, styled_conv_fast, styled_conv_shared, to_rgb_fast

SQRT2 = math.sqrt(2.0)


def _randomise(module):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)
    return module


@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_weight_equals_reference(demodulate):
    layer = _randomise(StyledConv(6, 5, 3, 8)).double()
    layer.conv.demodulate = demodulate
    style = torch.randn(3, 8, dtype=torch.float64)
    ref = layer.conv.modulated_weight(style)
    s = layer.conv.modulation(style)
    fast = modulated_weight(layer.conv.weight, layer.conv.scale, s, demodulate, dtype=torch.float64)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-12)
    gained = modulated_weight(layer.conv.weight, layer.conv.scale, s, demodulate, in_gain=2.0, dtype=torch.float64)
    torch.testing.assert_close(gained, 2 * fast, rtol=1e-12, atol=0)


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("form", ["per_sample_weights", "shared_weight"])
def test_styled_conv_fast_equals_reference(upsample, batch, form):
    layer = _randomise(StyledConv(6, 5, 3, 8, upsample=upsample)).double().eval()
    torch.manual_seed(2)
    x = torch.randn(batch, 6, 7, 7, dtype=torch.float64)
    style = torch.randn(batch, 8, dtype=torch.float64)
    size = 14 if upsample else 7
    noise = torch.randn(batch, 1, size, size, dtype=torch.float64)
    with torch.no_grad():
        ref = layer(x, style, noise=noise)
        s = layer.conv.modulation(style)
        blur = layer.conv.blur.kernel if upsample else None
        # the fast forms take the input divided by sqrt(2) and return the output divided by it
        if form == "per_sample_weights":
            w = modulated_weight(layer.conv.weight, layer.conv.scale, s, True, SQRT2, dtype=torch.float64)
            out = styled_conv_fast(x / SQRT2, w, layer.activate.bias, noise, layer.noise.weight, upsample, blur)
        else:
            out = styled_conv_shared(
                x / SQRT2,
                layer.conv.weight,
                layer.conv.scale,
                s,
                layer.activate.bias,
                noise,
                layer.noise.weight,
                upsample,
                blur,
                SQRT2,
            )
    assert out.shape == ref.shape
    torch.testing.assert_close(out * SQRT2, ref, rtol=1e-10, atol=1e-10 * float(ref.abs().max()))


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_to_rgb_fast_equals_reference(batch, channels_last):
    layer = _randomise(ToRGB(6, 8, upsample=False)).double()
    x = torch.randn(batch, 6, 5, 5, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    style = torch.randn(batch, 8, dtype=torch.float64)
    with torch.no_grad():
        ref = layer(x, style)
        w = modulated_weight(
            layer.conv.weight, layer.conv.scale, layer.conv.modulation(style), False, dtype=torch.float64
        )
        out = to_rgb_fast(x, w, layer.bias.reshape(-1))
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)


def test_squared_norm_cache_follows_in_place_updates():
    layer = _randomise(StyledConv(4, 3, 3, 8))
    conv = layer.conv
    style = torch.randn(2, 8)
    with torch.no_grad():
        s = conv.modulation(style)
        before = modulated_weight(conv.weight, conv.scale, s, True, sq_norms=conv.squared_norms())
        assert conv.squared_norms() is conv.squared_norms()  # kept while the weight is unchanged
        conv.weight.mul_(3.0)  # demodulation makes the result scale-free...
        after = modulated_weight(conv.weight, conv.scale, s, True, sq_norms=conv.squared_norms())
        conv.weight[:, 0].zero_()  # ...but not when one output's weights change
        changed = modulated_weight(conv.weight, conv.scale, s, True, sq_norms=conv.squared_norms())
        ref = conv.modulated_weight(style)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(changed, ref, rtol=1e-5, atol=1e-7)
    assert not hasattr(conv.weight, "_sam_age_sq_norms")  # nothing hangs on the Parameter
    conv.double()  # a new tensor: recomputed, in its dtype
    assert conv.squared_norms().dtype == torch.float64


@pytest.mark.parametrize("layout", ["conv", "deconv"])
def test_weight_layouts_same_values_conv_ready_strides(layout):
    """The laid-out weights hold the same values; the slice the conv reads is channels-last
    (so oneDNN does not reorder it on every call)."""
    layer = _randomise(StyledConv(6, 5, 3, 8, upsample=layout == "deconv")).double()
    style = torch.randn(1, 8, dtype=torch.float64)
    s = layer.conv.modulation(style)
    with torch.no_grad():
        plain = modulated_weight(layer.conv.weight, layer.conv.scale, s, True, dtype=torch.float64)
        laid = modulated_weight(layer.conv.weight, layer.conv.scale, s, True, dtype=torch.float64, layout=layout)
    assert torch.equal(plain, laid)
    w = laid[0] if layout == "conv" else laid.transpose(1, 2)[0]
    assert w.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError):
        modulated_weight(layer.conv.weight, layer.conv.scale, s, True, layout="nhwc")
