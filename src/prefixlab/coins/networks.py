"""LSTM and Transformer predictors for a whole population at once (SPEC 1.2).

A parameter tensor either carries a leading population axis P (each member its own
copy: members with different weights run in one batched product, `torch.bmm`) or
none (one copy shared by every member: the product runs over all members' rows at
once, and autograd computes no weight gradient unless the shared tensor asks for one).

Sequence layout: every member sees T = 1 + L + N positions.
  prefix members: [BOS, slot_1..slot_L, x_1..x_N]
  plain members:  [pad_1..pad_L, BOS, x_1..x_N]   (pads are invisible)
so the prediction for x_n is always read at position L + n - 1. Pads are masked
out as attention keys and skipped by the LSTM (state passes through unchanged), so
a plain member computes exactly what a prefix-free network computes, and members
with and without prefixes share one forward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from prefixlab import kernels
from prefixlab.coins.configs import NetworkConfig
from prefixlab.coins.init import lecun_normal, orthogonal
from prefixlab.norms import standardize
from prefixlab.kernels.lstm import lstm_recurrence, torch_fused
from prefixlab.kernels.prefix_attention import prefix_attention

Params = dict[str, torch.Tensor]
LN_EPS = 1e-6

EMBED = ("emb_w", "emb_b")
UNEMBED = ("unemb_w", "unemb_b")


def is_lora(name: str) -> bool:
    return name.startswith("lora_")


def torso_out_dim(cfg: NetworkConfig) -> int:
    return cfg.width if cfg.arch == "lstm" else cfg.d


def init_params(cfg: NetworkConfig) -> Params:
    """One network's parameters (no population axis), seeded by cfg.init_seed."""
    gen = torch.Generator().manual_seed(cfg.init_seed)
    V, D, W = cfg.vocab, cfg.d, cfg.width
    p: Params = {"emb_w": lecun_normal(V, D, gen), "emb_b": torch.zeros(D)}
    if cfg.arch == "lstm":
        fan = D
        for l in range(cfg.layers):
            p[f"lstm{l}_wx"] = lecun_normal(fan, 4 * W, gen)
            p[f"lstm{l}_wh"] = orthogonal(W, 4 * W, gen)
            p[f"lstm{l}_b"] = torch.zeros(4 * W)
            fan = W
    else:
        r = cfg.lora_rank
        for l in range(cfg.layers):
            p[f"ln1_{l}_s"], p[f"ln1_{l}_b"] = torch.ones(D), torch.zeros(D)
            for n in "qkvo":
                p[f"w{n}_{l}"] = lecun_normal(D, D, gen)
                p[f"lora_{n}{l}_a"] = lecun_normal(D, r, gen)
                p[f"lora_{n}{l}_b"] = torch.zeros(r, D)
            p[f"lnq_{l}_s"], p[f"lnk_{l}_s"] = torch.ones(D), torch.ones(D)
            p[f"ln2_{l}_s"], p[f"ln2_{l}_b"] = torch.ones(D), torch.zeros(D)
            p[f"mlp1_{l}"] = lecun_normal(D, 4 * W, gen)
            p[f"mlp2_{l}"] = lecun_normal(4 * W, D, gen)
            p[f"ln3_{l}_s"], p[f"ln3_{l}_b"] = torch.ones(D), torch.zeros(D)
    p["unemb_w"] = lecun_normal(torso_out_dim(cfg), V, gen)
    p["unemb_b"] = torch.zeros(V)
    return p


def activation_elements(cfg: NetworkConfig, positions: int) -> int:
    """Rough fp32 elements one sequence's forward keeps for the backward (the torso's
    widest activations per layer, and the attention matrix)."""
    attention = cfg.heads * positions if cfg.arch == "transformer" else 0
    return positions * (8 * max(cfg.d, 4 * cfg.width) * cfg.layers + attention)


def stack(params: Params, members: int) -> Params:
    """Give every tensor a population axis of `members` independent copies."""
    return {k: v.unsqueeze(0).repeat(members, *([1] * v.dim())).contiguous() for k, v in params.items()}


def sinusoidal(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(P, T) integer positions -> (P, T, dim).

    Sine columns first, then cosine columns (not interleaved), inverse frequencies
    spaced geometrically from 1 down to 1e-4. We use dim//2 sine and dim - dim//2
    cosine columns, not the reference's off-by-one D/2+1 / D/2-1 split.
    """
    n_sin = dim // 2
    n_cos = dim - n_sin
    def freqs(n):
        return torch.pow(1e-4, torch.arange(n, dtype=torch.float32, device=positions.device) / max(n - 1, 1))
    pos = positions.to(torch.float32)[..., None]
    return torch.cat([torch.sin(pos * freqs(n_sin)), torch.cos(pos * freqs(n_cos))], dim=-1)


def _per_member(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A (D,) shared or (P, D) per-member vector shaped to broadcast over x (P, ..., D)."""
    return v if v.dim() == 1 else v.view(v.shape[0], *([1] * (x.dim() - 2)), v.shape[-1])


def _layer_norm(x, scale, bias=None):
    # x (P, B, T, D); scale/bias (D,) shared or (P, D) per member
    if scale.dim() == 1:
        return F.layer_norm(x, x.shape[-1:], scale, bias, eps=LN_EPS)
    y = standardize(x, LN_EPS) * _per_member(scale, x)
    return y if bias is None else y + _per_member(bias, x)


def _linear(x, w):
    """x (P, ..., I) @ w: a shared (I, O) matrix as one product over every member's rows,
    a per-member (P, I, O) one as one bmm over members."""
    if w.dim() == 2:
        return x @ w
    P, I = x.shape[0], x.shape[-1]
    return torch.bmm(x.reshape(P, -1, I), w).reshape(*x.shape[:-1], w.shape[-1])


def _proj(p: Params, x, name: str, layer: int):
    """Attention projection with its LoRA branch, x W + (x A) B (no alpha/r scaling),
    computed as x (W + A B): one large matmul instead of three."""
    w = p[f"w{name}_{layer}"] + torch.matmul(p[f"lora_{name}{layer}_a"], p[f"lora_{name}{layer}_b"])
    return _linear(x, w)


def _transformer_layer(cfg: NetworkConfig, p: Params, l: int, x, valid, prefix_kv=None):
    """Layer l on rows x (P, B, T, D), behind per-member prefix keys and values (P, H, Lp, hd)
    or none -> (output rows, attention-block output, this layer's keys and values (P, B, H, T, hd))."""
    P, B, T, D = x.shape
    H = cfg.heads
    hd = D // H
    a = _layer_norm(x, p[f"ln1_{l}_s"], p[f"ln1_{l}_b"])
    q = _layer_norm(_proj(p, a, "q", l), p[f"lnq_{l}_s"])
    k = _layer_norm(_proj(p, a, "k", l), p[f"lnk_{l}_s"])
    v = _proj(p, a, "v", l)
    # (P, B, H, T, hd)
    q, k, v = (t.reshape(P, B, T, H, hd).transpose(2, 3) for t in (q, k, v))
    pk, pv = (None, None) if prefix_kv is None else prefix_kv
    att = prefix_attention(q, k, v, pk, pv, key_valid=valid, scale=1.0 / math.sqrt(hd))
    att = att.transpose(2, 3).reshape(P, B, T, D)
    att = _proj(p, att, "o", l)
    x = x + att
    h = _layer_norm(x, p[f"ln2_{l}_s"], p[f"ln2_{l}_b"])
    h = _linear(F.gelu(_linear(h, p[f"mlp1_{l}"]), approximate="tanh"), p[f"mlp2_{l}"])
    x = _layer_norm(x + h, p[f"ln3_{l}_s"], p[f"ln3_{l}_b"])
    return x, att, k, v


def transformer_torso(cfg: NetworkConfig, p: Params, x, valid, positions, record: bool):
    """x (P, B, T, D) -> (P, B, T, D); records each layer's attention-block output."""
    x = x + sinusoidal(positions, x.shape[-1])[:, None]
    states = []
    for l in range(cfg.layers):
        x, att, _, _ = _transformer_layer(cfg, p, l, x, valid)
        if record:
            states.append(att)
    rec = {"attention": torch.cat(states, -1)} if record else {}
    return x, rec


def _fused_lstm_applies(x: torch.Tensor, valid: torch.Tensor | None) -> bool:
    """Whether the CPU's fast path (PyTorch's fused LSTM, `torch_fused`) takes this layer."""
    return kernels.get_mode() == "auto" and not kernels.use_triton(x) and torch_fused.applies(x, valid)


def lstm_torso(cfg: NetworkConfig, p: Params, x, valid, positions, record: bool):
    """x (P, B, T, D) -> (P, B, T, W); records cell and hidden state of every layer.

    Gate order in the fused kernel columns: input, cell candidate, forget, output.
    No +1 forget-gate bias (SPEC 1.9).
    """
    cells, hiddens = [], []
    for l in range(cfg.layers):
        wx, wh, b = p[f"lstm{l}_wx"], p[f"lstm{l}_wh"], p[f"lstm{l}_b"]
        if not record and _fused_lstm_applies(x, valid):  # it returns no cell states
            x = torch_fused.lstm_layer(x, wx, wh, b, valid)
            continue
        xproj = _linear(x, wx) + _per_member(b, x)  # (P, B, T, 4W)
        x, c = lstm_recurrence(xproj, wh, valid)
        if record:
            cells.append(c)
            hiddens.append(x)
    rec = {"cell": torch.cat(cells, -1), "hidden": torch.cat(hiddens, -1)} if record else {}
    return x, rec


@dataclass(frozen=True)
class PrefixInput:
    """What each member places in the L prefix slots.

    kind: (P,) int, one of PREFIX_NONE / PREFIX_TOKEN / PREFIX_SIMPLEX / PREFIX_SOFT
    token: (P, L, V) token-space prefix parameters (one-hot for hard prefixes)
    soft:  (P, L, D) embedding-space prefix
    """

    kind: torch.Tensor
    token: torch.Tensor
    soft: torch.Tensor

    @property
    def length(self) -> int:
        return self.token.shape[1]


PREFIX_NONE, PREFIX_TOKEN, PREFIX_SIMPLEX, PREFIX_SOFT = 0, 1, 2, 3


def slot_inputs(p: Params, prefix: PrefixInput) -> torch.Tensor:
    """(P, L, D) model input at each member's prefix slots."""
    emb_w, emb_b = p["emb_w"], p["emb_b"]
    kind = prefix.kind
    token_vec = torch.where((kind == PREFIX_SIMPLEX)[:, None, None], torch.softmax(prefix.token, -1), prefix.token)
    slots = _linear(token_vec, emb_w) + _per_member(emb_b, token_vec)
    return torch.where((kind == PREFIX_SOFT)[:, None, None], prefix.soft, slots)  # soft prefixes bypass the embedding


def embed_inputs(p: Params, onehot: torch.Tensor, prefix: PrefixInput):
    """Build the (P, B, T, D) model input, key validity (P, T) and positions (P, T).

    Validity is None when no member has pads (every member prefixed, or L = 0), so the
    torsos skip masking altogether.

    onehot: (P, B, N, V) tokens of each member's batch.
    """
    P, B, N, V = onehot.shape
    L = prefix.length
    emb_w, emb_b = p["emb_w"], p["emb_b"]
    tok = _linear(onehot, emb_w) + _per_member(emb_b, onehot)
    bos = _per_member(emb_b, onehot).expand(P, B, 1, -1)  # embedding of the zero vector
    kind = prefix.kind
    slots = slot_inputs(p, prefix)[:, None].expand(P, B, L, -1)
    with_prefix = torch.cat([bos, slots, tok], dim=2)
    plain = torch.cat([torch.zeros_like(slots), bos, tok], dim=2)
    has = (kind != PREFIX_NONE)
    x = torch.where(has[:, None, None, None], with_prefix, plain)
    T = 1 + L + N
    ar = torch.arange(T, device=onehot.device)
    positions = torch.where(has[:, None], ar, (ar - L).clamp(min=0))
    valid = has[:, None] | (ar >= L)
    return x, (None if bool(valid.all()) else valid), positions


def forward(cfg: NetworkConfig, p: Params, onehot: torch.Tensor, prefix: PrefixInput, record: bool = False):
    """Log-predictions for x_1..x_N of every member: (P, B, N, V); optional recorded states.

    Recorded states cover all T positions in the member's own layout (see module doc).
    Without recording, where every member is prefixed and the batch holds several sequences,
    the BOS and slot rows run once per member (`forward_shared_head`).
    """
    if not record and prefix.length and not bool((prefix.kind != PREFIX_NONE).any()):
        # no member fills the slots: skip the pads (invisible keys, carried LSTM state) altogether
        prefix = PrefixInput(prefix.kind, prefix.token[:, :0], prefix.soft[:, :0])
    if not record and prefix.length and onehot.shape[1] > 1 and bool((prefix.kind != PREFIX_NONE).all()):
        return forward_shared_head(cfg, p, onehot, prefix), {}
    # x_N predicts nothing, but feeding it keeps pretraining and the weight members' numbers
    # bitwise those of earlier releases (leaving it out saves 1 of 51 rows and moves them).
    x, valid, positions = embed_inputs(p, onehot, prefix)
    torso = lstm_torso if cfg.arch == "lstm" else transformer_torso
    h, states = torso(cfg, p, x, valid, positions, record)
    L, N = prefix.length, onehot.shape[2]
    return _log_predictions(p, h[:, :, L:L + N]), states


def _log_predictions(p: Params, h: torch.Tensor) -> torch.Tensor:
    logits = _linear(h, p["unemb_w"]) + _per_member(p["unemb_b"], h)
    return torch.log_softmax(logits, dim=-1)


def forward_shared_head(cfg: NetworkConfig, p: Params, onehot: torch.Tensor, prefix: PrefixInput) -> torch.Tensor:
    """forward() for members that all have a prefix, without recording: (P, B, N, V).

    The head [BOS, slot_1..slot_L] is the same numbers in every sample of a member (the same
    inputs at the same positions, causal), so it runs once per member (B = 1): the content
    x_1..x_{N-1} attends to its keys and values as to a prefix (Transformer), or starts from
    the state it leaves (LSTM). The same function as the full layout within float rounding,
    at N - 1 rows per sample instead of 1 + L + N.
    """
    P, B, N, _ = onehot.shape
    L = prefix.length
    emb_b = p["emb_b"]
    head = torch.cat([_per_member(emb_b, prefix.soft).expand(P, 1, -1), slot_inputs(p, prefix)], dim=1)[:, None]
    content = _linear(onehot[:, :, :N - 1], p["emb_w"]) + _per_member(emb_b, onehot)
    if cfg.arch == "transformer":
        ar = torch.arange(1 + L + N - 1, device=onehot.device)[None]
        D = head.shape[-1]
        head = head + sinusoidal(ar[:, :1 + L], D)[:, None]
        content = content + sinusoidal(ar[:, 1 + L:], D)[:, None]
        for l in range(cfg.layers):
            head, _, k, v = _transformer_layer(cfg, p, l, head, None)
            if N > 1:
                content, _, _, _ = _transformer_layer(cfg, p, l, content, None, (k[:, 0], v[:, 0]))
    else:
        for l in range(cfg.layers):
            wx, wh, b = p[f"lstm{l}_wx"], p[f"lstm{l}_wh"], p[f"lstm{l}_b"]
            head, (h_last, c_last) = lstm_layer_with_state(head, wx, wh, b)
            if N > 1:
                content, _ = lstm_layer_with_state(content, wx, wh, b, (h_last.expand(P, B, -1), c_last.expand(P, B, -1)))
    first = _log_predictions(p, head[:, :, L:]).expand(P, B, 1, -1)  # x_1 is read at the last slot
    if N == 1:
        return first
    return torch.cat([first, _log_predictions(p, content)], dim=2)


def lstm_layer_with_state(x, wx, wh, b, state=None):
    """One LSTM layer over pad-free rows x (P, B, T, D) from `state` (h0, c0) (P, B, W) or zero
    -> (h (P, B, T, W), its last step's (h, c) (P, B, W))."""
    if _fused_lstm_applies(x, None):
        return torch_fused.lstm_layer_with_state(x, wx, wh, b, state)
    xproj = _linear(x, wx) + _per_member(b, x)
    h, c = lstm_recurrence(xproj, wh, None, *(state or (None, None)))
    return h, (h[:, :, -1], c[:, :, -1])


def sequence_log_loss(logp: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Per-position log loss -log pi(x_n | x_<n): (P, B, N)."""
    return -(logp * onehot).sum(-1)
