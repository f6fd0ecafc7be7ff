"""Paper B claims on hand-made evaluation datasets: verdicts follow the numbers."""

import json

import numpy as np
import xarray as xr

from prefixlab import claims, plotting
from prefixlab.coins import claims as coins_claims
from prefixlab.sorting import claims as sorting_claims

PAPERS = [coins_claims, sorting_claims]

PRE = ("ascending", "descending", "add1", "add2")


def eval_ds(rows, eval_tasks, L=1, counts=None, dev=1e-7):
    """rows: [(method, task, accuracies over eval_tasks)]; repetition 0 each."""
    labels = ["pretrained" if m == "none" else f"{m}:{t}:0" for m, t, _ in rows]
    ds = xr.Dataset(
        {"accuracy": (("model", "eval_task"), np.array([a for _, _, a in rows], dtype=float)),
         "theory_attention_dev": (("probe",), np.full(2, dev)),
         "theory_output_dev": (("probe",), np.full(2, dev)),
         "theory_direction_dev": (("probe",), np.full(2, dev if L == 1 else np.nan)),
         "theory_predicted": (("point",), np.linspace(0, 0.5, 20)),
         "theory_observed": (("point",), np.linspace(0, 0.5, 20) + dev)},
        coords={"model": labels, "method": ("model", [m for m, _, _ in rows]), "task": ("model", [t for _, t, _ in rows]),
                "repetition": ("model", [0] * len(rows)), "eval_task": list(eval_tasks),
                "probe": ["trained:0", "random:0"], "probe_kind": ("probe", ["trained", "random"])})
    ds.attrs.update(prefix_length=L, trainable_parameters=json.dumps(counts or {}))
    return ds


def diag(method, tasks, value, eval_tasks=None, off=0.0):
    return [(method, t, [value if t == u else off for u in eval_tasks or tasks]) for t in tasks]


def inputs(b2_acc=0.9, add1_acc=0.8, hist_prefix=0.01, lora=0.9, ft=0.8, pt_desc=0.0, counts=(120, 120), dev=1e-7):
    six = PRE + ("ascending_add1", "double_hist")
    b3_rows = [("none", "random", [0.2] * 6)] + diag("prefix", PRE, 0.9, six) + [
        ("prefix", "ascending_add1", [0, 0, 0, 0, add1_acc, 0]), ("prefix", "double_hist", [0, 0, 0, 0, 0, hist_prefix])]
    return {
        "sorteval_b1_descending": eval_ds([("none", "ascending", [0.9, 0.0]), ("finetune", "descending", [0.0, ft]),
                                           ("prefix", "descending", [0.5, pt_desc])], ("ascending", "descending"), dev=dev),
        "sorteval_b2_elicit": eval_ds([("none", "random", [0.2] * 4)] + diag("prefix", PRE, b2_acc), PRE, dev=dev),
        "sorteval_b3_matrix": eval_ds(b3_rows, six, L=10, dev=dev),
        "sorteval_b4_double_hist": eval_ds([("none", "random", [0.0]), ("prefix", "double_hist", [hist_prefix]),
                                            ("lora", "double_hist", [lora])], ("double_hist",), L=12,
                                           counts={"prefix": counts[0], "lora": counts[1]}, dev=dev),
    }


def verdicts(data):
    return {c.id: c.passed for c in claims.check_all(PAPERS, data) if c.id.startswith("B")}


def test_paper_b_claims_pass_on_the_published_picture():
    assert verdicts(inputs()) == {"B1": True, "B2": True, "B3": True, "B4": True, "B5": True}


def test_each_claim_fails_when_its_numbers_say_so():
    # claim Bk rests on experiment bk: B1 descending, B2 elicit, B3 the matrix (composition), B4 double_hist
    assert not verdicts(inputs(ft=0.3))["B1"]
    assert not verdicts(inputs(pt_desc=0.6))["B1"]
    assert not verdicts(inputs(b2_acc=0.3))["B2"]
    assert not verdicts(inputs(add1_acc=0.2))["B3"]
    assert not verdicts(inputs(hist_prefix=0.4))["B4"]
    assert not verdicts(inputs(lora=0.2))["B4"]
    assert not verdicts(inputs(counts=(120, 121)))["B4"]  # unequal parameter counts
    assert not verdicts(inputs(dev=1e-2))["B5"]


def test_claim_ids_line_up_with_experiments_and_figures():
    for c in sorting_claims.CLAIMS[:4]:
        k = c.id[1]
        assert c.experiments[0].startswith(f"b{k}_") and c.figures[0].startswith(f"figB{k}_"), c
    import prefixlab
    for c in coins_claims.CLAIMS + sorting_claims.CLAIMS:
        assert all(f in prefixlab.FIGURES for f in c.figures), c


def test_missing_experiment_is_a_fail_naming_the_file():
    data = inputs()
    del data["sorteval_b1_descending"]
    b1 = next(c for c in claims.check_all(PAPERS, data) if c.id == "B1")
    assert not b1.passed and "sorteval_b1_descending" in b1.details
    assert not any(c.id.startswith("B") for c in claims.check_all(PAPERS, {}))  # no Paper B inputs: no B claims


def test_paper_b_figures_need_their_experiment():
    import pytest

    from prefixlab.sorting import figures as sorting

    for fig in (sorting.figB1_descending, sorting.figB2_elicit, sorting.figB3_matrix, sorting.figB4_double_hist,
                sorting.figB5_theory):
        with pytest.raises(plotting.FigureInputError, match="sorteval"):
            fig({}, {})


def test_paper_b_input_keys_name_their_kind():

    assert plotting.kind_of("sorteval_b3_matrix") == "sort_eval"
    assert plotting.kind_of("sorttune_b4_double_hist_lora") == "sort_tune"
    assert plotting.split_key("sorteval_b3_matrix") == ("sorteval", "b3_matrix", "")


def test_accuracy_matrix_figure_draws_from_an_eval_file(tmp_path):
    from prefixlab.sorting import figures as sorting

    data = inputs()
    data["sorteval_b3_matrix"].attrs.update(layers=4, heads=4, d=256)
    fig = sorting.figB3_matrix(data, {})
    plotting.save(fig, tmp_path / "m.pdf", tmp_path / "m.png")
    assert (tmp_path / "m.png").stat().st_size > 1000
    fig = sorting.figB5_theory(data, {})
    plotting.save(fig, tmp_path / "t.pdf", tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 1000


def sort_tune_ds(tasks, curve):
    """A tuning run's file: one member per task, curve_accuracy (member, checkpoint)."""
    steps, checkpoints = 10, np.array([4, 8, 10])
    return xr.Dataset({"loss": (("member", "step"), np.ones((len(tasks), steps))),
                       "curve_accuracy": (("member", "checkpoint"), np.asarray(curve, dtype=float))},
                      coords={"member": [f"r:{t}:0" for t in tasks], "task": ("member", list(tasks)),
                              "step": np.arange(steps), "checkpoint": checkpoints}, attrs={"method": "lora"})


def test_budget_figure_draws_each_runs_curve_against_its_threshold(tmp_path):
    from prefixlab.sorting import figures as sorting

    data = {"sorttune_b4_double_hist_lora": sort_tune_ds(["double_hist"], [[0.05, 0.2, 0.35]]),
            "sorttune_b3_matrix_prefixnew": sort_tune_ds(["ascending_add1", "double_hist"],
                                                         [[0.1, 0.3, 0.6], [0.0, 0.01, 0.0]])}
    fig = sorting.figB6_budget(data, {"claims": {"success": 0.4, "failure": 0.05}})
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["B3: b3_matrix rank-1 LoRA", "B4: b4_double_hist rank-1 LoRA", "B4: b3_matrix rank-1 LoRA"]
    b3 = fig.axes[0]
    (line,) = b3.get_lines()[:1]
    np.testing.assert_allclose(line.get_xydata(), [[4, 10], [8, 30], [10, 60]])  # only ascending_add1, in %
    assert [l.get_ydata()[0] for l in b3.get_lines()[1:]] == [40.0]  # the threshold of the settings
    assert [l.get_ydata()[0] for l in fig.axes[2].get_lines()[1:]] == [5.0]
    plotting.save(fig, tmp_path / "b.pdf", tmp_path / "b.png")
    import pytest

    with pytest.raises(plotting.FigureInputError, match="sorttune"):
        sorting.figB6_budget({}, {})
