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
    sources: dict
    tune: TuneConfig

    @property
    def target_source(self) -> SourceConfig:
        return self.sources[self.target]

    @property
    def methods(self) -> tuple[str, ...]:
        """Configured methods that apply to this network (LoRA exists only in the Transformer)."""
        return tuple(m for m in self.tune.methods if not (m == "LoRAWT" and self.network.arch != "transformer"))

    @classmethod
    def from_dict(cls, d: dict) -> "TuneJob":
        _require(d, ("experiment", "network", "pretrained", "pretrain_source", "target", "sources", "tune"), "tune job")
        sources = sources_from_dict(d["sources"])
        if d["target"] not in EVAL_DISTS:
            raise ConfigError(f"experiments.{d['experiment']}.target: unknown source {d['target']!r}; known: {list(EVAL_DISTS)}")
        job = cls(experiment=d["experiment"], network=NetworkConfig.from_dict(d["network"]), pretrained=bool(d["pretrained"]),
                  pretrain_source=SourceConfig.from_dict(d["pretrain_source"], "pretrain.source"), target=d["target"],
                  sources=sources, tune=TuneConfig.from_dict(d["tune"]))
        if not job.pretrained and "FullWT" in job.tune.methods:
            raise ConfigError(f"experiments.{job.experiment}.methods: FullWT is not offered for untrained networks")
        for name, src in sources.items():
            if src.vocab != job.network.vocab:
                raise ConfigError(f"sources.{name}: alphabet size {src.vocab} != network.vocab {job.network.vocab}")
        return job


@dataclass(frozen=True, kw_only=True)
class EvalJob:
    tune_job: TuneJob
    evaluate: EvalConfig

    @classmethod
    def from_dict(cls, d: dict) -> "EvalJob":
        _require(d, ("evaluate",), "evaluate job")
        rest = {k: v for k, v in d.items() if k != "evaluate"}
        return cls(tune_job=TuneJob.from_dict(rest), evaluate=EvalConfig.from_dict(d["evaluate"]))
