"""Internal-state PCA figures (SPEC 1.7 items 2 and 6, 1.9 "PCA figures").

A whitened two-component PCA is fitted with numpy's SVD on the states of the untuned
network on pretraining-distribution sequences (grey lines); target sequences run
through each prefix method are projected into it (coloured lines, with a marker at
the state right after the prefix). Figure 6 adds two panels showing what the
components encode: the pretraining states coloured by step n and by the
ground-truth bias theta.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.lines import Line2D

from prefixlab.coins.figures import common, style
from prefixlab.plotting import FigureInputError, Inputs


@dataclass(frozen=True)
class PCA:
    """Two whitened principal components: project(x) = (x - mean) @ components.T / scale."""

    mean: np.ndarray  # (F,)
    components: np.ndarray  # (2, F), unit rows
    scale: np.ndarray  # (2,) standard deviation along each component
    explained: np.ndarray  # (2,) fraction of variance

    def project(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return (x - self.mean) @ self.components.T / self.scale


def fit_pca(x: np.ndarray, n_components: int = 2) -> PCA:
    """Whitened PCA of the rows of x (samples, features) by SVD of the centred data.

    Signs are fixed (largest-magnitude loading positive) so reruns give the same picture;
    missing components (fewer features than 2, or a rank-deficient set) are zero.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x).all(axis=1)]
    if x.shape[0] < 2:
        raise FigureInputError("PCA needs at least two finite pretraining states")
    mean = x.mean(axis=0)
    _, sv, vt = np.linalg.svd(x - mean, full_matrices=False)
    comps = np.zeros((n_components, x.shape[1]))
    scale = np.ones(n_components)
    k = min(n_components, vt.shape[0])
    comps[:k] = vt[:k]
    std = sv[:k] / np.sqrt(x.shape[0] - 1)
    scale[:k] = np.where(std > 1e-12, std, 1.0)
    for i in range(k):
        if comps[i, np.argmax(np.abs(comps[i]))] < 0:
            comps[i] = -comps[i]
    total = float((sv ** 2).sum()) or 1.0
    explained = np.zeros(n_components)
    explained[:k] = sv[:k] ** 2 / total
    return PCA(mean, comps, scale, explained)


def pca_of(ds: xr.Dataset) -> PCA:
    pre = ds["pretrain_states"].transpose("pretrain_trajectory", "position", "feature").values
    return fit_pca(pre.reshape(-1, pre.shape[-1]))


def projected(ds: xr.Dataset, pca: PCA | None = None):
    """(pca, pretrain (Tp, K, 2), {method: (targets (Tt, K, 2), marker)})."""
    pca = pca or pca_of(ds)
    pre = ds["pretrain_states"].transpose("pretrain_trajectory", "position", "feature").values
    out = {}
    for m in style.ordered(ds["method"].values):
        st = ds["target_states"].sel({"method": m}).transpose("trajectory", "position", "feature").values
        keep = np.isfinite(st).all(axis=(1, 2))
        out[m] = (pca.project(st[keep]), int(ds["marker"].sel({"method": m})))
    return pca, pca.project(pre), out


def _grey(ax, pre2):
    for tr in pre2:
        ax.plot(tr[:, 0], tr[:, 1], color=style.PRETRAIN_GREY, lw=0.6, alpha=0.7, zorder=1)


def method_panel(ax, pre2, tgt2, marker, method):
    _grey(ax, pre2)
    c = style.color(method)
    for tr in tgt2:
        ax.plot(tr[:, 0], tr[:, 1], color=c, lw=0.8, alpha=0.75, zorder=2)
    if len(tgt2) and marker < tgt2.shape[1]:
        ax.scatter(tgt2[:, marker, 0], tgt2[:, marker, 1], s=22, color=c, edgecolor="black", lw=0.6, zorder=3)
    ax.set_title(method, color=c, fontweight="bold")


def _axes_labels(ax, pca: PCA, left: bool, bottom: bool):
    if bottom:
        ax.set_xlabel(f"PC 1 ({100 * pca.explained[0]:.0f}% var., whitened)")
    if left:
        ax.set_ylabel(f"PC 2 ({100 * pca.explained[1]:.0f}% var., whitened)")


def states_figure(data: Inputs, settings: dict, exp: str, encode_panels: bool) -> plt.Figure:
    states = common.select(data, "states", exp)
    if not states:
        raise FigureInputError(f"{exp} states figure: needs states_{exp}_<arch> inputs")
    archs = common.arch_order(a for _, a in states)
    methods = style.ordered(set().union(*[set(map(str, ds["method"].values)) for ds in states.values()]))
    ncols = len(methods) + (2 if encode_panels else 0)
    fig, axes = plt.subplots(len(archs), ncols, figsize=(2.75 * ncols + 0.8, 2.9 * len(archs) + 0.9), squeeze=False)
    for r, arch in enumerate(archs):
        ds = states[(exp, arch)]
        pca, pre2, tgt = projected(ds)
        row = axes[r]
        for c, m in enumerate(methods):
            ax = row[c]
            if m in tgt:
                method_panel(ax, pre2, *tgt[m], m)
            else:
                _grey(ax, pre2)
                ax.set_title(f"{m} (not run)", color="0.5")
            _axes_labels(ax, pca, c == 0, True)
        lims = _shared_limits([row[c] for c in range(len(methods))])
        if encode_panels:
            _encode_panels(fig, row[-2], row[-1], ds, pca, pre2, lims)
            _axes_labels(row[-2], pca, False, True)
            _axes_labels(row[-1], pca, False, True)
        state_name = {"cell": "LSTM cell state", "attention": "attention output"}.get(ds.attrs.get("state"), "state")
        row[0].annotate(f"{style.ARCH_LABEL[arch]}\n({state_name})", (0, 0.5), xytext=(-58, 0), xycoords="axes fraction",
                        textcoords="offset points", rotation=90, ha="center", va="center", fontsize=10, fontweight="bold")
    handles = [Line2D([], [], color=style.PRETRAIN_GREY, lw=1.5),
               Line2D([], [], color="0.2", lw=1.5),
               Line2D([], [], marker="o", color="0.5", markeredgecolor="black", linestyle="none")]
    fig.legend(handles, ["pretraining-distribution sequences (untuned network; PCA fitted on these)",
                         "target sequences under the method (position 0 = BOS, prefix states included)",
                         "state right after the prefix"], loc="outside lower center", ncol=3, frameon=False)
    target = {"r2s": "Single Coin", "r2m": "Two-Coin Mixture"}.get(exp, exp)
    fig.suptitle(f"{exp}: internal states in the 2-D whitened PCA of the pretraining states (tuning target: {target})")
    return fig


def _shared_limits(axes):
    """Same limits on every method panel of a row, so distances are comparable."""
    xs = [ax.get_xlim() for ax in axes]
    ys = [ax.get_ylim() for ax in axes]
    lims = (min(x[0] for x in xs), max(x[1] for x in xs)), (min(y[0] for y in ys), max(y[1] for y in ys))
    for ax in axes:
        ax.set_xlim(*lims[0])
        ax.set_ylim(*lims[1])
    return lims


def _encode_panels(fig, ax_n, ax_theta, ds: xr.Dataset, pca: PCA, pre2: np.ndarray, lims):
    """Pretraining states coloured by step n and by the ground-truth bias theta."""
    K = pre2.shape[1]
    pos = np.broadcast_to(np.arange(K), pre2.shape[:2])
    sc = ax_n.scatter(pre2[..., 0].ravel(), pre2[..., 1].ravel(), c=pos.ravel(), cmap="viridis", s=7, lw=0)
    fig.colorbar(sc, ax=ax_n, label="position n (0 = BOS)", shrink=0.85)
    ax_n.set_title("pretraining states by step n")
    theta = ds["pretrain_theta"].values
    cmap = plt.get_cmap("coolwarm")
    for tr, th in zip(pre2, theta):
        ax_theta.plot(tr[:, 0], tr[:, 1], color=cmap(float(th)), lw=0.9, alpha=0.85)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=ax_theta, label="ground-truth θ = P(token 1)", shrink=0.85)
    ax_theta.set_title("pretraining states by bias θ")
    for ax in (ax_n, ax_theta):
        ax.set_xlim(*lims[0])
        ax.set_ylim(*lims[1])


def fig2_states_r2s(data: Inputs, settings: dict) -> plt.Figure:
    return states_figure(data, settings, "r2s", encode_panels=False)


def fig6_states_r2m(data: Inputs, settings: dict) -> plt.Figure:
    return states_figure(data, settings, "r2m", encode_panels=True)
