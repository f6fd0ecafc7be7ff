"""The CPU's LSTM path (PyTorch's fused LSTM) against the reference recurrence."""

from __future__ import annotations

import pytest
import torch

from prefixlab import kernels
from prefixlab.coins import networks
from prefixlab.coins.configs import NetworkConfig
from prefixlab.kernels.lstm import lstm_recurrence_reference, torch_fused


def reference_layer(x, wx, wh, b, keep):
    proj = networks._linear(x, wx) + networks._per_member(b, x)
    return lstm_recurrence_reference(proj, wh, keep)[0]


def tensors(P, B, T, D, W, own, seed=0):
    g = torch.Generator().manual_seed(seed)
    lead = (P,) if own else ()
    x = torch.randn(P, B, T, D, generator=g)
    wx = torch.randn(*lead, D, 4 * W, generator=g) / D ** 0.5
    wh = torch.randn(*lead, W, 4 * W, generator=g) / W ** 0.5
    b = torch.randn(*lead, 4 * W, generator=g) * 0.1
    return [t.requires_grad_() for t in (x, wx, wh, b)]


@pytest.mark.parametrize("P,B,T,D,W,own,pads", [
    (1, 1, 1, 1, 1, False, None),
    (3, 2, 9, 5, 7, False, None),
    (3, 2, 9, 5, 7, True, None),
    (4, 3, 11, 4, 13, False, [0, 3, 0, 3]),   # plain members' leading pads among prefixed ones
    (3, 2, 8, 6, 5, True, [2, 0, 7]),
    (2, 5, 57, 3, 128, False, None),            # the d = 4 LSTM's shape (128 units)
])
def test_forward_and_gradients_match_reference(P, B, T, D, W, own, pads):
    x, wx, wh, b = tensors(P, B, T, D, W, own)
    keep = None
    if pads is not None:
        keep = torch.arange(T)[None] >= torch.tensor(pads)[:, None]
    up = torch.randn(P, B, T, W, generator=torch.Generator().manual_seed(1))
    ours = torch_fused.lstm_layer(x, wx, wh, b, keep)
    ref = reference_layer(x, wx, wh, b, keep)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    for name, a, r in zip(["dx", "dwx", "dwh", "db"], torch.autograd.grad(ours, [x, wx, wh, b], up),
                          torch.autograd.grad(ref, [x, wx, wh, b], up)):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-5, msg=name)
    if pads is not None:  # a pad carries the zero state, as in the reference
        for m, k in enumerate(pads):
            assert not ours[m, :, :k].any()


def test_pads_that_do_not_lead_are_left_to_the_reference():
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[1, 3] = False
    x = torch.zeros(2, 1, 6, 3)
    assert not torch_fused.applies(x, keep)
    assert torch_fused.applies(x, torch.arange(6)[None].expand(2, 6) >= torch.tensor([[0], [2]]))
    with pytest.raises(ValueError, match="pads must lead"):
        torch_fused.lstm_layer(x, torch.zeros(3, 4), torch.zeros(1, 4), torch.zeros(4), keep)


def test_the_torso_takes_the_fused_path_only_in_auto_mode_without_recording(monkeypatch):
    cfg = NetworkConfig(arch="lstm", d=3, width=5, layers=2)
    p = networks.init_params(cfg)
    x = torch.randn(2, 3, 7, 3)
    calls = []
    real = torch_fused.lstm_layer
    monkeypatch.setattr(torch_fused, "lstm_layer", lambda *a: calls.append(1) or real(*a))
    fused, _ = networks.lstm_torso(cfg, p, x, None, None, record=False)
    assert len(calls) == 2
    recorded, rec = networks.lstm_torso(cfg, p, x, None, None, record=True)
    with kernels.mode("reference"):
        reference, _ = networks.lstm_torso(cfg, p, x, None, None, record=False)
    assert len(calls) == 2 and set(rec) == {"cell", "hidden"}
    assert torch.equal(recorded, reference)
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-6)


def test_same_inputs_give_bitwise_identical_outputs():
    x, wx, wh, b = tensors(3, 4, 10, 5, 6, True)
    assert torch.equal(torch_fused.lstm_layer(x, wx, wh, b), torch_fused.lstm_layer(x, wx, wh, b))


@pytest.mark.parametrize("P,B,T,D,W", [(1, 1, 1, 1, 1), (3, 2, 9, 5, 7), (2, 5, 49, 3, 128)])
def test_a_gradient_for_the_initial_state_only_matches_reference(P, B, T, D, W):
    """Frozen shared weights and an input without gradient, as Paper A's prefixed members' content
    runs: ATen's LSTM (oneDNN off for the call) against the reference recurrence."""
    x, wx, wh, b = (t.detach() for t in tensors(P, B, T, D, W, own=False))
    g = torch.Generator().manual_seed(2)
    h0, c0 = (torch.randn(P, B, W, generator=g).requires_grad_() for _ in range(2))
    up = torch.randn(P, B, T, W, generator=g)
    ours, (h_last, c_last) = torch_fused.lstm_layer_with_state(x, wx, wh, b, (h0, c0))
    ref, ref_c = lstm_recurrence_reference(networks._linear(x, wx) + b, wh, None, h0, c0)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c_last, ref_c[:, :, -1], rtol=1e-5, atol=1e-6)
    out_ours = ours.mul(up).sum() + c_last.sum()
    out_ref = ref.mul(up).sum() + ref_c[:, :, -1].sum()
    grads = torch.autograd.grad(out_ours, [h0, c0])
    for a, r in zip(grads, torch.autograd.grad(out_ref, [h0, c0])):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-5)
    again, (_, c_again) = torch_fused.lstm_layer_with_state(x, wx, wh, b, (h0, c0))
    assert torch.equal(again, ours)  # same inputs, same bits
    assert all(map(torch.equal, torch.autograd.grad(again.mul(up).sum() + c_again.sum(), [h0, c0]), grads))


def test_only_a_call_that_wants_the_state_gradient_alone_leaves_onednn(monkeypatch):
    seen = []
    real = torch.lstm
    monkeypatch.setattr(torch, "lstm", lambda *a: seen.append(torch.backends.mkldnn.enabled) or real(*a))
    was = torch.backends.mkldnn.enabled
    x, wx, wh, b = tensors(2, 3, 5, 4, 6, own=False)
    state = tuple(torch.zeros(2, 3, 6, requires_grad=True) for _ in range(2))
    torch_fused.lstm_layer_with_state(x, wx, wh, b, state)  # trained weights
    for w in (wx, wh, b):
        w.requires_grad_(False)
    torch_fused.lstm_layer_with_state(x, wx, wh, b, state)  # the input's gradient wanted too
    with torch.no_grad():
        torch_fused.lstm_layer_with_state(x.detach(), wx, wh, b, state)  # forward only
    torch_fused.lstm_layer_with_state(x.detach(), wx, wh, b)  # nothing wants a gradient
    torch_fused.lstm_layer_with_state(x.detach(), wx, wh, b, state)  # the state's gradient alone
    assert seen == [was, was, was, was, False] and torch.backends.mkldnn.enabled == was
