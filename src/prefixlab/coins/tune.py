"""One experiment's tuning job: the batched gradient population, HardPT and PreBayesPT searches."""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np
import torch
import xarray as xr

from prefixlab.coins import bayes, data, networks, population
from prefixlab.coins.jobs import TuneJob
from prefixlab.coins.networks import Params
from prefixlab.coins.population import Member
from prefixlab import storage
from prefixlab.config import ConfigError
from prefixlab.storage import var

log = logging.getLogger("prefixlab")

# Elements of activation memory one forward chunk may use (about 1.2 GB of fp32).
ACTIVATION_BUDGET = 3e8


def chunk_size(members: int, positions: int, net) -> int:
    """Sequences per forward pass so that activations stay within ACTIVATION_BUDGET."""
    return max(1, int(ACTIVATION_BUDGET // (members * networks.activation_elements(net, positions))))


def base_network(job: TuneJob, weights: Params | None) -> Params:
    if job.pretrained:
        if weights is None:
            raise ValueError(f"{job.experiment}: a pretrained experiment needs pretrained weights")
        return weights
    return networks.init_params(job.network)


def search_set(job: TuneJob) -> data.Sample:
    t = job.tune
    return data.sample(job.target_source, t.search_sequences, t.length, t.search_seed)


@torch.no_grad()
def mean_cumulative_loss(pop: population.Population, tokens: torch.Tensor) -> torch.Tensor:
    """Mean over sequences of the summed log loss, per member: (P,) float64."""
    V = pop.net.vocab
    T = 1 + pop.prefix.length + tokens.shape[1]
    step = chunk_size(pop.size, T, pop.net)
    total = torch.zeros(pop.size, dtype=torch.float64)
    for s in range(0, tokens.shape[0], step):
        onehot = torch.nn.functional.one_hot(tokens[s:s + step], V).float()
        onehot = onehot.to(pop.kind.device).expand(pop.size, -1, -1, -1)
        logp, _ = pop.forward(onehot)
        total += networks.sequence_log_loss(logp, onehot).sum((1, 2)).double().cpu()
    return total / tokens.shape[0]


def hard_prefix_search(job: TuneJob, base: Params, tokens: torch.Tensor, device="cpu"):
    """Score all V^L one-hot prefixes as one population. Returns (candidates (K, L), scores (K,))."""
    V, L = job.network.vocab, job.tune.prefix_length
    cands = torch.tensor(list(itertools.product(range(V), repeat=L)), dtype=torch.long)
    onehots = torch.nn.functional.one_hot(cands, V).float()
    members = [Member("HardPT", 0)] * len(cands)
    pop = population.build(job.network, base, members, L, token_prefixes=dict(enumerate(onehots)), device=device)
    start = time.perf_counter()
    scores = mean_cumulative_loss(pop, tokens)
    log.info("%s: HardPT searched %d prefixes in %.1fs; best %.4f", job.experiment, len(cands), time.perf_counter() - start, float(scores.min()))
    return cands, scores


def gradient_members(job: TuneJob) -> list[Member]:
    return [Member(m, r) for m in job.methods if m != "HardPT" for r in range(job.tune.repetitions)]


def run(job: TuneJob, weights: Params | None, device="cpu"):
    """Returns (tune Dataset, hard-search Dataset or None, tuned-state dict for evaluation)."""
    t = job.tune
    L, V, R = t.prefix_length, job.network.vocab, t.repetitions
    base = base_network(job, weights)
    members = gradient_members(job)
    pop = population.build(job.network, base, members, L, prefix_seed=t.prefix_seed, device=device)
    result = population.train(pop, job.target_source, steps=t.steps, batch=t.batch, length=t.length, lr=t.lr, clip=t.clip,
                              data_seeds=[t.data_seeds_start + r for r in range(R)], clip_norm_over=t.clip_norm_over,
                              log_every=t.log_every, label=f"tune {job.experiment}/{job.network.arch}",
                              member_lr=[t.lr_of(m.method) for m in members] if t.method_lr else None,
                              reference=job.target_source)
    search = search_set(job)
    hard_ds, hard_prefix = None, torch.full((L, V), float("nan"))
    if "HardPT" in job.methods and t.hard_search:
        cands, scores = hard_prefix_search(job, base, search.tokens, device)
        best = int(torch.argmin(scores))
        hard_prefix = torch.nn.functional.one_hot(cands[best], V).float()
        hard_ds = xr.Dataset({
            "search_loss": var(scores, ("candidate",), "nats", "mean cumulative log loss over the search set"),
            "candidate_prefix": var(cands, ("candidate", "slot"), "1", "token ids of the candidate prefix"),
        })
    prebayes_counts = torch.full((V,), float("nan"))
    if job.pretrained:
        cands, scores, best = bayes.search_prefix_counts(job.pretrain_source, search.tokens, L)
        prebayes_counts = cands[best]
        log.info("%s: PreBayesPT best prefix counts %s (score %.4f)", job.experiment, cands[best].tolist(), float(scores[best]))
    initial = torch.stack([population.initial_prefixes(r, t.prefix_seed, L, V, job.network.d)[0] for r in range(R)])
    steps = np.arange(t.steps)
    ds = xr.Dataset(
        {
            "tune_loss": var(result.loss.T, ("member", "step"), "nats", "training loss (summed over positions, batch mean)"),
            "grad_norm": var(result.grad_norm.T, ("member", "step"), "1", "unclipped gradient norm over the clipped set"),
            "target_bayes_loss": var(result.reference_loss.T, ("repetition", "step"), "nats",
                                     "TargetBayes loss on the same training batch (summed over positions, batch mean)"),
            "prefix_token": var(pop.params[population.PREFIX_TOKEN_KEY], ("member", "slot", "token"), "1",
                                "tuned token-space prefix parameters (pre-softmax for SimplexPT)"),
            "prefix_soft": var(pop.params[population.PREFIX_SOFT_KEY], ("member", "slot", "feature"), "1", "tuned soft prefix"),
            "initial_prefix_token": var(initial, ("repetition", "slot", "token"), "1", "initial one-hot token prefix (RandomPF)"),
            "hard_prefix": var(hard_prefix, ("slot", "token"), "1", "best one-hot prefix of the HardPT search (NaN if off)"),
            "prebayes_prefix_counts": var(prebayes_counts, ("token",), "1", "token counts of PreBayesPT's best prefix (NaN if none)"),
        },
        coords={
            "member": np.arange(len(members)),
            "member_method": ("member", np.array([m.method for m in members], dtype=object)),
            "member_repetition": ("member", np.array([m.repetition for m in members])),
            "step": steps,
            "repetition": np.arange(R),
        },
    )
    # Wall-clock time goes to the log, not the file: outputs must be bitwise reproducible.
    log.info("%s: tuned %d members in %.1fs", job.experiment, len(members), result.seconds)
    state = {"members": [(m.method, m.repetition) for m in members], "weights": {}}
    for name, mask in pop.trainable.items():
        if name in (population.PREFIX_TOKEN_KEY, population.PREFIX_SOFT_KEY):
            continue
        rows = mask.nonzero().flatten()
        state["weights"][name] = {"rows": pop.rows(name)[rows].cpu(), "values": pop.params[name][rows].detach().cpu().clone()}
    return ds, hard_ds, state


def pretrained_weights(path, job: TuneJob):
    """The pretrained weights a job names (None without a path), checked against its network."""
    return storage.load_weights(path, networks.init_params(job.network)) if path else None


def command(args, cfg: dict) -> None:
    """`python -m prefixlab tune`: the population's curves, its HardPT search and its trained tensors."""
    job = TuneJob.from_dict(cfg)
    if job.pretrained and not args.weights:
        raise ConfigError(f"tune {job.experiment}: a pretrained experiment needs --weights")
    ds, hard_ds, state = run(job, pretrained_weights(args.weights, job), args.device)
    t = job.tune
    seeds = {"data_seeds": [t.data_seeds_start + r for r in range(t.repetitions)], "prefix_seed": t.prefix_seed,
             "search_seed": t.search_seed, "init_seed": job.network.init_seed}
    if hard_ds is None:
        hard_ds = xr.Dataset({"search_loss": var(np.zeros(0), ("candidate",), "nats", "HardPT search disabled"),
                              "candidate_prefix": var(np.zeros((0, t.prefix_length), dtype=np.int64), ("candidate", "slot"), "1", "none")})
    with storage.Staging() as out:
        out.write(hard_ds, args.out_search, "hard_search", cfg, seeds)
        out.save_torch(state, args.out_weights)
        out.write(ds, args.out_nc, "tune", cfg, seeds)
