"""Command-line entry points the workflow calls: pretrain, tune, evaluate, states and
Paper B's sort-pretrain, sort-tune, sort-evaluate.

Each reads a job config (a JSON/YAML file, or a JSON string) and writes its outputs
atomically; a failure leaves no output behind. A user mistake (config, input file,
output path) ends in one line naming it and exit code 2, before any training;
Ctrl-C in one line and exit code 130.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import json
import os
import logging
import sys
from pathlib import Path

import torch
import yaml

from prefixlab import COMMANDS, kernels, storage
from prefixlab.config import ConfigError
from prefixlab.optim import TrainingError

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
    p.add_argument("--donor-nc", help="tuning output (.nc) holding this job's weight members (the shared weight-members job's)")
    p.add_argument("--donor-weights", help="that output's trained tensors (.pt)")
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


def use_deterministic_algorithms() -> None:
    """torch.use_deterministic_algorithms(True, warn_only=True) without its import of
    torch._inductor, which only sets the compiler's flag (no job compiles) and costs
    every job about 1.5 s of start-up (90 jobs at quick scale)."""
    set_flag = getattr(torch._C, "_set_deterministic_algorithms", None)
    if set_flag is None:  # a PyTorch without the private setter: the public call
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        set_flag(True, warn_only=True)


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
_INT_MAX = 2**31 - 1


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory in the heap for the next tensor; False where
    the C library has no working mallopt (macOS, musl), whose malloc is left as it is.

    PyTorch's CPU allocator takes every tensor from malloc, and glibc serves blocks above
    its mmap threshold (128 KiB, rising to at most 32 MiB) with fresh pages and unmaps them
    on free: every forward pass faults in and zeroes its activations again. That was a
    fifth to a quarter of an evaluation job's time in the kernel (a quick-scale evaluation
    1.3-2.3 million page faults, a cpu-scale one cut to 256 sequences 8 million). With both
    thresholds at their maximum, blocks come from the heap and freed ones stay there (a
    job's resident memory stays at its peak until it ends). Which memory a tensor gets
    does not change a result.
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    return all([mallopt(ctypes.c_int(param), ctypes.c_int(_INT_MAX)) == 1 for param in (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD)])


def run_command(command: str, args, cfg: dict) -> None:
    module, _, function = COMMANDS[command].partition(":")
    getattr(importlib.import_module(module), function)(args, cfg)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    handlers = [logging.StreamHandler(sys.stderr)]
    if args.log:
        handlers.append(logging.FileHandler(args.log))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers, force=True)
    try:
        if args.threads:
            torch.set_num_threads(min(args.threads, os.cpu_count() or 1))
        use_deterministic_algorithms()
        keep_freed_memory()
        args.device = resolve_device(args.device)
        kernels.set_mode(args.kernels)
        if args.kernels == "triton" and (args.device != "cuda" and os.environ.get("TRITON_INTERPRET") != "1"
                                         or not kernels.triton_available()):
            raise ConfigError("--kernels triton needs Triton and a CUDA device (or TRITON_INTERPRET=1 on the CPU)")
        cfg = load_config(args.config)
        check_outputs(args)
        run_command(args.command, args, cfg)
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
