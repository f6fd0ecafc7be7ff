"""Plotting shared by both papers: matplotlib set up for files, keyed NetCDF inputs,
figure settings, and atomic saving of PDF + PNG (and of any set of outputs)."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window

import matplotlib.pyplot as plt  # noqa: E402
import xarray as xr  # noqa: E402

from prefixlab import storage  # noqa: E402

DEFAULT_DPI = 150
DEFAULT_BAR_STEPS = (49, 99, 199)


def apply_rc() -> None:
    plt.rcParams.update({
        "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
        "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False,
        "figure.constrained_layout.use": True, "pdf.fonttype": 42, "svg.hashsalt": "prefixlab",
    })


apply_rc()


# Key prefix -> storage kind. Keys are "<prefix>_<experiment>_<arch>" (pretrain: "pretrain_<arch>_<variant>").
KEY_KINDS = {"eval": "eval", "states": "states", "tune": "tune", "search": "hard_search", "pretrain": "pretrain",
             "sorteval": "sort_eval", "sorttune": "sort_tune"}  # Paper B: sorteval_<exp>, sorttune_<exp>_<run>
ARCHS = ("lstm", "transformer")  # Paper A's key suffixes

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


# ----------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class FigureSettings:
    dpi: int = DEFAULT_DPI
    bar_steps: tuple[int, ...] = DEFAULT_BAR_STEPS

    @classmethod
    def from_dict(cls, d: dict | None) -> "FigureSettings":
        d = dict(d or {})
        unknown = sorted(set(d) - {"dpi", "bar_steps", "claims"})
        if unknown:
            raise FigureInputError(f"figure settings: unknown key(s) {unknown}; known: ['bar_steps', 'claims', 'dpi']")
        # claims: the thresholds a budget figure draws ({name: number})
        bad = {k: v for k, v in dict(d.get("claims", {})).items() if not isinstance(v, (int, float)) or isinstance(v, bool)}
        if bad:
            raise FigureInputError(f"settings.claims: thresholds must be numbers, got {bad}")
        steps = tuple(int(s) for s in d.get("bar_steps", DEFAULT_BAR_STEPS))
        if not steps or any(s < 0 for s in steps):
            raise FigureInputError(f"settings.bar_steps: need non-negative step indices, got {list(steps)}")
        return cls(dpi=int(d.get("dpi", DEFAULT_DPI)), bar_steps=steps)

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


@contextlib.contextmanager
def atomic_outputs(*paths):
    """Yields temporary paths next to `paths`; on success all are renamed into place
    together, on failure all are removed: no half-written or partial set of outputs."""
    finals = [Path(p) for p in paths]
    tmps = []
    for p in finals:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmps.append(p.with_name(f".{p.stem}.tmp{os.getpid()}{p.suffix}"))
    try:
        yield tmps
    except BaseException:
        for t in tmps:
            t.unlink(missing_ok=True)
        raise
    for t, p in zip(tmps, finals):
        os.replace(t, p)


def save(fig, pdf, png, dpi: int = DEFAULT_DPI) -> None:
    """Write the figure as PDF and PNG atomically (temp file + os.replace)."""
    with atomic_outputs(pdf, png) as (tmp_pdf, tmp_png):
        write_figure(fig, tmp_pdf, tmp_png, dpi)
    plt.close(fig)


def write_figure(fig, pdf_path, png_path, dpi: int = DEFAULT_DPI) -> None:
    # No creation date in the PDF: reruns give identical files.
    fig.savefig(pdf_path, format="pdf", metadata={"CreationDate": None})
    fig.savefig(png_path, format="png", dpi=dpi)
