"""Exact Bayes predictors of the coin sources and their conditioning on hard prefixes.

All three sources are exchangeable, so a predictor needs only the token counts seen
so far; conditioning on a hard prefix adds that prefix's counts.
"""

from __future__ import annotations

import itertools
import math

import torch

from prefixlab.coins.configs import SourceConfig


def counts_before(tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    """(B, N) ids -> (B, N, V) float64 counts of each token among x_1..x_{n-1}."""
    onehot = torch.nn.functional.one_hot(tokens, vocab).to(torch.float64)
    return torch.cumsum(onehot, dim=1) - onehot


def log_predictive(cfg: SourceConfig, tokens: torch.Tensor, prefix_counts: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x_n = v | prefix, x_<n) for every n and v: (B, N) -> (B, N, V) float64."""
    V = cfg.vocab
    counts = counts_before(tokens, V)
    if prefix_counts is not None:
        counts = counts + prefix_counts.to(torch.float64)
    match cfg.kind:
        case "single":
            logb = torch.log(torch.tensor(cfg.biases[0], dtype=torch.float64))
            return logb.expand(counts.shape).clone()
        case "mixture":
            logb = torch.log(torch.tensor(cfg.biases, dtype=torch.float64))  # (C, V)
            logw = torch.log(torch.tensor(cfg.weights, dtype=torch.float64))  # (C,)
            log_post = logw + counts @ logb.T  # (B, N, C), unnormalised
            log_post = log_post - torch.logsumexp(log_post, dim=-1, keepdim=True)
            return torch.logsumexp(log_post[..., :, None] + logb, dim=-2)
        case "random":
            alphas = torch.tensor(cfg.alphas, dtype=torch.float64)
            num = counts + alphas
            return torch.log(num) - torch.log(num.sum(-1, keepdim=True))
    raise ValueError(f"unknown source kind {cfg.kind!r}")


def token_log_loss(cfg: SourceConfig, tokens: torch.Tensor, prefix_counts: torch.Tensor | None = None) -> torch.Tensor:
    """-log p(x_n | prefix, x_<n): (B, N) float64."""
    logp = log_predictive(cfg, tokens, prefix_counts)
    return -torch.gather(logp, -1, tokens[..., None])[..., 0]


def count_vectors(length: int, vocab: int) -> torch.Tensor:
    """All count vectors of `length` tokens over `vocab` symbols: (K, V), K = C(L+V-1, V-1)."""
    rows = []
    for cuts in itertools.combinations(range(length + vocab - 1), vocab - 1):
        bounds = (-1,) + cuts + (length + vocab - 1,)
        rows.append([bounds[i + 1] - bounds[i] - 1 for i in range(vocab)])
    return torch.tensor(rows, dtype=torch.float64)


def prefix_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """A hard prefix (token ids, sorted) with the given counts: (V,) -> (L,)."""
    return torch.repeat_interleave(torch.arange(len(counts)), counts.to(torch.int64))


def search_prefix_counts(cfg: SourceConfig, search_tokens: torch.Tensor, length: int):
    """PreBayesPT's search: score every prefix count vector by mean cumulative log loss.

    Returns (candidates (K, V), scores (K,) nats, best index).
    """
    cands = count_vectors(length, cfg.vocab)
    scores = torch.stack([token_log_loss(cfg, search_tokens, c).sum(1).mean() for c in cands])
    return cands, scores, int(torch.argmin(scores))


def sequence_log_prob(cfg: SourceConfig, tokens: tuple[int, ...]) -> float:
    """Exact marginal log p(x_1..x_n) by summing/integrating over the latent parameters.

    Written independently of `log_predictive` (closed-form marginals), for tests.
    """
    V = cfg.vocab
    counts = [tokens.count(v) for v in range(V)]
    match cfg.kind:
        case "single":
            return sum(c * math.log(b) for c, b in zip(counts, cfg.biases[0]))
        case "mixture":
            terms = [math.log(w) + sum(c * math.log(b) for c, b in zip(counts, row)) for w, row in zip(cfg.weights, cfg.biases)]
            m = max(terms)
            return m + math.log(sum(math.exp(t - m) for t in terms))
        case "random":
            a = cfg.alphas
            return (math.lgamma(sum(a)) - sum(math.lgamma(x) for x in a)
                    + sum(math.lgamma(x + c) for x, c in zip(a, counts)) - math.lgamma(sum(a) + len(tokens)))
    raise ValueError(cfg.kind)
