"""Workflow configuration: scale overrides, schema validation with key-naming errors,
and the per-job config subtrees the rules pass to the CLI."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from prefixlab.config import ConfigError, EvalConfig, NetworkConfig, SourceConfig, TrainConfig, build
from prefixlab.jobs import EvalJob, PretrainJob
from prefixlab.sorting.configs import DigitSpec
from prefixlab.sorting.jobs import SortEvalJob, SortPretrainJob
from prefixlab.types import TUNING_METHODS


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _schema_errors(config: dict, schema: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    msgs = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        if err.validator == "additionalProperties" and err.instance is not None and isinstance(err.instance, dict):
            allowed = set(err.schema.get("properties", {}))
            extra = sorted(set(err.instance) - allowed) if allowed else []
            msgs.append(f"config key '{_key(err.absolute_path)}': unknown key(s) {extra}" if extra else
                        f"config key '{_key(err.absolute_path)}': {err.message}")
        elif err.validator == "enum":
            msgs.append(f"config key '{_key(err.absolute_path)}': {err.instance!r} is not one of {err.validator_value}")
        elif err.validator == "type" and isinstance(err.instance, str):
            # Snakemake's --config key={a: 5} hands nested values over as text
            msgs.append(f"config key '{_key(err.absolute_path)}': {err.message} (a nested value given as "
                        "--config key={...} arrives as text: put it in a YAML file and pass --configfile FILE)")
        else:
            msgs.append(f"config key '{_key(err.absolute_path)}': {err.message}")
    return msgs


def _fill_defaults(config: dict, schema: dict) -> None:
    for k, sub in schema.get("properties", {}).items():
        if k not in config and "default" in sub:
            config[k] = copy.deepcopy(sub["default"])


def resolve(config: dict, schema_path: str | Path) -> dict:
    """Validate the raw config, apply the chosen scale and validate the result.

    Raises ConfigError naming the offending key.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = _schema_errors(config, schema)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    scale = config["scale"]
    scales = config.get("scales", {})
    resolved = {k: v for k, v in config.items() if k != "scales"}
    if scale != "paper":
        if scale not in scales:
            raise ConfigError(f"config key 'scale': unknown scale {scale!r}; defined: ['paper'] + {sorted(scales)}")
        resolved = deep_merge(resolved, scales[scale])
    _fill_defaults(resolved, schema)
    errors = _schema_errors(resolved, schema)
    if errors:
        raise ConfigError(f"invalid configuration at scale {scale!r}:\n  " + "\n  ".join(errors))
    _check_references(resolved)
    _check_paper_b(resolved)
    check_jobs(resolved)
    return resolved


def check_jobs(cfg: dict) -> None:
    """Every check a job makes of its config, made now for every job of the run.

    Each section goes through the config class its jobs build (so the error names the
    config key), then each job's own subtree through the parser its CLI command uses:
    a bad value stops the dry run instead of a job hours into the run."""
    for name, src in cfg["sources"].items():
        _named(SourceConfig.from_dict, src, f"sources.{name}")
    _named(TrainConfig.from_dict, cfg["pretrain"], "pretrain")
    _named(EvalConfig.from_dict, cfg["evaluate"], "evaluate")
    for exp in cfg["run_experiments"]:
        variant = cfg["experiments"][exp]["network"]
        for arch in cfg["archs"]:
            _named(NetworkConfig.from_dict, network_subtree(cfg, variant, arch), f"networks.{variant}")
            if cfg["experiments"][exp]["pretrained"]:
                _named(PretrainJob.from_dict, pretrain_job(cfg, variant, arch))
            _named(EvalJob.from_dict, eval_job(cfg, exp, arch))  # includes the experiment's tune job
    b = cfg.get("paper_b")
    if not b:
        return
    _named(build, DigitSpec, b["digits"], "paper_b.digits")
    for exp in b["run_experiments"]:
        _named(SortPretrainJob.from_dict, sort_pretrain_job(cfg, b["experiments"][exp]["model"]))
        _named(SortEvalJob.from_dict, sort_eval_job(cfg, exp))  # includes every run's tune job


def _named(parse, *args) -> None:
    """Run a config parser; its error "key: problem" becomes "config key 'key': problem"."""
    try:
        parse(*args)
    except ConfigError as err:
        key, _, msg = str(err).partition(": ")
        raise ConfigError(f"config key '{key}': {msg}") from None


def _check_references(cfg: dict) -> None:
    for name in cfg["run_experiments"]:
        if name not in cfg["experiments"]:
            raise ConfigError(f"config key 'run_experiments': unknown experiment {name!r}; defined: {sorted(cfg['experiments'])}")
    for name, exp in cfg["experiments"].items():
        if exp["network"] not in cfg["networks"]:
            raise ConfigError(f"config key 'experiments.{name}.network': unknown network {exp['network']!r}; defined: {sorted(cfg['networks'])}")
        vocab = {len(s.get("alphas", ())) if s["kind"] == "random" else len(s["biases"][0]) for s in cfg["sources"].values()}
        if len(vocab) != 1:
            raise ConfigError(f"config key 'sources': all sources must share one alphabet size, got {sorted(vocab)}")


def _check_paper_b(cfg: dict) -> None:
    b = cfg.get("paper_b")
    if not b:
        return
    for name in b["run_experiments"]:
        if name not in b["experiments"]:
            raise ConfigError(f"config key 'paper_b.run_experiments': unknown experiment {name!r}; defined: {sorted(b['experiments'])}")
    for name, e in b["experiments"].items():
        if e["model"] not in b["models"]:
            raise ConfigError(f"config key 'paper_b.experiments.{name}.model': unknown model {e['model']!r}; defined: {sorted(b['models'])}")


def sort_pretrain_job(cfg: dict, model: str) -> dict:
    b = cfg["paper_b"]
    return {"name": model, "model": b["models"][model], "digits": b["digits"], "train": b["train"],
            "seeds": b["seeds"]}


def _arch(model: dict) -> dict:
    """A tuning job depends on the network's shape; its pretraining settings reach it
    through the weights file."""
    return {k: v for k, v in model.items() if k not in ("task", "steps", "lr")}


def sort_tune_job(cfg: dict, exp: str, run: str) -> dict:
    b = cfg["paper_b"]
    e = b["experiments"][exp]
    spec = e["runs"][run]
    method = spec["method"]
    # only what this run's optimiser uses, so e.g. a fine-tuning weight decay change
    # leaves prefix runs alone
    train = {k: v for k, v in b["train"].items() if k != "dropout" or method == "finetune"}
    train["weight_decay"] = {method: b["train"]["weight_decay"][method]}
    return {"experiment": exp, "run": run, "model": _arch(b["models"][e["model"]]), "digits": b["digits"],
            "train": train, "seeds": b["seeds"], "repetitions": b["repetitions"], "spec": spec}


def sort_eval_job(cfg: dict, exp: str) -> dict:
    b = cfg["paper_b"]
    e = b["experiments"][exp]
    return {"experiment": exp, "model": _arch(b["models"][e["model"]]), "digits": b["digits"], "train": b["train"],
            "seeds": b["seeds"], "repetitions": b["repetitions"], "runs": e["runs"], "eval_tasks": e["eval_tasks"],
            "attention_maps": e.get("attention_maps", False), "shift_figure": e.get("shift_figure", False),
            "evaluate": b["evaluate"]}


def vocab(cfg: dict) -> int:
    s = cfg["sources"]["random"]
    return len(s["alphas"]) if s["kind"] == "random" else len(s["biases"][0])


def network_subtree(cfg: dict, variant: str, arch: str) -> dict:
    return {"arch": arch, "vocab": vocab(cfg), **cfg["networks"][variant]}


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
    return {"experiment": exp, "network": network_subtree(cfg, e["network"], arch), "pretrained": e["pretrained"],
            "pretrain_source": cfg["sources"][cfg["pretrain_source"]], "target": e["target"],
            "target_source": cfg["sources"][e["target"]], "tune": tune}


def eval_job(cfg: dict, exp: str, arch: str) -> dict:
    return {**tune_job(cfg, exp, arch), "sources": cfg["sources"], "evaluate": cfg["evaluate"]}
