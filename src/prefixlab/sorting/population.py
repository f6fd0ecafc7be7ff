"""AdamW training of a population of GPT runs (SPEC 2.2); pretraining is a population
of one fine-tuning member started from the initialisation.

Every member has its own task stream, its own AdamW moments and its own gradient-norm
clipping; members are independent (the loss is a sum of per-member losses), so one
backward pass gives every member exactly its own gradient.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from prefixlab.optim import MemberAdam, TrainResult, check_finite, clip_factor, log_progress
from prefixlab.storage import var
from prefixlab.sorting import networks
from prefixlab.sorting.configs import OptimConfig  # noqa: F401 (re-exported)
from prefixlab.sorting.data import DigitSpec, TaskStream, sequences

log = logging.getLogger("prefixlab")

BETAS, EPS = (0.9, 0.95), 1e-8


def _decay_of(name: str, method: str) -> bool:
    return networks.is_decayed(name) if method == "finetune" else True


def batch_tokens(streams: list[TaskStream], L: int, device):
    """One batch per member -> tokens (P, B, S), outputs (P, B, N)."""
    xs, ys = zip(*(s.next() for s in streams))
    tokens = np.stack([sequences(x, y, L) for x, y in zip(xs, ys)])
    return torch.from_numpy(tokens).to(device), torch.from_numpy(np.stack(ys)).to(device)


def member_loss(model: networks.Model, tokens, outputs, train: bool, generator=None):
    """(P,) mean cross-entropy over the output positions of each member's batch."""
    logits = model.forward(tokens, train=train, generator=generator)
    logp = networks.output_log_probs(logits, outputs, model.content_offset, model.cfg.digits)
    return -logp.mean(dim=(1, 2))


def checkpoints(steps: int, every: int) -> np.ndarray:
    """Steps (counted from 1) after which a probe runs: every `every`, and the last."""
    return np.unique(np.r_[np.arange(every, steps + 1, every), steps])


def train(model: networks.Model, method: str, tasks: list[str], seeds: list[int], spec: DigitSpec, opt: OptimConfig,
          device, dropout_seed: int, label: str = "train", probe=None, probe_every: int = 0) -> TrainResult:
    """Train model.own in place; member i reads task tasks[i] from a stream seeded seeds[i].

    probe(): (P,) values measured after each of checkpoints(opt.steps, probe_every) steps
    (result.probes, (checkpoints, P)); it must not draw from the training streams, so a
    probe leaves the trained numbers unchanged."""
    P = model.members
    if len(tasks) != P or len(seeds) != P:
        raise ValueError(f"{label}: {P} members but {len(tasks)} tasks and {len(seeds)} seeds")
    streams = [TaskStream(t, opt.batch, spec, s) for t, s in zip(tasks, seeds)]
    # Dropout is on only while fine-tuning (pretraining included); prefix and LoRA runs keep the model in eval mode.
    dropout = method == "finetune"
    gen = torch.Generator(device=device).manual_seed(dropout_seed)
    names = sorted(model.own)
    for n in names:
        model.own[n].requires_grad_(True)
    every_member = torch.arange(P, device=device)
    adam = MemberAdam({n: model.own[n] for n in names}, {n: every_member for n in names}, BETAS, EPS)
    decayed = [n for n in names if _decay_of(n, method)]
    losses = np.zeros((opt.steps, P), dtype=np.float32)
    norms = np.zeros((opt.steps, P), dtype=np.float32)
    probe_at = set(checkpoints(opt.steps, probe_every).tolist()) if probe is not None else set()
    probes = []
    start = time.perf_counter()
    for step in range(opt.steps):
        tokens, outputs = batch_tokens(streams, model.cfg.prefix_length, device)
        loss = member_loss(model, tokens, outputs, dropout, gen)
        check_finite(loss, step, label, lambda i: f"member {i} ({tasks[i]}, seed {seeds[i]})")
        grads = dict(zip(names, torch.autograd.grad(loss.sum(), [model.own[n] for n in names])))
        norm = sum(g.pow(2).flatten(1).sum(1) for g in grads.values()).sqrt()
        scale = clip_factor(norm, opt.clip)
        with torch.no_grad():
            for n in decayed:  # decoupled decay (AdamW): the weight shrinks, then takes Adam's step
                model.own[n].mul_(1 - opt.lr * opt.weight_decay)
            adam.step(grads, scale, opt.lr, step + 1)
        losses[step] = loss.detach().cpu().numpy()
        norms[step] = norm.cpu().numpy()
        log_progress(label, step, opt.steps, losses, opt.log_every, start)
        if step + 1 in probe_at:
            probes.append(np.asarray(probe(), dtype=np.float64))
    for n in names:
        model.own[n].requires_grad_(False)
    return TrainResult(losses, norms, time.perf_counter() - start, probes=np.stack(probes) if probes else None)


def loss_variables(result: TrainResult, dims, squeeze: bool):
    loss, norm = (result.loss[:, 0], result.grad_norm[:, 0]) if squeeze else (result.loss.T, result.grad_norm.T)
    return {"loss": var(loss, dims, "nats", "training cross-entropy per output digit"),
            "grad_norm": var(norm, dims, "1", "gradient norm before clipping")}


def to_device(tensors: dict, device) -> dict:
    return {n: t.to(device) for n, t in tensors.items()}


