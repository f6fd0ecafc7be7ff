"""Evaluation (SPEC 1.5): per-step log loss and regret of every method on every
evaluation distribution, and the internal-state trajectories for the PCA figures."""

from __future__ import annotations

import logging

import numpy as np
import torch
import xarray as xr

from prefixlab.coins import bayes, data, networks, population
from prefixlab.coins.jobs import EvalJob, TuneJob
from prefixlab.coins.networks import Params
from prefixlab.coins.population import Member
from prefixlab import storage
from prefixlab.storage import var
from prefixlab.coins.tune import base_network, chunk_size, pretrained_weights
from prefixlab.coins.methods import ALL_METHODS, DETERMINISTIC_METHODS, EVAL_DISTS

log = logging.getLogger("prefixlab")
STATE_METHODS = ("NoTuning", "RandomPF", "HardPT", "SimplexPT", "RealPT", "SoftPT")


def tuned_population(job: TuneJob, base: Params, tune_ds: xr.Dataset, state: dict, extra: list[Member], device="cpu"):
    """Rebuild the tuned members (weights and prefixes) and append `extra` untuned members."""
    L, V = job.tune.prefix_length, job.network.vocab
    tuned = [Member(m, int(r)) for m, r in state["members"]]
    members = tuned + extra
    hard = {}
    has_hard = not bool(np.isnan(tune_ds["hard_prefix"].values).any())
    for i, m in enumerate(members):
        if m.method == "HardPT":
            if not has_hard:
                raise ValueError("HardPT requested but the tuning file holds no hard prefix")
            hard[i] = torch.from_numpy(tune_ds["hard_prefix"].values).float()
        elif m.method == "RandomPF":
            hard[i] = torch.from_numpy(tune_ds["initial_prefix_token"].values[m.repetition]).float()
    pop = population.build(job.network, base, members, L, prefix_seed=job.tune.prefix_seed, token_prefixes=hard, device=device)
    n = len(tuned)
    with torch.no_grad():
        pop.params[population.PREFIX_TOKEN_KEY][:n] = torch.from_numpy(tune_ds["prefix_token"].values).to(device)
        pop.params[population.PREFIX_SOFT_KEY][:n] = torch.from_numpy(tune_ds["prefix_soft"].values).to(device)
        for name, entry in state["weights"].items():
            pop.params[name][pop.own_index(entry["rows"])] = entry["values"].to(device)
    return pop


@torch.no_grad()
def per_step_log_loss(pop: population.Population, tokens: torch.Tensor) -> torch.Tensor:
    """Mean over sequences of -log pi(x_n | x_<n): (P, N) float64."""
    V = pop.net.vocab
    S, N = tokens.shape
    step = chunk_size(pop.size, 1 + pop.prefix.length + N, pop.net)
    total = torch.zeros(pop.size, N, dtype=torch.float64)
    for s in range(0, S, step):
        onehot = torch.nn.functional.one_hot(tokens[s:s + step], V).float().to(pop.kind.device)
        onehot = onehot.expand(pop.size, -1, -1, -1)
        logp, _ = pop.forward(onehot)
        total += networks.sequence_log_loss(logp, onehot).sum(1).double().cpu()
    return total / S


def _eval_members(job: TuneJob, tune_ds: xr.Dataset) -> list[Member]:
    extra = []
    if "HardPT" in job.methods and not np.isnan(tune_ds["hard_prefix"].values).any():
        extra.append(Member("HardPT", 0))
    extra.append(Member("NoTuning", 0))
    extra += [Member("RandomPF", r) for r in range(job.tune.repetitions)]
    return extra


def regrets(ej: EvalJob, weights: Params | None, tune_ds: xr.Dataset, state: dict, device="cpu") -> xr.Dataset:
    job, ev = ej.tune_job, ej.evaluate
    R = job.tune.repetitions
    base = base_network(job, weights)
    pop = tuned_population(job, base, tune_ds, state, _eval_members(job, tune_ds), device)
    bayes_methods = ["TargetBayes"] + (["PreBayes", "PreBayesPT"] if job.pretrained else [])
    present = {m.method for m in pop.members} | set(bayes_methods)
    methods = [m for m in ALL_METHODS if m in present]
    loss = np.full((len(EVAL_DISTS), len(methods), R, ev.length), np.nan)
    oracle = np.zeros((len(EVAL_DISTS), ev.length))
    counts = torch.from_numpy(tune_ds["prebayes_prefix_counts"].values)
    for d, dist in enumerate(EVAL_DISTS):
        sample = data.sample(ej.sources[dist], ev.sequences, ev.length, ev.seed)
        oracle[d] = (-sample.true_logp).mean(0).numpy()
        net_loss = per_step_log_loss(pop, sample.tokens).numpy()
        for i, m in enumerate(pop.members):
            loss[d, methods.index(m.method), m.repetition] = net_loss[i]
        loss[d, methods.index("TargetBayes"), 0] = bayes.token_log_loss(ej.sources[dist], sample.tokens).mean(0).numpy()
        if job.pretrained:
            pre = job.pretrain_source
            loss[d, methods.index("PreBayes"), 0] = bayes.token_log_loss(pre, sample.tokens).mean(0).numpy()
            loss[d, methods.index("PreBayesPT"), 0] = bayes.token_log_loss(pre, sample.tokens, counts).mean(0).numpy()
        log.info("evaluate %s/%s on %s: %d network members", job.experiment, job.network.arch, dist, pop.size)
    regret = loss - oracle[:, None, None, :]
    dims = ("eval_dist", "method", "repetition", "step")
    ds = xr.Dataset(
        {
            "log_loss": var(loss, dims, "nats", "mean log loss -log pi(x_n | x_<n)"),
            "regret": var(regret, dims, "nats", "instantaneous regret against the generating parameters"),
            "cum_regret": var(np.cumsum(regret, axis=-1), dims, "nats", "cumulative regret"),
            "oracle_log_loss": var(oracle, ("eval_dist", "step"), "nats", "mean log loss of the generating parameters"),
        },
        coords={
            "eval_dist": list(EVAL_DISTS), "method": methods, "repetition": np.arange(R), "step": np.arange(ev.length),
            "deterministic": ("method", np.array([m in DETERMINISTIC_METHODS for m in methods])),
        },
    )
    ds.attrs.update(experiment=job.experiment, arch=job.network.arch, target=job.target,
                    bayes_label_note="TargetBayes is the evaluation distribution's own Bayes predictor (EvalBayes off-target)")
    return ds


@torch.no_grad()
def internal_states(ej: EvalJob, weights: Params | None, tune_ds: xr.Dataset, state: dict, device="cpu") -> xr.Dataset:
    """State trajectories over the first `state_positions` positions of [BOS, prefix, sequence]."""
    job, ev = ej.tune_job, ej.evaluate
    R, L, K = job.tune.repetitions, job.tune.prefix_length, ev.state_positions
    per_rep = ev.state_target_per_repetition
    base = base_network(job, weights)
    pop = tuned_population(job, base, tune_ds, state, _eval_members(job, tune_ds), device)
    key = "cell" if job.network.arch == "lstm" else "attention"
    target = data.sample(job.target_source, R * per_rep, K, ev.state_seed)
    pre = data.sample(job.pretrain_source, ev.state_pretrain_sequences, K, ev.state_seed + 1)

    def trajectories(tokens, rows):
        sub = pop.subset(rows)
        onehot = torch.nn.functional.one_hot(tokens, job.network.vocab).float().to(device).expand(len(rows), -1, -1, -1)
        _, rec = sub.forward(onehot, record=True)
        st = rec[key]  # (P, B, T, F)
        starts = torch.where(sub.kind != networks.PREFIX_NONE, 0, L)
        return torch.stack([st[i, :, s:s + K] for i, s in enumerate(starts.tolist())]).cpu()

    no_tuning = [i for i, m in enumerate(pop.members) if m.method == "NoTuning"]
    pre_states = trajectories(pre.tokens, no_tuning)[0]
    methods = [m for m in STATE_METHODS if any(p.method == m for p in pop.members)]
    feats = pre_states.shape[-1]
    tgt = torch.full((len(methods), R * per_rep, K, feats), float("nan"))
    marker = np.zeros(len(methods), dtype=np.int64)
    for j, meth in enumerate(methods):
        rows = [i for i, m in enumerate(pop.members) if m.method == meth]
        if meth in DETERMINISTIC_METHODS:
            tgt[j] = trajectories(target.tokens, rows)[0]
        else:
            for i in rows:
                r = pop.members[i].repetition
                seqs = target.tokens[r * per_rep:(r + 1) * per_rep]
                tgt[j, r * per_rep:(r + 1) * per_rep] = trajectories(seqs, [i])[0]
        marker[j] = 0 if meth == "NoTuning" else L
    theta_t = np.tile(target.theta[:, 1].numpy(), (len(methods), 1))
    ds = xr.Dataset(
        {
            "pretrain_states": var(pre_states, ("pretrain_trajectory", "position", "feature"), "1",
                                   f"{key} state of the untuned network on pretraining-distribution sequences"),
            "pretrain_theta": var(pre.theta[:, 1], ("pretrain_trajectory",), "1", "generating probability of token 1"),
            "target_states": var(tgt, ("method", "trajectory", "position", "feature"), "1", f"{key} state on target sequences"),
            "target_theta": var(theta_t, ("method", "trajectory"), "1", "generating probability of token 1"),
            "marker": var(marker, ("method",), "1", "position index of the state right after the prefix"),
        },
        coords={"method": methods, "position": np.arange(K)},
    )
    ds.attrs.update(experiment=job.experiment, arch=job.network.arch, state=key)
    return ds


def _inputs(args, cfg: dict):
    job = EvalJob.from_dict(cfg)
    tune_ds = storage.read(args.tune_nc, "tune")
    state = storage.load_torch(args.tune_weights)
    return job, pretrained_weights(args.weights, job.tune_job), tune_ds, state


def evaluate_command(args, cfg: dict) -> None:
    """`python -m prefixlab evaluate`: regrets of every method on every evaluation distribution."""
    job, weights, tune_ds, state = _inputs(args, cfg)
    ds = regrets(job, weights, tune_ds, state, args.device)
    storage.write(ds, args.out_nc, "eval", cfg, {"eval_seed": job.evaluate.seed})


def states_command(args, cfg: dict) -> None:
    """`python -m prefixlab states`: recorded internal states for the PCA figures."""
    job, weights, tune_ds, state = _inputs(args, cfg)
    ds = internal_states(job, weights, tune_ds, state, args.device)
    storage.write(ds, args.out_nc, "states", cfg, {"state_seed": job.evaluate.state_seed})
