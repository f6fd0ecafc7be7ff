"""The CPU LSTM path (hand-written backward) vs the autograd reference, in float64 so that
any difference is a wrong formula, not rounding; and the dispatch that picks it."""

from __future__ import annotations

import pytest
import torch

from prefixlab import kernels
from prefixlab.kernels import lstm
from prefixlab.kernels.lstm import lstm_recurrence, lstm_recurrence_reference, lstm_recurrence_stepwise

from .conftest import assert_close, grads


def make(P, B, T, W, pads, init, shared, seed=0):
    g = torch.Generator().manual_seed(seed)
    f64 = dict(generator=g, dtype=torch.float64)
    xproj = torch.randn(P, B, T, 4 * W, **f64).requires_grad_()
    wh = (0.3 * torch.randn(*(() if shared else (P,)), W, 4 * W, **f64)).requires_grad_()
    keep = None
    if pads:
        keep = torch.ones(P, T, dtype=torch.bool)
        keep[::2, : min(3, T - 1)] = False  # left pads on every other member
        keep[-1, T // 2] = False  # and one inside a sequence
    h0 = c0 = None
    if init:
        h0 = torch.randn(P, B, W, **f64).requires_grad_()
        c0 = torch.randn(P, B, W, **f64).requires_grad_()
    return xproj, wh, keep, h0, c0


@pytest.mark.parametrize("shared", [False, True], ids=["own", "shared"])
@pytest.mark.parametrize("P,B,T,W,pads,init", [
    (1, 3, 7, 5, False, False),
    (5, 3, 7, 24, True, False),
    (2, 19, 7, 8, False, True),
    (3, 2, 57, 5, True, True),
    (2, 3, 9, 128, True, True),
])
def test_stepwise_matches_reference(P, B, T, W, pads, init, shared):
    xproj, wh, keep, h0, c0 = make(P, B, T, W, pads, init, shared)
    inputs = [xproj, wh, h0, c0]
    g = torch.Generator().manual_seed(1)
    dh = torch.randn(P, B, T, W, generator=g, dtype=torch.float64)
    dc = torch.randn(P, B, T, W, generator=g, dtype=torch.float64)
    h, c = lstm_recurrence_stepwise(xproj, wh, keep, h0, c0)
    h_ref, c_ref = lstm_recurrence_reference(xproj, wh, keep, h0, c0)
    assert_close("h", h, h_ref, atol=1e-12, rtol=1e-10)
    assert_close("c", c, c_ref, atol=1e-12, rtol=1e-10)
    got = grads([h, c], inputs, [dh, dc])
    want = grads([h_ref, c_ref], inputs, [dh, dc])
    assert len(got) == len(want) == (4 if init else 2)
    for name, a, b in zip(["dxproj", "dwh", "dh0", "dc0"], got, want):
        assert_close(name, a, b, atol=1e-10, rtol=1e-9)


def test_gradient_through_one_output_only():
    for used in ("h", "c"):
        xproj, wh, keep, _, _ = make(3, 4, 9, 6, True, False, shared=False)
        out = lstm_recurrence_stepwise(xproj, wh, keep)[used == "c"]
        ref = lstm_recurrence_reference(xproj, wh, keep)[used == "c"]
        up = torch.randn_like(out)
        for name, a, b in zip(["dxproj", "dwh"], grads([out], [xproj, wh], [up]), grads([ref], [xproj, wh], [up])):
            assert_close(f"{used}: {name}", a, b, atol=1e-10, rtol=1e-9)


def test_frozen_shared_weights_get_no_gradient_and_match_copies():
    """A shared (W, 4W) matrix that does not require grad: members compute what they would
    with their own copies, and only the inputs get gradients."""
    xproj, wh, keep, _, _ = make(4, 3, 8, 7, True, False, shared=True)
    frozen = wh.detach()
    h, c = lstm_recurrence_stepwise(xproj, frozen, keep)
    h_own, c_own = lstm_recurrence_reference(xproj, frozen.expand(4, -1, -1).clone(), keep)
    assert_close("h", h, h_own, atol=1e-12, rtol=1e-10)
    (dx,) = torch.autograd.grad(h.sum() + c.sum(), [xproj])
    (dx_own,) = torch.autograd.grad(h_own.sum() + c_own.sum(), [xproj])
    assert_close("dxproj", dx, dx_own, atol=1e-10, rtol=1e-9)


def test_dispatch_on_cpu(monkeypatch):
    """auto on CPU tensors takes the stepwise path, 'reference' the autograd reference."""
    calls = []
    monkeypatch.setattr(lstm, "lstm_recurrence_stepwise", lambda *a: calls.append("stepwise") or lstm_recurrence_reference(*a))
    monkeypatch.setattr(lstm, "lstm_recurrence_reference", lambda *a: calls.append("reference") or lstm_recurrence_reference(*a))
    xproj, wh, *_ = make(2, 3, 4, 5, False, False, shared=False)
    with kernels.mode("auto"):
        lstm_recurrence(xproj, wh)
    with kernels.mode("reference"):
        lstm_recurrence(xproj, wh)
    assert calls == ["stepwise", "reference"]
