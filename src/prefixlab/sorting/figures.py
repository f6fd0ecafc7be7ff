"""Paper B figures (SPEC 2.3): attention maps of sorting models, prefixes eliciting
pretrained tasks, the accuracy matrix, prefix vs LoRA on double_hist, and the
prefix-bias theory check."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from prefixlab.plotting import FigureInputError, Inputs

METHOD_COLOR = {"none": "#7f7f7f", "finetune": "#2ca02c", "prefix": "#d62728", "lora": "#bcbd22"}
METHOD_LABEL = {"none": "pretrained", "finetune": "full fine-tuning", "prefix": "prefix tuning", "lora": "rank-1 LoRA"}
TASK_COLOR = {"ascending": "#1f77b4", "descending": "#ff7f0e", "add1": "#2ca02c", "add2": "#9467bd",
              "ascending_add1": "#8c564b", "double_hist": "#e377c2"}


def eval_of(data: Inputs, exp: str) -> xr.Dataset:
    ds = data.get(f"sorteval_{exp}")
    if ds is None:
        raise FigureInputError(f"needs input sorteval_{exp}; got {sorted(data)}")
    return ds


def tunes_of(data: Inputs, exp: str) -> dict[str, xr.Dataset]:
    return {k.split("_", 1)[1][len(exp) + 1:]: ds for k, ds in data.items() if k.startswith(f"sorttune_{exp}_")}


def mean_accuracy(ds: xr.Dataset) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Rows (method, task) averaged over repetitions -> (row labels, (rows, eval_task))."""
    acc = ds["accuracy"]
    rows, values = [], []
    for method, task in dict.fromkeys(zip(ds["method"].values.astype(str), ds["task"].values.astype(str))):
        sel = (ds["method"].values.astype(str) == method) & (ds["task"].values.astype(str) == task)
        rows.append((method, task))
        values.append(acc.values[sel].mean(0))
    return rows, np.array(values)


def row_label(method: str, task: str) -> str:
    return "pretrained, no prefix" if method == "none" else f"{METHOD_LABEL[method]}: {task}"


def accuracy_heatmap(ax, ds: xr.Dataset, title: str):
    rows, values = mean_accuracy(ds)
    tasks = ds["eval_task"].values.astype(str)
    im = ax.imshow(values * 100, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j] * 100
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7, color="white" if v < 60 else "black")
    ax.set_xticks(range(len(tasks)), tasks, rotation=35, ha="right")
    ax.set_yticks(range(len(rows)), [row_label(*r) for r in rows])
    ax.set_xlabel("tested on")
    ax.set_title(title)
    return im


def _tokens(ds: xr.Dataset, model: str) -> list[str]:
    L = int(ds.attrs["prefix_length"])
    out = ds["example_output"].sel(map_model=model).values.astype(int)
    x = ds["example_input"].values.astype(int)
    return ["s"] * L + [str(v) for v in x] + [f"{v}'" for v in out[:-1]]


def figB1_descending(data: Inputs, settings: dict):
    ds = eval_of(data, "b1_descending")
    models = list(ds["map_model"].values.astype(str))
    fig, axes = plt.subplots(1, len(models) + 2, figsize=(4.2 * (len(models) + 2), 4.4), layout="constrained",
                             gridspec_kw={"width_ratios": [1] * len(models) + [0.9, 0.9]})
    methods = dict(zip(ds["model"].values.astype(str), ds["method"].values.astype(str)))
    for ax, model in zip(axes, models):
        att = ds["attention"].sel(map_model=model).isel(layer=0).mean("head").values
        ax.imshow(np.where(np.isnan(att), -0.1, att), cmap="magma", vmin=0, vmax=1)
        ticks = _tokens(ds, model)
        ax.set_xticks(range(len(ticks)), ticks, fontsize=6)
        ax.set_yticks(range(len(ticks)), ticks, fontsize=6)
        out = " ".join(map(str, ds["example_output"].sel(map_model=model).values.astype(int)))
        method = "none" if model == "pretrained" else next(m for k, m in methods.items() if k.startswith(model + ":"))
        ax.set_title(f"{METHOD_LABEL[method]}\noutput: {out}", fontsize=9)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
    ax = axes[-2]
    rows, values = mean_accuracy(ds)
    tasks = ds["eval_task"].values.astype(str)
    width = 0.8 / len(rows)
    for i, (method, task) in enumerate(rows):
        ax.bar(np.arange(len(tasks)) + i * width, values[i] * 100, width, color=METHOD_COLOR[method],
               label=row_label(method, task))
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, tasks)
    ax.set_ylabel("test accuracy [%]")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("accuracy (all 10 digits right)")
    _loss_panel(axes[-1], tunes_of(data, "b1_descending"))
    fig.suptitle("Paper B experiment 1: ascending-pretrained 1-layer 1-head model tuned to descending "
                 "(attention maps averaged over heads; 's' = prefix slot)", fontsize=10)
    return fig


def _loss_panel(ax, tunes: dict[str, xr.Dataset]):
    for run, ds in tunes.items():
        method = ds.attrs.get("method", run)
        for i in range(ds.sizes["member"]):
            ax.plot(ds["step"].values, ds["loss"].isel(member=i).values, color=METHOD_COLOR.get(method, "k"), lw=0.8,
                    alpha=0.8, label=f"{METHOD_LABEL.get(method, method)}: {ds['task'].values[i]}" if i == 0 or
                    ds["task"].values[i] != ds["task"].values[0] else None)
    ax.set_xlabel("tuning step")
    ax.set_ylabel("loss [nats / digit]")
    ax.set_yscale("log")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("training loss")


def figB2_elicit(data: Inputs, settings: dict):
    ds = eval_of(data, "b2_elicit")
    free = ds["block_free"].values  # (sample, D)
    shifted = ds["block_prefixed"].values  # (model, sample, D)
    allpts = np.concatenate([free, shifted.reshape(-1, free.shape[1])])
    mean = allpts.mean(0)
    _, _, vt = np.linalg.svd(allpts - mean, full_matrices=False)
    proj = lambda a: (a - mean) @ vt[:2].T  # noqa: E731
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    pf = proj(free)
    ax.scatter(pf[:, 0], pf[:, 1], s=12, color="k", label="no prefix", zorder=3)
    for i, model in enumerate(ds["shift_model"].values.astype(str)):
        task = model.split(":")[1]
        ps = proj(shifted[i])
        c = TASK_COLOR.get(task, "C0")
        for a, b in zip(pf, ps):
            ax.plot([a[0], b[0]], [a[1], b[1]], color=c, lw=0.6, alpha=0.6)
        ax.scatter(ps[:, 0], ps[:, 1], s=12, color=c, label=f"prefix for {task}", zorder=3)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("attention-block output at the last input position\n(20 inputs, without -> with each task's prefix)",
                 fontsize=9)
    accuracy_heatmap(ax2, ds, "test accuracy [%] (all 10 digits right)")
    fig.suptitle("Paper B experiment 2: 1-layer 4-head model pretrained on the random task mix", fontsize=10)
    return fig


def figB3_matrix(data: Inputs, settings: dict):
    ds = eval_of(data, "b3_matrix")
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    im = accuracy_heatmap(ax, ds, f"prefix trained for task i (rows), tested on task j (columns); "
                                  f"{ds.attrs['layers']} layers, L = {ds.attrs['prefix_length']}")
    fig.colorbar(im, ax=ax, label="test accuracy [%]")
    ax.set_ylabel("tuned for")
    fig.suptitle("Paper B experiment 3: accuracy matrix of per-task prefixes", fontsize=10)
    return fig


def figB4_double_hist(data: Inputs, settings: dict):
    ds = eval_of(data, "b4_double_hist")
    counts = json.loads(ds.attrs["trainable_parameters"])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    rows, values = mean_accuracy(ds)
    j = list(ds["eval_task"].values.astype(str)).index("double_hist")
    runs_by_method = {ds["method"].values[i]: str(ds["model"].values[i]).split(":")[0] for i in range(ds.sizes["model"])}
    labels = []
    for i, (method, task) in enumerate(rows):
        n = counts.get(runs_by_method.get(method, ""), None)
        labels.append(METHOD_LABEL[method] + (f"\n{n} parameters" if n and n > 0 else ""))
        ax.bar(i, values[i, j] * 100, color=METHOD_COLOR[method])
        ax.text(i, values[i, j] * 100 + 1.5, f"{values[i, j] * 100:.1f}%", ha="center", fontsize=8)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("double_hist test accuracy [%]")
    ax.set_title("equal trainable parameter counts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), fontsize=9)
    _loss_panel(ax2, tunes_of(data, "b4_double_hist"))
    fig.suptitle(f"Paper B experiment 4: double_hist, {ds.attrs['layers']} layers, L = {ds.attrs['prefix_length']}",
                 fontsize=10)
    return fig


def figB5_theory(data: Inputs, settings: dict):
    evals = {k.split("_", 1)[1]: ds for k, ds in sorted(data.items()) if k.startswith("sorteval_")}
    if not evals:
        raise FigureInputError("figB5_theory needs at least one sorteval_<exp> input")
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10.5, 4.4), layout="constrained")
    first = next(iter(evals))
    ds = evals[first]
    ax.scatter(ds["theory_predicted"].values, ds["theory_observed"].values, s=3, alpha=0.4, color="#d62728")
    ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls="--")
    ax.set_xlabel("(1 - prefix mass) x prefix-free content attention")
    ax.set_ylabel("content attention with the prefix")
    ax.set_title(f"layer-0 content attention, {first}, probe {ds['probe'].values[0]}", fontsize=9)
    names = ["theory_attention_dev", "theory_output_dev", "theory_direction_dev"]
    short = {"theory_attention_dev": "attention", "theory_output_dev": "output", "theory_direction_dev": "direction (L=1)"}
    for e, (exp, ds) in enumerate(evals.items()):
        kinds = ds["probe_kind"].values.astype(str)
        for n, name in enumerate(names):
            vals = ds[name].values
            for kind, marker in (("trained", "o"), ("random", "x")):
                v = vals[(kinds == kind) & np.isfinite(vals)]
                x = e + (n - 1) * 0.25 + np.linspace(-0.04, 0.04, len(v)) if len(v) else []
                ax2.scatter(x, np.maximum(v, 1e-12), marker=marker, s=16, color=f"C{n}",
                            label=f"{short[name]}, {kind} prefixes" if e == 0 else None)
    ax2.set_yscale("log")
    ax2.set_xticks(range(len(evals)), list(evals), fontsize=8)
    ax2.set_ylabel("max absolute deviation")
    ax2.set_title("prefix-bias identity at layer 0: max deviation per probe", fontsize=9)
    ax2.legend(fontsize=6, frameon=False)
    fig.suptitle("Paper B theory check: a prefix rescales content attention per query and shifts the output "
                 "towards the prefix values", fontsize=10)
    return fig


# (claim, experiment, run, task, threshold key, "above" or "below"): the deciding accuracies of B1-B4
BUDGET_CURVES = (
    ("B1", "b1_descending", "finetune", "descending", "success", "above"),
    ("B1", "b1_descending", "prefix", "descending", "failure", "below"),
    ("B2", "b2_elicit", "prefix", None, "success", "above"),
    ("B2", "b3_matrix", "prefix", None, "success", "above"),
    ("B3", "b3_matrix", "prefixnew", "ascending_add1", "success", "above"),
    ("B4", "b4_double_hist", "lora", "double_hist", "success", "above"),
    ("B4", "b4_double_hist", "prefix", "double_hist", "failure", "below"),
    ("B4", "b3_matrix", "prefixnew", "double_hist", "failure", "below"),
)
BUDGET_DEFAULTS = {"success": 0.5, "failure": 0.1}


def figB6_budget(data: Inputs, settings: dict):
    """Each tuning run's test accuracy on its own task during training, beside the claim's threshold."""
    given = settings.get("claims", {})
    s = {**BUDGET_DEFAULTS, **{k: given[k] for k in BUDGET_DEFAULTS if k in given}}
    panels = [(c, e, r, t, k, side) for c, e, r, t, k, side in BUDGET_CURVES if f"sorttune_{e}_{r}" in data]
    if not panels:
        raise FigureInputError("figB6_budget: needs sorttune_<experiment>_<run> inputs")
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.9 * ncols, 3.0 * nrows), squeeze=False, layout="constrained")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    for ax, (claim, exp, run, task, key, side) in zip(axes.flat, panels):
        ds = data[f"sorttune_{exp}_{run}"]
        method = ds.attrs.get("method", run)
        steps = ds["checkpoint"].values
        tasks = ds["task"].values.astype(str)
        for t in dict.fromkeys(tasks):
            if task is not None and t != task:
                continue
            acc = ds["curve_accuracy"].values[tasks == t].mean(0) * 100
            ax.plot(steps, acc, marker="o", ms=3, lw=1.3, color=TASK_COLOR.get(t, "C0"), label=t)
        v = s[key] * 100
        ax.axhline(v, color="0.2", ls=":", lw=1.0)
        ax.annotate(f"{'>=' if side == 'above' else '<='} {v:g}%", (0.01, v), xycoords=("axes fraction", "data"),
                    ha="left", va="bottom", fontsize=7, color="0.2")
        ax.set_ylim(-3, 103)
        ax.set_xlabel("tuning step")
        ax.set_ylabel("test accuracy [%]")
        ax.set_title(f"{claim}: {exp} {METHOD_LABEL.get(method, method)}", fontsize=9)
        ax.legend(fontsize=7, frameon=False, loc="best")
    fig.suptitle("Deciding accuracies against the training budget: each run's test accuracy on its own task "
                 "during training (mean over repetitions), dotted: the claim's threshold", fontsize=10)
    return fig
