"""Typed job descriptions built from the config subtrees the workflow passes to the CLI."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from prefixlab.config import ConfigError, as_config_key, check, check_defined, require
from prefixlab.coins.configs import ARCHS, EvalConfig, NetworkConfig, SourceConfig, TrainConfig, TuneConfig, sources_from_dict
from prefixlab.coins.methods import EVAL_DISTS, GRADIENT_METHODS, TUNING_METHODS, WEIGHT_METHODS

log = logging.getLogger("prefixlab")


@dataclass(frozen=True, kw_only=True)
class PretrainJob:
    network: NetworkConfig
    source: SourceConfig
    train: TrainConfig

    @classmethod
    def from_dict(cls, d: dict) -> "PretrainJob":
        require(d, ("network", "source", "pretrain"), "pretrain job")
        job = cls(network=NetworkConfig.from_dict(d["network"]), source=SourceConfig.from_dict(d["source"], "pretrain.source"),
                  train=TrainConfig.from_dict(d["pretrain"], "pretrain"))
        _check_vocab({"pretrain_source": job.source}, job.network.vocab)
        return job


def methods_for_arch(methods, arch: str) -> tuple[str, ...]:
    """The methods that apply to a network of this arch (LoRA exists only in the Transformer)."""
    return tuple(m for m in methods if not (m == "LoRAWT" and arch != "transformer"))


@dataclass(frozen=True, kw_only=True)
class TuneJob:
    experiment: str
    network: NetworkConfig
    pretrained: bool
    pretrain_source: SourceConfig
    target: str
    target_source: SourceConfig
    tune: TuneConfig

    @property
    def methods(self) -> tuple[str, ...]:
        """Configured methods that apply to this network."""
        return methods_for_arch(self.tune.methods, self.network.arch)

    @classmethod
    def from_dict(cls, d: dict) -> "TuneJob":
        if "target_source" not in d and isinstance(d.get("sources"), dict) and d.get("target") in d["sources"]:
            d = {**d, "target_source": d["sources"][d["target"]]}  # a hand-written job may list every source
        require(d, ("experiment", "network", "pretrained", "pretrain_source", "target", "target_source", "tune"), "tune job")
        check(d["target"] in EVAL_DISTS, f"experiments.{d['experiment']}.target",
              f"unknown source {d['target']!r}; known: {list(EVAL_DISTS)}")
        job = cls(experiment=d["experiment"], network=NetworkConfig.from_dict(d["network"]), pretrained=bool(d["pretrained"]),
                  pretrain_source=SourceConfig.from_dict(d["pretrain_source"], "pretrain.source"), target=d["target"],
                  target_source=SourceConfig.from_dict(d["target_source"], f"sources.{d['target']}"),
                  tune=TuneConfig.from_dict(d["tune"]))
        check(job.pretrained or "FullWT" not in job.tune.methods, f"experiments.{job.experiment}.methods",
              "FullWT is not offered for untrained networks")
        _check_vocab({"pretrain_source": job.pretrain_source, job.target: job.target_source}, job.network.vocab)
        return job


# Tune settings that reach only the prefix members and the prefix searches. Weight-tuning
# members see no prefix: two experiments that differ only here (r2s and r2s_L25) train
# bitwise the same weight members, so the second takes them from the first's output.
# Learning rates are compared per weight method (`lr_of`), the methods as a subset.
PREFIX_ONLY_TUNE_SETTINGS = ("prefix_length", "hard_search", "prefix_seed", "search_sequences", "search_seed",
                             "log_every", "methods", "lr", "method_lr")


def weight_methods(job: TuneJob) -> tuple[str, ...]:
    return tuple(m for m in job.methods if m in WEIGHT_METHODS)


def weight_member_settings(job: TuneJob) -> dict:
    """Everything a tune job's weight-tuning members depend on, method list aside."""
    tune = {k: v for k, v in dataclasses.asdict(job.tune).items() if k not in PREFIX_ONLY_TUNE_SETTINGS}
    return {"network": job.network, "pretrained": job.pretrained, "target_source": job.target_source, "tune": tune}


def weight_donor_mismatch(donor: TuneJob, job: TuneJob) -> str | None:
    """Why `donor`'s weight members are not `job`'s (None when they are the same runs)."""
    missing = [m for m in weight_methods(job) if m not in weight_methods(donor)]
    if missing:
        return f"it trains no {missing}"
    rates = [m for m in weight_methods(job) if donor.tune.lr_of(m) != job.tune.lr_of(m)]
    if rates:
        return f"learning rates of {rates} differ"
    mine, theirs = weight_member_settings(job), weight_member_settings(donor)
    for key in mine:
        if mine[key] != theirs[key]:
            differ = [k for k in mine[key] if mine[key][k] != theirs[key][k]] if key == "tune" else []
            return f"{key} differs" + (f" ({', '.join(differ)})" if differ else "")
    return None


def _check_vocab(sources: dict, vocab: int) -> None:
    for name, src in sources.items():
        check(src.vocab == vocab, f"sources.{name}", f"alphabet size {src.vocab} != network.vocab {vocab}")


@dataclass(frozen=True, kw_only=True)
class EvalJob:
    tune_job: TuneJob
    sources: dict  # every evaluation distribution by name
    evaluate: EvalConfig

    @classmethod
    def from_dict(cls, d: dict) -> "EvalJob":
        require(d, ("evaluate", "sources"), "evaluate job")
        tune_job = TuneJob.from_dict({k: v for k, v in d.items() if k != "evaluate"})
        sources = sources_from_dict(d["sources"])
        _check_vocab(sources, tune_job.network.vocab)
        return cls(tune_job=tune_job, sources=sources, evaluate=EvalConfig.from_dict(d["evaluate"]))


# ----------------------------------------------------------------------------- the workflow's job subtrees

def vocab(cfg: dict) -> int:
    s = cfg["sources"]["random"]
    return len(s["alphas"]) if s["kind"] == "random" else len(s["biases"][0])


def network_subtree(cfg: dict, variant: str, arch: str) -> dict:
    """The network `variant` as `arch` builds it: the shared size, then the arch's own values
    (`networks.<variant>.<arch>`); the other arch's values stay out, so changing them reruns
    none of this arch's jobs."""
    net = cfg["networks"][variant]
    shared = {k: v for k, v in net.items() if k not in ARCHS}
    return {"arch": arch, "vocab": vocab(cfg), **shared, **net.get(arch, {})}


def pretrain_job(cfg: dict, variant: str, arch: str) -> dict:
    return {"network": network_subtree(cfg, variant, arch), "source": cfg["sources"][cfg["pretrain_source"]],
            "pretrain": cfg["pretrain"]}


def experiment_methods(cfg: dict, exp: str) -> list[str]:
    e = cfg["experiments"][exp]
    methods = e.get("methods", cfg["methods"])
    if not e["pretrained"] and "methods" not in e:
        methods = [m for m in methods if m != "FullWT"]
    return [m for m in TUNING_METHODS if m in methods]


def tune_job(cfg: dict, exp: str, arch: str) -> dict:
    e = cfg["experiments"][exp]
    tune = dict(cfg["tune"])
    for k in ("prefix_length", "hard_search"):
        if k in e:
            tune[k] = e[k]
    tune["methods"] = experiment_methods(cfg, exp)
    if "method_lr" in tune or "method_lr" in e:
        # an experiment's own rates win over tune.method_lr (the best LoRAWT rate of the Maxi
        # network is not the base network's); only the rates of methods this job trains, so a
        # rate for LoRAWT reruns no LSTM job
        runs = methods_for_arch(tune["methods"], arch)
        rates = {**dict(tune.get("method_lr", {})), **dict(e.get("method_lr", {}))}
        tune["method_lr"] = {m: lr for m, lr in rates.items() if m in runs}
    return {"experiment": exp, "network": network_subtree(cfg, e["network"], arch), "pretrained": e["pretrained"],
            "pretrain_source": cfg["sources"][cfg["pretrain_source"]], "target": e["target"],
            "target_source": cfg["sources"][e["target"]], "tune": tune}


def weight_group(cfg: dict, exp: str, arch: str) -> str | None:
    """The experiment that names the weight-tuning members `exp` shares with another configured
    experiment (see PREFIX_ONLY_TUNE_SETTINGS: r2s for r2s and r2s_L25), or None when no other
    experiment trains them. The group's members train once (`weight_members_job`); each sharing
    experiment's tuning job trains its prefix members and takes them. The first experiment in
    run_experiments names the group, and every later one must train a subset of its methods."""
    tuning = {e: TuneJob.from_dict(tune_job(cfg, e, arch)) for e in cfg["run_experiments"]}
    tuning.setdefault(exp, TuneJob.from_dict(tune_job(cfg, exp, arch)))

    def first(e):
        return next(o for o in tuning if o == e or weight_donor_mismatch(tuning[o], tuning[e]) is None)

    if not weight_methods(tuning[exp]):
        return None
    group = first(exp)
    shared = group != exp or any(e != exp and weight_methods(tuning[e]) and first(e) == exp for e in tuning)
    return group if shared else None


def weight_members_job(cfg: dict, group: str, arch: str) -> dict:
    """The tuning job of a weight group's members alone: `group`'s weight methods, each at its
    own rate, without the settings that reach only prefixes (so a prefix change reruns it not)."""
    d = tune_job(cfg, group, arch)
    job = TuneJob.from_dict(d)
    methods = list(weight_methods(job))
    if not methods:
        raise ConfigError(f"experiments.{group}: {arch} trains no weight-tuning method, so it shares no weight members")
    rates = {m: job.tune.lr_of(m) for m in methods}
    tune = {k: v for k, v in d["tune"].items() if k not in PREFIX_ONLY_TUNE_SETTINGS}
    # every member's rate is in method_lr; lr is required but read by none
    tune.update(methods=methods, method_lr=rates, lr=rates[methods[0]])
    return {**d, "tune": tune}


def eval_job(cfg: dict, exp: str, arch: str) -> dict:
    return {**tune_job(cfg, exp, arch), "sources": cfg["sources"], "evaluate": cfg["evaluate"]}

def check_config(cfg: dict) -> None:
    """Paper A's part of settings.check_jobs: every section through the config class its
    jobs build, then each job's own subtree through the parser its command uses."""
    _check_references(cfg)
    for name, src in cfg["sources"].items():
        as_config_key(SourceConfig.from_dict, src, f"sources.{name}")
    as_config_key(TrainConfig.from_dict, cfg["pretrain"], "pretrain")
    as_config_key(EvalConfig.from_dict, cfg["evaluate"], "evaluate")
    for exp in cfg["run_experiments"]:
        variant = cfg["experiments"][exp]["network"]
        for arch in cfg["archs"]:
            where = f"networks.{variant}" + (f".{arch}" if arch in cfg["networks"][variant] else "")
            as_config_key(NetworkConfig.from_dict, network_subtree(cfg, variant, arch), where)
            if cfg["experiments"][exp]["pretrained"]:
                as_config_key(PretrainJob.from_dict, pretrain_job(cfg, variant, arch))
            as_config_key(EvalJob.from_dict, eval_job(cfg, exp, arch))  # includes the experiment's tune job


def _check_references(cfg: dict) -> None:
    for name in cfg["run_experiments"]:
        check_defined(name, cfg["experiments"], "run_experiments", "experiment")
    for name, exp in cfg["experiments"].items():
        check_defined(exp["network"], cfg["networks"], f"experiments.{name}.network", "network")
        not_gradient = [m for m in exp.get("method_lr", {}) if m not in GRADIENT_METHODS]
        if not_gradient:
            raise ConfigError(f"config key 'experiments.{name}.method_lr': names {not_gradient}, not gradient methods; "
                              f"known: {list(GRADIENT_METHODS)}")
        vocab = {len(s.get("alphas", ())) if s["kind"] == "random" else len(s["biases"][0]) for s in cfg["sources"].values()}
        if len(vocab) != 1:
            raise ConfigError(f"config key 'sources': all sources must share one alphabet size, got {sorted(vocab)}")
