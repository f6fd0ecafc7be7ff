"""Fused LSTM recurrence vs the PyTorch reference: outputs, recorded states, every gradient."""

from __future__ import annotations

import pytest
import torch

from prefixlab import kernels
from prefixlab.kernels.lstm import lstm_recurrence, lstm_recurrence_reference

from .conftest import DEVICE, assert_close, grads


def make(P, B, T, W, pads, init, seed=0):
    g = torch.Generator().manual_seed(seed)
    xproj = torch.randn(P, B, T, 4 * W, generator=g).to(DEVICE).requires_grad_()
    wh = (0.3 * torch.randn(P, W, 4 * W, generator=g)).to(DEVICE).requires_grad_()
    keep = None
    if pads:
        keep = torch.ones(P, T, dtype=torch.bool)
        keep[::2, : min(3, T - 1)] = False  # left pads on every other member
        keep = keep.to(DEVICE)
    h0 = c0 = None
    if init:
        h0 = torch.randn(P, B, W, generator=g).to(DEVICE).requires_grad_()
        c0 = torch.randn(P, B, W, generator=g).to(DEVICE).requires_grad_()
    return xproj, wh, keep, h0, c0


@pytest.mark.parametrize("P,B,T,W,pads,init", [
    (1, 3, 7, 5, False, False),
    (5, 3, 7, 24, True, False),
    (2, 19, 7, 8, False, True),
    (5, 2, 57, 5, True, True),
    (2, 3, 9, 128, True, True),  # the paper's widths
    (1, 2, 5, 256, False, False),
])
def test_forward_states_and_gradients_match_reference(P, B, T, W, pads, init):
    xproj, wh, keep, h0, c0 = make(P, B, T, W, pads, init)
    inputs = [xproj, wh, h0, c0]
    g = torch.Generator().manual_seed(1)
    dh, dc = (torch.randn(P, B, T, W, generator=g).to(DEVICE) for _ in range(2))
    h, c = lstm_recurrence(xproj, wh, keep, h0, c0)
    with kernels.mode("reference"):
        h_ref, c_ref = lstm_recurrence(xproj, wh, keep, h0, c0)
    assert_close("h", h, h_ref)
    assert_close("c", c, c_ref)
    got = grads([h, c], inputs, [dh, dc])
    want = grads([h_ref, c_ref], inputs, [dh, dc])
    for name, a, b in zip(["dxproj", "dwh", "dh0", "dc0"], got, want):
        assert_close(name, a, b)


def test_gradient_through_hidden_state_only():
    xproj, wh, keep, _, _ = make(3, 4, 9, 6, True, False)
    h, _ = lstm_recurrence(xproj, wh, keep)
    h_ref, _ = lstm_recurrence_reference(xproj, wh, keep)
    up = torch.randn_like(h)
    for name, a, b in zip(["dxproj", "dwh"], grads([h], [xproj, wh], [up]), grads([h_ref], [xproj, wh], [up])):
        assert_close(name, a, b)


def test_pads_carry_state_unchanged():
    xproj, wh, keep, _, _ = make(2, 3, 6, 5, True, False)
    h, c = lstm_recurrence(xproj.detach(), wh.detach(), keep)
    # member 0 has pads at steps 0-2: zero state carried; member 1 has none
    assert torch.equal(h[0, :, :3], torch.zeros_like(h[0, :, :3]))
    assert not torch.equal(h[1, :, 0], torch.zeros_like(h[1, :, 0]))


def test_bad_shapes_are_named():
    xproj, wh, *_ = make(2, 3, 4, 5, False, False)
    with pytest.raises(ValueError, match="wh must be"):
        lstm_recurrence(xproj, wh[:, :4])
    with pytest.raises(ValueError, match="keep must be bool"):
        lstm_recurrence(xproj, wh, torch.ones(2, 4, device=DEVICE))
    with pytest.raises(ValueError, match="both h0 and c0"):
        lstm_recurrence(xproj, wh, None, torch.zeros(2, 3, 5, device=DEVICE))
