"""Paper B claims (SPEC 2.3), checked on the sorting experiments' evaluation files.

Accuracies are fractions of test inputs with all output digits right, averaged over
repetitions. Settings (claims settings keys, defaults in DEFAULTS):
  b_success           0.5    accuracy at which a method "learns" or "elicits" a task
  b_failure           0.1    accuracy at which it "fails"
  b_theory_tolerance  1e-4   max deviation of the prefix-bias identity (float32 arithmetic)
Inputs: sorteval_b1_descending, sorteval_b2_elicit, sorteval_b3_matrix, sorteval_b4_double_hist.
"""

from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr

from prefixlab.claims import ClaimCheck, need
from prefixlab.sorting.data import PRETRAIN_TASKS

DEFAULTS = {"b_success": 0.5, "b_failure": 0.1, "b_theory_tolerance": 1e-4}
# Published accuracies (SPEC 2.3, the authors' notebooks) shown beside ours.
PUBLISHED = {
    "b2_elicit": {"ascending": 0.937, "descending": 0.847, "add1": 0.996, "add2": 0.993},
    "ascending_add1": 0.716, "double_hist_prefix": 0.006, "b4_prefix": 0.003, "b4_lora": 0.924,
    "b1_finetune": 0.849, "b1_prefix": 0.0,
}
KEYS = {"b1": "sorteval_b1_descending", "b2": "sorteval_b2_elicit", "b3": "sorteval_b3_matrix",
        "b4": "sorteval_b4_double_hist"}


def accuracy_of(ds: xr.Dataset, method: str, task: str, eval_task: str) -> float:
    """Mean over repetitions of the `method` runs tuned for `task`, tested on `eval_task`; NaN if absent."""
    sel = (ds["method"].values.astype(str) == method) & (ds["task"].values.astype(str) == task)
    if not sel.any() or eval_task not in ds["eval_task"].values.astype(str):
        return float("nan")
    return float(ds["accuracy"].sel(eval_task=eval_task).values[sel].mean())


def pretrained_accuracy(ds: xr.Dataset, eval_task: str) -> float:
    return float(ds["accuracy"].sel(model="pretrained", eval_task=eval_task))


def _pct(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{100 * x:.1f}%"


def _ge(x, t):
    return math.isfinite(x) and x >= t


def _le(x, t):
    return math.isfinite(x) and x <= t


def check_elicit(data, s):
    parts, values, ok = [], [], True
    for key in ("b2", "b3"):
        ds = need(data, KEYS[key])[0]
        accs = {t: accuracy_of(ds, "prefix", t, t) for t in PRETRAIN_TASKS}
        ok &= all(_ge(a, s["b_success"]) for a in accs.values())
        values += list(accs.values())
        pub = PUBLISHED["b2_elicit"] if key == "b2" else {}
        parts.append(f"{KEYS[key][9:]}: " + ", ".join(
            f"{t} {_pct(a)}" + (f" (published {_pct(pub[t])})" if t in pub else "") + f" [no prefix {_pct(pretrained_accuracy(ds, t))}]"
            for t, a in accs.items()))
    value = min(values) if values and all(map(math.isfinite, values)) else float("nan")
    return ok, value, f"min diagonal accuracy {_pct(value)} vs >= {_pct(s['b_success'])}; " + "; ".join(parts)


def check_composition(data, s):
    ds = need(data, KEYS["b3"])[0]
    a = accuracy_of(ds, "prefix", "ascending_add1", "ascending_add1")
    nearest = {t: accuracy_of(ds, "prefix", t, "ascending_add1") for t in PRETRAIN_TASKS}
    return _ge(a, s["b_success"]), a, (
        f"prefix for ascending_add1: {_pct(a)} (published {_pct(PUBLISHED['ascending_add1'])}) vs >= {_pct(s['b_success'])}; "
        "pretraining-task prefixes on ascending_add1: " + ", ".join(f"{t} {_pct(v)}" for t, v in nearest.items()))


def check_new_skill(data, s):
    ds4 = need(data, KEYS["b4"])[0]
    pre = accuracy_of(ds4, "prefix", "double_hist", "double_hist")
    lora = accuracy_of(ds4, "lora", "double_hist", "double_hist")
    counts = json.loads(ds4.attrs.get("trainable_parameters", "{}"))
    by_method = {m: counts.get(str(ds4["model"].values[i]).split(":")[0]) for i, m in enumerate(ds4["method"].values.astype(str))}
    equal = by_method.get("prefix") is not None and by_method.get("prefix") == by_method.get("lora")
    ok = _le(pre, s["b_failure"]) and _ge(lora, s["b_success"]) and equal
    details = (f"b4: prefix {_pct(pre)} (published {_pct(PUBLISHED['b4_prefix'])}) vs <= {_pct(s['b_failure'])}; "
               f"rank-1 LoRA {_pct(lora)} (published {_pct(PUBLISHED['b4_lora'])}) vs >= {_pct(s['b_success'])}; "
               f"trainable parameters prefix {by_method.get('prefix')} / LoRA {by_method.get('lora')}"
               f" ({'equal' if equal else 'NOT equal'})")
    if KEYS["b3"] in data:
        p3 = accuracy_of(data[KEYS["b3"]], "prefix", "double_hist", "double_hist")
        ok &= _le(p3, s["b_failure"]) or not math.isfinite(p3)
        details += f"; b3 prefix for double_hist {_pct(p3)} (published {_pct(PUBLISHED['double_hist_prefix'])})"
    return ok, lora, details


def check_descending(data, s):
    ds = need(data, KEYS["b1"])[0]
    ft = accuracy_of(ds, "finetune", "descending", "descending")
    pt = accuracy_of(ds, "prefix", "descending", "descending")
    base_asc, base_desc = pretrained_accuracy(ds, "ascending"), pretrained_accuracy(ds, "descending")
    ok = _ge(ft, s["b_success"]) and _le(pt, s["b_failure"])
    return ok, ft, (
        f"descending: full fine-tuning {_pct(ft)} (published {_pct(PUBLISHED['b1_finetune'])}) vs >= {_pct(s['b_success'])}, "
        f"prefix tuning {_pct(pt)} (published {_pct(PUBLISHED['b1_prefix'])}) vs <= {_pct(s['b_failure'])}; "
        f"pretrained model: ascending {_pct(base_asc)} (published 91.4%), descending {_pct(base_desc)} (published 0.0%)")


def check_theory(data, s):
    evals = {k: v for k, v in data.items() if k.startswith("sorteval_")}
    if not evals:
        need(data, *KEYS.values())
    worst, parts = 0.0, []
    for key, ds in sorted(evals.items()):
        devs = {n: np.nanmax(ds[f"theory_{n}_dev"].values) if np.isfinite(ds[f"theory_{n}_dev"].values).any() else float("nan")
                for n in ("attention", "output", "direction")}
        worst = max([worst] + [v for v in devs.values() if math.isfinite(v)])
        kinds = ds["probe_kind"].values.astype(str)
        parts.append(f"{key[9:]} (L={ds.attrs['prefix_length']}, {int((kinds == 'trained').sum())} trained + "
                     f"{int((kinds == 'random').sum())} random prefixes): " + ", ".join(
                         f"{n} {v:.2e}" if math.isfinite(v) else f"{n} n/a" for n, v in devs.items()))
    ok = worst <= s["b_theory_tolerance"]
    return ok, worst, f"max deviation {worst:.2e} vs <= {s['b_theory_tolerance']:g}; " + "; ".join(parts)




def wanted(data) -> bool:
    """Paper B claims are checked when any Paper B evaluation file is given."""
    return any(k.startswith("sorteval_") for k in data)


def notes(data) -> list[str]:
    """One line naming the Paper B models the verdicts were computed on (reduced scales shrink them)."""
    parts = [f"{k[9:]} {ds.attrs['layers']} layer(s) x {ds.attrs['heads']} head(s), d {ds.attrs['d']}, L {ds.attrs['prefix_length']}"
             for k, ds in sorted(data.items()) if k.startswith("sorteval_")]
    intro = ["Paper B (B*): test accuracies (all 10 output digits right), means over repetitions."]
    if not parts:
        return intro
    return intro + ["Paper B models (published: 1x1 d 96 L 1; 1x4 d 256 L 1; 4x4 d 256 L 10; 4x4 d 256 L 12): " + "; ".join(parts) + "."]


# Claim Bk rests on experiment k (bk_*) and is drawn in figure figBk_*; B5 checks the theory on all of them.
CLAIMS = [
    ClaimCheck("B1", "Full fine-tuning learns descending on an ascending-pretrained model; prefix tuning does not.",
               ("b1_descending",), ("figB1_descending", "figB6_budget"), check_descending, lambda s: s["b_success"],
               "full fine-tuning's accuracy on descending (prefix tuning <= the failure level also required)", ">=",
               PUBLISHED["b1_finetune"], percent=True),
    ClaimCheck("B2", "A prefix per task elicits each pretrained task (1-layer model pretrained on the random mix; and the 4-layer model).",
               ("b2_elicit", "b3_matrix"), ("figB2_elicit", "figB3_matrix", "figB6_budget"), check_elicit, lambda s: s["b_success"],
               "min over models and pretraining tasks of the task's own prefix accuracy", ">=",
               min(PUBLISHED["b2_elicit"].values()), percent=True),
    ClaimCheck("B3", "Prefix tuning elicits ascending_add1, a combination of pretrained skills (4-layer model).",
               ("b3_matrix",), ("figB3_matrix", "figB6_budget"), check_composition, lambda s: s["b_success"],
               "accuracy of the ascending_add1 prefix", ">=", PUBLISHED["ascending_add1"], percent=True),
    ClaimCheck("B4", "Prefix tuning fails on double_hist, a new skill, where rank-1 LoRA with as many parameters succeeds.",
               ("b4_double_hist", "b3_matrix"), ("figB4_double_hist", "figB3_matrix", "figB6_budget"), check_new_skill,
               lambda s: s["b_success"],
               "rank-1 LoRA's accuracy on double_hist (prefix <= the failure level and equal parameter counts also required)",
               ">=", PUBLISHED["b4_lora"], percent=True),
    ClaimCheck("B5", "Theory: a prefix rescales each query's content attention by one factor and moves the attention output "
          "towards the prefix values (along one direction for L = 1); checked at layer 0 on trained and random prefixes.",
               ("b1_descending", "b2_elicit", "b3_matrix", "b4_double_hist"), ("figB5_theory",), check_theory,
               lambda s: s["b_theory_tolerance"], "max deviation of the prefix-bias identity", "<="),
]
