"""Training curves (SPEC 1.7 item 8): tuning loss per experiment and network (median
over repetitions per method, 25-75% band) and the pretraining loss and gradient norm."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D

from prefixlab.coins.figures import common, style
from prefixlab.plotting import FigureInputError, Inputs
from prefixlab.coins.figures.search import exp_rank

NCOLS = 4


def tune_panel(ax, ds) -> list[str]:
    loss = ds["tune_loss"].transpose("member", "step").values
    meth = ds["member_method"].values.astype(str)
    steps = ds["step"].values
    drawn, tops, bottoms = [], [], []
    for m in style.ordered(set(meth)):
        vals = loss[meth == m]
        med, lo, hi = common.summary(vals)
        c = style.color(m)
        if vals.shape[0] > 1:
            ax.fill_between(steps, lo, hi, color=c, alpha=0.18, lw=0)
        ax.plot(steps, med, color=c, lw=1.3, ls=style.METHOD_LINESTYLE.get(m, "-"))
        drawn.append(m)
        tail = med[len(med) // 10:]
        tops.append(np.nanmax(tail))
        bottoms.append(np.nanmin(med))
    if tops:
        lo, hi = min(bottoms), max(tops)
        pad = 0.05 * (hi - lo or 1.0)
        ax.set_ylim(lo - pad, hi + pad)  # the first steps of a badly initialised method may lie above
    ax.set_xlabel("tuning step")
    ax.set_ylabel("loss [nats / sequence]")
    return drawn


def fig8_losses(data: Inputs, settings: dict) -> plt.Figure:
    tunes = common.select(data, "tune")
    pretrains = common.select(data, "pretrain")
    if not tunes and not pretrains:
        raise FigureInputError("fig8_losses: needs tune_<experiment>_<arch> and/or pretrain_<arch>_<variant> inputs")
    keys = sorted(tunes, key=lambda k: (exp_rank(k[0]), common.arch_order([k[1]])))
    panels = len(keys) + (2 if pretrains else 0)
    ncols = min(NCOLS, panels)
    nrows = math.ceil(panels / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.9 * ncols, 2.9 * nrows + 1.0), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[panels:]:
        ax.set_visible(False)
    methods = set()
    for ax, (exp, arch) in zip(flat, keys):
        methods |= set(tune_panel(ax, tunes[(exp, arch)]))
        ax.set_title(f"tuning: {common.exp_title(exp, arch)}")
    if pretrains:
        ax_loss, ax_norm = flat[len(keys)], flat[len(keys) + 1]
        handles = []
        for (variant, arch), ds in sorted(pretrains.items(), key=lambda kv: (common.arch_order([kv[0][1]]), kv[0][0])):
            kw = dict(color=style.ARCH_COLOR.get(arch, "0.3"), ls=style.VARIANT_LINESTYLE.get(variant, "-."), lw=1.2)
            ax_loss.plot(ds["step"].values, ds["loss"].values, **kw)
            ax_norm.plot(ds["step"].values, ds["grad_norm"].values, **kw)
            handles.append((Line2D([], [], **kw), f"{style.ARCH_LABEL.get(arch, arch)} {variant}"))
        ax_loss.set_title("pretraining loss (Random Coins)")
        ax_loss.set_ylabel("loss [nats / sequence]")
        ax_norm.set_title("pretraining gradient norm (unclipped)")
        ax_norm.set_ylabel("global gradient norm")
        ax_norm.set_yscale("log")
        for ax in (ax_loss, ax_norm):
            ax.set_xlabel("pretraining step")
        ax_loss.legend(*zip(*handles), frameon=False, fontsize=7)
    if methods:
        style.method_legend(fig, methods)
    fig.suptitle("Training curves — tuning loss: median over repetitions per method, band 25–75% "
                 "(y range fitted from 10% of the steps on)")
    return fig
