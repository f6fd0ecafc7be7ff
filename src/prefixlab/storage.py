"""NetCDF storage (SPEC 3): schemas, provenance, atomic writes and validating reads.

Every file carries `prefixlab_kind`; a reader names the kind it expects and gets a
clear `DataError` for a foreign, truncated or malformed file.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import xarray as xr

# kind -> {variable: dims}; every listed variable is required.
SCHEMAS: dict[str, dict[str, tuple[str, ...]]] = {
    "pretrain": {"loss": ("step",), "grad_norm": ("step",), "bayes_loss": ("step",)},
    "tune": {
        "tune_loss": ("member", "step"),
        "grad_norm": ("member", "step"),
        "target_bayes_loss": ("repetition", "step"),
        "prefix_token": ("member", "slot", "token"),
        "prefix_soft": ("member", "slot", "feature"),
        "initial_prefix_token": ("repetition", "slot", "token"),
        "hard_prefix": ("slot", "token"),
        "prebayes_prefix_counts": ("token",),
    },
    "hard_search": {"search_loss": ("candidate",), "candidate_prefix": ("candidate", "slot")},
    "eval": {
        "log_loss": ("eval_dist", "method", "repetition", "step"),
        "regret": ("eval_dist", "method", "repetition", "step"),
        "cum_regret": ("eval_dist", "method", "repetition", "step"),
    },
    "states": {
        "pretrain_states": ("pretrain_trajectory", "position", "feature"),
        "pretrain_theta": ("pretrain_trajectory",),
        "target_states": ("method", "trajectory", "position", "feature"),
        "target_theta": ("method", "trajectory"),
        "marker": ("method",),
    },
    "claims": {"passed": ("claim",), "value": ("claim",), "reference": ("claim",), "published": ("claim",)},
    # Paper B
    "sort_pretrain": {"loss": ("step",), "grad_norm": ("step",)},
    "sort_tune": {"loss": ("member", "step"), "grad_norm": ("member", "step"), "curve_accuracy": ("member", "checkpoint")},
    "sort_eval": {
        "accuracy": ("model", "eval_task"),
        "theory_attention_dev": ("probe",),
        "theory_output_dev": ("probe",),
        "theory_direction_dev": ("probe",),
        "theory_predicted": ("point",),
        "theory_observed": ("point",),
    },
}


class DataError(ValueError):
    """A data file is missing, foreign, truncated or does not match its schema."""


def _code_revision() -> str:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(config: dict, seeds: dict) -> dict[str, str]:
    """Attributes recording what produced a file; no timestamps, so reruns are bitwise equal."""
    versions = {}
    for pkg in ("prefixlab", "torch", "numpy", "xarray", "netCDF4"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "absent"
    return {
        "config": json.dumps(config, sort_keys=True),
        "seeds": json.dumps(seeds, sort_keys=True),
        "package_versions": json.dumps(versions, sort_keys=True),
        "code_revision": _code_revision(),
    }


def check(ds: xr.Dataset, kind: str, where: str = "<dataset>") -> None:
    schema = SCHEMAS[kind]
    got = ds.attrs.get("prefixlab_kind")
    if got != kind:
        raise DataError(f"{where}: expected a prefixlab '{kind}' file, found prefixlab_kind={got!r}")
    for var, dims in schema.items():
        if var not in ds.variables:
            raise DataError(f"{where}: missing variable '{var}' of a '{kind}' file")
        if tuple(ds[var].dims) != dims:
            raise DataError(f"{where}: variable '{var}' has dims {tuple(ds[var].dims)}, expected {dims}")


def temporary_path(path: Path) -> Path:
    """Where this process writes `path` before renaming it into place."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete temporaries of `path` that a killed process left (its name, another pid)."""
    prefix = f".{path.name}.tmp"
    stale = [p for p in path.parent.glob(prefix + "*") if p.name[len(prefix):].isdigit()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


class Staging:
    """Writes a job's outputs under temporary names and renames them together at the end,
    so a job killed midway leaves none of its outputs behind (not even the first ones)."""

    def __init__(self):
        self.pending: list[tuple[Path, Path]] = []

    def write(self, ds, path, kind, config, seeds):
        self.pending.append((write(ds, path, kind, config, seeds, publish=False), Path(path)))

    def save_torch(self, obj, path):
        self.pending.append((save_torch(obj, path, publish=False), Path(path)))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            for tmp, final in self.pending:
                os.replace(tmp, final)
        else:
            for tmp, _ in self.pending:
                tmp.unlink(missing_ok=True)
        return False


def write(ds: xr.Dataset, path: str | os.PathLike, kind: str, config: dict, seeds: dict, publish: bool = True) -> Path:
    """Validate, stamp and write atomically: a crash never leaves a complete-looking file.

    With publish=False the file stays under its temporary name, which is returned.
    """
    ds = ds.copy()
    ds.attrs.update(provenance(config, seeds))
    ds.attrs["prefixlab_kind"] = kind
    check(ds, kind, str(path))
    for name, var in ds.data_vars.items():
        if "units" not in var.attrs or "long_name" not in var.attrs:
            raise DataError(f"{path}: variable '{name}' lacks units/long_name attributes")
    encoding = {n: {"zlib": True, "complevel": 4} for n, v in ds.data_vars.items() if v.dtype.kind in "fiub"}
    return _write_atomically(path, lambda tmp: ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding), publish)


def _write_atomically(path, writer, publish: bool) -> Path:
    """writer(tmp) fills a temporary sibling; renamed over `path` when publish, else returned
    for a Staging to publish. A failed writer leaves nothing behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        writer(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if publish:
        os.replace(tmp, path)
        return path
    return tmp


def read(path: str | os.PathLike, kind: str) -> xr.Dataset:
    """Open, fully load and validate a file of the given kind."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file does not exist")
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
    except Exception as err:  # netCDF4/HDF5 raise OSError, RuntimeError, ValueError...
        raise DataError(f"{path}: not a readable NetCDF file ({type(err).__name__}: {err})") from None
    check(ds, kind, str(path))
    return ds


def var(data, dims, units: str, long_name: str, **attrs) -> xr.Variable:
    """A data variable with the attributes every variable must carry."""
    if hasattr(data, "detach"):  # a torch tensor (duck-typed: figure jobs never import torch)
        data = data.detach().cpu().numpy()
    return xr.Variable(dims, np.asarray(data), {"units": units, "long_name": long_name, **attrs})


def save_torch(obj, path: str | os.PathLike, publish: bool = True) -> Path:
    import torch  # here, not at the top: figure and claims jobs read NetCDF only, and torch costs 1.6 s to import

    return _write_atomically(path, lambda tmp: torch.save(obj, tmp), publish)


def check_weights(weights, expected: dict, path) -> None:
    """DataError unless `weights` has exactly the tensors of `expected` with their shapes."""
    if not isinstance(weights, dict):
        raise DataError(f"{path}: not a weights file of this project (a {type(weights).__name__}, not a dict of tensors)")
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise DataError(f"{path}: weights of another network: missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
                        f"unexpected {unexpected[:4]}{'...' if len(unexpected) > 4 else ''}")
    for name, tensor in expected.items():
        got = tuple(getattr(weights[name], "shape", ()))
        if got != tuple(tensor.shape):
            raise DataError(f"{path}: weights of another size: '{name}' has shape {got}, this job's network needs "
                            f"{tuple(tensor.shape)}")


def load_torch(path: str | os.PathLike):
    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(f"{path}: not a readable weights file ({type(err).__name__}: {err})") from None


def load_weights(path, expected: dict):
    """Weights from `path`, checked against the tensor names and shapes of the network
    the job builds (`expected`, e.g. a fresh initialisation)."""
    weights = load_torch(path)
    check_weights(weights, expected, path)
    return weights


def exit_job(status: int) -> None:
    """End a job's process now, skipping the interpreter's teardown.

    Freeing every module and tensor one by one took 0.3-0.4 s of each job (torch's share
    about 0.3 s), about 90 jobs at the quick scale. By the time a command returns, its outputs
    are written, closed and renamed (Staging); what remains buffered is the log, flushed here.
    A command that raises never gets here and exits the usual way."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        ctypes.CDLL(None).fflush(None)  # C libraries' own buffered output
    except (OSError, AttributeError, TypeError):  # no C library to flush
        pass
    os._exit(status)
