"""One look for every Paper A figure: a fixed colour, line style and label per method,
the method order with its groups (prefix methods | weight methods | baselines) and the
shared legend; saving comes from prefixlab.plotting.
"""

from __future__ import annotations

from matplotlib.lines import Line2D

from prefixlab import plotting  # noqa: F401 (sets matplotlib up for files)
from prefixlab.coins.methods import ALL_METHODS, BASELINES, PREFIX_METHODS, WEIGHT_METHODS

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("prefix methods", PREFIX_METHODS),
    ("weight methods", WEIGHT_METHODS),
    ("baselines", BASELINES),
)
METHOD_ORDER: tuple[str, ...] = ALL_METHODS

# Colour per method, the same in every figure. Tuned methods are solid lines; the
# baselines are dashed/dotted so that they read as references.
METHOD_COLOR: dict[str, str] = {
    "HardPT": "#8c564b",  # brown
    "SimplexPT": "#17becf",  # cyan
    "RealPT": "#1f77b4",  # blue
    "SoftPT": "#d62728",  # red: the headline method
    "FullWT": "#2ca02c",  # green
    "LoRAWT": "#bcbd22",  # olive
    "EmbedWT": "#9467bd",  # purple
    "UnembedWT": "#e377c2",  # pink
    "Un+EmbedWT": "#ff7f0e",  # orange
    "TargetBayes": "#000000",  # black
    "PreBayes": "#7f7f7f",  # grey
    "PreBayesPT": "#5b3a8c",  # dark violet
    "NoTuning": "#a0522d",  # sienna
    "RandomPF": "#6baed6",  # light blue
}
METHOD_LINESTYLE: dict[str, object] = {m: "-" for m in PREFIX_METHODS + WEIGHT_METHODS}
METHOD_LINESTYLE.update({"TargetBayes": "--", "PreBayes": "--", "PreBayesPT": "-.", "NoTuning": ":", "RandomPF": (0, (1, 1.5))})

# Colours for things that are not methods (architectures, network variants).
ARCH_COLOR = {"lstm": "#1b9e77", "transformer": "#7570b3"}
ARCH_LABEL = {"lstm": "LSTM", "transformer": "Transformer"}
VARIANT_LINESTYLE = {"base": "-", "d4": "--", "maxi": ":"}
DIST_LABEL = {"single": "Single Coin", "mixture": "Two-Coin Mixture", "random": "Random Coins"}
PRETRAIN_GREY = "#b0b0b0"



def color(method: str) -> str:
    return METHOD_COLOR.get(method, "#333333")


def label(method: str, eval_dist: str | None = None, target: str | None = None) -> str:
    """Display name; the Bayes predictor of the evaluation distribution is TargetBayes
    on the tuning target and EvalBayes on any other distribution (SPEC 1.9)."""
    if method == "TargetBayes" and eval_dist is not None and target is not None and eval_dist != target:
        return "EvalBayes"
    return method


def ordered(methods) -> list[str]:
    """Methods in the canonical order (unknown names last, alphabetically)."""
    ms = set(str(m) for m in methods)
    return [m for m in METHOD_ORDER if m in ms] + sorted(ms - set(METHOD_ORDER))


def group_of(method: str) -> int:
    for i, (_, members) in enumerate(GROUPS):
        if method in members:
            return i
    return len(GROUPS)


def method_legend(fig, methods, bayes_label: str = "TargetBayes", extra=None, **kw):
    """Figure legend below the panels: one row per group (prefix methods | weight
    methods | baselines), each row headed by the group name; `extra` = (title,
    [(handle, label), ...]) adds one more row (e.g. the bar steps)."""
    present = ordered(methods)
    rows = [(name, [m for m in members if m in present]) for name, members in GROUPS]
    rows = [(name, col) for name, col in rows if col]
    width = max(len(col) for _, col in rows) + 1
    blank = Line2D([], [], linestyle="none")
    grid = []  # grid[r][c] = (handle, label)
    for name, col in rows:
        cells = [(blank, name + ":")]
        for m in col:
            cells.append((Line2D([], [], color=color(m), linestyle=METHOD_LINESTYLE.get(m, "-"), lw=2),
                          bayes_label if m == "TargetBayes" else m))
        cells += [(blank, "")] * (width - len(cells))
        grid.append(cells)
    if extra:
        title, items = extra
        grid.append(([(blank, title + ":")] + list(items) + [(blank, "")] * width)[:width])
    # matplotlib fills legends column by column: transpose so that each group is a row.
    cells = [grid[r][c] for c in range(width) for r in range(len(grid))]
    handles, labels = zip(*cells)
    kw.setdefault("loc", "outside lower center")
    return fig.legend(handles, labels, ncol=width, frameon=False, handlelength=2.2, columnspacing=1.2, **kw)


