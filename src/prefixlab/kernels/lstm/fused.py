"""Fused LSTM recurrence for a population: one persistent program per (member, batch block)
loops over time with h and c kept on chip; the backward kernel runs the recurrence in
reverse and writes the gate gradients, from which batched matrix products give the
weight and input gradients.

Shapes: P members, B batch, T steps, W width; gate columns [i | g | f | o].
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from prefixlab.kernels import block, warps


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _tanh(x):
    # 2 sigmoid(2x) - 1: portable across Triton versions (no libdevice), stable for large |x|
    return 2.0 / (1.0 + tl.exp(-2.0 * x)) - 1.0


@triton.jit
def _load_gate_weights(WH, p, gate, W, TRANSPOSE: tl.constexpr, BW: tl.constexpr):
    """One gate's (W, W) block of member p's recurrent weights, or its transpose."""
    rk = tl.arange(0, BW)
    rj = tl.arange(0, BW)
    base = WH + p * W * 4 * W + gate * W
    if TRANSPOSE:
        ptrs = base + rk[None, :] * 4 * W + rj[:, None]  # [j, k] = WH[k, gate*W + j]
        mask = (rj[:, None] < W) & (rk[None, :] < W)
    else:
        ptrs = base + rk[:, None] * 4 * W + rj[None, :]  # [k, j]
        mask = (rk[:, None] < W) & (rj[None, :] < W)
    return tl.load(ptrs, mask=mask, other=0.0)


@triton.jit(do_not_specialize=["T"])
def _lstm_fwd_kernel(X, WH, KEEP, H0, C0, H, C, GATES, B, T, W,
                     HAS_KEEP: tl.constexpr, HAS_INIT: tl.constexpr, BB: tl.constexpr, BW: tl.constexpr):
    p = tl.program_id(0)
    rb = tl.program_id(1) * BB + tl.arange(0, BB)
    rw = tl.arange(0, BW)
    mask = (rb[:, None] < B) & (rw[None, :] < W)
    state = (p * B + rb[:, None]) * W + rw[None, :]  # (P, B, W) offsets
    if HAS_INIT:
        h = tl.load(H0 + state, mask=mask, other=0.0)
        c = tl.load(C0 + state, mask=mask, other=0.0)
    else:
        h = tl.zeros((BB, BW), dtype=tl.float32)
        c = tl.zeros((BB, BW), dtype=tl.float32)
    row = (p * B + rb[:, None]) * T  # (P, B, T, .) row offsets without t
    for t in range(0, T):
        xg = X + (row + t) * 4 * W + rw[None, :]
        pre_i = tl.load(xg, mask=mask, other=0.0) + tl.dot(h, _load_gate_weights(WH, p, 0, W, False, BW), input_precision="ieee")
        pre_g = tl.load(xg + W, mask=mask, other=0.0) + tl.dot(h, _load_gate_weights(WH, p, 1, W, False, BW), input_precision="ieee")
        pre_f = tl.load(xg + 2 * W, mask=mask, other=0.0) + tl.dot(h, _load_gate_weights(WH, p, 2, W, False, BW), input_precision="ieee")
        pre_o = tl.load(xg + 3 * W, mask=mask, other=0.0) + tl.dot(h, _load_gate_weights(WH, p, 3, W, False, BW), input_precision="ieee")
        i = _sigmoid(pre_i)
        g = _tanh(pre_g)
        f = _sigmoid(pre_f)
        o = _sigmoid(pre_o)
        c_new = f * c + i * g
        h_new = o * _tanh(c_new)
        if HAS_KEEP:
            keep = tl.load(KEEP + p * T + t) != 0
            c = tl.where(keep, c_new, c)
            h = tl.where(keep, h_new, h)
        else:
            c = c_new
            h = h_new
        out = (row + t) * W + rw[None, :]
        tl.store(H + out, h, mask=mask)
        tl.store(C + out, c, mask=mask)
        gg = GATES + (row + t) * 4 * W + rw[None, :]
        tl.store(gg, i, mask=mask)
        tl.store(gg + W, g, mask=mask)
        tl.store(gg + 2 * W, f, mask=mask)
        tl.store(gg + 3 * W, o, mask=mask)


@triton.jit(do_not_specialize=["T"])
def _lstm_bwd_kernel(DH, DC, WH, KEEP, C0, C, GATES, DGATES, DH0, DC0, B, T, W,
                     HAS_KEEP: tl.constexpr, HAS_INIT: tl.constexpr, HAS_DC: tl.constexpr,
                     BB: tl.constexpr, BW: tl.constexpr):
    p = tl.program_id(0)
    rb = tl.program_id(1) * BB + tl.arange(0, BB)
    rw = tl.arange(0, BW)
    mask = (rb[:, None] < B) & (rw[None, :] < W)
    state = (p * B + rb[:, None]) * W + rw[None, :]
    row = (p * B + rb[:, None]) * T
    dh_next = tl.zeros((BB, BW), dtype=tl.float32)
    dc_next = tl.zeros((BB, BW), dtype=tl.float32)
    for s in range(0, T):
        t = T - 1 - s
        out = (row + t) * W + rw[None, :]
        dh = tl.load(DH + out, mask=mask, other=0.0) + dh_next
        dc = dc_next
        if HAS_DC:
            dc += tl.load(DC + out, mask=mask, other=0.0)
        c_t = tl.load(C + out, mask=mask, other=0.0)
        t_tile = tl.zeros((BB, BW), dtype=tl.int32) + t  # a tensor, so the masks stay tensors
        c_prev = tl.load(C + out - W, mask=mask & (t_tile > 0), other=0.0)
        if HAS_INIT:
            c_prev += tl.load(C0 + state, mask=mask & (t_tile == 0), other=0.0)
        gg = GATES + (row + t) * 4 * W + rw[None, :]
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
        dh_new = tl.dot(d_i, _load_gate_weights(WH, p, 0, W, True, BW), input_precision="ieee")
        dh_new += tl.dot(d_g, _load_gate_weights(WH, p, 1, W, True, BW), input_precision="ieee")
        dh_new += tl.dot(d_f, _load_gate_weights(WH, p, 2, W, True, BW), input_precision="ieee")
        dh_new += tl.dot(d_o, _load_gate_weights(WH, p, 3, W, True, BW), input_precision="ieee")
        dc_new = dct * f
        if HAS_KEEP:
            # a carried-over step passes h's and c's gradients through untouched
            keep = tl.load(KEEP + p * T + t) != 0
            d_i = tl.where(keep, d_i, 0.0)
            d_g = tl.where(keep, d_g, 0.0)
            d_f = tl.where(keep, d_f, 0.0)
            d_o = tl.where(keep, d_o, 0.0)
            dh_new = tl.where(keep, dh_new, dh)
            dc_new = tl.where(keep, dc_new, dc)
        dg_ptr = DGATES + (row + t) * 4 * W + rw[None, :]
        tl.store(dg_ptr, d_i, mask=mask)
        tl.store(dg_ptr + W, d_g, mask=mask)
        tl.store(dg_ptr + 2 * W, d_f, mask=mask)
        tl.store(dg_ptr + 3 * W, d_o, mask=mask)
        dh_next = dh_new
        dc_next = dc_new
    tl.store(DH0 + state, dh_next, mask=mask)
    tl.store(DC0 + state, dc_next, mask=mask)


def _settings(B: int, W: int) -> tuple[int, int, int]:
    BW = block(W)
    # a smaller batch block for wide members keeps the four (BB, BW) gate tiles in registers
    BB = 16 if BW >= 128 or B <= 16 else 32
    return BB, BW, warps(BB * BW * 4)


def lstm_fwd(xproj, wh, keep, h0, c0):
    P, B, T, G = xproj.shape
    W = G // 4
    H = torch.empty(P, B, T, W, device=xproj.device, dtype=torch.float32)
    C = torch.empty_like(H)
    gates = torch.empty(P, B, T, G, device=xproj.device, dtype=torch.float32)
    BB, BW, num_warps = _settings(B, W)
    has_init = h0 is not None
    dummy = H  # never read when the matching flag is off
    _lstm_fwd_kernel[(P, triton.cdiv(B, BB))](
        xproj, wh, keep if keep is not None else dummy, h0 if has_init else dummy, c0 if has_init else dummy,
        H, C, gates, B, T, W, HAS_KEEP=keep is not None, HAS_INIT=has_init, BB=BB, BW=BW, num_warps=num_warps)
    return H, C, gates


def lstm_bwd(dh, dc, wh, keep, h0, c0, H, C, gates):
    P, B, T, W = H.shape
    dgates = torch.empty_like(gates)
    dh0 = torch.empty(P, B, W, device=H.device, dtype=torch.float32)
    dc0 = torch.empty_like(dh0)
    BB, BW, num_warps = _settings(B, W)
    has_init = h0 is not None
    dummy = H
    _lstm_bwd_kernel[(P, triton.cdiv(B, BB))](
        dh, dc if dc is not None else dummy, wh, keep if keep is not None else dummy, c0 if has_init else dummy,
        C, gates, dgates, dh0, dc0, B, T, W, HAS_KEEP=keep is not None, HAS_INIT=has_init, HAS_DC=dc is not None,
        BB=BB, BW=BW, num_warps=num_warps)
    # dWh = sum over batch and time of h_{t-1}^T dgates_t: one batched product per member
    h_prev = torch.cat([(h0 if has_init else H.new_zeros(P, B, W))[:, :, None], H[:, :, :-1]], dim=2)
    dwh = torch.bmm(h_prev.reshape(P, B * T, W).transpose(1, 2), dgates.reshape(P, B * T, 4 * W))
    return dgates, dwh, dh0, dc0
