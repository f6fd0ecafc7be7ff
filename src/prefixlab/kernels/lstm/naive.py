"""Plain PyTorch LSTM recurrence of a population: the reference for the fused kernel."""

from __future__ import annotations

import torch


def lstm_recurrence_reference(xproj: torch.Tensor, wh: torch.Tensor, keep: torch.Tensor | None = None,
                              h0: torch.Tensor | None = None, c0: torch.Tensor | None = None):
    """xproj (P, B, T, 4W) input projections plus bias, gate columns [i | g | f | o];
    wh (P, W, 4W) recurrent weights or
    one shared (W, 4W); keep (P, T) bool, a False step carries h and c
    over unchanged (pads); h0, c0 (P, B, W), zero when None.

    Returns h, c: (P, B, T, W) every step's hidden and cell state.
    """
    P, B, T, G = xproj.shape
    W = G // 4
    h = xproj.new_zeros(P, B, W) if h0 is None else h0
    c = xproj.new_zeros(P, B, W) if c0 is None else c0
    hs, cs = [], []
    # unbind once: indexing xproj[:, :, t] per step makes backward O(T^2) in memory traffic
    for t, x_t in enumerate(xproj.unbind(2)):
        gates = x_t + torch.matmul(h, wh)
        i, g, f, o = gates.chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        if keep is None:
            c, h = c_new, h_new
        else:
            m = keep[:, t, None, None]
            c = torch.where(m, c_new, c)
            h = torch.where(m, h_new, h)
        hs.append(h)
        cs.append(c)
    return torch.stack(hs, dim=2), torch.stack(cs, dim=2)
