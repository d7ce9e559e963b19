import pytest
import torch

from sam_age.ops import fused_leaky_relu, fused_leaky_relu_reference, make_kernel, upfirdn2d, upfirdn2d_reference


@pytest.mark.parametrize(
    "up,down,pad", [(2, 1, (2, 1)), (1, 1, (1, 1)), (1, 1, (2, 2)), (2, 1, (1, 1)), (1, 2, (1, 1)), (1, 1, (-1, 2))]
)
def test_upfirdn2d_fast_equals_reference(up, down, pad):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 11, 11, dtype=torch.float64)
    for k in (make_kernel([1, 3, 3, 1]).double() * 4, torch.rand(4, 4, dtype=torch.float64)):
        ref = upfirdn2d_reference(x, k, up=up, down=down, pad=pad)
        fast = upfirdn2d(x, k, up=up, down=down, pad=pad)
        assert fast.shape == ref.shape
        torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)


def test_upfirdn2d_definition_on_impulse():
    # A single 1 upsampled by 2 with pad (2, 1) must reproduce the kernel, placed by the pads.
    k = torch.arange(16, dtype=torch.float64).reshape(4, 4)
    x = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    x[0, 0, 0, 0] = 1
    out = upfirdn2d_reference(x, k, up=2, pad=(2, 1))
    assert out.shape == (1, 1, 4, 4)
    # true convolution: out[o] = sum_k z[o + 3 - k - 2] K[k]; the impulse sits at z[0]
    assert out[0, 0, 0, 0] == k[1, 1] and out[0, 0, 1, 1] == k[2, 2]


def test_fused_leaky_relu_fast_equals_reference():
    x = torch.randn(3, 7, 5, 5)
    b = torch.randn(7)
    torch.testing.assert_close(fused_leaky_relu(x, b), fused_leaky_relu_reference(x, b), rtol=0, atol=1e-6)
    torch.testing.assert_close(fused_leaky_relu(x), fused_leaky_relu_reference(x), rtol=0, atol=1e-6)
