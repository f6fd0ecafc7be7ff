"""Figures, the SoftPT table and the claims report on small synthetic-but-valid data.

The eval files are built so that every claim's answer is known: each method has a
constant instantaneous regret, so its cumulative regret at step n is
value * (n + 1) / 50, i.e. exactly `value` at n = 49. The "good" data set passes
every claim; each perturbation moves one number across one margin.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr

from prefixlab import claims, storage
from prefixlab.coins import claims as coins_claims
from prefixlab import figures as cli, plotting
from prefixlab.coins.figures import budget, common, regret, search, states, style, table
from prefixlab.coins.methods import ALL_METHODS, DETERMINISTIC_METHODS, EVAL_DISTS, GRADIENT_METHODS, TUNING_METHODS

R, N_EVAL = 3, 200
DIMS = ("eval_dist", "method", "repetition", "step")

R2S = {"HardPT": 0.5, "SimplexPT": 0.6, "RealPT": 0.55, "SoftPT": 0.05, "FullWT": 0.02, "LoRAWT": 0.03,
       "EmbedWT": 0.3, "UnembedWT": 0.4, "Un+EmbedWT": 0.2, "TargetBayes": 0.0, "PreBayes": 1.0,
       "PreBayesPT": 0.6, "NoTuning": 3.0, "RandomPF": 2.0}
R2M = {**R2S, "HardPT": 1.3, "SimplexPT": 1.4, "RealPT": 1.5, "SoftPT": 1.0, "FullWT": 0.72, "LoRAWT": 0.75,
       "TargetBayes": 0.69}
UNTRAINED = {"HardPT": 3.0, "SimplexPT": 3.1, "RealPT": 3.2, "SoftPT": 0.9, "LoRAWT": 1.5, "EmbedWT": 2.0,
             "UnembedWT": 2.1, "Un+EmbedWT": 1.8, "TargetBayes": 0.69, "NoTuning": 4.0, "RandomPF": 4.0}
RANDOM_DIST = {"NoTuning": 1.0, "PreBayes": 1.0}  # A1: NoTuning matches PreBayes on Random Coins


def eval_ds(exp, arch, target, values, pretrained=True, dist_values=None, drop=()):
    methods = [m for m in ALL_METHODS if m in values and m not in drop
               and not (arch == "lstm" and m == "LoRAWT")
               and not (not pretrained and m in ("PreBayes", "PreBayesPT", "FullWT"))]
    regret_ = np.full((len(EVAL_DISTS), len(methods), R, N_EVAL), np.nan)
    for d, dist in enumerate(EVAL_DISTS):
        vals = {**values, **((dist_values or {}).get(dist, {}))}
        for i, m in enumerate(methods):
            per_step = vals[m] / 50.0
            if m in DETERMINISTIC_METHODS:
                regret_[d, i, 0] = per_step
            else:
                for r in range(R):
                    regret_[d, i, r] = per_step * (0.98 + 0.02 * r)  # median = per_step exactly
    oracle = np.full((len(EVAL_DISTS), N_EVAL), 0.6)
    loss = regret_ + oracle[:, None, None, :]
    ds = xr.Dataset(
        {"log_loss": storage.var(loss, DIMS, "nats", "log loss"),
         "regret": storage.var(regret_, DIMS, "nats", "instantaneous regret"),
         "cum_regret": storage.var(np.cumsum(regret_, axis=-1), DIMS, "nats", "cumulative regret"),
         "oracle_log_loss": storage.var(oracle, ("eval_dist", "step"), "nats", "oracle log loss")},
        coords={"eval_dist": list(EVAL_DISTS), "method": methods, "repetition": np.arange(R), "step": np.arange(N_EVAL),
                "deterministic": ("method", np.array([m in DETERMINISTIC_METHODS for m in methods]))})
    ds.attrs.update(experiment=exp, arch=arch, target=target)
    return ds


def states_ds(exp, arch, soft_offset=8.0, seed=0):
    """Feature 0 grows with the position, feature 1 with (theta - 1/2) x position: the
    two principal components are 'step n' and 'bias'. SoftPT's states are shifted."""
    rng = np.random.default_rng(seed)
    Tp, Tt, K, F = 30, 6, 20, 5
    methods = ["NoTuning", "RandomPF", "HardPT", "SimplexPT", "RealPT", "SoftPT"]

    def traj(theta, n_traj):
        pos = np.arange(K)[None, :]
        x = np.zeros((n_traj, K, F))
        x[..., 0] = 2.0 * pos
        x[..., 1] = (theta[:, None] - 0.5) * pos * 3.0
        x[..., 2:] = 0.1 * rng.standard_normal((n_traj, K, F - 2))
        return x

    pre_theta = rng.uniform(0, 1, Tp)
    pre = traj(pre_theta, Tp)
    tgt_theta = np.full(Tt, 0.8)
    tgt = np.stack([traj(tgt_theta, Tt) for _ in methods])
    if soft_offset is None:  # SoftPT exactly on pretraining states
        tgt[methods.index("SoftPT")] = pre[:Tt]
    else:
        tgt[methods.index("SoftPT"), :, :, 1] += soft_offset * 10
    ds = xr.Dataset(
        {"pretrain_states": storage.var(pre, ("pretrain_trajectory", "position", "feature"), "1", "s"),
         "pretrain_theta": storage.var(pre_theta, ("pretrain_trajectory",), "1", "theta"),
         "target_states": storage.var(tgt, ("method", "trajectory", "position", "feature"), "1", "s"),
         "target_theta": storage.var(np.tile(tgt_theta, (len(methods), 1)), ("method", "trajectory"), "1", "theta"),
         "marker": storage.var(np.array([0] + [3] * 5), ("method",), "1", "marker")},
        coords={"method": methods, "position": np.arange(K)})
    ds.attrs.update(experiment=exp, arch=arch, state="attention" if arch == "transformer" else "cell")
    return ds


def tune_ds(arch, pretrained=True, steps=30):
    methods = [m for m in GRADIENT_METHODS if not (arch == "lstm" and m == "LoRAWT") and (pretrained or m != "FullWT")]
    members = [(m, r) for m in methods for r in range(R)]
    rng = np.random.default_rng(1)
    loss = 30 * np.exp(-np.arange(steps) / 10)[None] + 10 + rng.random((len(members), steps))
    ds = xr.Dataset(
        {"tune_loss": storage.var(loss, ("member", "step"), "nats", "loss"),
         "grad_norm": storage.var(np.ones_like(loss), ("member", "step"), "1", "norm"),
         "target_bayes_loss": storage.var(np.full((R, steps), 10.0), ("repetition", "step"), "nats", "Bayes loss"),
         "prefix_token": storage.var(np.zeros((len(members), 2, 2)), ("member", "slot", "token"), "1", "p"),
         "prefix_soft": storage.var(np.zeros((len(members), 2, 4)), ("member", "slot", "feature"), "1", "p"),
         "initial_prefix_token": storage.var(np.zeros((R, 2, 2)), ("repetition", "slot", "token"), "1", "p"),
         "hard_prefix": storage.var(np.zeros((2, 2)), ("slot", "token"), "1", "p"),
         "prebayes_prefix_counts": storage.var(np.zeros(2), ("token",), "1", "c")},
        coords={"member": np.arange(len(members)), "member_method": ("member", np.array([m for m, _ in members], dtype=object)),
                "member_repetition": ("member", np.array([r for _, r in members])), "step": np.arange(steps)})
    return ds


def search_ds(L=3, empty=False):
    n = 0 if empty else 2 ** L
    cands = np.array([[(i >> k) & 1 for k in range(L)] for i in range(n)], dtype=np.int64).reshape(n, L)
    return xr.Dataset({"search_loss": storage.var(np.linspace(12, 10, n), ("candidate",), "nats", "loss"),
                       "candidate_prefix": storage.var(cands, ("candidate", "slot"), "1", "prefix")})


def pretrain_ds(steps=40):
    return xr.Dataset({"loss": storage.var(40 - np.arange(steps) * 0.2, ("step",), "nats", "loss"),
                       "grad_norm": storage.var(np.linspace(5, 1, steps), ("step",), "1", "norm"),
                       "bayes_loss": storage.var(np.full(steps, 30.0), ("step",), "nats", "Bayes loss")},
                      coords={"step": np.arange(steps)})


def good_datasets() -> dict[str, tuple[xr.Dataset, str]]:
    """key -> (dataset, storage kind): every input of every figure and claim."""
    out = {}
    for arch in ("lstm", "transformer"):
        for suffix in ("", "_d4", "_maxi", "_L25"):
            r2s, r2m = dict(R2S), dict(R2M)
            if suffix == "_d4":
                r2s["SoftPT"], r2m["SoftPT"] = 0.4, 1.25  # SoftPT's lead shrinks
            drop = ("HardPT",) if suffix == "_L25" else ()
            out[f"eval_r2s{suffix}_{arch}"] = (eval_ds(f"r2s{suffix}", arch, "single", r2s, drop=drop,
                                                       dist_values={"random": RANDOM_DIST}), "eval")
            out[f"eval_r2m{suffix}_{arch}"] = (eval_ds(f"r2m{suffix}", arch, "mixture", r2m, drop=drop,
                                                       dist_values={"random": RANDOM_DIST}), "eval")
            out[f"search_r2s{suffix}_{arch}"] = (search_ds(empty=suffix == "_L25"), "hard_search")
        for exp, target in (("u2m", "mixture"), ("u2r", "random")):
            out[f"eval_{exp}_{arch}"] = (eval_ds(exp, arch, target, UNTRAINED, pretrained=False), "eval")
            out[f"tune_{exp}_{arch}"] = (tune_ds(arch, pretrained=False), "tune")
        for exp in ("r2s", "r2m"):
            out[f"states_{exp}_{arch}"] = (states_ds(exp, arch), "states")
            out[f"tune_{exp}_{arch}"] = (tune_ds(arch), "tune")
        out[f"pretrain_{arch}_base"] = (pretrain_ds(), "pretrain")
    return out


def write_all(tmp, datasets) -> dict[str, str]:
    paths = {}
    for key, (ds, kind) in datasets.items():
        p = tmp / f"{key}.nc"
        storage.write(ds, p, kind, {}, {})
        paths[key] = str(p)
    return paths


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("figdata")
    return write_all(tmp, good_datasets())


def inputs(paths, *prefixes):
    flags = []
    for key, p in paths.items():
        if key.startswith(prefixes):
            flags += ["--input", f"{key}={p}"]
    return flags


FIGURE_INPUTS = {
    "fig1_r2s_headline": ("eval_r2s_lstm", "eval_r2s_transformer"),
    "fig2_states_r2s": ("states_r2s_transformer",),
    "fig3_r2m_headline": ("eval_r2m_lstm", "eval_r2m_transformer"),
    "fig4_untrained": ("eval_u2m_transformer", "eval_u2r_transformer"),
    "fig5_full": ("eval_u2m_lstm",),
    "fig6_states_r2m": ("states_r2m_",),
    "fig7_hard_search": ("search_",),
    "fig8_losses": ("tune_u2m_", "tune_r2s_transformer", "pretrain_"),
    "fig10_budget": ("tune_", "pretrain_"),
    "fig9_ablations": ("eval_r2s",),  # rows base/d4/maxi/L25 x LSTM, Transformer; r2m is left out for speed
    "table_softpt": ("eval_r2",),
}


@pytest.mark.parametrize("name", sorted(FIGURE_INPUTS))
def test_figure_writes_pdf_and_png(good, tmp_path, name):
    pdf, png, md = tmp_path / "f.pdf", tmp_path / "f.png", tmp_path / "f.md"
    argv = [name, *inputs(good, *FIGURE_INPUTS[name]), "--settings", '{"dpi": 40, "bar_steps": [49, 99, 199]}',
            "--out-pdf", str(pdf), "--out-png", str(png)]
    if name == "table_softpt":
        argv += ["--out-md", str(md)]
    assert cli.main(argv) == 0
    assert pdf.stat().st_size > 1000 and pdf.read_bytes().startswith(b"%PDF")
    assert png.stat().st_size > 1000 and png.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["f.pdf", "f.png"] + (["f.md"] if name == "table_softpt" else []))


def test_budget_curves_are_batch_regrets_against_the_claims_thresholds(good):
    assert budget.smooth(np.array([1.0, 2.0, 3.0, 4.0]), 2).tolist() == [1.0, 1.5, 2.5, 3.5]
    data = plotting.load_inputs({k: v for k, v in good.items() if k.startswith(("tune_", "pretrain_"))})
    ds = data["tune_r2s_transformer"]
    soft = ds["member_method"].values == "SoftPT"
    want = np.median(budget.smooth(ds["tune_loss"].values[soft] - 10.0, budget.window_of(ds.sizes["step"])), axis=0)
    np.testing.assert_allclose(budget.median_curve(ds, "SoftPT"), want)
    fig = budget.fig10_budget(data, {"claims": {"margin": 0.3, "a1_margin": 0.7, "a4_margin": 0.9}})
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles[:2] == ["A1: pretraining LSTM (Random Coins)", "A1: pretraining Transformer (Random Coins)"]
    assert "A4: u2m · Transformer" in titles and "A4: u2m · LSTM" not in titles
    thresholds = {ax.get_title(): sorted({l.get_ydata()[0] for l in ax.get_lines() if l.get_linestyle() == ":"})
                  for ax in fig.axes if ax.get_visible()}
    assert thresholds["A1: pretraining LSTM (Random Coins)"] == [0.7]
    assert thresholds["A2: r2s · LSTM"] == [0.3] and thresholds["A4: u2r · Transformer"] == [0.9]


def test_table_markdown_has_ours_beside_paper(good):
    data = plotting.load_inputs({k: v for k, v in good.items() if k.startswith("eval_r2")})
    text = table.table_softpt_markdown(data, {})
    row = next(line for line in text.splitlines() if line.startswith("| Transformer, d = 4 |"))
    # ours: SoftPT 0.40 on r2s_d4, 1.25 on r2m_d4; the paper: 0.65 and 1.92
    assert row.split("|")[2:6] == [" 0.40 [0.40, 0.40] ", " 0.65 ", " 1.25 [1.24, 1.26] ", " 1.92 "]
    assert "| TargetBayes (optimal) | 0.00 | 0.00 | 0.69 | 0.69 |" in text


def test_hard_search_disabled_is_said(good):
    data = plotting.load_inputs({k: v for k, v in good.items() if k.startswith("search_r2s_L25")})
    fig = search.fig7_hard_search(data, {})
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("search disabled" in t for t in texts)


def test_style_one_colour_per_method():
    colours = [style.color(m) for m in ALL_METHODS]
    assert len(set(colours)) == len(ALL_METHODS)
    assert style.ordered(reversed(ALL_METHODS)) == list(ALL_METHODS)
    assert [style.group_of(m) for m in TUNING_METHODS[:4]] == [0] * 4
    assert style.label("TargetBayes", "random", "single") == "EvalBayes"
    assert style.label("TargetBayes", "single", "single") == "TargetBayes"


def test_bars_label_off_target_bayes_as_evalbayes(good):
    import matplotlib.pyplot as plt
    data = plotting.load_inputs({"eval_r2s_lstm": good["eval_r2s_lstm"]})
    fig, (a, b) = plt.subplots(1, 2)
    regret.bars_panel(a, data["eval_r2s_lstm"], "single", [49])
    regret.bars_panel(b, data["eval_r2s_lstm"], "random", [49])
    assert "TargetBayes" in [t.get_text() for t in a.get_xticklabels()]
    assert "EvalBayes" in [t.get_text() for t in b.get_xticklabels()]
    plt.close(fig)


@pytest.mark.parametrize("shape", [(1, 7), (2, 200), (3, 200), (10, 33), (5,)])
def test_summary_gives_nanquantiles_numbers_with_and_without_nans(shape):
    rng = np.random.default_rng(sum(shape))
    values = rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 3, shape)
    values[..., 0] = values.flat[0]  # ties
    expect = np.nanquantile(values, [0.5, 0.25, 0.75], axis=0)
    assert all(np.array_equal(a, b) for a, b in zip(common.summary(values), expect))
    if values.ndim == 2 and shape[0] > 1:
        values[0, 1] = np.nan
        with np.errstate(all="ignore"):
            expect = np.nanquantile(values, [0.5, 0.25, 0.75], axis=0)
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(common.summary(values), expect))


def test_whitened_pca_recovers_known_directions():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 6)) * np.array([5.0, 2.0, 0.1, 0.1, 0.1, 0.1])
    pca = states.fit_pca(x)
    z = pca.project(x)
    np.testing.assert_allclose(z.std(axis=0, ddof=1), [1, 1], rtol=1e-6)
    np.testing.assert_allclose(np.abs(pca.components[:, :2]), np.eye(2), atol=0.02)
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 1e-6


# ----------------------------------------------------------------------------- claims

LINE = re.compile(r"^(A[1-6]) (PASS|FAIL) (\S.*)$")


def run_claims(paths: dict[str, str], tmp, settings='{"margin": 0.1, "scale": "test"}'):
    md, nc = tmp / "claims.md", tmp / "claims.nc"
    rc = cli.main(["claims", *[a for k, p in paths.items() for a in ("--input", f"{k}={p}")], "--settings", settings,
                   "--out-md", str(md), "--out-nc", str(nc)])
    return rc, md, nc


def verdicts(md) -> dict[str, str]:
    lines = [m for m in (LINE.match(line) for line in md.read_text().splitlines()) if m]
    assert [m.group(1) for m in lines] == [f"A{i}" for i in range(1, 7)]  # one line per claim, in order
    return {m.group(1): m.group(2) for m in lines}


def test_claims_all_pass_on_good_data(good, tmp_path):
    rc, md, nc = run_claims({k: v for k, v in good.items() if k.startswith(("eval_", "states_"))}, tmp_path)
    assert rc == 0
    assert verdicts(md) == {f"A{i}": "PASS" for i in range(1, 7)}
    ds = storage.read(nc, "claims")
    assert list(ds["claim"].values) == [f"A{i}" for i in range(1, 7)]
    assert ds["passed"].values.tolist() == [1] * 6
    assert ds["reference"].sel(claim="A2").item() == pytest.approx(0.1)
    assert "SoftPT" in str(ds["description"].sel(claim="A2").item())
    # the numbers are in the line: SoftPT - TargetBayes = 0.05 on r2s
    a2 = next(line for line in md.read_text().splitlines() if line.startswith("A2 "))
    assert "SoftPT-TargetBayes 0.050" in a2


def test_each_claim_names_its_scale_deciding_number_and_published_value(good, tmp_path):
    rc, md, nc = run_claims({k: v for k, v in good.items() if k.startswith(("eval_", "states_"))}, tmp_path)
    assert rc == 0
    ds = storage.read(nc, "claims")
    assert list(ds["scale"].values) == ["test"] * 6
    # the published value of A2's number is the paper's SoftPT on r2s (0.01 above TargetBayes at 0.00)
    assert ds["published"].sel(claim="A2").item() == pytest.approx(0.01)
    assert np.isnan(ds["published"].sel(claim="A4").item())  # "nearly reaches": no number published
    text = md.read_text()
    a2 = next(line for line in text.splitlines() if line.startswith("A2 "))
    assert a2.startswith("A2 PASS [scale test] max over networks of SoftPT - TargetBayes")
    assert "= 0.050 (pass: < 0.100; published 0.010)" in a2
    # the summary table: one row per claim with the same numbers
    assert "| A2 | PASS | test | 0.050 | < 0.100 | 0.010 |" in text
    assert "| A4 | PASS | test |" in text and text.count("\n| A") == 6


def _perturbed(key_values):
    """The good data set with some eval files rebuilt from changed numbers."""
    ds = good_datasets()
    for key, change in key_values.items():
        ds[key] = (change(), ds[key][1])
    return ds


def _evals(exp, arch, target, base, **changes):
    vals = {**base, **changes}
    return lambda: eval_ds(exp, arch, target, vals, dist_values={"random": RANDOM_DIST})


FLIPS = {
    # A1: NoTuning 0.3 nats above PreBayes at n = 99 on Random Coins (> a1_margin 0.2)
    "A1": {"eval_r2s_lstm": lambda: eval_ds("r2s", "lstm", "single", R2S,
                                            dist_values={"random": {"NoTuning": 1.15, "PreBayes": 1.0}})},
    # A2: SoftPT - TargetBayes crosses the 0.1 margin (0.05 -> 0.15; HardPT still worse)
    "A2": {"eval_r2s_transformer": _evals("r2s", "transformer", "single", R2S, SoftPT=0.15)},
    # A3: FullWT no longer within 0.1 of TargetBayes (0.72 -> 0.80)
    "A3": {"eval_r2m_lstm": _evals("r2m", "lstm", "mixture", R2M, FullWT=0.80)},
    # A4: another prefix method beats SoftPT on the untrained Transformer
    "A4": {"eval_u2r_transformer": lambda: eval_ds("u2r", "transformer", "random", {**UNTRAINED, "RealPT": 0.85},
                                                   pretrained=False)},
    # A5: d = 4 no longer shrinks SoftPT's lead (0.4 -> 0.0 on r2s_d4 LSTM)
    "A5": {"eval_r2s_d4_lstm": _evals("r2s_d4", "lstm", "single", R2S, SoftPT=0.0)},
}


@pytest.mark.parametrize("claim", sorted(FLIPS))
def test_claim_flips_when_a_number_crosses_its_margin(tmp_path, claim):
    paths = write_all(tmp_path, {k: v for k, v in _perturbed(FLIPS[claim]).items() if k.startswith(("eval_", "states_"))})
    rc, md, _ = run_claims(paths, tmp_path)
    assert rc == 0
    got = verdicts(md)
    assert got[claim] == "FAIL"
    assert all(v == "PASS" for k, v in got.items() if k != claim), got


def test_a2_margin_is_read_from_settings(tmp_path):
    ds = _perturbed(FLIPS["A2"])
    paths = write_all(tmp_path, {k: ds[k] for k in ("eval_r2s_lstm", "eval_r2s_transformer")})
    assert verdicts(run_claims(paths, tmp_path)[1])["A2"] == "FAIL"
    assert verdicts(run_claims(paths, tmp_path, '{"margin": 0.2}')[1])["A2"] == "PASS"


def test_a6_flips_when_soft_prefix_stays_on_the_manifold(tmp_path):
    ds = good_datasets()
    data = {k: ds[k] for k in ("states_r2s_transformer", "states_r2m_transformer")}
    assert [c.passed for c in claims.check_all([coins_claims], {k: v for k, (v, _) in data.items()}) if c.id == "A6"] == [True]
    data["states_r2m_transformer"] = (states_ds("r2m", "transformer", soft_offset=None), "states")
    a6 = next(c for c in claims.check_all([coins_claims], {k: v for k, (v, _) in data.items()}) if c.id == "A6")
    assert not a6.passed and "SoftPT" in a6.details


def test_missing_experiment_is_a_fail_not_a_crash(good, tmp_path):
    paths = {k: v for k, v in good.items() if k.startswith("eval_r2s_") and k.count("_") == 2}
    rc, md, nc = run_claims(paths, tmp_path)
    assert rc == 0
    got = verdicts(md)
    assert got["A2"] == "PASS" and got["A1"] == "PASS"
    for cid in ("A3", "A4", "A5", "A6"):
        line = next(line for line in md.read_text().splitlines() if line.startswith(cid + " "))
        assert line.startswith(f"{cid} FAIL [scale test] ") and ". missing data: " in line
    assert storage.read(nc, "claims")["passed"].values.tolist() == [1, 1, 0, 0, 0, 0]


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("problem", ["missing", "foreign", "corrupt", "bad_key"])
@pytest.mark.parametrize("name", ["fig1_r2s_headline", "claims"])
def test_bad_input_exits_nonzero_and_writes_nothing(good, tmp_path, problem, name, capsys):
    out = tmp_path / "out"
    path = {"missing": str(tmp_path / "nope.nc"), "foreign": good["pretrain_lstm_base"],
            "corrupt": str(tmp_path / "bad.nc"), "bad_key": good["eval_r2s_lstm"]}[problem]
    (tmp_path / "bad.nc").write_bytes(b"CDF\x01 truncated garbage")
    key = "evaluation_r2s_lstm" if problem == "bad_key" else "eval_r2s_lstm"
    argv = [name, "--input", f"eval_r2s_transformer={good['eval_r2s_transformer']}", "--input", f"{key}={path}"]
    if name == "claims":
        argv += ["--out-md", str(out / "c.md"), "--out-nc", str(out / "c.nc")]
    else:
        argv += ["--out-pdf", str(out / "f.pdf"), "--out-png", str(out / "f.png")]
    assert cli.main(argv) == 2
    assert not out.exists() or not any(out.iterdir())
    err = capsys.readouterr().err
    assert {"missing": "does not exist", "foreign": "expected a prefixlab 'eval' file", "corrupt": "not a readable NetCDF",
            "bad_key": "input key"}[problem] in err
