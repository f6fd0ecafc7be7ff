"""A population of tuning runs trained together: one forward/backward per step.

Each member has its own prefix, its own trainable set, its own Adam moments and its
own gradient-norm clipping. Members that never change the weights (prefix methods,
HardPT candidates, RandomPF, NoTuning) run one shared copy of the base network with
no weight gradient: its products go over all their rows at once. Weight-tuning
members (and pretraining) carry their own copy of every network tensor, since each
needs its own gradient of every tensor for its clipping norm. Members are
independent (the total loss is a sum of per-member losses), so one backward pass
gives every member exactly its own gradient.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from prefixlab.coins import bayes, networks
from prefixlab.coins.configs import NetworkConfig, SourceConfig
from prefixlab.coins.data import Stream
from prefixlab.coins.networks import PREFIX_NONE, PREFIX_SIMPLEX, PREFIX_SOFT, PREFIX_TOKEN, Params, PrefixInput
from prefixlab.coins.methods import PREFIX_METHODS, WEIGHT_METHODS
from prefixlab.optim import MemberAdam, TrainResult, check_finite, clip_factor, log_progress

log = logging.getLogger("prefixlab")

PREFIX_TOKEN_KEY, PREFIX_SOFT_KEY = "prefix_token", "prefix_soft"
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8

OWN_WEIGHT_METHODS = WEIGHT_METHODS + ("Pretrain",)
METHOD_PREFIX_KIND = {
    "HardPT": PREFIX_TOKEN, "RealPT": PREFIX_TOKEN, "RandomPF": PREFIX_TOKEN,
    "SimplexPT": PREFIX_SIMPLEX, "SoftPT": PREFIX_SOFT,
}


@dataclass(frozen=True)
class Member:
    method: str
    repetition: int

    def label(self) -> str:
        return f"{self.method}/rep{self.repetition}"


def tuned_names(method: str, net: NetworkConfig, names) -> tuple[str, ...]:
    """Parameter names a method trains by gradient."""
    match method:
        case "SimplexPT" | "RealPT":
            return (PREFIX_TOKEN_KEY,)
        case "SoftPT":
            return (PREFIX_SOFT_KEY,)
        case "HardPT" | "RandomPF" | "NoTuning":
            return ()
        case "FullWT" | "Pretrain":
            return tuple(n for n in names if not networks.is_lora(n))
        case "LoRAWT":
            if net.arch != "transformer":
                raise ValueError("LoRAWT is defined for the Transformer only")
            return tuple(n for n in names if networks.is_lora(n))
        case "EmbedWT":
            return networks.EMBED
        case "UnembedWT":
            return networks.UNEMBED
        case "Un+EmbedWT":
            return networks.EMBED + networks.UNEMBED
    raise ValueError(f"unknown tuning method {method!r}")


def initial_prefixes(repetition: int, seed: int, length: int, vocab: int, d: int):
    """Random one-hot prefixes of repetition r: token-space (L, V) and soft (L, D).

    One generator per repetition, so SimplexPT, RealPT and RandomPF of repetition r
    start from the same token prefix.
    """
    gen = torch.Generator().manual_seed(seed + repetition)
    tok = torch.randint(vocab, (length,), generator=gen)
    soft = torch.randint(d, (length,), generator=gen)
    return (torch.nn.functional.one_hot(tok, vocab).float(), torch.nn.functional.one_hot(soft, d).float())


@dataclass
class Population:
    """P members: the shared frozen network, the weight members' own copies and every
    member's prefix tensors.

    shared:   network tensors without a member axis, read by every frozen member
    params:   tensors with a member axis: prefix_token (P, L, V), prefix_soft (P, L, D),
              and each network tensor (Pw, ...) for the Pw weight members
    own_rows: (Pw,) member index of each network row in `params`
    trainable: name -> bool mask over that tensor's rows (P for prefixes, Pw for the network)
    """

    net: NetworkConfig
    members: list[Member]
    shared: Params
    params: Params
    own_rows: torch.Tensor
    kind: torch.Tensor  # (P,) prefix kind per member
    trainable: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def prefix(self) -> PrefixInput:
        return PrefixInput(self.kind, self.params[PREFIX_TOKEN_KEY], self.params[PREFIX_SOFT_KEY])

    def network_params(self) -> Params:
        """The weight members' own network tensors (Pw, ...)."""
        return {k: v for k, v in self.params.items() if k not in (PREFIX_TOKEN_KEY, PREFIX_SOFT_KEY)}

    def rows(self, name: str) -> torch.Tensor:
        """Member index of each row of params[name]."""
        if name in (PREFIX_TOKEN_KEY, PREFIX_SOFT_KEY):
            return torch.arange(self.size, device=self.kind.device)
        return self.own_rows

    def own_index(self, members: torch.Tensor) -> torch.Tensor:
        """Rows of the network tensors in `params` that hold the given weight members."""
        where = {int(m): i for i, m in enumerate(self.own_rows.tolist())}
        missing = [int(m) for m in members.tolist() if int(m) not in where]
        if missing:
            raise ValueError(f"members {missing} share the frozen network; they have no weights of their own")
        return torch.tensor([where[int(m)] for m in members.tolist()], dtype=torch.long, device=self.own_rows.device)

    def member_network(self, index: int) -> Params:
        """One member's network weights, without the population axis."""
        own = (self.own_rows == index).nonzero().flatten().tolist()
        if own:
            return {k: v[own[0]].detach().clone() for k, v in self.network_params().items()}
        return {k: v.detach().clone() for k, v in self.shared.items()}

    def member_params(self, index: int) -> Params:
        """Everything member `index` computes with: its network and its prefix tensors."""
        out = self.member_network(index)
        for k in (PREFIX_TOKEN_KEY, PREFIX_SOFT_KEY):
            out[k] = self.params[k][index].detach().clone()
        return out

    def row_index(self, rows: list[int]) -> dict[str, torch.Tensor]:
        """name -> the rows of params[name] that belong to members `rows` (in that order)."""
        own = set(self.own_rows.tolist())
        own_members = torch.tensor([r for r in rows if r in own], dtype=torch.long)
        members = torch.tensor(rows, dtype=torch.long, device=self.kind.device)
        net_rows = self.own_index(own_members)
        return {k: (members if k in (PREFIX_TOKEN_KEY, PREFIX_SOFT_KEY) else net_rows) for k in self.params}

    def subset(self, rows: list[int], params: Params | None = None) -> "Population":
        """The population of members `rows`; its tensors are `params` (default: indexed copies)."""
        if params is None:
            params = {k: self.params[k][idx] for k, idx in self.row_index(rows).items()}
        own = set(self.own_rows.tolist())
        own_rows = torch.tensor([i for i, r in enumerate(rows) if r in own], dtype=torch.long, device=self.kind.device)
        if not len(own_rows):  # every member frozen: the shared network alone
            params = {k: v for k, v in params.items() if k in (PREFIX_TOKEN_KEY, PREFIX_SOFT_KEY)}
        return Population(self.net, [self.members[r] for r in rows], self.shared, params, own_rows,
                          self.kind[torch.tensor(rows, dtype=torch.long, device=self.kind.device)])

    def forward(self, onehot: torch.Tensor, record: bool = False):
        """Log-predictions (P, B, N, V) and recorded states, frozen and weight members each
        as one batched pass (see `networks.forward`)."""
        P = self.size
        groups = []
        own = self.own_rows
        if len(own) < P:
            # prefixed and plain frozen members apart: the prefixed run their BOS and slot rows
            # once per member, the plain skip the pads (networks.forward)
            frozen = _complement(own, P)
            prefixed = self.kind[frozen] != PREFIX_NONE
            for part in (frozen[prefixed], frozen[~prefixed]):
                if len(part):
                    groups.append((part, self.shared))
        if len(own):
            groups.append((own, self.network_params()))
        prefix_tensors = {k: self.params[k] for k in (PREFIX_TOKEN_KEY, PREFIX_SOFT_KEY)}
        if len(groups) == 1:
            rows, net = groups[0]
            return networks.forward(self.net, {**net, **prefix_tensors}, onehot, self.prefix, record)
        outs = []
        for rows, net in groups:
            prefix = PrefixInput(self.kind[rows], self.params[PREFIX_TOKEN_KEY][rows], self.params[PREFIX_SOFT_KEY][rows])
            outs.append(networks.forward(self.net, net, onehot[rows], prefix, record))
        order = torch.argsort(torch.cat([rows for rows, _ in groups]))
        logp = torch.cat([o[0] for o in outs])[order]
        states = {k: torch.cat([o[1][k] for o in outs])[order] for k in outs[0][1]}
        return logp, states


def _complement(rows: torch.Tensor, size: int) -> torch.Tensor:
    keep = torch.ones(size, dtype=torch.bool, device=rows.device)
    keep[rows] = False
    return keep.nonzero().flatten()


def build(net: NetworkConfig, base: Params, members: list[Member], prefix_length: int,
          prefix_seed: int = 0, token_prefixes: dict[int, torch.Tensor] | None = None,
          device: str | torch.device = "cpu") -> Population:
    """A population whose members all start from `base` weights.

    token_prefixes: fixed one-hot (L, V) prefixes for given member indices (HardPT).
    """
    P, L = len(members), prefix_length
    own_rows = [i for i, m in enumerate(members) if m.method in OWN_WEIGHT_METHODS]
    params = networks.stack(base, len(own_rows)) if own_rows else {}
    tok = torch.zeros(P, L, net.vocab)
    soft = torch.zeros(P, L, net.d)
    kind = torch.zeros(P, dtype=torch.long)
    names = list(base)
    trainable = {}
    for i, m in enumerate(members):
        kind[i] = METHOD_PREFIX_KIND.get(m.method, PREFIX_NONE) if L > 0 else PREFIX_NONE
        if m.method in ("SimplexPT", "RealPT", "SoftPT", "RandomPF"):
            tok[i], soft[i] = initial_prefixes(m.repetition, prefix_seed, L, net.vocab, net.d)
        if token_prefixes and i in token_prefixes:
            tok[i] = token_prefixes[i]
        for n in tuned_names(m.method, net, names):
            is_prefix = n in (PREFIX_TOKEN_KEY, PREFIX_SOFT_KEY)
            rows, row = (P, i) if is_prefix else (len(own_rows), own_rows.index(i))
            trainable.setdefault(n, torch.zeros(rows, dtype=torch.bool))[row] = True
    params[PREFIX_TOKEN_KEY], params[PREFIX_SOFT_KEY] = tok, soft
    return Population(net, members, {k: v.to(device) for k, v in base.items()}, {k: v.to(device) for k, v in params.items()},
                      torch.tensor(own_rows, dtype=torch.long, device=device), kind.to(device),
                      {k: v.to(device) for k, v in trainable.items()})


def clip_sets(pop: Population, clip_norm_over: str) -> dict[str, torch.Tensor]:
    """name -> bool mask over that tensor's rows: which gradients enter each member's clipping norm.

    Prefix methods clip over their prefix. Weight methods clip over all network
    gradients (the reference's behaviour, LoRA included) or only the tuned ones.
    """
    sets = {}
    own = pop.own_rows.tolist()
    for i, m in enumerate(pop.members):
        if m.method in PREFIX_METHODS:
            chosen = tuned_names(m.method, pop.net, pop.shared)
        elif clip_norm_over == "all" and i in own:
            chosen = tuple(pop.network_params())
        else:
            chosen = tuned_names(m.method, pop.net, pop.shared)
        for n in chosen:
            rows = pop.rows(n).tolist()
            sets.setdefault(n, torch.zeros(len(rows), dtype=torch.bool, device=pop.kind.device))[rows.index(i)] = True
    return sets


# Activation elements one training chunk of members may hold (about 1.2 GB of fp32): a
# paper-size population (90 members at batch 256) runs as chunks of a few members, so its
# per-member cost stays that of a small population.
TRAIN_ACTIVATION_BUDGET = 3e8


def member_chunks(pop: Population, batch: int, positions: int) -> list[list[int]]:
    """Consecutive member ranges whose forward/backward fit TRAIN_ACTIVATION_BUDGET."""
    per_member = batch * networks.activation_elements(pop.net, positions)
    size = max(1, int(TRAIN_ACTIVATION_BUDGET // per_member))
    return [list(range(s, min(s + size, pop.size))) for s in range(0, pop.size, size)]


def _member_loss(pop: Population, onehot: torch.Tensor) -> torch.Tensor:
    """(P,) per-sequence summed log loss, averaged over the batch."""
    logp, _ = pop.forward(onehot)
    return networks.sequence_log_loss(logp, onehot).sum(-1).mean(-1)


def _loss_and_gradients(pop: Population, onehot: torch.Tensor, names: list[str], chunks: list[list[int]]):
    """Loss (P,) and the gradient of each named tensor, one chunk of members at a time.

    Members are independent, so a chunk's backward gives exactly its members' rows."""
    if len(chunks) == 1:
        loss = _member_loss(pop, onehot)
        return loss, dict(zip(names, torch.autograd.grad(loss.sum(), [pop.params[n] for n in names])))
    loss = torch.empty(pop.size, device=onehot.device)
    grads = {n: torch.zeros_like(pop.params[n]) for n in names}
    for rows in chunks:
        index = pop.row_index(rows)
        params = {k: pop.params[k][idx].detach().requires_grad_(k in names) for k, idx in index.items()}
        sub = pop.subset(rows, params)
        part = _member_loss(sub, onehot[rows[0]:rows[-1] + 1])
        live = [n for n in names if len(index[n])]
        for n, g in zip(live, torch.autograd.grad(part.sum(), [params[n] for n in live])):
            grads[n].index_copy_(0, index[n], g)
        loss[rows[0]:rows[-1] + 1] = part.detach()
    return loss, grads


def train(pop: Population, source: SourceConfig, *, steps: int, batch: int, length: int, lr: float,
          clip: float, data_seeds: list[int], clip_norm_over: str = "all", log_every: int = 50,
          label: str = "train", member_lr: list[float] | None = None,
          reference: SourceConfig | None = None) -> TrainResult:
    """Train every member for `steps` Adam steps, in place.

    data_seeds[r] seeds repetition r's data stream; member (method, r) reads stream r.
    member_lr: each member's learning rate, where they differ (else every member uses lr).
    Loss: per-sequence sum of per-position log losses, averaged over the batch.
    reference: a source whose exact Bayes predictor is scored on every step's batch, the same
    sum and mean (result.reference_loss, (steps, repetitions)): training loss minus it is the
    training batch's cumulative regret, a curve of the claims' deciding numbers over the steps.
    """
    device = pop.kind.device
    reps = sorted({m.repetition for m in pop.members})
    streams = {r: Stream(source, batch, length, data_seeds[r]) for r in reps}
    row_of = torch.tensor([reps.index(m.repetition) for m in pop.members], device=device)
    clipset = clip_sets(pop, clip_norm_over)
    grad_names = [n for n in pop.params if n in pop.trainable or n in clipset]
    rows = {n: pop.rows(n) for n in grad_names}
    for n in grad_names:
        pop.params[n].requires_grad_(True)
    losses = np.zeros((steps, pop.size), dtype=np.float32)
    norms = np.zeros((steps, pop.size), dtype=np.float32)
    reference_loss = np.zeros((steps, len(reps))) if reference is not None else None
    start = time.perf_counter()
    chunks = member_chunks(pop, batch, 1 + pop.prefix.length + length)
    if member_lr is not None and len(member_lr) != pop.size:
        raise ValueError(f"{label}: member_lr has {len(member_lr)} entries for {pop.size} members")
    adam = MemberAdam({n: pop.params[n] for n in pop.trainable}, rows, ADAM_BETAS, ADAM_EPS, pop.trainable,
                      None if member_lr is None else torch.tensor(member_lr, dtype=torch.float32, device=device))
    for step in range(steps):
        batches = [streams[r].next() for r in reps]
        onehot = torch.stack([b.onehot() for b in batches]).to(device)[row_of]  # (P, B, N, V)
        if reference is not None:
            reference_loss[step] = [float(bayes.token_log_loss(reference, b.tokens).sum(-1).mean()) for b in batches]
        loss, grads = _loss_and_gradients(pop, onehot, grad_names, chunks)
        check_finite(loss, step, label, lambda i: f"member {i} ({pop.members[i].label()})")
        sq = torch.zeros(pop.size, device=device)
        for n, mask in clipset.items():
            sq = sq.index_add(0, rows[n], torch.where(mask, grads[n].pow(2).flatten(1).sum(1), 0.0))
        norm = sq.sqrt()
        scale = clip_factor(norm, clip)
        with torch.no_grad():
            adam.step(grads, scale, lr, step + 1)
        losses[step] = loss.detach().cpu().numpy()
        norms[step] = norm.cpu().numpy()
        log_progress(label, step, steps, losses, log_every, start)
    for n in grad_names:
        pop.params[n].requires_grad_(False)
    return TrainResult(losses, norms, time.perf_counter() - start, reference_loss)
