"""Fused prefix attention (flash-attention style) for a population.

Keys are a prefix segment of Lp entries per member, seen by every query, followed by
the T causal content keys. Forward: one program per (query block, member x batch x head)
streams the prefix then the causal keys with an online softmax and keeps the row
log-sum-exp. Backward: one program per key block (prefix blocks first, then content
blocks) accumulates dK, dV over the queries that see it; one program per query block
accumulates dQ; no atomics, so results are deterministic.

Shapes: q, k, v, out (P, B, H, T, E); prefix_k, prefix_v (P, H, Lp, E); lse (P, B, H, T).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from prefixlab import kernels
from prefixlab.kernels import block

# finite "minus infinity": a fully masked block leaves the running max unchanged
# (constexpr: compiled kernels may only read constexpr globals)
NEG = tl.constexpr(-1.0e30)


@triton.jit
def _content_visible(rm, rn, T, VALID, p, HAS_VALID: tl.constexpr):
    """[BM, BN] bool: content key rn visible to query rm (causal, valid key, or itself)."""
    ok = (rn[None, :] <= rm[:, None]) & (rn[None, :] < T) & (rm[:, None] < T)
    if HAS_VALID:
        kv = tl.load(VALID + p * T + rn, mask=rn < T, other=0) != 0
        ok = ok & (kv[None, :] | (rn[None, :] == rm[:, None]))
    return ok


@triton.jit
def _rows(PTR, base, rn, n, E, BE: tl.constexpr):
    """[len(rn), BE] tile of rows rn (< n) of a row-major (., E) block at PTR + base; zeros outside."""
    re = tl.arange(0, BE)
    return tl.load(PTR + base + rn[:, None] * E + re[None, :], mask=(rn[:, None] < n) & (re[None, :] < E), other=0.0)


@triton.jit
def _online_softmax_step(q, k, v, visible, m_i, l_i, acc, scale):
    """Fold one key block into the running max, normaliser and weighted value sum."""
    s = tl.where(visible, tl.dot(q, tl.trans(k), input_precision="ieee") * scale, NEG)
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp(m_i - m_new)
    pr = tl.exp(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(pr, 1)
    acc = acc * alpha[:, None] + tl.dot(pr, v, input_precision="ieee")
    return m_new, l_i, acc


@triton.jit(do_not_specialize=["T", "Lp"])
def _fwd_kernel(Q, K, V, PK, PV, VALID, OUT, LSE, B, H, T, Lp, E, scale,
                HAS_VALID: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BE: tl.constexpr):
    # (batch x head) on grid axis 0: axis 1 allows only 65535 programs and P*B*H reaches 81920 at paper size
    zh = tl.program_id(0)  # ((p * B) + b) * H + h
    p = zh // (B * H)
    h = zh % H
    rm = tl.program_id(1) * BM + tl.arange(0, BM)
    re = tl.arange(0, BE)
    base = zh * T * E
    pbase = (p * H + h) * Lp * E
    q = _rows(Q, base, rm, T, E, BE)
    m_i = tl.full((BM,), NEG, dtype=tl.float32)
    l_i = tl.zeros((BM,), dtype=tl.float32)
    acc = tl.zeros((BM, BE), dtype=tl.float32)
    for start in range(0, Lp, BN):
        rn = start + tl.arange(0, BN)
        visible = (rn[None, :] < Lp) & (rm[:, None] >= 0)
        m_i, l_i, acc = _online_softmax_step(q, _rows(PK, pbase, rn, Lp, E, BE), _rows(PV, pbase, rn, Lp, E, BE),
                                             visible, m_i, l_i, acc, scale)
    hi = tl.minimum((tl.program_id(1) + 1) * BM, T)
    for start in range(0, hi, BN):
        rn = start + tl.arange(0, BN)
        visible = _content_visible(rm, rn, T, VALID, p, HAS_VALID)
        m_i, l_i, acc = _online_softmax_step(q, _rows(K, base, rn, T, E, BE), _rows(V, base, rn, T, E, BE),
                                             visible, m_i, l_i, acc, scale)
    out = acc / l_i[:, None]
    tl.store(OUT + base + rm[:, None] * E + re[None, :], out, mask=(rm[:, None] < T) & (re[None, :] < E))
    tl.store(LSE + zh * T + rm, m_i + tl.log(l_i), mask=rm < T)


@triton.jit
def _probs_and_ds(q, do, lse, delta, k, v, visible, scale):
    """Recomputed probabilities P and the score gradient dS = P * (dO V^T - delta)."""
    s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
    pr = tl.where(visible, tl.exp(s - lse[:, None]), 0.0)
    dp = tl.dot(do, tl.trans(v), input_precision="ieee")
    ds = pr * (dp - delta[:, None])
    return pr, ds


@triton.jit
def _block(PTR, base, rn, n, E, c0, EC: tl.constexpr):
    """[len(rn), EC] tile of rows rn (< n), columns c0 .. c0 + EC (< E) of a row-major (., E) block."""
    rc = c0 + tl.arange(0, EC)
    return tl.load(PTR + base + rn[:, None] * E + rc[None, :], mask=(rn[:, None] < n) & (rc[None, :] < E), other=0.0)


@triton.jit
def _scores_by_columns(Q, K, qbase, kbase, rm, rn, T, n_keys, E, BM: tl.constexpr, BN: tl.constexpr,
                       BE: tl.constexpr, EC: tl.constexpr):
    """Q K^T of query rows rm and key rows rn, summed over EC-wide column chunks read from memory.

    A [BM, BE] x [BE, BN] fp32 product keeps whole BE-long rows per thread; at BE = 128 that
    alone exceeds the register budget, so wide heads are taken EC columns at a time."""
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for c0 in tl.static_range(0, BE, EC):
        acc = tl.dot(_block(Q, qbase, rm, T, E, c0, EC), tl.trans(_block(K, kbase, rn, n_keys, E, c0, EC)), acc,
                     input_precision="ieee")
    return acc


@triton.jit(do_not_specialize=["T", "Lp"])
def _bwd_dkdv_kernel(Q, K, V, PK, PV, VALID, DO, LSE, DELTA, DK, DV, DPK, DPV, B, H, T, Lp, E, scale,
                     HAS_VALID: tl.constexpr, IS_PREFIX: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                     BE: tl.constexpr, EC: tl.constexpr):
    """dK, dV of one key block: a prefix block (IS_PREFIX, launched over cdiv(Lp, BN) blocks)
    or a content block. Two compiled variants instead of a run-time branch keep only one
    path's tiles live; the score products read keys and values EC columns at a time (from
    cache) instead of holding them. Both keep this kernel free of register spills."""
    zh = tl.program_id(0)
    p = zh // (B * H)
    h = zh % H
    blk = tl.program_id(1)
    rn = blk * BN + tl.arange(0, BN)
    re = tl.arange(0, BE)
    base = zh * T * E
    if IS_PREFIX:
        KP, VP, kbase, n_keys, first_q = PK, PV, (p * H + h) * Lp * E, Lp, 0
    else:
        KP, VP, kbase, n_keys, first_q = K, V, base, T, (blk * BN // BM) * BM
    dk = tl.zeros((BN, BE), dtype=tl.float32)
    dv = tl.zeros((BN, BE), dtype=tl.float32)
    for start in range(first_q, T, BM):
        rm = start + tl.arange(0, BM)
        lse = tl.load(LSE + zh * T + rm, mask=rm < T, other=0.0)
        delta = tl.load(DELTA + zh * T + rm, mask=rm < T, other=0.0)
        if IS_PREFIX:
            visible = (rm[:, None] < T) & (rn[None, :] < Lp)
        else:
            visible = _content_visible(rm, rn, T, VALID, p, HAS_VALID)
        s = _scores_by_columns(Q, KP, base, kbase, rm, rn, T, n_keys, E, BM, BN, BE, EC) * scale
        pr = tl.where(visible, tl.exp(s - lse[:, None]), 0.0)
        dp = _scores_by_columns(DO, VP, base, kbase, rm, rn, T, n_keys, E, BM, BN, BE, EC)
        ds = pr * (dp - delta[:, None])
        dv += tl.dot(tl.trans(pr), _rows(DO, base, rm, T, E, BE), input_precision="ieee")
        dk += tl.dot(tl.trans(ds), _rows(Q, base, rm, T, E, BE), input_precision="ieee") * scale
    kmask = (rn[:, None] < n_keys) & (re[None, :] < E)
    if IS_PREFIX:
        # per (member, batch, head) partial sums; the host sums them over the batch
        pout = zh * Lp * E + rn[:, None] * E + re[None, :]
        tl.store(DPK + pout, dk, mask=kmask)
        tl.store(DPV + pout, dv, mask=kmask)
    else:
        tl.store(DK + base + rn[:, None] * E + re[None, :], dk, mask=kmask)
        tl.store(DV + base + rn[:, None] * E + re[None, :], dv, mask=kmask)


@triton.jit(do_not_specialize=["T", "Lp"])
def _bwd_dq_kernel(Q, K, V, PK, PV, VALID, DO, LSE, DELTA, DQ, B, H, T, Lp, E, scale,
                   HAS_VALID: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BE: tl.constexpr):
    zh = tl.program_id(0)
    p = zh // (B * H)
    h = zh % H
    rm = tl.program_id(1) * BM + tl.arange(0, BM)
    re = tl.arange(0, BE)
    base = zh * T * E
    q = _rows(Q, base, rm, T, E, BE)
    do = _rows(DO, base, rm, T, E, BE)
    lse = tl.load(LSE + zh * T + rm, mask=rm < T, other=0.0)
    delta = tl.load(DELTA + zh * T + rm, mask=rm < T, other=0.0)
    dq = tl.zeros((BM, BE), dtype=tl.float32)
    pbase = (p * H + h) * Lp * E
    for start in range(0, Lp, BN):
        rn = start + tl.arange(0, BN)
        k = _rows(PK, pbase, rn, Lp, E, BE)
        visible = (rm[:, None] < T) & (rn[None, :] < Lp)
        pr, ds = _probs_and_ds(q, do, lse, delta, k, _rows(PV, pbase, rn, Lp, E, BE), visible, scale)
        dq += tl.dot(ds, k, input_precision="ieee") * scale
    hi = tl.minimum((tl.program_id(1) + 1) * BM, T)
    for start in range(0, hi, BN):
        rn = start + tl.arange(0, BN)
        k = _rows(K, base, rn, T, E, BE)
        visible = _content_visible(rm, rn, T, VALID, p, HAS_VALID)
        pr, ds = _probs_and_ds(q, do, lse, delta, k, _rows(V, base, rn, T, E, BE), visible, scale)
        dq += tl.dot(ds, k, input_precision="ieee") * scale
    tl.store(DQ + base + rm[:, None] * E + re[None, :], dq, mask=(rm[:, None] < T) & (re[None, :] < E))


# columns per score product in the dK/dV kernel (see _scores_by_columns)
SCORE_COLUMNS = 32


def block_settings(T: int, E: int) -> tuple[int, int, int, int]:
    """(BM, BN, BE, warps). The fp32 dot products hold their operands in registers: blocks
    of at most 32 rows and eight warps from 1024-element tiles on keep the kernels from
    spilling (kernels/aot.py measures it)."""
    BE = block(E)
    BM = BN = 16 if T <= 16 or BE >= 64 else 32
    return BM, BN, BE, 8 if BM * BE >= 1024 else 4


# Argument types of each kernel, for ahead-of-time compilation (kernels/aot.py).
_F, _I = "*fp32", "i32"
_QKV = dict(Q=_F, K=_F, V=_F, PK=_F, PV=_F, VALID="*i8")
_DIMS = dict(B=_I, H=_I, T=_I, Lp=_I, E=_I, scale="fp32")
AOT_SIGNATURES = {
    "attention_fwd": (_fwd_kernel, {**_QKV, "OUT": _F, "LSE": _F, **_DIMS}),
    "attention_dkdv": (_bwd_dkdv_kernel, {**_QKV, "DO": _F, "LSE": _F, "DELTA": _F, "DK": _F, "DV": _F, "DPK": _F,
                                          "DPV": _F, **_DIMS}),
    "attention_dq": (_bwd_dq_kernel, {**_QKV, "DO": _F, "LSE": _F, "DELTA": _F, "DQ": _F, **_DIMS}),
}


def attention_fwd(q, k, v, prefix_k, prefix_v, key_valid, scale):
    P, B, H, T, E = q.shape
    Lp = 0 if prefix_k is None else prefix_k.shape[2]
    kernels.check_indexable("prefix_attention", q=q)  # k, v have q's shape; prefixes are smaller
    out = torch.empty_like(q)
    lse = torch.empty(P, B, H, T, device=q.device, dtype=torch.float32)
    BM, BN, BE, num_warps = block_settings(T, E)
    pk, pv = (q, q) if prefix_k is None else (prefix_k, prefix_v)  # never read when Lp = 0
    _fwd_kernel[(P * B * H, triton.cdiv(T, BM))](
        q, k, v, pk, pv, key_valid if key_valid is not None else q, out, lse, B, H, T, Lp, E, scale,
        HAS_VALID=key_valid is not None, BM=BM, BN=BN, BE=BE, num_warps=num_warps)
    return out, lse


def attention_bwd(dout, q, k, v, prefix_k, prefix_v, key_valid, out, lse, scale):
    P, B, H, T, E = q.shape
    Lp = 0 if prefix_k is None else prefix_k.shape[2]
    delta = (dout * out).sum(-1)  # (P, B, H, T): rowsum(dO * O), the softmax-gradient correction
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    dpk_parts = torch.empty(P, B, H, Lp, E, device=q.device, dtype=torch.float32)
    dpv_parts = torch.empty_like(dpk_parts)
    BM, BN, BE, num_warps = block_settings(T, E)
    pk, pv = (q, q) if prefix_k is None else (prefix_k, prefix_v)
    valid = key_valid if key_valid is not None else q
    common = dict(HAS_VALID=key_valid is not None, BM=BM, BN=BN, BE=BE, num_warps=num_warps)
    dkdv_args = (q, k, v, pk, pv, valid, dout, lse, delta, dk, dv, dpk_parts, dpv_parts, B, H, T, Lp, E, scale)
    ec = min(BE, SCORE_COLUMNS)
    _bwd_dkdv_kernel[(P * B * H, triton.cdiv(T, BN))](*dkdv_args, IS_PREFIX=False, EC=ec, **common)
    if Lp:
        _bwd_dkdv_kernel[(P * B * H, triton.cdiv(Lp, BN))](*dkdv_args, IS_PREFIX=True, EC=ec, **common)
    _bwd_dq_kernel[(P * B * H, triton.cdiv(T, BM))](
        q, k, v, pk, pv, valid, dout, lse, delta, dq, B, H, T, Lp, E, scale, **common)
    if prefix_k is None:
        return dq, dk, dv, None, None
    return dq, dk, dv, dpk_parts.sum(1), dpv_parts.sum(1)
