"""One experiment's tuning job: the batched gradient population, HardPT and PreBayesPT searches."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from prefixlab.coins import bayes, data, networks, population
from prefixlab.coins.jobs import TuneJob, weight_donor_mismatch
from prefixlab.coins.methods import WEIGHT_METHODS
from prefixlab.coins.networks import Params
from prefixlab.coins.population import Member
from prefixlab import storage
from prefixlab.config import ConfigError
from prefixlab.optim import TrainResult
from prefixlab.storage import DataError, var

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


def base_digest(base: Params) -> str:
    """sha256 of the base network's tensors: a donor must have tuned from the same weights."""
    h = hashlib.sha256()
    for name in sorted(base):
        h.update(name.encode())
        h.update(base[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class WeightDonor:
    """A tuning output that holds this job's weight-tuning members, trained exactly as this job
    would train them (jobs.PREFIX_ONLY_TUNE_SETTINGS). In the workflow, r2s and r2s_L25 both take
    FullWT, LoRAWT and the embedding methods from the job that trains them once
    (jobs.weight_members_job); any other experiment's output with the same members serves too."""

    path: str
    tune_ds: xr.Dataset
    state: dict
    rows: dict  # (method, repetition) -> the donor's row of that member

    @classmethod
    def load(cls, nc_path, weights_path, job: TuneJob, base: Params) -> "WeightDonor":
        ds = storage.read(nc_path, "tune")
        donor_job = TuneJob.from_dict(json.loads(ds.attrs["config"]))
        why = weight_donor_mismatch(donor_job, job)
        if why:
            raise ConfigError(f"{nc_path}: tuning job {donor_job.experiment!r} cannot give {job.experiment!r} its weight "
                              f"members: {why}")
        if ds.attrs.get("base_sha256") != base_digest(base):
            raise DataError(f"{nc_path}: tuned from other base weights than {job.experiment!r} (base_sha256 differs)")
        state = storage.load_torch(weights_path)
        labels = [(str(m), int(r)) for m, r in zip(ds["member_method"].values, ds["member_repetition"].values)]
        if [(str(m), int(r)) for m, r in state["members"]] != labels:
            raise DataError(f"{weights_path}: its members are not those of {nc_path}")
        return cls(str(nc_path), ds, state, {label: i for i, label in enumerate(labels)})

    def index(self, member: Member) -> int:
        """The donor's row of one member."""
        return self.rows[(member.method, member.repetition)]

    def fill(self, pop: population.Population, rows: list[int]) -> None:
        """Put the donor's trained weights of members `rows` into pop's network tensors."""
        where = {self.index(pop.members[i]): i for i in rows}
        with torch.no_grad():
            for name, entry in self.state["weights"].items():
                mine = [(k, where[int(d)]) for k, d in enumerate(entry["rows"].tolist()) if int(d) in where]
                if mine:
                    picked, members = zip(*mine)
                    pop.params[name][pop.own_index(torch.tensor(members))] = entry["values"][list(picked)].to(pop.kind.device)

    def curves(self, rows: list[int], members: list[Member]) -> tuple[np.ndarray, np.ndarray]:
        """(steps, len(rows)) training loss and gradient norm of members `rows`."""
        donor_rows = [self.index(members[i]) for i in rows]
        return (self.tune_ds["tune_loss"].values[donor_rows].T.astype(np.float32),
                self.tune_ds["grad_norm"].values[donor_rows].T.astype(np.float32))


def train_population(job: TuneJob, base: Params, pop: population.Population, donor: WeightDonor | None,
                     device) -> TrainResult:
    """Train pop's members in place; with a donor, only those the donor does not hold."""
    t = job.tune
    members, R = pop.members, t.repetitions
    donated = [i for i, m in enumerate(members) if donor is not None and m.method in WEIGHT_METHODS]
    own = [i for i in range(len(members)) if i not in donated]
    trained = pop if not donated else population.build(job.network, base, [members[i] for i in own], t.prefix_length,
                                                        prefix_seed=t.prefix_seed, device=device)
    result = None
    if own:
        result = population.train(trained, job.target_source, steps=t.steps, batch=t.batch, length=t.length, lr=t.lr,
                                  clip=t.clip, data_seeds=[t.data_seeds_start + r for r in range(R)],
                                  clip_norm_over=t.clip_norm_over, log_every=t.log_every,
                                  label=f"tune {job.experiment}/{job.network.arch}",
                                  member_lr=[t.lr_of(m.method) for m in trained.members] if t.method_lr else None,
                                  reference=job.target_source)
    if not donated:
        return result
    donor.fill(pop, donated)
    loss = np.zeros((t.steps, len(members)), dtype=np.float32)
    norm = np.zeros_like(loss)
    loss[:, donated], norm[:, donated] = donor.curves(donated, members)
    reference = donor.tune_ds["target_bayes_loss"].values.T
    if result is not None:
        with torch.no_grad():
            for k in (population.PREFIX_TOKEN_KEY, population.PREFIX_SOFT_KEY):
                pop.params[k][own] = trained.params[k]
        loss[:, own], norm[:, own] = result.loss, result.grad_norm
        # The same data streams give the same TargetBayes loss on every batch: a cheap check that
        # the donor's members saw the batches this job's members saw.
        reps = sorted({m.repetition for m in trained.members})
        if not np.array_equal(result.reference_loss, reference[:, reps]):
            raise DataError(f"{donor.path}: its training batches differ from {job.experiment!r}'s (TargetBayes loss)")
    log.info("%s: %d weight members taken from %s", job.experiment, len(donated), donor.path)
    return TrainResult(loss, norm, result.seconds if result is not None else 0.0, reference)


def run(job: TuneJob, weights: Params | None, device="cpu", donor_paths: tuple[str, str] | None = None):
    """Returns (tune Dataset, hard-search Dataset or None, tuned-state dict for evaluation).
    donor_paths: (.nc, .pt) of a tuning output whose weight members this job takes (WeightDonor)."""
    t = job.tune
    L, V, R = t.prefix_length, job.network.vocab, t.repetitions
    base = base_network(job, weights)
    donor = WeightDonor.load(*donor_paths, job, base) if donor_paths else None
    members = gradient_members(job)
    pop = population.build(job.network, base, members, L, prefix_seed=t.prefix_seed, device=device)
    result = train_population(job, base, pop, donor, device)
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
    ds.attrs["base_sha256"] = base_digest(base)
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
    if bool(args.donor_nc) != bool(args.donor_weights):
        raise ConfigError("tune: --donor-nc and --donor-weights go together")
    donor = (args.donor_nc, args.donor_weights) if args.donor_nc else None
    ds, hard_ds, state = run(job, pretrained_weights(args.weights, job), args.device, donor)
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
