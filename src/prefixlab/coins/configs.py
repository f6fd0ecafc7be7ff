"""Paper A's frozen config classes: networks, coin sources, pretraining, tuning and
evaluation settings (their checks name the config key at fault)."""

from __future__ import annotations

from dataclasses import dataclass

from prefixlab.coins.methods import EVAL_DISTS, GRADIENT_METHODS, TUNING_METHODS
from prefixlab.config import ConfigError, build, check, positive_ints


ARCHS = ("lstm", "transformer")


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    arch: str
    d: int = 128  # embedding width
    width: int = 128  # LSTM units; Transformer MLP is 4 * width wide
    layers: int = 1
    heads: int = 4
    lora_rank: int = 4
    init_seed: int = 0
    vocab: int = 2

    def __post_init__(self):
        check(self.arch in ARCHS, "arch", f"unknown arch {self.arch!r}")
        positive_ints(self, ("d", "width", "layers", "heads", "lora_rank", "vocab"))
        check(self.vocab >= 2, "vocab", "alphabet size must be >= 2")
        if self.arch == "transformer":
            check(self.d % self.heads == 0, "heads", f"d={self.d} is not divisible by heads={self.heads}")

    @classmethod
    def from_dict(cls, data, where="network"):
        return build(cls, data, where)


@dataclass(frozen=True, kw_only=True)
class SourceConfig:
    """A coin-flip data source (SPEC 1.1)."""

    kind: str
    biases: tuple = ((0.2, 0.8),)  # single: one row; mixture: one row per component
    weights: tuple = (1.0,)
    alphas: tuple = (1.0, 1.0)

    def __post_init__(self):
        check(self.kind in ("single", "mixture", "random"), "kind", f"unknown source {self.kind!r}")
        if self.kind in ("single", "mixture"):
            rows = self.biases
            check(len(rows) >= 1 and all(len(r) == len(rows[0]) for r in rows), "biases", "rows must share one length")
            for r in rows:
                check(all(p > 0 for p in r) and abs(sum(r) - 1) < 1e-6, "biases", f"{list(r)} is not a probability vector with positive entries")
            if self.kind == "mixture":
                check(len(self.weights) == len(rows), "weights", "need one weight per component")
                check(all(w > 0 for w in self.weights) and abs(sum(self.weights) - 1) < 1e-6, "weights",
                      f"{list(self.weights)} must be positive and sum to 1")
        else:
            check(len(self.alphas) >= 2 and all(a > 0 for a in self.alphas), "alphas", "need >= 2 positive concentrations")

    @property
    def vocab(self) -> int:
        return len(self.alphas) if self.kind == "random" else len(self.biases[0])

    @classmethod
    def from_dict(cls, data, where="source"):
        return build(cls, data, where)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimisation settings shared by pretraining and tuning."""

    steps: int
    batch: int
    length: int
    lr: float
    clip: float = 1.0
    data_seed: int = 0
    log_every: int = 50

    def __post_init__(self):
        positive_ints(self, ("steps", "batch", "length", "log_every"))
        check(self.lr > 0, "lr", "must be > 0")
        check(self.clip > 0, "clip", "must be > 0")

    @classmethod
    def from_dict(cls, data, where="train"):
        return build(cls, data, where)


@dataclass(frozen=True, kw_only=True)
class TuneConfig:
    steps: int
    batch: int
    length: int
    lr: float
    clip: float = 1.0
    prefix_length: int = 6
    repetitions: int = 10
    methods: tuple = TUNING_METHODS
    data_seeds_start: int = 11  # repetition r uses data seed data_seeds_start + r
    prefix_seed: int = 100  # repetition r's prefix init uses prefix_seed + r
    search_sequences: int = 2048
    search_seed: int = 7
    hard_search: bool = True
    clip_norm_over: str = "all"
    log_every: int = 50
    # {method: lr} overriding lr for those methods: at a short budget, weight tuning needs a
    # smaller Adam step than prefix tuning (benchmarks/weight_tuning_mixture.py). Held as sorted pairs.
    method_lr: tuple = ()

    def __post_init__(self):
        positive_ints(self, ("steps", "batch", "length", "repetitions", "search_sequences", "log_every", "prefix_length"))
        check(self.lr > 0, "lr", "must be > 0")
        pairs = self.method_lr.items() if isinstance(self.method_lr, dict) else self.method_lr
        object.__setattr__(self, "method_lr", tuple(sorted((str(m), lr) for m, lr in pairs)))
        not_gradient = [m for m, _ in self.method_lr if m not in GRADIENT_METHODS]
        check(not not_gradient, "method_lr", f"names {not_gradient}, not gradient methods; known: {list(GRADIENT_METHODS)}")
        check(all(isinstance(lr, (int, float)) and lr > 0 for _, lr in self.method_lr), "method_lr",
              "learning rates must be numbers > 0")
        check(self.clip > 0, "clip", "must be > 0")
        check(self.clip_norm_over in ("all", "tuned"), "clip_norm_over", f"must be 'all' or 'tuned', got {self.clip_norm_over!r}")
        unknown = [m for m in self.methods if m not in TUNING_METHODS]
        check(not unknown, "methods", f"unknown method(s) {unknown}; known: {list(TUNING_METHODS)}")

    @property
    def gradient_methods(self) -> tuple[str, ...]:
        return tuple(m for m in self.methods if m in GRADIENT_METHODS)

    def lr_of(self, method: str) -> float:
        return dict(self.method_lr).get(method, self.lr)

    @classmethod
    def from_dict(cls, data, where="tune"):
        return build(cls, data, where)


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    sequences: int = 2048
    length: int = 200
    seed: int = 0
    chunk: int = 512  # sequences per forward pass; bounds memory, not results
    state_pretrain_sequences: int = 100
    state_target_per_repetition: int = 2
    state_positions: int = 50
    state_seed: int = 3

    def __post_init__(self):
        positive_ints(self, ("sequences", "length", "chunk", "state_pretrain_sequences", "state_target_per_repetition",
                              "state_positions"))

    @classmethod
    def from_dict(cls, data, where="evaluate"):
        return build(cls, data, where)


def sources_from_dict(data: dict) -> dict[str, SourceConfig]:
    missing = [k for k in EVAL_DISTS if k not in data]
    if missing:
        raise ConfigError(f"sources: missing {missing}")
    return {k: SourceConfig.from_dict(v, f"sources.{k}") for k, v in data.items()}
