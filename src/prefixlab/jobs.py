"""Typed job descriptions built from the config subtrees the workflow passes to the CLI."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prefixlab.config import (ConfigError, EvalConfig, NetworkConfig, SourceConfig, TrainConfig, TuneConfig,
                              sources_from_dict)
from prefixlab.types import EVAL_DISTS

log = logging.getLogger("prefixlab")


def _require(data: dict, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")


@dataclass(frozen=True, kw_only=True)
class PretrainJob:
    network: NetworkConfig
    source: SourceConfig
    train: TrainConfig

    @classmethod
    def from_dict(cls, d: dict) -> "PretrainJob":
        _require(d, ("network", "source", "pretrain"), "pretrain job")
        job = cls(network=NetworkConfig.from_dict(d["network"]), source=SourceConfig.from_dict(d["source"], "pretrain.source"),
                  train=TrainConfig.from_dict(d["pretrain"], "pretrain"))
        if job.source.vocab != job.network.vocab:
            raise ConfigError(f"pretrain.source: alphabet size {job.source.vocab} != network.vocab {job.network.vocab}")
        return job


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
        """Configured methods that apply to this network (LoRA exists only in the Transformer)."""
        return tuple(m for m in self.tune.methods if not (m == "LoRAWT" and self.network.arch != "transformer"))

    @classmethod
    def from_dict(cls, d: dict) -> "TuneJob":
        if "target_source" not in d and isinstance(d.get("sources"), dict) and d.get("target") in d["sources"]:
            d = {**d, "target_source": d["sources"][d["target"]]}  # a hand-written job may list every source
        _require(d, ("experiment", "network", "pretrained", "pretrain_source", "target", "target_source", "tune"), "tune job")
        if d["target"] not in EVAL_DISTS:
            raise ConfigError(f"experiments.{d['experiment']}.target: unknown source {d['target']!r}; known: {list(EVAL_DISTS)}")
        job = cls(experiment=d["experiment"], network=NetworkConfig.from_dict(d["network"]), pretrained=bool(d["pretrained"]),
                  pretrain_source=SourceConfig.from_dict(d["pretrain_source"], "pretrain.source"), target=d["target"],
                  target_source=SourceConfig.from_dict(d["target_source"], f"sources.{d['target']}"),
                  tune=TuneConfig.from_dict(d["tune"]))
        if not job.pretrained and "FullWT" in job.tune.methods:
            raise ConfigError(f"experiments.{job.experiment}.methods: FullWT is not offered for untrained networks")
        _check_vocab({"pretrain_source": job.pretrain_source, job.target: job.target_source}, job.network.vocab)
        return job


def _check_vocab(sources: dict, vocab: int) -> None:
    for name, src in sources.items():
        if src.vocab != vocab:
            raise ConfigError(f"sources.{name}: alphabet size {src.vocab} != network.vocab {vocab}")


@dataclass(frozen=True, kw_only=True)
class EvalJob:
    tune_job: TuneJob
    sources: dict  # every evaluation distribution by name
    evaluate: EvalConfig

    @classmethod
    def from_dict(cls, d: dict) -> "EvalJob":
        _require(d, ("evaluate", "sources"), "evaluate job")
        tune_job = TuneJob.from_dict({k: v for k, v in d.items() if k != "evaluate"})
        sources = sources_from_dict(d["sources"])
        _check_vocab(sources, tune_job.network.vocab)
        return cls(tune_job=tune_job, sources=sources, evaluate=EvalConfig.from_dict(d["evaluate"]))
