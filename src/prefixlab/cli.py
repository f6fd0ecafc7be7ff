"""Command-line entry points the workflow calls: pretrain, tune, evaluate, states and
Paper B's sort-pretrain, sort-tune, sort-evaluate.

Each reads a job config (a JSON/YAML file, or a JSON string) and writes its outputs
atomically; a failure leaves no output behind. A user mistake (config, input file,
output path) ends in one line naming it and exit code 2, before any training;
Ctrl-C in one line and exit code 130.
"""

from __future__ import annotations

import argparse
import json
import os
import logging
import sys
from pathlib import Path

import torch
import yaml

from prefixlab import kernels, storage
from prefixlab.config import ConfigError
from prefixlab.jobs import EvalJob, PretrainJob, TuneJob
from prefixlab.population import TrainingError

log = logging.getLogger("prefixlab")


def load_config(text: str) -> dict:
    if text.lstrip().startswith("{"):
        try:
            cfg = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--config: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
        where = "--config"
    else:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            cfg = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            at = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
            raise ConfigError(f"config file {path}: not valid YAML or JSON{at}") from None
        where = f"config file {path}"
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where}: expected a mapping of config keys, got {type(cfg).__name__}")
    return cfg


def check_outputs(args) -> None:
    """Fail before any work when an output cannot be written, and clear temporary files
    that a killed earlier write of the same outputs left behind."""
    for flag, value in vars(args).items():
        if not flag.startswith("out_") or value is None:
            continue
        path = Path(value)
        option = "--" + flag.replace("_", "-")
        if path.is_dir():
            raise ConfigError(f"{option} {path}: is a directory")
        storage.remove_stale_temporaries(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            probe = storage.temporary_path(path)
            probe.touch()
            probe.unlink()
        except OSError as err:
            raise ConfigError(f"{option} {path}: cannot write there ({err.strerror or err})") from None


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but CUDA is not available")
    return name


def _weights(path, expected: dict | None = None):
    """Weights from `path` (None without a path), checked against the names and shapes
    of the network the job builds."""
    if not path:
        return None
    weights = storage.load_torch(path)
    if expected is not None:
        storage.check_weights(weights, expected, path)
    return weights


def _coin_weights(path, job: TuneJob):
    from prefixlab import networks
    return _weights(path, networks.init_params(job.network) if path else None)


def _gpt_weights(path, model):
    from prefixlab.sorting import gpt
    return _weights(path, gpt.init_weights(model))


def cmd_pretrain(args, cfg):
    from prefixlab import pretrain
    job = PretrainJob.from_dict(cfg)
    weights, ds = pretrain.run(job, args.device)
    seeds = {"init_seed": job.network.init_seed, "data_seed": job.train.data_seed}
    with storage.Staging() as out:
        out.write(ds, args.out_nc, "pretrain", cfg, seeds)
        out.save_torch(weights, args.out_weights)


def cmd_tune(args, cfg):
    from prefixlab import tune
    job = TuneJob.from_dict(cfg)
    if job.pretrained and not args.weights:
        raise ConfigError(f"tune {job.experiment}: a pretrained experiment needs --weights")
    ds, hard_ds, state = tune.run(job, _coin_weights(args.weights, job), args.device)
    t = job.tune
    seeds = {"data_seeds": [t.data_seeds_start + r for r in range(t.repetitions)], "prefix_seed": t.prefix_seed,
             "search_seed": t.search_seed, "init_seed": job.network.init_seed}
    if hard_ds is None:
        import xarray as xr
        import numpy as np
        hard_ds = xr.Dataset({"search_loss": storage.var(np.zeros(0), ("candidate",), "nats", "HardPT search disabled"),
                              "candidate_prefix": storage.var(np.zeros((0, t.prefix_length), dtype=np.int64), ("candidate", "slot"), "1", "none")})
    with storage.Staging() as out:
        out.write(hard_ds, args.out_search, "hard_search", cfg, seeds)
        out.save_torch(state, args.out_weights)
        out.write(ds, args.out_nc, "tune", cfg, seeds)


def _eval_inputs(args, cfg):
    job = EvalJob.from_dict(cfg)
    tune_ds = storage.read(args.tune_nc, "tune")
    state = storage.load_torch(args.tune_weights)
    return job, tune_ds, state


def cmd_evaluate(args, cfg):
    from prefixlab import evaluate
    job, tune_ds, state = _eval_inputs(args, cfg)
    ds = evaluate.regrets(job, _coin_weights(args.weights, job.tune_job), tune_ds, state, args.device)
    storage.write(ds, args.out_nc, "eval", cfg, {"eval_seed": job.evaluate.seed})


def cmd_states(args, cfg):
    from prefixlab import evaluate
    job, tune_ds, state = _eval_inputs(args, cfg)
    ds = evaluate.internal_states(job, _coin_weights(args.weights, job.tune_job), tune_ds, state, args.device)
    storage.write(ds, args.out_nc, "states", cfg, {"state_seed": job.evaluate.state_seed})


def cmd_sort_pretrain(args, cfg):
    from prefixlab.sorting import runs
    from prefixlab.sorting.jobs import SortPretrainJob
    job = SortPretrainJob.from_dict(cfg)
    weights, ds = runs.pretrain(job, args.device)
    seeds = {"init_seed": job.model.init_seed, "data_seed": job.data_seed, "dropout_seed": job.dropout_seed}
    with storage.Staging() as out:
        out.write(ds, args.out_nc, "sort_pretrain", cfg, seeds)
        out.save_torch(weights, args.out_weights)


def cmd_sort_tune(args, cfg):
    from prefixlab.sorting import runs
    from prefixlab.sorting.jobs import SortTuneJob
    job = SortTuneJob.from_dict(cfg)
    trained, ds = runs.tune(job, _gpt_weights(args.weights, job.model), args.device)
    seeds = {"data_seeds": job.data_seeds, "init_seeds": job.init_seeds, "dropout_seed": job.dropout_seed}
    with storage.Staging() as out:
        out.write(ds, args.out_nc, "sort_tune", cfg, seeds)
        out.save_torch(trained, args.out_weights)


def cmd_sort_evaluate(args, cfg):
    from prefixlab.sorting import runs
    from prefixlab.sorting.jobs import SortEvalJob
    job = SortEvalJob.from_dict(cfg)
    tuned = {}
    for item in args.tuned:
        run, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"--tuned expects RUN=PATH, got {item!r}")
        tuned[run] = storage.load_torch(path)
    missing = sorted(set(job.runs) - set(tuned))
    if missing:
        raise ConfigError(f"sort-evaluate {job.experiment}: no --tuned weights for run(s) {missing}")
    ds = runs.evaluate(job, _gpt_weights(args.weights, job.model), tuned, args.device)
    storage.write(ds, args.out_nc, "sort_eval", cfg, {"eval_seed": job.seed, "theory_seed": job.theory_seed})


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="prefixlab", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--config", required=True, help="job config: JSON/YAML file or a JSON string")
        p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
        p.add_argument("--kernels", default="auto", choices=kernels.MODES,
                       help="auto: Triton on CUDA, PyTorch reference on CPU; or force either")
        p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
        p.add_argument("--log", help="also append log lines to this file")

    p = sub.add_parser("pretrain"); common(p)
    p.add_argument("--out-weights", required=True); p.add_argument("--out-nc", required=True)
    p = sub.add_parser("tune"); common(p)
    p.add_argument("--weights", help="pretrained weights (.pt); omit for untrained networks")
    p.add_argument("--out-nc", required=True); p.add_argument("--out-search", required=True); p.add_argument("--out-weights", required=True)
    for name in ("evaluate", "states"):
        p = sub.add_parser(name); common(p)
        p.add_argument("--weights"); p.add_argument("--tune-nc", required=True); p.add_argument("--tune-weights", required=True)
        p.add_argument("--out-nc", required=True)
    # Paper B (sorting-task GPTs)
    p = sub.add_parser("sort-pretrain"); common(p)
    p.add_argument("--out-weights", required=True); p.add_argument("--out-nc", required=True)
    p = sub.add_parser("sort-tune"); common(p)
    p.add_argument("--weights", required=True, help="pretrained weights (.pt)")
    p.add_argument("--out-weights", required=True); p.add_argument("--out-nc", required=True)
    p = sub.add_parser("sort-evaluate"); common(p)
    p.add_argument("--weights", required=True, help="pretrained weights (.pt)")
    p.add_argument("--tuned", action="append", default=[], metavar="RUN=PATH", help="trained tensors of one run")
    p.add_argument("--out-nc", required=True)
    return ap


COMMANDS = {"pretrain": cmd_pretrain, "tune": cmd_tune, "evaluate": cmd_evaluate, "states": cmd_states,
            "sort-pretrain": cmd_sort_pretrain, "sort-tune": cmd_sort_tune, "sort-evaluate": cmd_sort_evaluate}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    handlers = [logging.StreamHandler(sys.stderr)]
    if args.log:
        handlers.append(logging.FileHandler(args.log))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers, force=True)
    try:
        if args.threads:
            torch.set_num_threads(min(args.threads, os.cpu_count() or 1))
        torch.use_deterministic_algorithms(True, warn_only=True)
        args.device = resolve_device(args.device)
        kernels.set_mode(args.kernels)
        if args.kernels == "triton" and (args.device != "cuda" and os.environ.get("TRITON_INTERPRET") != "1"
                                         or not kernels.triton_available()):
            raise ConfigError("--kernels triton needs Triton and a CUDA device (or TRITON_INTERPRET=1 on the CPU)")
        cfg = load_config(args.config)
        check_outputs(args)
        COMMANDS[args.command](args, cfg)
    except (ConfigError, storage.DataError) as err:
        log.error("%s", err)
        return 2
    except TrainingError as err:
        log.error("%s; no output written", err)
        return 3
    except KeyboardInterrupt:
        log.error("interrupted; no output written")
        return 130
    return 0
