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


def per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(P,) values shaped to broadcast over a (P, ...) tensor."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def clip_factor(norm: torch.Tensor, clip: float) -> torch.Tensor:
    """(P,) factor that scales each member's gradient to norm at most `clip`."""
    return clip / torch.maximum(norm, torch.full_like(norm, clip))


class MemberAdam:
    """Adam moments of named (P, ...) tensors; `update` returns each member's step."""

    def __init__(self, params: dict[str, torch.Tensor], betas: tuple[float, float], eps: float):
        self.moments = {n: (torch.zeros_like(p), torch.zeros_like(p)) for n, p in params.items()}
        self.betas, self.eps = betas, eps

    def update(self, name: str, grad: torch.Tensor, lr: float | torch.Tensor, t: int) -> torch.Tensor:
        """Fold `grad` (already clipped) into the moments; the bias-corrected step at step t (from 1).
        lr: one rate, or per row (P, 1, ...) broadcasting over the tensor."""
        b1, b2 = self.betas
        m, v = self.moments[name]
        m.mul_(b1).add_(grad, alpha=1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        return lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + self.eps)


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
