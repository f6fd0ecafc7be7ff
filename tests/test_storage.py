"""NetCDF storage (storage.py, SPEC 3) and an end-to-end tiny CLI run."""

from __future__ import annotations

import json
import re
from importlib import metadata

import numpy as np
import pytest
import torch
import xarray as xr

from prefixlab import cli, storage
from prefixlab.coins import bayes, data
from prefixlab.coins.configs import SourceConfig
from prefixlab.storage import DataError, var

from conftest import reference_forward, tiny_net

CONFIG = {"tune": {"steps": 3, "lr": 0.005, "methods": ["SoftPT", "FullWT"]}, "network": {"arch": "lstm", "d": 8}}
SEEDS = {"data_seeds": [11, 12], "prefix_seed": 100}


def tune_dataset() -> xr.Dataset:
    rng = np.random.default_rng(0)
    M, S, Lp, V, D, R = 4, 5, 2, 2, 3, 2
    hard = np.full((Lp, V), np.nan)
    return xr.Dataset(
        {
            "tune_loss": var(rng.normal(size=(M, S)).astype(np.float32), ("member", "step"), "nats", "training loss", note="x"),
            "grad_norm": var(rng.random((M, S)).astype(np.float32), ("member", "step"), "1", "gradient norm"),
            "target_bayes_loss": var(rng.random((R, S)), ("repetition", "step"), "nats", "Bayes loss"),
            "prefix_token": var(torch.randn(M, Lp, V), ("member", "slot", "token"), "1", "token prefix"),
            "prefix_soft": var(torch.randn(M, Lp, D), ("member", "slot", "feature"), "1", "soft prefix"),
            "initial_prefix_token": var(np.eye(V)[rng.integers(V, size=(R, Lp))], ("repetition", "slot", "token"), "1", "initial"),
            "hard_prefix": var(hard, ("slot", "token"), "1", "hard prefix"),
            "prebayes_prefix_counts": var(np.array([2.0, 0.0]), ("token",), "1", "counts"),
            "extra_int": var(np.arange(S, dtype=np.int64), ("step",), "1", "an integer variable"),
        },
        coords={"member": np.arange(M), "member_method": ("member", np.array(["SoftPT", "SoftPT", "FullWT", "FullWT"], dtype=object)),
                "member_repetition": ("member", np.array([0, 1, 0, 1])), "step": np.arange(S), "repetition": np.arange(R)},
        attrs={"experiment": "r2s"},
    )


def test_round_trip_keeps_values_dims_and_attrs(tmp_path):
    ds = tune_dataset()
    path = storage.write(ds, tmp_path / "sub" / "t.nc", "tune", CONFIG, SEEDS)
    assert path == tmp_path / "sub" / "t.nc" and path.exists()
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["t.nc"]  # no temporary left behind
    back = storage.read(path, "tune")
    for name, v in ds.variables.items():
        assert back[name].dims == v.dims, name
        assert back[name].dtype == v.dtype or (v.dtype == object and back[name].dtype.kind in "OU"), name
        np.testing.assert_array_equal(back[name].values, v.values, err_msg=name)  # NaN == NaN here
    for name, v in ds.data_vars.items():
        for key, val in v.attrs.items():
            assert back[name].attrs[key] == val, (name, key)
        assert {"units", "long_name"} <= set(back[name].attrs)
    a = back.attrs
    assert a["prefixlab_kind"] == "tune" and a["experiment"] == "r2s"
    assert json.loads(a["config"]) == CONFIG and json.loads(a["seeds"]) == SEEDS
    versions = json.loads(a["package_versions"])
    assert versions["torch"] == metadata.version("torch") and versions["numpy"] == np.__version__
    assert versions["xarray"] == xr.__version__ and versions["prefixlab"] == metadata.version("prefixlab")
    assert isinstance(a["code_revision"], str) and (re.fullmatch(r"[0-9a-f]{40}", a["code_revision"]) or a["code_revision"] == "unknown")
    # the caller's dataset is not modified by stamping
    assert "config" not in ds.attrs and "prefixlab_kind" not in ds.attrs


def test_writing_twice_gives_identical_bytes(tmp_path):
    ds = tune_dataset()
    a = storage.write(ds, tmp_path / "a.nc", "tune", CONFIG, SEEDS).read_bytes()
    b = storage.write(ds, tmp_path / "b.nc", "tune", CONFIG, SEEDS).read_bytes()
    again = storage.write(ds, tmp_path / "a.nc", "tune", CONFIG, SEEDS).read_bytes()
    assert a == b == again
    # non-vacuity: a different config gives different bytes
    other = storage.write(ds, tmp_path / "c.nc", "tune", {**CONFIG, "x": 1}, SEEDS).read_bytes()
    assert other != a


def raw_write(ds: xr.Dataset, path, kind):
    ds = ds.copy()
    ds.attrs["prefixlab_kind"] = kind
    ds.to_netcdf(path, engine="netcdf4")
    return path


def test_read_missing_variable(tmp_path):
    path = raw_write(tune_dataset().drop_vars("prefix_soft"), tmp_path / "m.nc", "tune")
    with pytest.raises(DataError) as err:
        storage.read(path, "tune")
    assert str(path) in str(err.value) and "missing variable 'prefix_soft'" in str(err.value)


def test_read_wrong_dims(tmp_path):
    ds = tune_dataset()
    ds["hard_prefix"] = ds["hard_prefix"].rename({"slot": "position"})
    path = raw_write(ds, tmp_path / "w.nc", "tune")
    with pytest.raises(DataError) as err:
        storage.read(path, "tune")
    msg = str(err.value)
    assert str(path) in msg and "'hard_prefix'" in msg and "('position', 'token')" in msg and "('slot', 'token')" in msg


def test_read_other_kind(tmp_path):
    ds = xr.Dataset({"loss": var(np.zeros(3), ("step",), "nats", "l"), "grad_norm": var(np.ones(3), ("step",), "1", "g"),
                     "bayes_loss": var(np.zeros(3), ("step",), "nats", "b")})
    path = storage.write(ds, tmp_path / "p.nc", "pretrain", CONFIG, SEEDS)
    assert storage.read(path, "pretrain")["loss"].shape == (3,)
    with pytest.raises(DataError) as err:
        storage.read(path, "tune")
    assert str(path) in str(err.value) and "expected a prefixlab 'tune' file" in str(err.value) and "'pretrain'" in str(err.value)
    # a NetCDF file written by someone else (no prefixlab_kind at all)
    foreign = tmp_path / "foreign.nc"
    ds.to_netcdf(foreign, engine="netcdf4")
    with pytest.raises(DataError, match=r"prefixlab_kind=None") as err:
        storage.read(foreign, "pretrain")
    assert str(foreign) in str(err.value)


def test_read_truncated_file(tmp_path):
    path = storage.write(tune_dataset(), tmp_path / "t.nc", "tune", CONFIG, SEEDS)
    raw = path.read_bytes()
    for cut in (len(raw) // 2, len(raw) - 200, 100):
        path.write_bytes(raw[:cut])
        with pytest.raises(DataError) as err:
            storage.read(path, "tune")
        assert str(path) in str(err.value) and "not a readable NetCDF file" in str(err.value), cut


def test_read_non_netcdf_and_missing_files(tmp_path):
    junk = tmp_path / "junk.nc"
    junk.write_text("this is not a NetCDF file\n" * 20)
    with pytest.raises(DataError) as err:
        storage.read(junk, "eval")
    assert str(junk) in str(err.value) and "not a readable NetCDF file" in str(err.value)
    empty = tmp_path / "empty.nc"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="not a readable NetCDF file"):
        storage.read(empty, "eval")
    with pytest.raises(DataError, match="does not exist") as err:
        storage.read(tmp_path / "nope.nc", "eval")
    assert "nope.nc" in str(err.value)


def test_write_rejects_schema_and_attribute_violations(tmp_path):
    ds = tune_dataset()
    with pytest.raises(DataError, match="missing variable 'grad_norm'"):
        storage.write(ds.drop_vars("grad_norm"), tmp_path / "a.nc", "tune", CONFIG, SEEDS)
    bad = ds.copy()
    bad["tune_loss"].attrs.pop("units")
    with pytest.raises(DataError, match="'tune_loss' lacks units/long_name"):
        storage.write(bad, tmp_path / "b.nc", "tune", CONFIG, SEEDS)
    assert list(tmp_path.iterdir()) == []


def test_staging_publishes_all_or_nothing(tmp_path):
    ds = xr.Dataset({"loss": var(np.zeros(3), ("step",), "nats", "l"), "grad_norm": var(np.ones(3), ("step",), "1", "g"),
                     "bayes_loss": var(np.zeros(3), ("step",), "nats", "b")})
    with pytest.raises(RuntimeError):
        with storage.Staging() as out:
            out.write(ds, tmp_path / "a.nc", "pretrain", CONFIG, SEEDS)
            out.save_torch({"w": torch.ones(2)}, tmp_path / "a.pt")
            raise RuntimeError("killed midway")
    assert list(tmp_path.iterdir()) == []
    with storage.Staging() as out:
        out.write(ds, tmp_path / "a.nc", "pretrain", CONFIG, SEEDS)
        out.save_torch({"w": torch.ones(2)}, tmp_path / "a.pt")
        assert not (tmp_path / "a.nc").exists()  # nothing is published before the end
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nc", "a.pt"]
    assert torch.equal(storage.load_torch(tmp_path / "a.pt")["w"], torch.ones(2))
    (tmp_path / "b.pt").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable weights file"):
        storage.load_torch(tmp_path / "b.pt")


# ---------------------------------------------------------------------------
# End to end: pretrain -> tune -> evaluate -> states through prefixlab.cli.main
# ---------------------------------------------------------------------------

SOURCES = {"single": {"kind": "single", "biases": [[0.2, 0.8]]},
           "mixture": {"kind": "mixture", "biases": [[0.2, 0.8], [0.8, 0.2]], "weights": [0.5, 0.5]},
           "random": {"kind": "random", "alphas": [1.0, 1.0]}}
EVALUATE = {"sequences": 6, "length": 9, "seed": 0, "chunk": 6, "state_pretrain_sequences": 3,
            "state_target_per_repetition": 1, "state_positions": 5, "state_seed": 3}


def job_configs(arch):
    net = {"arch": arch, "d": 8, "width": 8, "layers": 1, "heads": 2, "lora_rank": 2, "init_seed": 0, "vocab": 2}
    methods = ["HardPT", "SimplexPT", "RealPT", "SoftPT", "FullWT", "LoRAWT", "EmbedWT", "UnembedWT", "Un+EmbedWT"]
    pre = {"network": net, "source": SOURCES["random"],
           "pretrain": {"steps": 4, "batch": 4, "length": 8, "lr": 1e-3, "clip": 1.0, "data_seed": 0, "log_every": 2}}
    tune = {"experiment": "r2m", "network": net, "pretrained": True, "pretrain_source": SOURCES["random"], "target": "mixture",
            "target_source": SOURCES["mixture"],
            "tune": {"steps": 3, "batch": 4, "length": 6, "lr": 5e-3, "clip": 1.0, "prefix_length": 2, "repetitions": 2,
                     "methods": methods, "data_seeds_start": 11, "prefix_seed": 100, "search_sequences": 8, "search_seed": 7,
                     "hard_search": True, "clip_norm_over": "all", "log_every": 1}}
    ev = {**tune, "sources": SOURCES, "evaluate": EVALUATE}
    return pre, tune, ev


def run_pipeline(out, arch):
    pre, tune, ev = job_configs(arch)
    out.mkdir(parents=True)
    (out / "tune.json").write_text(json.dumps(tune))  # a config file as well as JSON strings
    common = ["--device", "cpu"]
    assert cli.main(["pretrain", "--config", json.dumps(pre), *common, "--out-weights", str(out / "pre.pt"),
                     "--out-nc", str(out / "pre.nc")]) == 0
    assert cli.main(["tune", "--config", str(out / "tune.json"), *common, "--weights", str(out / "pre.pt"),
                     "--out-nc", str(out / "tune.nc"), "--out-search", str(out / "search.nc"),
                     "--out-weights", str(out / "tune.pt")]) == 0
    for cmd in ("evaluate", "states"):
        assert cli.main([cmd, "--config", json.dumps(ev), *common, "--weights", str(out / "pre.pt"),
                         "--tune-nc", str(out / "tune.nc"), "--tune-weights", str(out / "tune.pt"),
                         "--out-nc", str(out / f"{cmd}.nc")]) == 0
    return {"pretrain": out / "pre.nc", "tune": out / "tune.nc", "hard_search": out / "search.nc",
            "eval": out / "evaluate.nc", "states": out / "states.nc"}


def same_objects(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            same_objects(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same_objects(x, y)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_cli_end_to_end_is_valid_and_reproducible(tmp_path, arch, restore_global_state):
    first = run_pipeline(tmp_path / "one", arch)
    second = run_pipeline(tmp_path / "two", arch)
    pre_cfg, tune_cfg, ev_cfg = job_configs(arch)
    ds = {kind: storage.read(path, kind) for kind, path in first.items()}
    # --- reproducible: identical NetCDF contents and bytes, identical weights ---
    for kind, path in first.items():
        other = storage.read(second[kind], kind)
        xr.testing.assert_identical(ds[kind], other)
        assert path.read_bytes() == second[kind].read_bytes(), f"{kind}: bytes differ between identical runs"
    for name in ("pre.pt", "tune.pt"):
        same_objects(storage.load_torch(tmp_path / "one" / name), storage.load_torch(tmp_path / "two" / name))
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    # --- provenance: each file carries its own job config ---
    assert json.loads(ds["pretrain"].attrs["config"]) == pre_cfg
    assert json.loads(ds["tune"].attrs["config"]) == tune_cfg
    assert json.loads(ds["eval"].attrs["config"]) == ev_cfg
    assert json.loads(ds["tune"].attrs["seeds"])["data_seeds"] == [11, 12]
    # --- pretrain ---
    p = ds["pretrain"]
    assert p["loss"].shape == (4,) and np.isfinite(p["loss"]).all() and (p["grad_norm"] > 0).all()
    # --- tune ---
    t = ds["tune"]
    methods = [m for m in tune_cfg["tune"]["methods"] if m != "HardPT" and not (m == "LoRAWT" and arch == "lstm")]
    assert list(t["member_method"].values) == [m for m in methods for _ in range(2)]
    assert t["tune_loss"].shape == (len(methods) * 2, 3) and np.isfinite(t["tune_loss"]).all()
    assert not np.isnan(t["hard_prefix"]).any() and t["hard_prefix"].sum() == 2  # one-hot, two slots
    counts = t["prebayes_prefix_counts"].values
    assert counts.sum() == 2 and (counts >= 0).all()
    h = ds["hard_search"]
    assert h["search_loss"].shape == (4,) and h["candidate_prefix"].shape == (4, 2)
    best = h["candidate_prefix"].values[int(np.argmin(h["search_loss"].values))]
    np.testing.assert_array_equal(t["hard_prefix"].values, np.eye(2)[best])
    # --- evaluate ---
    e = ds["eval"]
    expected = set(methods) | {"HardPT", "TargetBayes", "PreBayes", "PreBayesPT", "NoTuning", "RandomPF"}
    assert set(e["method"].values.tolist()) == expected
    assert list(e["eval_dist"].values) == ["single", "mixture", "random"]
    assert e["regret"].shape == (3, len(expected), 2, 9)
    np.testing.assert_allclose(e["cum_regret"], np.cumsum(e["regret"].values, -1))
    np.testing.assert_allclose(e["regret"], e["log_loss"] - e["oracle_log_loss"])
    det = e["deterministic"].values
    assert np.isfinite(e["log_loss"].values[:, ~det]).all()
    assert np.isfinite(e["log_loss"].values[:, det, 0]).all() and np.isnan(e["log_loss"].values[:, det, 1:]).all()
    # TargetBayes on the single coin is the oracle itself
    np.testing.assert_allclose(e["regret"].sel({"eval_dist": "single", "method": "TargetBayes", "repetition": 0}), 0, atol=1e-12)
    # independent recomputation of a few entries from the stored artefacts
    net = tiny_net(arch)
    weights = storage.load_torch(tmp_path / "one" / "pre.pt")
    for dist in ("mixture", "random"):
        sample = data.sample(SourceConfig.from_dict(SOURCES[dist]), 6, 9, 0)
        x = torch.nn.functional.one_hot(sample.tokens, 2).float()
        no_tuning = (-(reference_forward(net, weights, x) * x.double()).sum(-1)).mean(0).numpy()
        np.testing.assert_allclose(e["log_loss"].sel({"eval_dist": dist, "method": "NoTuning", "repetition": 0}), no_tuning, rtol=1e-5)
        i = list(t["member_method"].values).index("SoftPT") + 1  # SoftPT, repetition 1
        soft = torch.from_numpy(t["prefix_soft"].values[i])
        soft_ll = (-(reference_forward(net, weights, x, ("soft", soft)) * x.double()).sum(-1)).mean(0).numpy()
        np.testing.assert_allclose(e["log_loss"].sel({"eval_dist": dist, "method": "SoftPT", "repetition": 1}), soft_ll, rtol=1e-5)
        src = SourceConfig.from_dict(SOURCES[dist])
        np.testing.assert_allclose(e["log_loss"].sel({"eval_dist": dist, "method": "TargetBayes", "repetition": 0}),
                                   bayes.token_log_loss(src, sample.tokens).mean(0).numpy(), rtol=1e-12)
        pre_pt = bayes.token_log_loss(SourceConfig.from_dict(SOURCES["random"]), sample.tokens, torch.from_numpy(counts))
        np.testing.assert_allclose(e["log_loss"].sel({"eval_dist": dist, "method": "PreBayesPT", "repetition": 0}), pre_pt.mean(0).numpy(), rtol=1e-12)
    # --- states ---
    s = ds["states"]
    feat = 8  # LSTM cell width / Transformer d
    assert s["pretrain_states"].shape == (3, 5, feat)
    assert list(s["method"].values) == ["NoTuning", "RandomPF", "HardPT", "SimplexPT", "RealPT", "SoftPT"]
    assert s["target_states"].shape == (6, 2, 5, feat) and np.isfinite(s["target_states"]).all()
    np.testing.assert_array_equal(s["marker"], [0, 2, 2, 2, 2, 2])
    assert s.attrs["state"] == ("cell" if arch == "lstm" else "attention")


def test_cli_untrained_three_symbol_run_without_hard_search(tmp_path, restore_global_state):
    """An untrained (u2r-like) Transformer over a 3-symbol alphabet with the HardPT search off:
    no --weights, no PreBayes baselines, an empty search file, NaN hard prefix."""
    src3 = {"single": {"kind": "single", "biases": [[0.2, 0.3, 0.5]]},
            "mixture": {"kind": "mixture", "biases": [[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]], "weights": [0.5, 0.5]},
            "random": {"kind": "random", "alphas": [1.0, 1.0, 1.0]}}
    net = {"arch": "transformer", "d": 8, "width": 8, "layers": 1, "heads": 2, "lora_rank": 2, "vocab": 3}
    tune = {"experiment": "u2r", "network": net, "pretrained": False, "pretrain_source": src3["random"], "target": "random",
            "target_source": src3["random"],
            "tune": {"steps": 2, "batch": 3, "length": 5, "lr": 5e-3, "prefix_length": 3, "repetitions": 2,
                     "methods": ["HardPT", "SimplexPT", "SoftPT", "LoRAWT", "EmbedWT"], "search_sequences": 4, "hard_search": False}}
    ev = {**tune, "sources": src3, "evaluate": EVALUATE}
    out = tmp_path
    assert cli.main(["tune", "--config", json.dumps(tune), "--device", "cpu", "--out-nc", str(out / "t.nc"),
                     "--out-search", str(out / "s.nc"), "--out-weights", str(out / "t.pt")]) == 0
    for cmd in ("evaluate", "states"):
        assert cli.main([cmd, "--config", json.dumps(ev), "--device", "cpu", "--tune-nc", str(out / "t.nc"),
                         "--tune-weights", str(out / "t.pt"), "--out-nc", str(out / f"{cmd}.nc")]) == 0
    t = storage.read(out / "t.nc", "tune")
    assert np.isnan(t["hard_prefix"]).all() and np.isnan(t["prebayes_prefix_counts"]).all()
    assert t["prefix_token"].shape == (8, 3, 3)
    assert storage.read(out / "s.nc", "hard_search")["search_loss"].shape == (0,)
    e = storage.read(out / "evaluate.nc", "eval")
    assert set(e["method"].values.tolist()) == {"SimplexPT", "SoftPT", "LoRAWT", "EmbedWT", "TargetBayes", "NoTuning", "RandomPF"}
    assert np.isfinite(e["cum_regret"].values[:, ~e["deterministic"].values]).all()
    # TargetBayes on the random-coins evaluation set is the Laplace/Dirichlet predictor (regret >= 0 on average)
    assert (e["cum_regret"].sel({"method": "TargetBayes", "repetition": 0, "eval_dist": "random"}).values[-1]) > 0
    s = storage.read(out / "states.nc", "states")
    assert list(s["method"].values) == ["NoTuning", "RandomPF", "SimplexPT", "SoftPT"]
    assert np.isfinite(s["target_states"]).all()
