"""Shared helpers for figures and claims: keyed inputs, settings defaults, step
handling and the median / quartile summaries over repetitions."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr

from prefixlab import storage
from prefixlab.figures import style

# Key prefix -> storage kind. Keys are "<prefix>_<experiment>_<arch>" (pretrain: "pretrain_<arch>_<variant>").
KEY_KINDS = {"eval": "eval", "states": "states", "tune": "tune", "search": "hard_search", "pretrain": "pretrain",
             "sorteval": "sort_eval", "sorttune": "sort_tune"}  # Paper B: sorteval_<exp>, sorttune_<exp>_<run>
ARCHS = ("lstm", "transformer")

Inputs = dict[str, xr.Dataset]


class FigureInputError(ValueError):
    """The inputs given to a figure are not what it needs (wrong key, none at all)."""


def kind_of(key: str) -> str:
    prefix = key.split("_", 1)[0]
    if prefix not in KEY_KINDS or "_" not in key:
        raise FigureInputError(f"input key {key!r}: expected one of {sorted(k + '_...' for k in KEY_KINDS)}")
    return KEY_KINDS[prefix]


def split_key(key: str) -> tuple[str, str, str]:
    """'eval_r2s_d4_lstm' -> ('eval', 'r2s_d4', 'lstm'); 'pretrain_lstm_base' -> ('pretrain', 'base', 'lstm')."""
    prefix, rest = key.split("_", 1)
    if prefix.startswith("sort"):  # Paper B keys carry no architecture
        return prefix, rest, ""
    if prefix == "pretrain":
        arch, _, variant = rest.partition("_")
        return prefix, variant, arch
    name, _, arch = rest.rpartition("_")
    if arch not in ARCHS or not name:
        raise FigureInputError(f"input key {key!r}: expected '{prefix}_<experiment>_<arch>' with arch in {ARCHS}")
    return prefix, name, arch


def load_inputs(pairs: dict[str, str]) -> Inputs:
    """Read every keyed file with the kind its key names; raises storage.DataError."""
    out = {}
    for key, path in pairs.items():
        kind = kind_of(key)
        split_key(key)
        out[key] = storage.read(path, kind)
    return out


def select(data: Inputs, prefix: str, name: str | None = None, arch: str | None = None) -> dict[tuple[str, str], xr.Dataset]:
    """{(experiment or variant, arch): Dataset} for keys of one kind, optionally filtered."""
    out = {}
    for key, ds in data.items():
        p, n, a = split_key(key)
        if p == prefix and (name is None or n == name) and (arch is None or a == arch):
            out[(n, a)] = ds
    return out


def get(data: Inputs, prefix: str, name: str, arch: str) -> xr.Dataset | None:
    return data.get(f"{prefix}_{name}_{arch}") if prefix != "pretrain" else data.get(f"pretrain_{arch}_{name}")


def arch_order(archs) -> list[str]:
    return sorted(archs, key=lambda a: (ARCHS.index(a) if a in ARCHS else 99, a))


# ----------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class FigureSettings:
    dpi: int = style.DEFAULT_DPI
    bar_steps: tuple[int, ...] = style.DEFAULT_BAR_STEPS

    @classmethod
    def from_dict(cls, d: dict | None) -> "FigureSettings":
        d = dict(d or {})
        unknown = sorted(set(d) - {"dpi", "bar_steps"})
        if unknown:
            raise FigureInputError(f"figure settings: unknown key(s) {unknown}; known: ['bar_steps', 'dpi']")
        steps = tuple(int(s) for s in d.get("bar_steps", style.DEFAULT_BAR_STEPS))
        if not steps or any(s < 0 for s in steps):
            raise FigureInputError(f"settings.bar_steps: need non-negative step indices, got {list(steps)}")
        return cls(dpi=int(d.get("dpi", style.DEFAULT_DPI)), bar_steps=steps)

    @property
    def headline_step(self) -> int:
        """The step of the headline bars: the first bar step (n = N_tune - 1 = 49)."""
        return self.bar_steps[0]


def parse_settings(text: str | None) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise FigureInputError(f"--settings is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise FigureInputError("--settings must be a JSON object")
    return value


# ----------------------------------------------------------------------------- steps and summaries

def clip_step(ds: xr.Dataset, step: int) -> int:
    """The requested step index, or the last evaluated one when the evaluation is shorter."""
    return int(min(step, ds.sizes["step"] - 1))


def clip_steps(ds: xr.Dataset, steps) -> list[int]:
    out = []
    for s in steps:
        c = clip_step(ds, s)
        if c not in out:
            out.append(c)
    return out


def step_label(requested: int, used: int) -> str:
    return f"n = {used}" if used == requested else f"n = {used} (requested {requested}; evaluation is shorter)"


def methods_with_data(ds: xr.Dataset, var: str = "cum_regret", eval_dist: str | None = None) -> list[str]:
    """Methods with at least one finite value (on `eval_dist` if given), canonical order."""
    a = ds[var]
    if eval_dist is not None:
        a = a.sel(eval_dist=eval_dist)
    finite = np.isfinite(a.values)
    axes = tuple(i for i, d in enumerate(a.dims) if d != "method")
    keep = finite.any(axis=axes)
    return style.ordered([str(m) for m, k in zip(a["method"].values, keep) if k])


def reps(ds: xr.Dataset, var: str, eval_dist: str, method: str) -> np.ndarray:
    """(repetitions with data, steps) values of one method."""
    a = ds[var].sel({"eval_dist": eval_dist, "method": method}).transpose("repetition", "step").values
    return a[np.isfinite(a).any(axis=1)]


def summary(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median, 25% and 75% quantiles over `axis`, ignoring NaN (deterministic methods
    have one repetition only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q = np.nanquantile(values, [0.5, 0.25, 0.75], axis=axis)
    return q[0], q[1], q[2]


def at_step(ds: xr.Dataset, eval_dist: str, method: str, step: int, var: str = "cum_regret") -> tuple[float, float, float]:
    """(median, q25, q75) over repetitions of `var` at one step; NaNs if the method is absent."""
    if method not in ds["method"].values:
        return (float("nan"),) * 3
    v = ds[var].sel({"eval_dist": eval_dist, "method": method, "step": step}).values
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (float("nan"),) * 3
    med, lo, hi = summary(v)
    return float(med), float(lo), float(hi)


def target_of(ds: xr.Dataset) -> str:
    return str(ds.attrs.get("target", ""))


def config_of(ds: xr.Dataset) -> dict:
    try:
        return json.loads(ds.attrs.get("config", "{}"))
    except (TypeError, json.JSONDecodeError):
        return {}


def exp_title(exp: str, arch: str) -> str:
    return f"{exp} · {style.ARCH_LABEL.get(arch, arch)}"
