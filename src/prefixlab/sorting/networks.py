"""A minGPT-style decoder for a population of tuning runs (SPEC 2.2).

Weights live in a dict name -> tensor. The pretrained (base) weights carry no member
axis and are shared; a member's own tensors carry a leading member axis P:
  fine-tuning  every weight (P, ...), initialised from the base
  prefix       "prefix" (P, layers, L, D)
  lora         "<matrix>.lora_a" (P, D_in, r) and "<matrix>.lora_b" (P, r, D_out)
Weight matrices are stored (D_in, D_out): y = x @ W + b.

Shape legend: P members, B samples, S positions, H heads, E = D / H head width,
L prefix slots, D model width, V vocabulary.

Per-layer prefix tuning: at every layer the attention input rows 0..L-1 are the
layer's learned vectors (at layer 0 instead of token + position embedding). A content
position sees them only as keys and values, so the model runs on the content
positions L.. alone and passes each layer's prefix keys/values to the attention (the fused
prefix-attention kernel on a GPU, explicit attention on the CPU); the prefix rows' own
outputs are overwritten at the next layer and never read.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from prefixlab import kernels
from prefixlab.kernels.prefix_attention import prefix_attention
from prefixlab.sorting.configs import LORA_MATRICES, METHODS, GPTConfig  # noqa: F401 (re-exported)
from prefixlab.kernels.prefix_attention.naive import visibility
from prefixlab.norms import standardize

DECAYED = ("attn_qkv", "attn_proj", "mlp_fc", "mlp_proj", "head")  # linear weights (weight decay applies)



def init_weights(cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """minGPT init: N(0, 0.02) for linear and embedding weights, output projections
    N(0, 0.02 / sqrt(2 layers)), biases 0, LayerNorm 1/0."""
    gen = torch.Generator().manual_seed(cfg.init_seed)
    d = cfg.d

    def normal(*shape, std=0.02):
        return torch.randn(*shape, generator=gen) * std

    w = {"wte": normal(cfg.vocab, d), "wpe": normal(cfg.positions, d)}
    proj_std = 0.02 / math.sqrt(2 * cfg.layers)
    for l in range(cfg.layers):
        if cfg.ln_1:
            w[f"h{l}.ln_1.w"], w[f"h{l}.ln_1.b"] = torch.ones(d), torch.zeros(d)
        for kind in ("attn_qkv", "attn_proj", "mlp_fc", "mlp_proj"):
            shape = cfg.matrix_shape(kind)
            w[f"h{l}.{kind}.w"] = normal(*shape, std=proj_std if kind.endswith("proj") else 0.02)
            w[f"h{l}.{kind}.b"] = torch.zeros(shape[1])
        w[f"h{l}.ln_2.w"], w[f"h{l}.ln_2.b"] = torch.ones(d), torch.zeros(d)
    w["ln_f.w"], w["ln_f.b"] = torch.ones(d), torch.zeros(d)
    w["head.w"] = normal(d, cfg.vocab)
    return w


def is_decayed(name: str) -> bool:
    """Linear weights (not biases, LayerNorm or embeddings)."""
    return name.endswith(".w") and name.split(".")[-2] in DECAYED


def member_tensors(cfg: GPTConfig, base: dict, method: str, members: int, seeds: list[int]) -> dict:
    """Initial trainable tensors of `members` runs of one method; seeds[i] seeds member i."""
    if method not in METHODS:
        raise ValueError(f"unknown tuning method {method!r}; known: {list(METHODS)}")
    if method == "finetune":
        return {n: t.expand(members, *t.shape).clone() for n, t in base.items()}
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    if method == "prefix":
        return {"prefix": torch.stack([torch.randn(cfg.layers, cfg.prefix_length, cfg.d, generator=g) for g in gens])}
    out = {}
    for l in range(cfg.layers):
        for kind in LORA_MATRICES:
            d_in, d_out = cfg.matrix_shape(kind)
            bound = 1.0 / math.sqrt(d_in)  # Kaiming-uniform with a = sqrt(5), as torch.nn.Linear
            out[f"h{l}.{kind}.lora_a"] = torch.stack(
                [torch.rand(d_in, cfg.lora_rank, generator=g) * 2 * bound - bound for g in gens])
            out[f"h{l}.{kind}.lora_b"] = torch.zeros(members, cfg.lora_rank, d_out)
    return out


class Model:
    """Forward pass of P members: shared base weights plus each member's own tensors."""

    def __init__(self, cfg: GPTConfig, base: dict, own: dict | None = None, members: int = 1):
        self.cfg, self.base, self.own = cfg, base, own or {}
        self.members = next(iter(self.own.values())).shape[0] if self.own else members

    @property
    def content_offset(self) -> int:
        """Index of the first input digit in this model's logits: prefix tuning drops the slots."""
        return 0 if "prefix" in self.own else self.cfg.prefix_length

    def weight(self, name: str) -> torch.Tensor:
        """(P, ...) member tensor, or the shared (...) base tensor."""
        return self.own[name] if name in self.own else self.base[name]

    def linear(self, x, layer_kind: str):
        w, b = self.weight(f"{layer_kind}.w"), self.weight(f"{layer_kind}.b")
        if w.dim() == 2:  # shared: one product over every member's rows, the bias added inside it
            y = F.linear(x, w.t(), b)
        else:  # per member: one batched product, the bias added inside it
            P = x.shape[0]
            y = torch.baddbmm(b[:, None], x.reshape(P, -1, x.shape[-1]), w).reshape(*x.shape[:-1], w.shape[-1])
        a = self.own.get(f"{layer_kind}.lora_a")
        if a is not None:  # LoRA, scale alpha / r = 1
            y = y + _matmul(_matmul(x, a), self.own[f"{layer_kind}.lora_b"])
        return y

    def layer_norm(self, x, name):
        w, b = self.weight(f"{name}.w"), self.weight(f"{name}.b")
        if w.dim() == 1:
            return F.layer_norm(x, (x.shape[-1],), w, b)
        y = standardize(x)
        expand = (slice(None),) + (None,) * (x.dim() - 2)
        return y * w[expand] + b[expand]

    def embed(self, tokens, start: int):
        """tokens (P, B, S') at positions start.. -> (P, B, S', D)."""
        wte, wpe = self.weight("wte"), self.weight("wpe")
        S = tokens.shape[-1]
        if wte.dim() == 2:
            tok = wte[tokens]
            pos = wpe[start:start + S]
        else:
            tok = wte[torch.arange(tokens.shape[0], device=tokens.device)[:, None, None], tokens]
            pos = wpe[:, None, start:start + S]
        return tok + pos

    def forward(self, tokens, *, train: bool = False, record: bool = False, generator: torch.Generator | None = None):
        """tokens (P, B, S) [slots, input, output[:-1]] -> logits (P, B, S', V).

        With a member prefix (prefix tuning) the slots are replaced, S' = S - L content
        positions are returned; otherwise S' = S. `train` turns dropout on. Without dropout
        and recording, slot rows that every sample shares run once per member (B = 1), and
        the content attends to their keys and values as to a prefix: the same function,
        within float rounding, at the cost of S - L positions (LoRA: 0.77x a step at quick
        scale's 2 layers, L = 12).
        record=True also returns one dict per layer:
          probs  (P, B, H, S', L + S' or S')  attention weights
          heads  (P, B, H, S', E)             attention output per head, before the projection
          v      (P, B, H, S', E)             content values
          pv     (P, H, L, E) or None         prefix values
          block  (P, B, S', D)                attention-block output (projection and bias included)
        """
        cfg = self.cfg
        prefix = self.own.get("prefix")
        L = cfg.prefix_length
        p_drop = cfg.dropout if train else 0.0
        slot_rows = None
        if prefix is not None:
            x = self.embed(tokens[..., L:], L)
        elif self._slots_shared(tokens, p_drop, record):
            # Without dropout every sample's slot rows are the same numbers (same tokens, causal
            # attention among the slots alone): computed once per member, they act as a
            # prefix the content positions attend to, as in prefix tuning.
            slot_rows = self.embed(tokens[:, :1, :L], 0)
            x = self.embed(tokens[..., L:], L)
        else:
            x = self.embed(tokens, 0)
        x = _dropout(x, p_drop, generator)
        recording = []
        for l in range(cfg.layers):
            pk = pv = None
            if prefix is not None:
                s = prefix[:, l][:, None]  # (P, 1, L, D): this layer's attention input at the slots
                s = self.layer_norm(s, f"h{l}.ln_1") if cfg.ln_1 else s
                _, pk, pv = self.split_heads(self.linear(s, f"h{l}.attn_qkv"))
                pk, pv = pk[:, 0], pv[:, 0]
            elif slot_rows is not None:
                slot_rows, pk, pv, _ = self.block(l, slot_rows, None, None, 0.0, None, False)
                pk, pv = pk[:, 0], pv[:, 0]
            x, _, _, rec = self.block(l, x, pk, pv, p_drop, generator, record)
            if record:
                recording.append(rec)
        logits = self.head(x)
        if slot_rows is not None:
            P, B = x.shape[:2]
            logits = torch.cat([self.head(slot_rows).expand(P, B, L, -1), logits], dim=2)
        if record:
            return logits, recording
        return logits

    def _slots_shared(self, tokens, p_drop: float, record: bool) -> bool:
        L = self.cfg.prefix_length
        if p_drop > 0 or record or L == 0 or tokens.shape[1] < 2:
            return False
        return bool((tokens[..., :L] == tokens[:, :1, :L]).all())

    def block(self, l: int, x, pk, pv, p_drop: float, generator, record: bool):
        """Layer l on rows x (P, B, S', D) behind prefix keys/values pk, pv (P, H, L, E) or None
        -> (output rows, this layer's content keys, values (P, B, H, S', E), its recording or None)."""
        cfg = self.cfg
        h = self.layer_norm(x, f"h{l}.ln_1") if cfg.ln_1 else x
        q, k, v = self.split_heads(self.linear(h, f"h{l}.attn_qkv"))
        if record or p_drop > 0 or not kernels.use_triton(q):
            # Without the fused kernel, explicit attention: at Paper B's at most 31 keys per query
            # its forward and backward take 0.64x the time of PyTorch's SDPA at head width 16 and
            # 0.82-0.84x at the published 64 (one thread, batch 64-800; see the README).
            y, probs = attention_with_weights(q, k, v, pk, pv, p_drop, generator)
        else:
            y = prefix_attention(q, k, v, pk, pv)
        P, B, H, S, E = y.shape
        block = self.linear(y.permute(0, 1, 3, 2, 4).reshape(P, B, S, H * E), f"h{l}.attn_proj")
        rec = {"probs": probs, "heads": y, "v": v, "pv": pv, "block": block} if record else None
        x = x + _dropout(block, p_drop, generator)
        m = F.gelu(self.linear(self.layer_norm(x, f"h{l}.ln_2"), f"h{l}.mlp_fc"), approximate="tanh")
        x = x + _dropout(self.linear(m, f"h{l}.mlp_proj"), p_drop, generator)
        return x, k, v, rec

    def head(self, x):
        return _matmul(self.layer_norm(x, "ln_f"), self.weight("head.w"))

    def split_heads(self, qkv):
        """(P, B, S, 3D) -> q, k, v (P, B, H, S, E)."""
        P, B, S, _ = qkv.shape
        H = self.cfg.heads
        # unbind, not indexing: its backward stacks the three gradients, where three selects
        # would each scatter into a zero tensor of all three and sum them (bitwise the same)
        q, k, v = qkv.view(P, B, S, 3, H, self.cfg.d // H).permute(3, 0, 1, 4, 2, 5).unbind(0)
        return q, k, v


def _matmul(x, w):
    """x (P, ..., D_in) @ w: a shared (D_in, D_out) or per-member (P, D_in, D_out) matrix."""
    if w.dim() == 2:
        return x @ w
    P = x.shape[0]
    return torch.matmul(x.reshape(P, -1, x.shape[-1]), w).reshape(*x.shape[:-1], w.shape[-1])


def _dropout(x, p: float, generator):
    if p == 0:
        return x
    # The mask as 1.0 / 0.0 floats, compared in place: with a bool mask `where` and the
    # mask products run a scalar loop per element, with a float one they vectorise.
    keep = torch.rand(x.shape, generator=generator, device=x.device).ge_(p)
    return _KeepScaled.apply(x, keep, 1 - p)


class _KeepScaled(torch.autograd.Function):
    """x / scale * keep for a float 0/1 mask `keep`: the numbers of x * keep / scale (a kept
    entry x / scale, a dropped one a zero of x's sign), in two vectorised passes forward and
    backward. A quick Paper B pretraining step (2 layers, d 64, batch 64) spent 7 of its 39 ms
    in `where` over a bool mask and drawing the mask; float mask: see the README."""

    @staticmethod
    def forward(ctx, x, keep, scale: float):
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x.div(scale).mul_(keep)

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        return grad.div(ctx.scale).mul_(keep), None, None


@functools.lru_cache(maxsize=None)
def _hidden_keys(S: int, Lp: int, device) -> torch.Tensor:
    """(S, Lp + S) 0 where a query sees a key, -inf where it does not: added to the scores, the
    numbers of masked_fill in one vectorised add whose backward passes the gradient through
    (masked_fill runs a scalar loop both ways). Built once per shape; callers never write to it."""
    return torch.zeros(S, Lp + S, device=device).masked_fill_(~visibility(S, Lp, None, 1, device)[0, 0], float("-inf"))


def attention_with_weights(q, k, v, prefix_k=None, prefix_v=None, p_drop: float = 0.0, generator=None):
    """Explicit causal attention behind a prefix, returning (out (P, B, H, S, E),
    weights (P, B, H, S, Lp + S)); attention dropout (p_drop) applies to the weights used."""
    P, B, H, S, E = q.shape
    Lp = 0 if prefix_k is None else prefix_k.shape[2]
    if Lp:
        k = torch.cat([prefix_k[:, None].expand(P, B, H, Lp, E), k], dim=3)
        v = torch.cat([prefix_v[:, None].expand(P, B, H, Lp, E), v], dim=3)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(E)
    probs = torch.softmax(scores + _hidden_keys(S, Lp, q.device), dim=-1)
    used = _dropout(probs, p_drop, generator)
    return used @ v, probs


def output_log_probs(logits, outputs, content_offset: int, digits: int):
    """logits (P, B, S', V) -> log-probability (P, B, N) of each output digit.

    Output digit i is predicted at the position of input digit N-1+i; content_offset is
    the position index (within the logits) of the first input digit."""
    start = content_offset + digits - 1
    logp = torch.log_softmax(logits[..., start:start + digits, :], dim=-1)
    return logp.gather(-1, outputs[..., None]).squeeze(-1)


def output_predictions(logits, content_offset: int, digits: int):
    start = content_offset + digits - 1
    return logits[..., start:start + digits, :].argmax(-1)
