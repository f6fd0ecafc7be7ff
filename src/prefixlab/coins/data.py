"""Coin-flip sequence sources (SPEC 1.1): Single Coin, Two-Coin Mixture, Random Coins.

Sampling uses numpy's PCG64 stream seeded explicitly, so a (config, seed) pair
always gives the same sequences on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from prefixlab.coins.configs import SourceConfig


@dataclass(frozen=True)
class Sample:
    tokens: torch.Tensor  # (B, N) int64 token ids
    theta: torch.Tensor  # (B, V) float64 generating probabilities of each sequence
    true_logp: torch.Tensor  # (B, N) float64 log theta[x_n]: the oracle's log-probability

    @property
    def vocab(self) -> int:
        return self.theta.shape[-1]

    def onehot(self, dtype=torch.float32) -> torch.Tensor:  # (B, N, V)
        return torch.nn.functional.one_hot(self.tokens, self.vocab).to(dtype)


def sample_theta(cfg: SourceConfig, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Per-sequence generating probabilities, (B, V)."""
    match cfg.kind:
        case "single":
            return np.tile(np.asarray(cfg.biases[0], dtype=np.float64), (batch, 1))
        case "mixture":
            comp = rng.choice(len(cfg.weights), size=batch, p=np.asarray(cfg.weights, dtype=np.float64))
            return np.asarray(cfg.biases, dtype=np.float64)[comp]
        case "random":
            return rng.dirichlet(np.asarray(cfg.alphas, dtype=np.float64), size=batch)
    raise ValueError(f"unknown source kind {cfg.kind!r}")


def sample(cfg: SourceConfig, batch: int, length: int, seed: int | np.random.Generator) -> Sample:
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    theta = sample_theta(cfg, batch, rng)
    # Inverse-CDF sampling keeps the stream layout independent of V.
    u = rng.random((batch, length))
    cdf = np.cumsum(theta, axis=1)
    cdf[:, -1] = 1.0
    tokens = (u[:, :, None] >= cdf[:, None, :]).sum(axis=2)
    logp = np.log(np.take_along_axis(theta, tokens, axis=1))
    return Sample(torch.from_numpy(tokens.astype(np.int64)), torch.from_numpy(theta), torch.from_numpy(logp))


class Stream:
    """An endless, seeded stream of batches: the t-th call always returns the same batch."""

    def __init__(self, cfg: SourceConfig, batch: int, length: int, seed: int):
        self.cfg, self.batch, self.length = cfg, batch, length
        self.rng = np.random.default_rng(seed)

    def next(self) -> Sample:
        return sample(self.cfg, self.batch, self.length, self.rng)
