"""Causal multi-head attention of a population behind a prefix segment.

prefix_attention(q, k, v, prefix_k=None, prefix_v=None, key_valid=None, scale=None) -> out
    q, k, v           (P, B, H, T, E)  queries, keys, values of the content positions
    prefix_k/v        (P, H, Lp, E)    per-member prefix entries seen by every query (Paper B's
                                       per-layer prefixes), or None (Lp = 0: Paper A, whose
                                       prefix positions sit inside the content)
    key_valid         (P, T) bool      False marks a pad key: no other query sees it
    out               (P, B, H, T, E)
Query i sees every prefix entry, content keys j <= i that are valid, and always itself.
Differentiable in q, k, v, prefix_k, prefix_v. QK LayerNorm is applied to q and k before.
"""

from __future__ import annotations

import math

import torch

from prefixlab import kernels
from prefixlab.kernels.prefix_attention.naive import prefix_attention_reference

__all__ = ["prefix_attention", "prefix_attention_reference"]


class _FusedPrefixAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, prefix_k, prefix_v, key_valid, scale):
        from prefixlab.kernels.prefix_attention import fused

        out, lse = fused.attention_fwd(q, k, v, prefix_k, prefix_v, key_valid, scale)
        ctx.save_for_backward(q, k, v, prefix_k, prefix_v, key_valid, out, lse)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, dout):
        from prefixlab.kernels.prefix_attention import fused

        q, k, v, prefix_k, prefix_v, key_valid, out, lse = ctx.saved_tensors
        dq, dk, dv, dpk, dpv = fused.attention_bwd(dout.contiguous(), q, k, v, prefix_k, prefix_v, key_valid,
                                                   out, lse, ctx.scale)
        return dq, dk, dv, dpk, dpv, None, None


def _check(q, k, v, prefix_k, prefix_v, key_valid):
    if q.dim() != 5:
        raise ValueError(f"prefix_attention: q must be (P, B, H, T, E), got {tuple(q.shape)}")
    P, B, H, T, E = q.shape
    for name, t in (("k", k), ("v", v)):
        if t.shape != q.shape:
            raise ValueError(f"prefix_attention: {name} must match q {tuple(q.shape)}, got {tuple(t.shape)}")
    if (prefix_k is None) != (prefix_v is None):
        raise ValueError("prefix_attention: give both prefix_k and prefix_v or neither")
    if prefix_k is not None:
        Lp = prefix_k.shape[2] if prefix_k.dim() == 4 else -1
        for name, t in (("prefix_k", prefix_k), ("prefix_v", prefix_v)):
            if t.shape != (P, H, Lp, E):
                raise ValueError(f"prefix_attention: {name} must be (P, H, Lp, E) = {(P, H, 'Lp', E)}, got {tuple(t.shape)}")
    if key_valid is not None and (key_valid.shape != (P, T) or key_valid.dtype != torch.bool):
        raise ValueError(f"prefix_attention: key_valid must be bool (P, T) = {(P, T)}, got {key_valid.dtype} {tuple(key_valid.shape)}")
    devices = {t.device for t in (q, k, v, prefix_k, prefix_v, key_valid) if t is not None}
    if len(devices) > 1:
        raise ValueError(f"prefix_attention: tensors on several devices {sorted(map(str, devices))}")


def prefix_attention(q, k, v, prefix_k=None, prefix_v=None, key_valid=None, scale=None):
    _check(q, k, v, prefix_k, prefix_v, key_valid)
    if prefix_k is not None and prefix_k.shape[2] == 0:
        prefix_k = prefix_v = None
    if not kernels.use_triton(q) or (prefix_k is None and kernels.get_mode() == "auto"):
        # Without a prefix this is causal attention with a pad mask, where PyTorch's SDPA measured
        # faster on an H200 (Paper A's paper-scale r2s tuning job, 80 members: 167.6 ms per step
        # against 183.0 with the kernel); "auto" keeps the kernel for prefixed attention (Paper B's
        # prefix population: 1.07-1.10x the reference). Mode "triton" still forces the kernel.
        return prefix_attention_reference(q, k, v, prefix_k, prefix_v, key_valid, scale)
    if q.dtype != torch.float32:
        raise ValueError(f"prefix_attention: the fused kernel takes float32, got {q.dtype}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    prefix = (None, None) if prefix_k is None else (prefix_k.contiguous(), prefix_v.contiguous())
    valid = None if key_valid is None else key_valid.to(torch.int8).contiguous()
    return _FusedPrefixAttention.apply(q.contiguous(), k.contiguous(), v.contiguous(), *prefix, valid, scale)
