"""AdamW training of a population of GPT runs (SPEC 2.2); pretraining is a population
of one fine-tuning member started from the initialisation.

Every member has its own task stream, its own AdamW moments and its own gradient-norm
clipping; members are independent (the loss is a sum of per-member losses), so one
backward pass gives every member exactly its own gradient.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from prefixlab.population import TrainingError
from prefixlab.sorting import gpt
from prefixlab.sorting.configs import OptimConfig  # noqa: F401 (re-exported)
from prefixlab.sorting.tasks import DigitSpec, TaskStream, sequences

log = logging.getLogger("prefixlab")

BETAS, EPS = (0.9, 0.95), 1e-8


@dataclass
class TrainResult:
    loss: np.ndarray  # (steps, P) mean output-position cross-entropy per member
    grad_norm: np.ndarray  # (steps, P) unclipped gradient norm
    seconds: float


def _decay_of(name: str, method: str) -> bool:
    return gpt.is_decayed(name) if method == "finetune" else True


def batch_tokens(streams: list[TaskStream], L: int, device):
    """One batch per member -> tokens (P, B, S), outputs (P, B, N)."""
    xs, ys = zip(*(s.next() for s in streams))
    tokens = np.stack([sequences(x, y, L) for x, y in zip(xs, ys)])
    return torch.from_numpy(tokens).to(device), torch.from_numpy(np.stack(ys)).to(device)


def member_loss(model: gpt.Model, tokens, outputs, train: bool, generator=None):
    """(P,) mean cross-entropy over the output positions of each member's batch."""
    logits = model.forward(tokens, train=train, generator=generator)
    logp = gpt.output_log_probs(logits, outputs, model.content_offset, model.cfg.digits)
    return -logp.mean(dim=(1, 2))


def train(model: gpt.Model, method: str, tasks: list[str], seeds: list[int], spec: DigitSpec, opt: OptimConfig,
          device, dropout_seed: int, label: str = "train") -> TrainResult:
    """Train model.own in place; member i reads task tasks[i] from a stream seeded seeds[i]."""
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
    moments = {n: (torch.zeros_like(model.own[n]), torch.zeros_like(model.own[n])) for n in names}
    losses = np.zeros((opt.steps, P), dtype=np.float32)
    norms = np.zeros((opt.steps, P), dtype=np.float32)
    b1, b2 = BETAS
    start = time.perf_counter()
    for step in range(opt.steps):
        tokens, outputs = batch_tokens(streams, model.cfg.prefix_length, device)
        loss = member_loss(model, tokens, outputs, dropout, gen)
        bad = (~torch.isfinite(loss)).nonzero().flatten().tolist()
        if bad:
            raise TrainingError(f"{label}: non-finite loss at step {step} for member(s) "
                                + ", ".join(f"{i} ({tasks[i]}, seed {seeds[i]})" for i in bad))
        grads = dict(zip(names, torch.autograd.grad(loss.sum(), [model.own[n] for n in names])))
        norm = sum(g.pow(2).flatten(1).sum(1) for g in grads.values()).sqrt()
        scale = opt.clip / torch.clamp(norm, min=opt.clip)
        t = step + 1
        with torch.no_grad():
            for n in names:
                p, g = model.own[n], grads[n] * scale.view(-1, *([1] * (grads[n].dim() - 1)))
                m, v = moments[n]
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                if _decay_of(n, method):
                    p.mul_(1 - opt.lr * opt.weight_decay)
                p.sub_(opt.lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + EPS))
        losses[step] = loss.detach().cpu().numpy()
        norms[step] = norm.cpu().numpy()
        if (step + 1) % opt.log_every == 0 or step == 0 or step + 1 == opt.steps:
            log.info("%s step %d/%d loss %.4f (min %.4f max %.4f) elapsed %.1fs", label, step + 1, opt.steps,
                     float(losses[step].mean()), float(losses[step].min()), float(losses[step].max()),
                     time.perf_counter() - start)
    for n in names:
        model.own[n].requires_grad_(False)
    return TrainResult(losses, norms, time.perf_counter() - start)
