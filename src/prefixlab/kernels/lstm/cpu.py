"""The LSTM recurrence for CPUs: a time loop with a hand-written backward.

Autograd through the reference records about ten nodes per timestep and computes the
recurrent weight gradient as one small product per step. Here the forward saves only
the gate activations, the backward walks the steps with a few in-place elementwise
ops and one product each, and the weight gradient is a single product over every
step's rows at the end. Work runs time-major, (T, P, B, ...), so each step's slice is
contiguous.

Shapes as in `prefixlab.kernels.lstm`; wh may also be one shared (W, 4W) matrix.
"""

from __future__ import annotations

import torch


def _recurrent_product(out: torch.Tensor, h: torch.Tensor, wh: torch.Tensor) -> torch.Tensor:
    """out + h @ wh for h (P, B, W): a bmm for per-member (P, W, 4W) weights, one product over
    every member's rows for a shared (W, 4W) matrix."""
    if wh.dim() == 3:
        return torch.baddbmm(out, h, wh)
    P, B, W = h.shape
    return torch.addmm(out.reshape(P * B, -1), h.reshape(P * B, W), wh).view(P, B, -1)


def _back_product(dgates: torch.Tensor, wh: torch.Tensor) -> torch.Tensor:
    """dgates @ wh^T: (P, B, 4W) -> (P, B, W)."""
    if wh.dim() == 3:
        return torch.bmm(dgates, wh.transpose(1, 2))
    P, B, G = dgates.shape
    return torch.mm(dgates.reshape(P * B, G), wh.t()).view(P, B, -1)


class _StepwiseLSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xproj, wh, keep, h0, c0):
        P, B, T, G = xproj.shape
        W = G // 4
        x_tm = xproj.permute(2, 0, 1, 3).contiguous()  # (T, P, B, G)
        acts = torch.empty(T, P, B, G, dtype=xproj.dtype, device=xproj.device)  # i, g, f, o after their nonlinearity
        hs = torch.empty(T + 1, P, B, W, dtype=xproj.dtype, device=xproj.device)  # hs[0] = h0
        cs = torch.empty(T + 1, P, B, W, dtype=xproj.dtype, device=xproj.device)
        tanh_c = torch.empty(T, P, B, W, dtype=xproj.dtype, device=xproj.device)
        if h0 is None:
            hs[0].zero_()
            cs[0].zero_()
        else:
            hs[0].copy_(h0)
            cs[0].copy_(c0)
        for t in range(T):
            a = acts[t]
            pre = _recurrent_product(x_tm[t], hs[t], wh)
            torch.sigmoid(pre, out=a)  # one call over all four gates; g's columns are overwritten next
            i, g, f, o = a[..., :W], a[..., W:2 * W], a[..., 2 * W:3 * W], a[..., 3 * W:]
            torch.tanh(pre[..., W:2 * W], out=g)
            c_new = torch.addcmul(f * cs[t], i, g)
            torch.tanh(c_new, out=tanh_c[t])
            h_new = o * tanh_c[t]
            if keep is None:
                cs[t + 1].copy_(c_new)
                hs[t + 1].copy_(h_new)
            else:
                m = keep[:, t, None, None]
                torch.where(m, c_new, cs[t], out=cs[t + 1])
                torch.where(m, h_new, hs[t], out=hs[t + 1])
        ctx.save_for_backward(wh, keep, acts, hs, cs, tanh_c)
        ctx.has_init = h0 is not None
        return hs[1:].permute(1, 2, 0, 3), cs[1:].permute(1, 2, 0, 3)

    @staticmethod
    def backward(ctx, dH, dC):
        wh, keep, acts, hs, cs, tanh_c = ctx.saved_tensors
        T, P, B, G = acts.shape
        W = G // 4
        dgates = torch.zeros(T, P, B, G, dtype=acts.dtype, device=acts.device)
        dH_tm = None if dH is None else dH.permute(2, 0, 1, 3)
        dC_tm = None if dC is None else dC.permute(2, 0, 1, 3)
        dh = torch.zeros(P, B, W, dtype=acts.dtype, device=acts.device)
        dc = torch.zeros_like(dh)
        for t in range(T - 1, -1, -1):
            if dH_tm is not None:
                dh = dh + dH_tm[t]
            if dC_tm is not None:
                dc = dc + dC_tm[t]
            a = acts[t]
            i, g, f, o = a[..., :W], a[..., W:2 * W], a[..., 2 * W:3 * W], a[..., 3 * W:]
            tc = tanh_c[t]
            # through h = o tanh(c) into the cell
            dc_t = torch.addcmul(dc, dh * o, 1 - tc * tc)
            d = dgates[t]
            torch.mul(dc_t * g, i * (1 - i), out=d[..., :W])
            torch.mul(dc_t * i, 1 - g * g, out=d[..., W:2 * W])
            torch.mul(dc_t * cs[t], f * (1 - f), out=d[..., 2 * W:3 * W])
            torch.mul(dh * tc, o * (1 - o), out=d[..., 3 * W:])
            dc_prev = dc_t * f
            if keep is None:
                dh = _back_product(d, wh)
                dc = dc_prev
            else:
                m = keep[:, t, None, None]
                d.mul_(m)  # a pad step had no gates: its input gets no gradient
                dh = torch.where(m, _back_product(d, wh), dh)
                dc = torch.where(m, dc_prev, dc)
        dxproj = dgates.permute(1, 2, 0, 3)
        dwh = None
        if ctx.needs_input_grad[1]:
            # sum over steps and batch of h_{t-1}^T dgates_t as one product
            h_prev = hs[:-1].permute(1, 0, 2, 3).reshape(P, T * B, W)
            dg = dgates.permute(1, 0, 2, 3).reshape(P, T * B, G)
            if wh.dim() == 3:
                dwh = torch.bmm(h_prev.transpose(1, 2), dg)
            else:
                dwh = torch.mm(h_prev.reshape(-1, W).t(), dg.reshape(-1, G))
        dh0 = dc0 = None
        if ctx.has_init:
            dh0, dc0 = dh, dc
        return dxproj, dwh, None, dh0, dc0


def lstm_recurrence_stepwise(xproj, wh, keep=None, h0=None, c0=None):
    """Same contract and numbers (to rounding) as `lstm_recurrence_reference`; see module doc."""
    return _StepwiseLSTM.apply(xproj, wh, keep, h0, c0)
