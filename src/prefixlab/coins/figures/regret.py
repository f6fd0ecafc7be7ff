"""Regret curves and bar charts (SPEC 1.5, 1.7 items 1, 3, 4, 5, 9).

Curves: median over repetitions, 25-75% band, one thin line per repetition.
Bars: median cumulative regret at the configured steps, 25-75% error bars,
dashed separators between prefix methods | weight methods | baselines.
"""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.patches import Patch

from prefixlab.coins.figures import common, style
from prefixlab.plotting import FigureInputError, FigureSettings, Inputs

VAR_LABEL = {"regret": "instantaneous regret [nats]", "cum_regret": "cumulative regret [nats]"}
STEP_ALPHA = (1.0, 0.6, 0.3)
STEP_HATCH = ("", "///", "...")
GROUP_GAP = 0.8


def curves_panel(ax, ds: xr.Dataset, eval_dist: str, var: str = "cum_regret", methods=None, marks=()) -> list[str]:
    """Median line, quartile band and thin per-repetition lines of every method."""
    methods = methods or common.methods_with_data(ds, var, eval_dist)
    steps = ds["step"].values
    drawn = []
    for m in methods:
        vals = common.reps(ds, var, eval_dist, m)
        if vals.size == 0:
            continue
        c, ls = style.color(m), style.METHOD_LINESTYLE.get(m, "-")
        med, lo, hi = common.summary(vals)
        if vals.shape[0] > 1:
            for row in vals:
                ax.plot(steps, row, color=c, lw=0.4, alpha=0.35, zorder=1)
            ax.fill_between(steps, lo, hi, color=c, alpha=0.18, lw=0, zorder=2)
        ax.plot(steps, med, color=c, ls=ls, lw=1.6, zorder=3, label=style.label(m, eval_dist, common.target_of(ds)))
        drawn.append(m)
    for s in marks:
        ax.axvline(s, color="0.6", lw=0.7, ls=":", zorder=0)
    ax.set_xlabel("step n")
    ax.set_ylabel(VAR_LABEL.get(var, var))
    ax.set_xlim(steps[0], steps[-1])
    return drawn


def bar_positions(methods) -> np.ndarray:
    """x of each method, with a gap between groups."""
    x, pos, prev = 0.0, [], None
    for m in methods:
        g = style.group_of(m)
        if prev is not None and g != prev:
            x += GROUP_GAP
        pos.append(x)
        x += 1.0
        prev = g
    return np.array(pos)


def bars_panel(ax, ds: xr.Dataset, eval_dist: str, steps, methods=None, annotate: bool | None = None) -> list[str]:
    """Bars of median cumulative regret at `steps` (grouped when several), 25-75% error bars."""
    methods = methods or common.methods_with_data(ds, "cum_regret", eval_dist)
    steps = list(steps)
    annotate = len(steps) == 1 if annotate is None else annotate
    xs = bar_positions(methods)
    width = 0.8 / len(steps)
    target = common.target_of(ds)
    tops = []
    for k, s in enumerate(steps):
        stats = np.array([common.at_step(ds, eval_dist, m, s) for m in methods])
        med, lo, hi = stats[:, 0], stats[:, 1], stats[:, 2]
        off = (k - (len(steps) - 1) / 2) * width
        colors = [style.color(m) for m in methods]
        ax.bar(xs + off, med, width=width * 0.92, color=colors, alpha=STEP_ALPHA[k % 3], hatch=STEP_HATCH[k % 3],
               edgecolor="white" if k == 0 else colors, lw=0.3, zorder=2)
        err = np.vstack([np.clip(med - lo, 0, None), np.clip(hi - med, 0, None)])
        ax.errorbar(xs + off, med, yerr=err, fmt="none", ecolor="0.15", elinewidth=0.8, capsize=1.5, zorder=3)
        tops.append(np.nanmax(np.concatenate([hi, [0.0]])))
        if annotate:
            for x, m_, h in zip(xs + off, med, hi):
                if np.isfinite(m_):
                    ax.annotate(f"{m_:.2f}", (x, max(h, m_, 0.0)), xytext=(0, 3), textcoords="offset points",
                                ha="center", va="bottom", fontsize=6, rotation=90)
    for g_prev, g_next, x_prev, x_next in zip(methods[:-1], methods[1:], xs[:-1], xs[1:]):
        if style.group_of(g_prev) != style.group_of(g_next):
            ax.axvline((x_prev + x_next) / 2, color="0.45", lw=0.8, ls="--", zorder=1)
    ax.axhline(0, color="0.3", lw=0.6, zorder=1)
    ax.set_xticks(xs, [style.label(m, eval_dist, target) for m in methods], rotation=60, ha="right", rotation_mode="anchor")
    ax.set_xlim(xs[0] - 0.7, xs[-1] + 0.7)
    top = max(tops) if tops else 1.0
    if annotate and np.isfinite(top) and top > 0:
        ax.set_ylim(top=top * 1.22)  # room for the value labels
    ax.set_ylabel("cumulative regret [nats]")
    return methods


def step_entries(steps, requested=None) -> tuple[str, list]:
    """Legend row explaining the grouped bars: one shade/hatch per step."""
    requested = requested or steps
    items = [(Patch(facecolor="0.35", alpha=STEP_ALPHA[k % 3], hatch=STEP_HATCH[k % 3], edgecolor="0.35"),
              f"n = {s}" + ("" if s == r else f" (for {r})")) for k, (s, r) in enumerate(zip(steps, requested))]
    return "bars", items


def _requested_for(ds, requested) -> tuple[list[int], list[int]]:
    """(used steps, the requested step each stands for) after clipping to the evaluation."""
    used, req = [], []
    for r in requested:
        s = common.clip_step(ds, r)
        if s not in used:
            used.append(s)
            req.append(r)
    return used, req


def _describe(ds: xr.Dataset) -> str:
    cfg = common.config_of(ds)
    target = style.DIST_LABEL.get(common.target_of(ds), common.target_of(ds))
    pre = "pretrained on Random Coins" if cfg.get("pretrained", True) else "untrained (random init, torso frozen)"
    return f"{pre}, tuned to {target}"


# ----------------------------------------------------------------------------- figures

def headline(data: Inputs, settings: dict, exp: str) -> plt.Figure:
    """Transformer cumulative-regret curves on the target + bars at n = N_tune - 1 per network."""
    s = FigureSettings.from_dict(settings)
    evals = common.select(data, "eval", exp)
    if not evals:
        raise FigureInputError(f"{exp} headline: needs eval_{exp}_<arch> inputs")
    archs = common.arch_order(a for _, a in evals)
    curve_arch = "transformer" if "transformer" in archs else archs[0]
    ds_c = evals[(exp, curve_arch)]
    dist = common.target_of(ds_c)
    fig = plt.figure(figsize=(5.2 + 3.6 * len(archs) + 2.4, 4.6))
    axes = fig.subplots(1, 1 + len(archs), gridspec_kw={"width_ratios": [1.45] + [1.0] * len(archs)})
    step = common.clip_step(ds_c, s.headline_step)
    curves_panel(axes[0], ds_c, dist, "cum_regret", marks=[step])
    axes[0].set_title(f"{style.ARCH_LABEL[curve_arch]} on {style.DIST_LABEL.get(dist, dist)}")
    methods = set()
    for ax, arch in zip(axes[1:], archs):
        ds = evals[(exp, arch)]
        used = common.clip_step(ds, s.headline_step)
        methods |= set(bars_panel(ax, ds, dist, [used]))
        ax.set_title(f"{style.ARCH_LABEL[arch]}, {common.step_label(s.headline_step, used)}")
    methods |= set(common.methods_with_data(ds_c, "cum_regret", dist))
    style.method_legend(fig, methods)
    fig.suptitle(f"{exp}: {_describe(ds_c)} — median over repetitions, band 25–75%")
    return fig


def fig1_r2s_headline(data: Inputs, settings: dict) -> plt.Figure:
    return headline(data, settings, "r2s")


def fig3_r2m_headline(data: Inputs, settings: dict) -> plt.Figure:
    return headline(data, settings, "r2m")


def fig4_untrained(data: Inputs, settings: dict) -> plt.Figure:
    """Untrained networks (u2m, u2r): curves on the target and bars at n = N_tune - 1, one row each."""
    s = FigureSettings.from_dict(settings)
    evals = common.select(data, "eval")
    evals = {k: v for k, v in evals.items() if k[0] in ("u2m", "u2r")} or evals
    if not evals:
        raise FigureInputError("fig4_untrained: needs eval_u2m_<arch> / eval_u2r_<arch> inputs")
    keys = sorted(evals, key=lambda k: (k[0], common.arch_order([k[1]])))
    fig, axes = plt.subplots(len(keys), 2, figsize=(13.5, 3.9 * len(keys)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.3, 1.0]})
    methods = set()
    for row, (exp, arch) in zip(axes, keys):
        ds = evals[(exp, arch)]
        dist = common.target_of(ds)
        used = common.clip_step(ds, s.headline_step)
        methods |= set(curves_panel(row[0], ds, dist, "cum_regret", marks=[used]))
        row[0].set_title(f"{common.exp_title(exp, arch)}: tuned to {style.DIST_LABEL.get(dist, dist)}")
        bars_panel(row[1], ds, dist, [used])
        row[1].set_title(f"{common.exp_title(exp, arch)}, {common.step_label(s.headline_step, used)}")
    style.method_legend(fig, methods)
    fig.suptitle("Untrained networks (random initialisation, frozen torso) — median over repetitions, band 25–75%")
    return fig


def fig5_full(data: Inputs, settings: dict) -> plt.Figure:
    """One experiment x network: instantaneous and cumulative regret on all three
    evaluation distributions and bars at the three steps."""
    s = FigureSettings.from_dict(settings)
    evals = common.select(data, "eval")
    if len(evals) != 1:
        raise FigureInputError(f"fig5_full: needs exactly one eval_<experiment>_<arch> input, got {len(evals)}")
    (exp, arch), ds = next(iter(evals.items()))
    dists = [str(d) for d in ds["eval_dist"].values]
    target = common.target_of(ds)
    used, req = _requested_for(ds, s.bar_steps)
    fig, axes = plt.subplots(3, len(dists), figsize=(5.6 * len(dists) + 2.6, 12.5), squeeze=False)
    methods = set()
    for j, dist in enumerate(dists):
        name = style.DIST_LABEL.get(dist, dist) + (" (tuning target)" if dist == target else "")
        methods |= set(curves_panel(axes[0, j], ds, dist, "regret", marks=used))
        axes[0, j].set_title(f"{name}: instantaneous")
        curves_panel(axes[1, j], ds, dist, "cum_regret", marks=used)
        axes[1, j].set_title(f"{name}: cumulative")
        bars_panel(axes[2, j], ds, dist, used)
        axes[2, j].set_title(f"{name}: at " + ", ".join(f"n = {u}" for u in used))
    style.method_legend(fig, methods, bayes_label="TargetBayes / EvalBayes", extra=step_entries(used, req))
    fig.suptitle(f"{common.exp_title(exp, arch)}: {_describe(ds)} — median over repetitions, band 25–75%")
    return fig


ABLATION_ROWS = (("", "base"), ("_d4", "d = 4"), ("_maxi", "Maxi"), ("_L25", "prefix length 25"))


def _row_label(name: str, suffix: str, datasets) -> str:
    """The Maxi row names the network size of this run (2 x 256 at paper scale, smaller at quick)."""
    if suffix != "_maxi":
        return name
    for ds in datasets:
        try:
            net = json.loads(ds.attrs["config"])["network"]
            return f"{name} ({net['layers']} x {net['width']})"
        except (KeyError, TypeError, ValueError):
            continue
    return name


def fig9_ablations(data: Inputs, settings: dict) -> plt.Figure:
    """Ablations: bars at the three steps on the tuning target for base, d = 4, Maxi and
    prefix length 25; columns r2s/r2m x network, rows the setting."""
    s = FigureSettings.from_dict(settings)
    evals = common.select(data, "eval")
    if not evals:
        raise FigureInputError("fig9_ablations: needs eval_<experiment>_<arch> inputs")
    families = [f for f in ("r2s", "r2m") if any(e.startswith(f) for e, _ in evals)]
    archs = common.arch_order({a for _, a in evals})
    rows = [(suf, name) for suf, name in ABLATION_ROWS if any((f + suf, a) in evals for f in families for a in archs)]
    cols = [(f, a) for f in families for a in archs]
    if not rows or not cols:
        raise FigureInputError("fig9_ablations: no r2s/r2m (or ablation) eval inputs")
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(4.4 * len(cols) + 2.6, 3.6 * len(rows)), squeeze=False)
    methods, legend_steps = set(), None
    for i, (suf, row_name) in enumerate(rows):
        for j, (fam, arch) in enumerate(cols):
            ax = axes[i, j]
            ds = evals.get((fam + suf, arch))
            if ds is None:
                ax.text(0.5, 0.5, f"{fam + suf} · {style.ARCH_LABEL[arch]}\nnot run", ha="center", va="center",
                        transform=ax.transAxes, color="0.4")
                ax.axis("off")
                continue
            dist = common.target_of(ds)
            used, req = _requested_for(ds, s.bar_steps)
            legend_steps = legend_steps or (used, req)
            methods |= set(bars_panel(ax, ds, dist, used))
            ax.set_title(f"{fam + suf} · {style.ARCH_LABEL[arch]}")
        row_data = [evals[(f + suf, a)] for f in families for a in archs if (f + suf, a) in evals]
        axes[i, 0].annotate(_row_label(row_name, suf, row_data), (0, 0.5), xytext=(-62, 0), xycoords="axes fraction", textcoords="offset points",
                            rotation=90, ha="center", va="center", fontsize=11, fontweight="bold")
    for j in range(len(cols)):  # one y range per column, so the settings compare at a glance
        shown = [axes[i, j] for i in range(len(rows)) if axes[i, j].axison]
        if shown:
            lo = min(ax.get_ylim()[0] for ax in shown)
            hi = max(ax.get_ylim()[1] for ax in shown)
            for ax in shown:
                ax.set_ylim(lo, hi)
    style.method_legend(fig, methods, extra=step_entries(*legend_steps) if legend_steps else None)
    fig.suptitle("Ablations — median cumulative regret on the tuning target (error bars 25–75%)")
    return fig
