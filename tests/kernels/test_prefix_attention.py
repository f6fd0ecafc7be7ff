"""Fused prefix attention vs the PyTorch reference: outputs and every gradient."""

from __future__ import annotations

import pytest
import torch

from prefixlab import kernels
from prefixlab.kernels.prefix_attention import prefix_attention

from .conftest import DEVICE, assert_close, grads


def make(P, B, H, T, E, Lp, pads, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(P, B, H, T, E, generator=g).to(DEVICE).requires_grad_() for _ in range(3))
    pk = pv = None
    if Lp:
        pk, pv = (torch.randn(P, H, Lp, E, generator=g).to(DEVICE).requires_grad_() for _ in range(2))
    valid = None
    if pads:
        valid = torch.ones(P, T, dtype=torch.bool)
        valid[::2, : min(4, T - 1)] = False
        valid = valid.to(DEVICE)
    return q, k, v, pk, pv, valid


@pytest.mark.parametrize("P,B,H,T,E,Lp,pads", [
    (1, 3, 2, 7, 8, 0, False),
    (5, 3, 1, 7, 5, 1, True),
    (2, 3, 2, 57, 8, 6, False),
    (2, 5, 2, 57, 16, 0, True),
    (1, 2, 1, 20, 8, 19, True),
    (1, 2, 2, 57, 32, 0, True),  # the paper's head widths: Paper A (d 128, 4 heads), Maxi and Paper B (64), b1 (96)
    (1, 2, 2, 29, 64, 10, False),
    (1, 2, 1, 19, 96, 1, False),
])
def test_forward_and_gradients_match_reference(P, B, H, T, E, Lp, pads):
    q, k, v, pk, pv, valid = make(P, B, H, T, E, Lp, pads)
    inputs = [q, k, v, pk, pv]
    up = torch.randn(P, B, H, T, E, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    out = prefix_attention(q, k, v, pk, pv, valid)
    with kernels.mode("reference"):
        ref = prefix_attention(q, k, v, pk, pv, valid)
    assert_close("out", out, ref)
    names = ["dq", "dk", "dv", "dprefix_k", "dprefix_v"][: len([x for x in inputs if x is not None])]
    for name, a, b in zip(names, grads([out], inputs, [up]), grads([ref], inputs, [up])):
        assert_close(name, a, b)


def test_prefix_of_length_zero_equals_no_prefix():
    q, k, v, _, _, valid = make(2, 2, 1, 7, 4, 0, True)
    empty = torch.zeros(2, 1, 0, 4, device=DEVICE)
    assert torch.equal(prefix_attention(q, k, v, empty, empty, valid), prefix_attention(q, k, v, None, None, valid))


def test_pad_keys_are_invisible_to_other_queries():
    q, k, v, _, _, valid = make(2, 1, 1, 6, 4, 0, True)
    out = prefix_attention(q, k, v, key_valid=valid).detach()
    v2 = v.detach().clone()
    v2[0, :, :, 0] += 100.0  # member 0's position 0 is a pad
    out2 = prefix_attention(q, k, v2, key_valid=valid)
    assert torch.equal(out[0, ..., 1:, :], out2[0, ..., 1:, :])


def test_bad_shapes_are_named():
    q, k, v, pk, pv, _ = make(2, 2, 1, 5, 4, 3, False)
    with pytest.raises(ValueError, match="k must match q"):
        prefix_attention(q, k[:, :1], v)
    with pytest.raises(ValueError, match="prefix_v must be"):
        prefix_attention(q, k, v, pk, pv[:1])
    with pytest.raises(ValueError, match="key_valid must be bool"):
        prefix_attention(q, k, v, key_valid=torch.ones(2, 5, device=DEVICE))


def test_auto_mode_sends_only_prefixed_attention_to_the_kernel(monkeypatch):
    """What auto picks on a GPU (measured there): SDPA without a prefix, the kernel with one."""
    import prefixlab.kernels.prefix_attention as pa

    calls = []
    monkeypatch.setattr(kernels, "use_triton", lambda *t: True)
    monkeypatch.setattr(pa._FusedPrefixAttention, "apply", lambda *a: calls.append(a) or a[0])
    q, k, v, pk, pv, valid = make(1, 2, 1, 5, 4, 2, True)
    with kernels.mode("auto"):
        prefix_attention(q, k, v, key_valid=valid)
        assert calls == []
        prefix_attention(q, k, v, pk, pv, valid)
        assert len(calls) == 1
    with kernels.mode("triton"):
        prefix_attention(q, k, v, key_valid=valid)
        assert len(calls) == 2


def test_causal_reference_equals_the_explicit_mask_bitwise():
    """Without prefix or pads the reference asks SDPA for is_causal: on the CPU the same
    numbers, forward and backward, as the explicit visibility mask it replaces."""
    import torch.nn.functional as F

    from prefixlab.kernels.prefix_attention.naive import prefix_attention_reference, visibility

    P, B, H, T, E = 2, 3, 2, 57, 16
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(P, B, H, T, E, generator=g).requires_grad_() for _ in range(3))
    up = torch.randn(P, B, H, T, E, generator=g)
    out = prefix_attention_reference(q, k, v, scale=0.25)
    mask = visibility(T, 0, None, P, q.device)[:, None].expand(P, B, 1, T, T).reshape(P * B, 1, T, T)
    explicit = F.scaled_dot_product_attention(*(t.reshape(P * B, H, T, E) for t in (q, k, v)), attn_mask=mask,
                                              scale=0.25).reshape(P, B, H, T, E)
    assert torch.equal(out, explicit)
    for a, b in zip(grads([out], [q, k, v], [up]), grads([explicit], [q, k, v], [up])):
        assert torch.equal(a, b)
