"""One LSTM layer of a population through PyTorch's fused LSTM (`torch.lstm`): the CPU path.

On the CPU `torch.lstm` runs oneDNN's LSTM, input projection and recurrence in one call, with
a hand-fused backward; the reference recurrence dispatches the gate arithmetic op by op per
step. A call whose backward wants only the initial state's gradient takes ATen's native LSTM
(`_run`). Members sharing the frozen weights go through one call over all their rows; members
with their own weights take one call each. Same numbers as the reference up to float rounding.

lstm_layer(x, wx, wh, b, keep) -> h
    x     (P, B, T, D)   layer input
    wx    (D, 4W) shared or (P, D, 4W) per member; gate columns [i | g | f | o]
    wh    (W, 4W) shared or (P, W, 4W) per member
    b     (4W,) shared or (P, 4W) per member
    keep  (P, T) bool or None: each member's steps are leading pads (False) then real steps
    h     (P, B, T, W)   hidden state of every step, zero on the pads (the state they carry)

lstm_layer_with_state(x, wx, wh, b, state=None) -> h, (h_last, c_last)
    the same for pad-free rows from an initial state (h0, c0), each (P, B, W), or zero, also
    returning the last step's state: Paper A's prefixed members run their BOS and slot rows
    once (B = 1) and start every sequence's content from the state they leave
"""

from __future__ import annotations

import torch


def _torch_gate_order(w: torch.Tensor) -> torch.Tensor:
    """Gate columns [i | g | f | o] (ours) -> [i | f | g | o] (torch.lstm's rows)."""
    i, g, f, o = w.chunk(4, dim=-1)
    return torch.cat([i, f, g, o], dim=-1)


def leading_pads(keep: torch.Tensor | None, P: int, T: int) -> list[int] | None:
    """Each member's number of leading pads, or None when some member's pads are not all
    leading (then this path does not apply)."""
    if keep is None:
        return [0] * P
    pads = (~keep).sum(1)
    steps = torch.arange(T, device=keep.device)
    if not bool((keep == (steps[None] >= pads[:, None])).all()):
        return None
    return pads.tolist()


def applies(x: torch.Tensor, keep: torch.Tensor | None) -> bool:
    """Whether lstm_layer can compute this call: CPU float32 tensors, pads only leading."""
    return (x.device.type == "cpu" and x.dtype == torch.float32
            and leading_pads(keep, x.shape[0], x.shape[2]) is not None)


def _run(x: torch.Tensor, wx: torch.Tensor, wh: torch.Tensor, b: torch.Tensor, state=None):
    """(N, T, D) rows through one LSTM from `state` (h0, c0), each (1, N, W), or zero
    -> (every step's h (N, T, W), the last step's h and c (1, N, W))."""
    W = wh.shape[-1] // 4
    if state is None:
        zero = x.new_zeros(1, x.shape[0], W)
        state = (zero, zero)
    weights = [_torch_gate_order(wx).t(), _torch_gate_order(wh).t(), _torch_gate_order(b), torch.zeros_like(b)]
    args = (x, state, weights, True, 1, 0.0, torch.is_grad_enabled(), False, True)
    if not only_state_gradient(x, state, (wx, wh, b)):
        return torch.lstm(*args)
    # oneDNN's backward computes the input's and the weights' gradients whether or not they are
    # wanted; ATen's own LSTM (the same products, its backward through autograd) skips both.
    # Paper A's prefixed members start their content from the head's state and need nothing
    # else: a member-step 0.60x a FullWT member's instead of 0.85-0.90x at paper shapes
    # (benchmarks/population.py, medians), 127 -> 92 ms on one thread.
    # With the input's gradient wanted as well, oneDNN is as fast or faster (256-3072 rows).
    mkldnn = torch.backends.mkldnn
    was = mkldnn.enabled
    mkldnn.enabled = False
    try:
        return torch.lstm(*args)
    finally:
        mkldnn.enabled = was


def only_state_gradient(x: torch.Tensor, state, weights) -> bool:
    """Whether a backward will want the initial state's gradient and neither the input's nor a weight's."""
    if not torch.is_grad_enabled() or x.requires_grad or any(w.requires_grad for w in weights):
        return False
    return any(s.requires_grad for s in (state or ()))


def _member_weights(m: int, wx: torch.Tensor, wh: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
    """Member m's wx, wh, b: its own row of a per-member tensor, or the shared one."""
    return [t[m] if t.dim() == dim + 1 else t for t, dim in ((wx, 2), (wh, 2), (b, 1))]


def lstm_layer(x: torch.Tensor, wx: torch.Tensor, wh: torch.Tensor, b: torch.Tensor,
               keep: torch.Tensor | None = None) -> torch.Tensor:
    P, B, T, _ = x.shape
    W = wh.shape[-1] // 4
    pads = leading_pads(keep, P, T)
    if pads is None:
        raise ValueError("lstm_layer: pads must lead each member's sequence")
    parts, order = [], []
    if wx.dim() == 2 and wh.dim() == 2 and b.dim() == 1:  # one call per pad count, over every member with it
        for k in sorted(set(pads)):
            rows = [m for m in range(P) if pads[m] == k]
            group = x if len(rows) == P else x[rows]  # no copy when every member has the same pads
            h = _run(group[:, :, k:].reshape(len(rows) * B, T - k, -1), wx, wh, b)[0].reshape(len(rows), B, T - k, W)
            parts.append(torch.cat([h.new_zeros(len(rows), B, k, W), h], dim=2) if k else h)
            order += rows
    else:
        for m in range(P):
            k = pads[m]
            h = _run(x[m, :, k:], *_member_weights(m, wx, wh, b))[0][None]
            parts.append(torch.cat([h.new_zeros(1, B, k, W), h], dim=2) if k else h)
            order.append(m)
    out = torch.cat(parts) if len(parts) > 1 else parts[0]
    if order != list(range(P)):
        out = out[torch.argsort(torch.tensor(order, device=x.device))]
    return out


def lstm_layer_with_state(x: torch.Tensor, wx: torch.Tensor, wh: torch.Tensor, b: torch.Tensor, state=None):
    """lstm_layer for pad-free rows from an initial state: `state` (h0, c0), each (P, B, W), or zero
    -> (h (P, B, T, W), the last step's (h, c), each (P, B, W))."""
    P, B, T, _ = x.shape
    W = wh.shape[-1] // 4
    if wx.dim() == 2 and wh.dim() == 2 and b.dim() == 1:
        init = None if state is None else tuple(s.reshape(1, P * B, W) for s in state)
        h, h_last, c_last = _run(x.reshape(P * B, T, -1), wx, wh, b, init)
        return h.reshape(P, B, T, W), (h_last.reshape(P, B, W), c_last.reshape(P, B, W))
    outs, lasts = [], []
    for m in range(P):
        init = None if state is None else tuple(s[m][None] for s in state)
        h, h_last, c_last = _run(x[m], *_member_weights(m, wx, wh, b), init)
        outs.append(h)
        lasts.append((h_last, c_last))
    return torch.stack(outs), (torch.cat([h for h, _ in lasts]), torch.cat([c for _, c in lasts]))
