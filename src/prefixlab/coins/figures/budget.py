"""The claims' deciding numbers against the training budget (issue: a failing claim is
shown, not hidden): each training job's batch regret per step, beside the claim's threshold.

A training batch of length N scored before the update is a fresh sample of the target, so
the mean over the batch of (summed log loss - the exact Bayes predictor's summed log loss)
is an estimate of the cumulative regret at n = N - 1: the number A1-A5 decide on (they read
it from the evaluation at the same n), here at every training step rather than at the end.
Curves are medians over repetitions of a moving average over `window` steps.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from prefixlab.coins.figures import common, style
from prefixlab.coins.methods import PREFIX_METHODS
from prefixlab.plotting import FigureInputError, Inputs

NCOLS = 4
DEFAULTS = {"margin": 0.1, "a1_margin": 0.2, "a4_margin": 0.5}


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average along the last axis; the first steps average what exists."""
    c = np.cumsum(values, axis=-1, dtype=np.float64)
    out = c.copy()
    out[..., window:] = c[..., window:] - c[..., :-window]
    counts = np.minimum(np.arange(1, values.shape[-1] + 1), window)
    return out / counts


def window_of(steps: int) -> int:
    return max(1, steps // 20)


def batch_regret(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """{method: (repetitions, steps) smoothed batch regret} of one tuning job."""
    loss = ds["tune_loss"].transpose("member", "step").values.astype(np.float64)
    bayes = ds["target_bayes_loss"].transpose("repetition", "step").values
    reps = ds["member_repetition"].values.astype(int)
    meth = ds["member_method"].values.astype(str)
    w = window_of(loss.shape[1])
    return {m: smooth(loss[meth == m] - bayes[reps[meth == m]], w) for m in style.ordered(set(meth))}


def median_curve(ds: xr.Dataset, method: str) -> np.ndarray | None:
    curves = batch_regret(ds)
    return common.summary(curves[method])[0] if method in curves else None


def lead_curve(ds: xr.Dataset) -> np.ndarray | None:
    """SoftPT's lead over the best other trained prefix method, per step (A5; HardPT is a search, not a curve)."""
    curves = {m: common.summary(v)[0] for m, v in batch_regret(ds).items()}
    others = [curves[m] for m in PREFIX_METHODS if m != "SoftPT" and m in curves]
    if "SoftPT" not in curves or not others:
        return None
    return np.min(others, axis=0) - curves["SoftPT"]


def _threshold(ax, value: float, label: str):
    ax.axhline(value, color="0.2", ls=":", lw=1.0)
    ax.annotate(label, (1.0, value), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=7, color="0.2")


def _methods_panel(ax, ds: xr.Dataset, methods: list[str], title: str, threshold: float, rule: str) -> list[str]:
    curves = batch_regret(ds)
    drawn = []
    steps = ds["step"].values
    for m in methods:
        if m not in curves:
            continue
        med, lo, hi = common.summary(curves[m])
        c = style.color(m)
        if curves[m].shape[0] > 1:
            ax.fill_between(steps, lo, hi, color=c, alpha=0.15, lw=0)
        ax.plot(steps, med, color=c, lw=1.3, ls=style.METHOD_LINESTYLE.get(m, "-"))
        drawn.append(m)
    _threshold(ax, threshold, rule)
    _fit_ylim(ax, [median_curve(ds, m) for m in drawn], threshold)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("tuning step")
    ax.set_ylabel("batch regret [nats]")
    return drawn


def _fit_ylim(ax, curves, threshold: float):
    """From the threshold to the curves' range after the first 10% of the steps."""
    tails = [c[len(c) // 10:] for c in curves if c is not None and len(c)]
    if not tails:
        return
    lo = min(threshold, *(np.nanmin(t) for t in tails))
    hi = max(threshold, *(np.nanmax(t) for t in tails))
    pad = 0.08 * (hi - lo or 1.0)
    ax.set_ylim(lo - pad, hi + pad)


def _panels(data: Inputs, s: dict):
    """(draw function, ) per panel in claim order; absent inputs leave their panel out."""
    out = []
    for arch in common.ARCHS:
        pre = common.get(data, "pretrain", "base", arch)
        if pre is not None:
            out.append(("A1", lambda ax, ds=pre, arch=arch: _pretrain_panel(ax, ds, arch, s["a1_margin"])))
    specs = [("A2", "r2s", ["SoftPT"], "margin", "< {v:g}: reaches"),
             ("A3", "r2m", ["SoftPT", "FullWT", "LoRAWT"], "margin", "SoftPT > {v:g} > FullWT, LoRAWT"),
             ("A4", "u2m", ["SoftPT"], "a4_margin", "< {v:g}: nearly reaches"),
             ("A4", "u2r", ["SoftPT"], "a4_margin", "< {v:g}: nearly reaches"),
             ("A5", "r2s_maxi", ["SoftPT"], "margin", "< {v:g}: reaches"),
             ("A5", "r2m_maxi", ["SoftPT", "FullWT", "LoRAWT"], "margin", "SoftPT > {v:g} > FullWT, LoRAWT")]
    for claim, exp, methods, key, rule in specs:
        for arch in common.ARCHS:
            if claim == "A4" and arch != "transformer":
                continue
            ds = common.get(data, "tune", exp, arch)
            if ds is not None:
                title = f"{claim}: {common.exp_title(exp, arch)}"
                out.append((claim, lambda ax, ds=ds, m=methods, t=title, v=s[key], r=rule:
                            _methods_panel(ax, ds, m, t, v, r.format(v=v))))
    for fam in ("r2s", "r2m"):
        for arch in common.ARCHS:
            base, d4 = common.get(data, "tune", fam, arch), common.get(data, "tune", f"{fam}_d4", arch)
            if base is not None and d4 is not None:
                out.append(("A5", lambda ax, b=base, d=d4, fam=fam, arch=arch: _lead_panel(ax, b, d, fam, arch)))
    return out


def _pretrain_panel(ax, ds: xr.Dataset, arch: str, margin: float) -> list[str]:
    steps = ds["step"].values
    regret = smooth(ds["loss"].values.astype(np.float64) - ds["bayes_loss"].values, window_of(len(steps)))
    ax.plot(steps, regret, color=style.ARCH_COLOR.get(arch, "0.3"), lw=1.3)
    _threshold(ax, margin, f"< {margin:g}: matches PreBayes")
    _fit_ylim(ax, [regret], margin)
    ax.set_title(f"A1: pretraining {style.ARCH_LABEL.get(arch, arch)} (Random Coins)", fontsize=9)
    ax.set_xlabel("pretraining step")
    ax.set_ylabel("batch regret vs PreBayes [nats]")
    return []


def _lead_panel(ax, base: xr.Dataset, d4: xr.Dataset, fam: str, arch: str) -> list[str]:
    for ds, ls, label in ((base, "-", "d = base"), (d4, "--", "d = 4")):
        lead = lead_curve(ds)
        if lead is not None:
            ax.plot(ds["step"].values, lead, color=style.color("SoftPT"), ls=ls, lw=1.3, label=label)
    ax.axhline(0.0, color="0.6", lw=0.6)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(f"A5: SoftPT lead, {fam} {style.ARCH_LABEL.get(arch, arch)} (d 4 below base)", fontsize=9)
    ax.set_xlabel("tuning step")
    ax.set_ylabel("best other prefix - SoftPT [nats]")
    return []


def fig10_budget(data: Inputs, settings: dict) -> plt.Figure:
    given = settings.get("claims", {})
    s = {**DEFAULTS, **{k: given[k] for k in DEFAULTS if k in given}}
    panels = _panels(data, s)
    if not panels:
        raise FigureInputError("fig10_budget: needs tune_<experiment>_<arch> and/or pretrain_<arch>_base inputs")
    ncols = min(NCOLS, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.9 * ncols, 2.9 * nrows + 1.0), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[len(panels):]:
        ax.set_visible(False)
    methods = set()
    for ax, (_, draw) in zip(flat, panels):
        methods |= set(draw(ax))
    if methods:
        style.method_legend(fig, methods)
    fig.suptitle("Deciding numbers against the training budget: cumulative regret of each training batch at "
                 "n = length - 1 (median over repetitions, moving average), dotted: the claim's threshold")
    return fig

