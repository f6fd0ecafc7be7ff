"""Hard-prefix search (SPEC 1.7 item 7): the mean cumulative loss of every one of the
V^L candidate prefixes on the search set, sorted; one panel per experiment, one line
per network. A search that was switched off (e.g. prefix length 25) is said so."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from prefixlab.coins.figures import common, style
from prefixlab.plotting import FigureInputError, Inputs


def _prefix_text(ds, best: int) -> str:
    return "".join(str(int(t)) for t in ds["candidate_prefix"].values[best])


def fig7_hard_search(data: Inputs, settings: dict) -> plt.Figure:
    searches = common.select(data, "search")
    if not searches:
        raise FigureInputError("fig7_hard_search: needs search_<experiment>_<arch> inputs")
    exps = list(dict.fromkeys(e for e, _ in sorted(searches, key=lambda k: exp_rank(k[0]))))
    ncols = min(4, len(exps))
    nrows = math.ceil(len(exps) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows + 0.6), squeeze=False)
    for ax in axes.flat[len(exps):]:
        ax.set_visible(False)
    for ax, exp in zip(axes.flat, exps):
        notes = []
        for arch in common.arch_order(a for e, a in searches if e == exp):
            ds = searches[(exp, arch)]
            loss = ds["search_loss"].values
            L = ds.sizes.get("slot", 0)
            if loss.size == 0:
                cfg = common.config_of(ds)
                L = cfg.get("tune", {}).get("prefix_length", L)
                V = cfg.get("network", {}).get("vocab", 2)
                notes.append(f"{style.ARCH_LABEL[arch]}: HardPT search disabled\n(prefix length {L}: ${V}^{{{L}}}$ candidates)")
                continue
            order = np.argsort(loss, kind="stable")
            best = int(order[0])
            ax.plot(np.arange(loss.size), loss[order], color=style.ARCH_COLOR[arch], lw=1.6,
                    marker="." if loss.size <= 128 else None, ms=3,
                    label=f"{style.ARCH_LABEL[arch]} (L = {L}); best {_prefix_text(ds, best)}: {loss[best]:.2f}")
            ax.scatter([0], [loss[best]], color=style.color("HardPT"), edgecolor="black", zorder=3, s=28)
        if ax.lines:
            ax.legend(frameon=False, loc="best", fontsize=7)
            ax.set_xlabel("candidate prefix (sorted by loss)")
            ax.set_ylabel("mean cumulative loss [nats]")
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        if notes:
            ax.text(0.5, 0.5 if not ax.lines else 0.8, "\n".join(notes), transform=ax.transAxes, ha="center",
                    va="center", fontsize=9, color="0.3",
                    bbox={"boxstyle": "round", "facecolor": "0.95", "edgecolor": "0.7"})
        ax.set_title(exp)
    fig.suptitle("HardPT: exhaustive search over all one-hot prefixes, sorted (mean cumulative log loss on the search "
                 "set; dot: the chosen prefix)")
    return fig


EXP_ORDER = ("r2s", "r2m", "u2m", "u2r", "r2s_d4", "r2m_d4", "r2s_maxi", "r2m_maxi", "r2s_L25", "r2m_L25")


def exp_rank(exp: str):
    return (EXP_ORDER.index(exp) if exp in EXP_ORDER else len(EXP_ORDER), exp)
