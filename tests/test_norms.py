"""prefixlab.norms: the unweighted layer norm through the weighted kernel."""

import pytest
import torch
import torch.nn.functional as F

from prefixlab.norms import standardize


def _forward_and_grad(width):
    gen = torch.Generator().manual_seed(width)
    x = (3 * torch.randn(5, 7, 9, width, generator=gen) + 1).requires_grad_(True)
    grad = torch.randn(5, 7, 9, width, generator=gen)
    ours, theirs = standardize(x, 1e-6), F.layer_norm(x, (width,), eps=1e-6)
    return (ours, theirs), tuple(torch.autograd.grad(y, x, grad)[0] for y in (ours, theirs))


@pytest.mark.parametrize("width", [4, 64, 96, 128, 256])
def test_standardize_is_bitwise_the_unweighted_layer_norm_at_the_configured_widths(width):
    (ours, theirs), (g_ours, g_theirs) = _forward_and_grad(width)
    assert torch.equal(ours, theirs) and torch.equal(g_ours, g_theirs)


def test_standardize_at_other_widths_differs_by_rounding_only():
    # the kernel's vector tail: the backward's last bits move at widths off the SIMD width
    (ours, theirs), (g_ours, g_theirs) = _forward_and_grad(257)
    assert torch.equal(ours, theirs)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-5, atol=1e-6)


def test_standardize_passes_eps():
    near = torch.full((1, 64), 2.0) + 1e-4 * torch.arange(64)
    assert not torch.equal(standardize(near, 1e-6), standardize(near, 1e-2))
