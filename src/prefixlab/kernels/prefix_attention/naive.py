"""Plain PyTorch prefix attention: the reference for the fused kernel."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def visibility(T: int, Lp: int, key_valid: torch.Tensor | None, P: int, device) -> torch.Tensor:
    """(P, 1, T, Lp + T) bool: every prefix entry, causal valid content keys, always oneself."""
    causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()
    allowed = causal[None].expand(P, T, T)
    if key_valid is not None:
        allowed = allowed & key_valid[:, None, :]
    # a query always sees itself, so a pad's row has one key and stays finite
    allowed = allowed | torch.eye(T, dtype=torch.bool, device=device)
    prefix = torch.ones(P, T, Lp, dtype=torch.bool, device=device)
    return torch.cat([prefix, allowed], dim=-1)[:, None]


def prefix_attention_reference(q, k, v, prefix_k=None, prefix_v=None, key_valid=None, scale=None):
    """q, k, v (P, B, H, T, E); prefix_k, prefix_v (P, H, Lp, E) or None; key_valid (P, T) bool.

    Returns (P, B, H, T, E).
    """
    P, B, H, T, E = q.shape
    Lp = 0 if prefix_k is None else prefix_k.shape[2]
    if Lp:
        k = torch.cat([prefix_k[:, None].expand(P, B, H, Lp, E), k], dim=3)
        v = torch.cat([prefix_v[:, None].expand(P, B, H, Lp, E), v], dim=3)
    # 4-D operands: on the CPU, SDPA's fused (flash) path takes only 4-D inputs, and is
    # about 4x faster forward and backward than its 5-D math path.
    q4, k4, v4 = q.reshape(P * B, H, T, E), k.reshape(P * B, H, Lp + T, E), v.reshape(P * B, H, Lp + T, E)
    if not Lp and key_valid is None:
        # Plain causal attention: is_causal skips the mask's memory and the blocks above the
        # diagonal; bitwise equal to the explicit mask and 6-18% faster on the CPU (d 64-128).
        return F.scaled_dot_product_attention(q4, k4, v4, is_causal=True, scale=scale).reshape(P, B, H, T, E)
    if key_valid is None:  # one mask for every sequence, broadcast rather than copied
        mask = visibility(T, Lp, None, 1, q.device)
    else:
        mask = visibility(T, Lp, key_valid, P, q.device)[:, None].expand(P, B, 1, T, Lp + T).reshape(P * B, 1, T, Lp + T)
    out = F.scaled_dot_product_attention(q4, k4, v4, attn_mask=mask, scale=scale)
    return out.reshape(P, B, H, T, E)
