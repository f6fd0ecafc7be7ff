"""SoftPT table (SPEC 1.7 item 10): SoftPT's median cumulative regret at n = 49 on
the tuning target, r2s and r2m, per network setting, beside the paper's values.
Written as Markdown and as a small table figure."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt

from prefixlab.coins.figures import common
from prefixlab.plotting import FigureInputError, FigureSettings, Inputs

# (row label, experiment suffix or None for the Bayes row, arch, paper r2s, paper r2m)
PAPER_ROWS = (
    ("TargetBayes (optimal)", None, None, 0.00, 0.69),
    ("LSTM", "", "lstm", 0.01, 0.98),
    ("Transformer", "", "transformer", 0.01, 1.20),
    ("LSTM, d = 4", "_d4", "lstm", 0.34, 1.36),
    ("Transformer, d = 4", "_d4", "transformer", 0.65, 1.92),
    ("LSTM Maxi", "_maxi", "lstm", 0.01, 0.91),
    ("Transformer Maxi", "_maxi", "transformer", 0.03, 1.04),
)
EXTRA_ROWS = (  # not in the paper's table; shown when run
    ("LSTM, L = 25", "_L25", "lstm", None, None),
    ("Transformer, L = 25", "_L25", "transformer", None, None),
)
FAMILIES = ("r2s", "r2m")


def _cell(data: Inputs, family: str, suffix: str | None, arch: str | None, step: int):
    """(median, q25, q75, step used) or None when the data was not produced."""
    if suffix is None:  # the Bayes predictor of the target: same for every network
        for a in ("transformer", "lstm"):
            ds = common.get(data, "eval", family, a)
            if ds is not None:
                s = common.clip_step(ds, step)
                return (*common.at_step(ds, common.target_of(ds), "TargetBayes", s), s)
        return None
    ds = common.get(data, "eval", family + suffix, arch)
    if ds is None or "SoftPT" not in ds["method"].values:
        return None
    s = common.clip_step(ds, step)
    return (*common.at_step(ds, common.target_of(ds), "SoftPT", s), s)


def softpt_rows(data: Inputs, settings: dict) -> tuple[list[list[str]], list[str], int, set[int]]:
    """(rows of strings, header, requested step, steps actually used)."""
    step = FigureSettings.from_dict(settings).headline_step
    rows, used = [], set()
    extra = [r for r in EXTRA_ROWS if any(common.get(data, "eval", f + r[1], r[2]) is not None for f in FAMILIES)]
    for label, suffix, arch, *paper in PAPER_ROWS + tuple(extra):
        row = [label]
        for family, ref in zip(FAMILIES, paper):
            cell = _cell(data, family, suffix, arch, step)
            if cell is None or not math.isfinite(cell[0]):
                row.append("not run")
            else:
                med, lo, hi, s = cell
                used.add(s)
                row.append(f"{med:.2f}" if suffix is None else f"{med:.2f} [{lo:.2f}, {hi:.2f}]")
            row.append("—" if ref is None else f"{ref:.2f}")
        rows.append(row)
    header = ["setting", "r2s (ours)", "r2s (paper)", "r2m (ours)", "r2m (paper)"]
    return rows, header, step, used


def _step_note(step: int, used: set[int]) -> str:
    if not used or used == {step}:
        return f"n = {step}"
    return f"n = {', '.join(map(str, sorted(used)))} (requested n = {step}; the evaluation is shorter)"


def table_softpt_markdown(data: Inputs, settings: dict) -> str:
    rows, header, step, used = softpt_rows(data, settings)
    lines = [
        "# SoftPT cumulative regret on the tuning target",
        "",
        f"Median over repetitions [25%, 75%] of SoftPT's cumulative regret (nats) at {_step_note(step, used)}; "
        "the TargetBayes row is the optimum. Paper values: Genewein et al. 2025 (SPEC 1.7 item 10).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def table_softpt(data: Inputs, settings: dict) -> plt.Figure:
    if not common.select(data, "eval"):
        raise FigureInputError("table_softpt: needs eval_<experiment>_<arch> inputs (r2s, r2m and their ablations)")
    rows, header, step, used = softpt_rows(data, settings)
    fig, ax = plt.subplots(figsize=(8.6, 0.3 * (len(rows) + 1) + 0.6))
    ax.axis("off")
    tab = ax.table(cellText=rows, colLabels=header, bbox=[0, 0, 1, 1], cellLoc="center", colLoc="center",
                   colWidths=[0.24, 0.22, 0.11, 0.22, 0.11])
    tab.auto_set_font_size(False)
    tab.set_fontsize(9)
    for (r, c), cell in tab.get_celld().items():
        cell.set_edgecolor("0.75")
        if r == 0:
            cell.set_text_props(fontweight="bold")
            cell.set_facecolor("0.92")
        elif c in (2, 4):
            cell.set_text_props(color="0.35")
        if c == 0 and r > 0:
            cell.set_text_props(ha="left")
            cell.PAD = 0.04
    ax.set_title(f"SoftPT median cumulative regret [nats] at {_step_note(step, used)} (ours: median [25%, 75%])",
                 fontsize=10)
    return fig
