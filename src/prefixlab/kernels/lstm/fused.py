"""LSTM recurrence for a population: per step, the recurrent product of every member as one
batched matrix product (cuBLAS), then one fused Triton kernel for the gate arithmetic, the
state update and the pad carry-over; the backward pass runs the same two steps in reverse.

Why not one persistent kernel that keeps each member's W_h on chip: at the paper's widths
(128, 256) the four (W, W) gate blocks need 0.5-2 MB of shared memory per program, far over
the 163 KB (A100) / 227 KB (H100/H200) a block may use, and the backward did not compile for
sm_90 (issue 13). The gate kernels here are elementwise: no shared memory, few registers, at
every width; the products run at cuBLAS speed.

Shapes: P members, B batch, T steps, W width, N = P * B rows; gate columns [i | g | f | o].
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from prefixlab import kernels

BLOCK = 512  # elements of (N, W) per program: 8 per thread keeps the backward free of spills
NUM_WARPS = 4


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _tanh(x):
    # 2 sigmoid(2x) - 1: portable across Triton versions (no libdevice), stable for large |x|
    return 2.0 / (1.0 + tl.exp(-2.0 * x)) - 1.0


@triton.jit(do_not_specialize=["t", "T"])
def _cell_fwd_kernel(PRE, HS, CS, KEEP, H, C, GATES, t, B, T, W, NW,
                     HAS_KEEP: tl.constexpr, BLOCK: tl.constexpr):
    """One step for every (member, sequence, unit): PRE (N, 4W) pre-activations; HS, CS (N, W)
    the running state, updated in place; H, C (N, T, W) and GATES (N, T, 4W) at step t."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < NW
    n = offs // W
    w = offs % W
    pre = PRE + n * 4 * W + w
    i = _sigmoid(tl.load(pre, mask=mask, other=0.0))
    g = _tanh(tl.load(pre + W, mask=mask, other=0.0))
    f = _sigmoid(tl.load(pre + 2 * W, mask=mask, other=0.0))
    o = _sigmoid(tl.load(pre + 3 * W, mask=mask, other=0.0))
    c = tl.load(CS + offs, mask=mask, other=0.0)
    c_new = f * c + i * g
    h_new = o * _tanh(c_new)
    if HAS_KEEP:
        keep = tl.load(KEEP + (n // B) * T + t, mask=mask, other=1) != 0
        c_new = tl.where(keep, c_new, c)
        h_new = tl.where(keep, h_new, tl.load(HS + offs, mask=mask, other=0.0))
    tl.store(HS + offs, h_new, mask=mask)
    tl.store(CS + offs, c_new, mask=mask)
    out = (n * T + t) * W + w
    tl.store(H + out, h_new, mask=mask)
    tl.store(C + out, c_new, mask=mask)
    gg = GATES + (n * T + t) * 4 * W + w
    tl.store(gg, i, mask=mask)
    tl.store(gg + W, g, mask=mask)
    tl.store(gg + 2 * W, f, mask=mask)
    tl.store(gg + 3 * W, o, mask=mask)


@triton.jit(do_not_specialize=["t", "T"])
def _cell_bwd_kernel(DH, DC, DHS, DCS, C, C0, GATES, KEEP, DG, DGATES, t, B, T, W, NW,
                     HAS_DC: tl.constexpr, HAS_INIT: tl.constexpr, HAS_KEEP: tl.constexpr, BLOCK: tl.constexpr):
    """Step t in reverse: DHS holds the gradient reaching h_t from step t+1 (its recurrent
    product plus any carry) and is overwritten with the carry towards h_{t-1}; DCS likewise
    for c. DG (N, 4W) receives the gate gradients for the next recurrent product, DGATES
    (N, T, 4W) keeps them for the weight gradients."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < NW
    n = offs // W
    w = offs % W
    out = (n * T + t) * W + w
    dh = tl.load(DH + out, mask=mask, other=0.0) + tl.load(DHS + offs, mask=mask, other=0.0)
    dc = tl.load(DCS + offs, mask=mask, other=0.0)
    if HAS_DC:
        dc += tl.load(DC + out, mask=mask, other=0.0)
    c_t = tl.load(C + out, mask=mask, other=0.0)
    first = (offs * 0 + t) == 0  # a tensor, so the masks stay tensors
    c_prev = tl.load(C + out - W, mask=mask & ~first, other=0.0)
    if HAS_INIT:
        c_prev += tl.load(C0 + offs, mask=mask & first, other=0.0)
    gg = GATES + (n * T + t) * 4 * W + w
    i = tl.load(gg, mask=mask, other=0.0)
    g = tl.load(gg + W, mask=mask, other=0.0)
    f = tl.load(gg + 2 * W, mask=mask, other=0.0)
    o = tl.load(gg + 3 * W, mask=mask, other=0.0)
    tc = _tanh(c_t)
    dct = dc + dh * o * (1.0 - tc * tc)
    d_i = dct * g * i * (1.0 - i)
    d_g = dct * i * (1.0 - g * g)
    d_f = dct * c_prev * f * (1.0 - f)
    d_o = dh * tc * o * (1.0 - o)
    dc_carry = dct * f
    dh_carry = tl.zeros_like(dh)
    if HAS_KEEP:
        # a carried-over step passes h's and c's gradients through untouched
        keep = tl.load(KEEP + (n // B) * T + t, mask=mask, other=1) != 0
        d_i = tl.where(keep, d_i, 0.0)
        d_g = tl.where(keep, d_g, 0.0)
        d_f = tl.where(keep, d_f, 0.0)
        d_o = tl.where(keep, d_o, 0.0)
        dc_carry = tl.where(keep, dc_carry, dc)
        dh_carry = tl.where(keep, dh_carry, dh)
    tl.store(DHS + offs, dh_carry, mask=mask)
    tl.store(DCS + offs, dc_carry, mask=mask)
    dg = DG + n * 4 * W + w
    kept = DGATES + (n * T + t) * 4 * W + w
    tl.store(dg, d_i, mask=mask)
    tl.store(dg + W, d_g, mask=mask)
    tl.store(dg + 2 * W, d_f, mask=mask)
    tl.store(dg + 3 * W, d_o, mask=mask)
    tl.store(kept, d_i, mask=mask)
    tl.store(kept + W, d_g, mask=mask)
    tl.store(kept + 2 * W, d_f, mask=mask)
    tl.store(kept + 3 * W, d_o, mask=mask)


# Argument types of each kernel, for ahead-of-time compilation (kernels/aot.py).
_F, _I = "*fp32", "i32"
AOT_SIGNATURES = {
    "lstm_fwd": (_cell_fwd_kernel, dict(PRE=_F, HS=_F, CS=_F, KEEP="*i8", H=_F, C=_F, GATES=_F, t=_I, B=_I, T=_I, W=_I,
                                        NW=_I)),
    "lstm_bwd": (_cell_bwd_kernel, dict(DH=_F, DC=_F, DHS=_F, DCS=_F, C=_F, C0=_F, GATES=_F, KEEP="*i8", DG=_F,
                                        DGATES=_F, t=_I, B=_I, T=_I, W=_I, NW=_I)),
}


def _grid(nw: int) -> tuple[int]:
    return (triton.cdiv(nw, BLOCK),)


def lstm_fwd(xproj, wh, keep, h0, c0):
    P, B, T, G = xproj.shape
    W = G // 4
    H = torch.empty(P, B, T, W, device=xproj.device, dtype=torch.float32)
    C = torch.empty_like(H)
    gates = torch.empty(P, B, T, G, device=xproj.device, dtype=torch.float32)
    kernels.check_indexable("lstm", gates=gates)
    hs = h0.clone() if h0 is not None else xproj.new_zeros(P, B, W)
    cs = c0.clone() if c0 is not None else xproj.new_zeros(P, B, W)
    keep_arg = keep if keep is not None else hs  # never read without HAS_KEEP
    for t in range(T):
        pre = torch.baddbmm(xproj[:, :, t], hs, wh)  # (P, B, 4W): every member's recurrent product at once
        _cell_fwd_kernel[_grid(P * B * W)](pre, hs, cs, keep_arg, H, C, gates, t, B, T, W, P * B * W,
                                           HAS_KEEP=keep is not None, BLOCK=BLOCK, num_warps=NUM_WARPS)
    return H, C, gates


def lstm_bwd(dh, dc, wh, keep, h0, c0, H, C, gates):
    P, B, T, W = H.shape
    dgates = torch.empty_like(gates)
    dg = torch.empty(P, B, 4 * W, device=H.device, dtype=torch.float32)
    dhs = H.new_zeros(P, B, W)
    dcs = H.new_zeros(P, B, W)
    whT = wh.transpose(1, 2)
    dummy = H
    for t in range(T - 1, -1, -1):
        _cell_bwd_kernel[_grid(P * B * W)](
            dh, dc if dc is not None else dummy, dhs, dcs, C, c0 if c0 is not None else dummy, gates,
            keep if keep is not None else dummy, dg, dgates, t, B, T, W, P * B * W,
            HAS_DC=dc is not None, HAS_INIT=c0 is not None, HAS_KEEP=keep is not None, BLOCK=BLOCK,
            num_warps=NUM_WARPS)
        dhs = torch.baddbmm(dhs, dg, whT)  # carry + gradient through h_{t-1} W_h
    # dWh = sum over batch and time of h_{t-1}^T dgates_t: one batched product per member
    h_prev = torch.cat([(h0 if h0 is not None else H.new_zeros(P, B, W))[:, :, None], H[:, :, :-1]], dim=2)
    dwh = torch.bmm(h_prev.reshape(P, B * T, W).transpose(1, 2), dgates.reshape(P, B * T, 4 * W))
    return dgates, dwh, dhs, dcs
