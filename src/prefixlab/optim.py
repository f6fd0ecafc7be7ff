"""Training shared by both papers' populations: each member's own gradient-norm clipping
and Adam(W) step on tensors with a leading member axis, the per-step checks and log
line, and the result every training loop returns.

Members are independent (the population's loss is a sum of per-member losses), so the
step is elementwise over the member axis: one call updates every member exactly as if
it had been trained alone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger("prefixlab")


class TrainingError(RuntimeError):
    """Training diverged (a non-finite loss); the job writes nothing."""


@dataclass
class TrainResult:
    loss: np.ndarray  # (steps, P) training loss per member
    grad_norm: np.ndarray  # (steps, P) unclipped gradient norm per member (over its clip set)
    seconds: float
    # (steps, streams) the reference predictor's loss on each step's batch, where a loop records one
    reference_loss: np.ndarray | None = None
    # (checkpoints, P) a probe's measurement of each member during training, where a loop takes one
    probes: np.ndarray | None = None


def clip_factor(norm: torch.Tensor, clip: float) -> torch.Tensor:
    """(P,) factor that scales each member's gradient to norm at most `clip`."""
    return clip / torch.maximum(norm, torch.full_like(norm, clip))


class MemberAdam:
    """Adam over the trainable rows of named (P_n, ...) tensors, updated in place.

    The moments of every trainable row of every tensor sit in one flat buffer, so a step
    is a dozen whole-buffer operations instead of a dozen per tensor, and rows nobody
    trains (the frozen torso of an EmbedWT member, 80% of a Maxi population's elements)
    are never touched. Each element's arithmetic is the per-tensor Adam's, in the same
    order, so the numbers are the same to the bit.

    member_of_row: name -> (P_n,) member index of each row (its clipping scale, its rate)
    trainable:     name -> (P_n,) bool, the rows that train; a tensor left out trains all
    """

    def __init__(self, params: dict[str, torch.Tensor], member_of_row: dict[str, torch.Tensor],
                 betas: tuple[float, float], eps: float, trainable: dict[str, torch.Tensor] | None = None,
                 member_lr: torch.Tensor | None = None):
        self.params, self.betas, self.eps = params, betas, eps
        self.rows: dict[str, torch.Tensor | None] = {}  # None: every row, updated as one view
        members = []
        for n, p in params.items():
            mask = None if trainable is None else trainable.get(n)
            rows = None if mask is None or bool(mask.all()) else mask.nonzero().flatten()
            if rows is not None and rows.numel() == 0:
                continue
            self.rows[n] = rows
            of_row = member_of_row[n] if rows is None else member_of_row[n][rows]
            members.append(of_row.repeat_interleave(p[0].numel()))
        device = next(iter(params.values())).device if params else None
        # (N,) member of each trained element
        self.element_member = torch.cat(members) if members else torch.zeros(0, dtype=torch.long, device=device)
        self.m = torch.zeros(self.element_member.numel(), device=device)
        self.v = torch.zeros_like(self.m)
        # (N,) each element's rate where members differ, else None (step's lr applies)
        self.element_lr = None if member_lr is None else member_lr[self.element_member]

    def _gather(self, grads: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([(grads[n] if rows is None else grads[n][rows]).flatten() for n, rows in self.rows.items()])

    def step(self, grads: dict[str, torch.Tensor], scale: torch.Tensor, lr: float, t: int) -> None:
        """One step at t (from 1): each member's gradient times its clipping scale (P,)."""
        if not self.rows:
            return
        b1, b2 = self.betas
        g = self._gather(grads) * scale[self.element_member]
        self.m.mul_(b1).add_(g, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        rate = lr if self.element_lr is None else self.element_lr
        update = rate * (self.m / (1 - b1**t)) / ((self.v / (1 - b2**t)).sqrt() + self.eps)
        start = 0
        for n, rows in self.rows.items():
            p = self.params[n]
            if rows is None:
                p.sub_(update[start:start + p.numel()].view_as(p))
                start += p.numel()
            else:
                size = rows.numel() * p[0].numel()
                p[rows] = p[rows] - update[start:start + size].view(rows.numel(), *p.shape[1:])
                start += size


def check_finite(loss: torch.Tensor, step: int, label: str, describe) -> None:
    """TrainingError naming every member whose loss is not finite (describe(i) names member i)."""
    bad = (~torch.isfinite(loss)).nonzero().flatten().tolist()
    if bad:
        raise TrainingError(f"{label}: non-finite loss at step {step} for " + ", ".join(describe(i) for i in bad))


def log_progress(label: str, step: int, steps: int, losses: np.ndarray, every: int, start: float) -> None:
    """One log line on the first, every `every`-th and the last step."""
    if (step + 1) % every == 0 or step == 0 or step + 1 == steps:
        log.info("%s step %d/%d loss %.4f (min %.4f max %.4f) elapsed %.1fs", label, step + 1, steps,
                 float(losses[step].mean()), float(losses[step].min()), float(losses[step].max()),
                 time.perf_counter() - start)
