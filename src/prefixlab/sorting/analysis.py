"""Evaluation of Paper B models: accuracy, greedy decoding, attention maps and the
prefix-bias theory check (SPEC 2.3 item 5)."""

from __future__ import annotations

import numpy as np
import torch

from prefixlab.sorting import networks
from prefixlab.sorting.data import DigitSpec, sample_task_batch, sequences


def test_set(task: str, samples: int, spec: DigitSpec, seed: int):
    """(inputs, outputs) of `samples` fresh test-split inputs for one task."""
    x, y, _ = sample_task_batch(np.random.default_rng(seed), task, samples, spec, "test")
    return x, y


@torch.no_grad()
def accuracy(model: networks.Model, inputs: np.ndarray, outputs: np.ndarray, chunk: int = 800, device="cpu"):
    """(P,) fraction of samples whose 10 greedily decoded output digits are all right.

    Greedy decoding gets every digit right exactly when each teacher-forced argmax is
    right (each greedy step is then fed the true digit), so one forward pass decides it;
    `greedy_decode` does the autoregressive loop and the tests check both agree."""
    cfg = model.cfg
    correct = torch.zeros(model.members, device=device)
    for lo in range(0, len(inputs), chunk):
        x, y = inputs[lo:lo + chunk], outputs[lo:lo + chunk]
        tokens = torch.from_numpy(sequences(x, y, cfg.prefix_length)).to(device)
        tokens = tokens.expand(model.members, *tokens.shape)
        pred = networks.output_predictions(model.forward(tokens), model.content_offset, cfg.digits)
        correct += (pred == torch.from_numpy(y).to(device)).all(-1).sum(-1)
    return (correct / len(inputs)).cpu().numpy()


@torch.no_grad()
def greedy_decode(model: networks.Model, inputs: np.ndarray, device="cpu") -> np.ndarray:
    """(B, N) inputs -> (P, B, N) outputs decoded one digit at a time."""
    cfg = model.cfg
    N = cfg.digits
    out = np.zeros((model.members, len(inputs), N), dtype=np.int64)
    for i in range(N):
        tokens = np.stack([sequences(inputs, out[p], cfg.prefix_length) for p in range(model.members)])
        logits = model.forward(torch.from_numpy(tokens).to(device))
        out[:, :, i] = networks.output_predictions(logits, model.content_offset, N)[:, :, i].cpu().numpy()
    return out


@torch.no_grad()
def theory_check(cfg: networks.GPTConfig, base: dict, prefixes: torch.Tensor, inputs: np.ndarray, outputs: np.ndarray,
                 device="cpu") -> dict[str, np.ndarray]:
    """Check the prefix-bias identity of Petrov et al. at layer 0, the one layer whose
    content input a prefix does not change.

    prefixes (K, layers, L, D). With a prefix, query i's attention over content key j is
        A_pre[i, j] = (1 - a_i) * A_free[i, j],   a_i = prefix attention mass of query i,
    where A_free is the prefix-free model's content attention renormalised over the
    content (that model still has its L slot tokens), and its output is
        y_pre[i] = (1 - a_i) * y_free[i] + sum_k w_ik * pv_k,   w_ik = attention on slot k,
    so for L = 1 the shift y_pre[i] - (1 - a_i) y_free[i] lies along the prefix value pv.

    Returns (K,) max absolute deviations: "attention", "output", "direction" (NaN for
    L > 1: the shift is then a query-dependent combination of the L prefix values), the
    (K,) mean attention mass on the prefix "prefix_mass", and a
    sample of (predicted, observed) content attention weights of prefix 0 for plotting.
    """
    L = cfg.prefix_length
    K = prefixes.shape[0]
    tokens = torch.from_numpy(sequences(inputs, outputs, L)).to(device)
    _, free = networks.Model(cfg, base).forward(tokens[None], record=True)
    _, pre = networks.Model(cfg, base, {"prefix": prefixes.to(device)}).forward(tokens.expand(K, *tokens.shape), record=True)
    free, pre = free[0], pre[0]
    content = free["probs"][:, :, :, L:, L:]  # (1, B, H, S', S'): content queries over content keys
    content = content / content.sum(-1, keepdim=True)
    w = pre["probs"][..., :L]  # (K, B, H, S', L)
    mass = w.sum(-1, keepdim=True)
    predicted = (1 - mass) * content
    observed = pre["probs"][..., L:]
    attention_dev = (observed - predicted).abs().flatten(1).amax(1)
    y_free = content @ free["v"][:, :, :, L:]  # (1, B, H, S', E)
    shift = pre["heads"] - (1 - mass) * y_free
    pv = pre["pv"][:, None]  # (K, 1, H, L, E)
    output_dev = (shift - w @ pv).abs().flatten(1).amax(1)
    if L == 1:
        direction = pv[..., 0, :] / pv[..., 0, :].norm(dim=-1, keepdim=True)  # (K, 1, H, E)
        along = (shift * direction[:, :, :, None]).sum(-1, keepdim=True) * direction[:, :, :, None]
        direction_dev = (shift - along).abs().flatten(1).amax(1)
    else:
        direction_dev = torch.full((K,), float("nan"))
    visible = torch.ones_like(predicted[0], dtype=torch.bool).tril()  # causal content pairs of prefix 0
    return {
        "attention": attention_dev.cpu().numpy(),
        "output": output_dev.cpu().numpy(),
        "direction": direction_dev.cpu().numpy(),
        "prefix_mass": mass.flatten(1).mean(1).cpu().numpy(),
        "scatter_predicted": predicted[0][visible].cpu().numpy(),
        "scatter_observed": observed[0][visible].cpu().numpy(),
    }


@torch.no_grad()
def attention_map(model: networks.Model, inputs: np.ndarray, device="cpu"):
    """Attention weights of member 0 on one input fed with its own greedy output.

    Returns (weights (layers, H, S, S) over all positions, NaN on prefix-slot queries of a
    prefix-tuned model whose slot rows are not computed; decoded output (N,))."""
    cfg = model.cfg
    x = np.asarray(inputs)[None]
    decoded = greedy_decode(model, x, device)[:1, 0]  # (1, N)
    tokens = torch.from_numpy(sequences(x, decoded, cfg.prefix_length)).to(device)[None]
    tokens = tokens.expand(model.members, *tokens.shape[1:])
    _, rec = model.forward(tokens, record=True)
    S, L = cfg.positions, cfg.prefix_length
    maps = torch.full((cfg.layers, cfg.heads, S, S), float("nan"))
    for l, r in enumerate(rec):
        probs = r["probs"][0, 0].cpu()
        if probs.shape[-2] == S:
            maps[l] = probs
        else:  # prefix tuning: queries are the content positions L..
            maps[l, :, L:] = probs
    return maps.numpy(), decoded[0]


@torch.no_grad()
def block_outputs(model: networks.Model, inputs: np.ndarray, device="cpu"):
    """Layer-0 attention-block output at the last input position: (P, B, D)."""
    cfg = model.cfg
    y = np.zeros_like(inputs)
    tokens = torch.from_numpy(sequences(inputs, y, cfg.prefix_length)).to(device)
    _, rec = model.forward(tokens.expand(model.members, *tokens.shape), record=True)
    return rec[0]["block"][:, :, model.content_offset + cfg.digits - 1].cpu().numpy()


@torch.no_grad()
def prefix_directions(cfg: networks.GPTConfig, base: dict, prefixes: torch.Tensor) -> np.ndarray:
    """(K, D): the layer-0 prefix value of each prefix (slot 0) through the output
    projection, without bias: the direction an L = 1 prefix pushes the block output in."""
    model = networks.Model(cfg, base, {"prefix": prefixes})
    s = prefixes[:, 0, :1][:, None]  # (K, 1, 1, D)
    s = model.layer_norm(s, "h0.ln_1") if cfg.ln_1 else s
    _, _, v = model.split_heads(model.linear(s, "h0.attn_qkv"))  # (K, 1, H, 1, E)
    v = v[:, 0, :, 0].reshape(prefixes.shape[0], cfg.d)
    return (v @ base["h0.attn_proj.w"]).cpu().numpy()
