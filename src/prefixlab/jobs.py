"""Typed job descriptions built from the config subtrees the workflow passes to the CLI."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prefixlab.config import (EvalConfig, NetworkConfig, SourceConfig, TrainConfig, TuneConfig, check, require,
                              sources_from_dict)
from prefixlab.types import EVAL_DISTS

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
