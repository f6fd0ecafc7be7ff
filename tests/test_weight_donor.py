"""A tuning job that takes its weight-tuning members from another experiment's output
(r2s_L25 from r2s): the same files, bit for bit, as training them again, and a clear
refusal of a donor whose weight members would differ."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import xarray as xr

from prefixlab import cli, storage
from prefixlab.coins import jobs, networks, population, tune
from prefixlab.coins.jobs import TuneJob
from prefixlab.storage import DataError

from conftest import perturbed

METHODS = ["HardPT", "SimplexPT", "RealPT", "SoftPT", "FullWT", "LoRAWT", "EmbedWT", "Un+EmbedWT"]


def job_dict(arch: str, experiment: str, prefix_length: int, **tune_kw) -> dict:
    t = dict(steps=3, batch=4, length=6, lr=1e-2, prefix_length=prefix_length, repetitions=2, search_sequences=8,
             methods=METHODS, log_every=1, method_lr={"FullWT": 5e-3, "SoftPT": 3e-2})
    t.update(tune_kw)
    return {"experiment": experiment, "pretrained": True, "target": "single",
            "network": {"arch": arch, "d": 8, "width": 8, "layers": 1, "heads": 2, "lora_rank": 2, "vocab": 2},
            "pretrain_source": {"kind": "random", "alphas": [1.0, 1.0]},
            "target_source": {"kind": "single", "biases": [[0.2, 0.8]]}, "tune": t}


@pytest.fixture
def base_weights(tmp_path):
    """Pretrained weights for both archs (a perturbed initialisation), saved as the workflow saves them."""
    paths = {}
    for arch in ("lstm", "transformer"):
        net = TuneJob.from_dict(job_dict(arch, "r2s", 2)).network
        paths[arch] = tmp_path / f"{arch}_base.pt"
        torch.save(perturbed(networks.init_params(net), seed=5), paths[arch])
    return paths


def run_cli(cfg: dict, weights, out, donor=None) -> tuple[str, str]:
    nc, pt = str(out) + ".nc", str(out) + ".pt"
    argv = ["tune", "--config", json.dumps(cfg), "--device", "cpu", "--weights", str(weights), "--out-nc", nc,
            "--out-search", str(out) + "_search.nc", "--out-weights", pt]
    if donor:
        argv += ["--donor-nc", donor[0], "--donor-weights", donor[1]]
    assert cli.main(argv) == 0
    return nc, pt


def weight_members_only(cfg: dict) -> dict:
    """What the workflow's shared job trains (coins/jobs.py weight_members_job): the weight
    methods at their own rates, no prefix setting."""
    job = TuneJob.from_dict(cfg)
    methods = list(jobs.weight_methods(job))
    tune = {k: v for k, v in cfg["tune"].items() if k not in jobs.PREFIX_ONLY_TUNE_SETTINGS}
    rates = {m: job.tune.lr_of(m) for m in methods}
    return {**cfg, "tune": {**tune, "methods": methods, "method_lr": rates, "lr": rates[methods[0]]}}


@pytest.mark.parametrize("arch,donor_kind", [("lstm", "experiment"), ("transformer", "experiment"),
                                             ("lstm", "weight members"), ("transformer", "weight members")])
def test_donated_weight_members_equal_training_them_again(arch, donor_kind, tmp_path, base_weights, monkeypatch,
                                                          restore_global_state):
    donor_cfg = job_dict(arch, "r2s", 2)
    if donor_kind == "weight members":
        donor_cfg = weight_members_only(donor_cfg)
    donor = run_cli(donor_cfg, base_weights[arch], tmp_path / "r2s")
    receiver = job_dict(arch, "r2s_L25", 3, hard_search=False, search_seed=9, prefix_seed=7)
    alone = run_cli(receiver, base_weights[arch], tmp_path / "alone")
    trained = []
    real_train = population.train
    monkeypatch.setattr(population, "train", lambda pop, *a, **k: trained.append(pop.members) or real_train(pop, *a, **k))
    shared = run_cli(receiver, base_weights[arch], tmp_path / "shared", donor)
    # the receiver trained its prefix members only
    assert [m.method for m in trained[0]] == [m for m in METHODS[1:4] for _ in range(2)]
    a, b = xr.open_dataset(alone[0]), xr.open_dataset(shared[0])
    for v in a.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
    assert a.attrs["config"] == b.attrs["config"] and a.attrs["base_sha256"] == b.attrs["base_sha256"]
    sa, sb = storage.load_torch(alone[1]), storage.load_torch(shared[1])
    assert sa["members"] == sb["members"] and sa["weights"].keys() == sb["weights"].keys()
    for n in sa["weights"]:
        assert torch.equal(sa["weights"][n]["rows"], sb["weights"][n]["rows"]), n
        assert torch.equal(sa["weights"][n]["values"], sb["weights"][n]["values"]), n
    # non-vacuity: the weight members trained, and the donor's prefixes (L = 2) are not the receiver's
    d = xr.open_dataset(donor[0])
    assert d["prefix_soft"].shape[1] != 3 and b["prefix_soft"].shape[1] == 3
    base = storage.load_torch(base_weights[arch])
    assert all(not torch.equal(e["values"][0], base[n]) for n, e in sa["weights"].items())


@pytest.mark.parametrize("change,needle", [
    ({"method_lr": {"FullWT": 1e-3}}, r"learning rates of \['FullWT'\] differ"),
    ({"steps": 4}, r"tune differs \(steps\)"),
    ({"methods": ["SoftPT", "EmbedWT"]}, r"trains no \['FullWT', 'LoRAWT', 'Un\+EmbedWT'\]"),
])
def test_a_donor_with_other_weight_members_is_refused_naming_why(change, needle, tmp_path, base_weights,
                                                                    restore_global_state, capsys):
    donor = run_cli(job_dict("transformer", "r2s", 2, **change), base_weights["transformer"], tmp_path / "r2s")
    receiver = job_dict("transformer", "r2s_L25", 3)
    argv = ["tune", "--config", json.dumps(receiver), "--device", "cpu", "--weights", str(base_weights["transformer"]),
            "--out-nc", str(tmp_path / "o.nc"), "--out-search", str(tmp_path / "s.nc"), "--out-weights", str(tmp_path / "o.pt"),
            "--donor-nc", donor[0], "--donor-weights", donor[1]]
    assert cli.main(argv) != 0
    err = capsys.readouterr().err
    assert "r2s.nc" in err and "cannot give 'r2s_L25' its weight members" in err
    assert re.search(needle, err), err
    assert not (tmp_path / "o.nc").exists() and not (tmp_path / "o.pt").exists()


def test_a_donor_tuned_from_other_base_weights_is_refused(tmp_path, base_weights, restore_global_state):
    donor = run_cli(job_dict("lstm", "r2s", 2), base_weights["lstm"], tmp_path / "r2s")
    job = TuneJob.from_dict(job_dict("lstm", "r2s_L25", 3))
    other = perturbed(storage.load_torch(base_weights["lstm"]), seed=6, scale=0.01)
    with pytest.raises(DataError, match="other base weights"):
        tune.WeightDonor.load(*donor, job, other)
    tune.WeightDonor.load(*donor, job, storage.load_torch(base_weights["lstm"]))  # the right weights pass


def test_donor_flags_go_together(tmp_path, base_weights, restore_global_state, capsys):
    argv = ["tune", "--config", json.dumps(job_dict("lstm", "r2s_L25", 3)), "--device", "cpu",
            "--weights", str(base_weights["lstm"]), "--out-nc", str(tmp_path / "o.nc"), "--out-search", str(tmp_path / "s.nc"),
            "--out-weights", str(tmp_path / "o.pt"), "--donor-nc", str(tmp_path / "x.nc")]
    assert cli.main(argv) != 0
    assert "--donor-nc and --donor-weights go together" in capsys.readouterr().err


def test_target_and_network_must_match():
    r2s_l25 = TuneJob.from_dict(job_dict("transformer", "r2s_L25", 25, hard_search=False))
    r2m = TuneJob.from_dict({**job_dict("transformer", "r2m", 6), "target": "mixture",
                             "target_source": {"kind": "mixture", "biases": [[0.2, 0.8], [0.8, 0.2]], "weights": [0.5, 0.5]}})
    assert jobs.weight_donor_mismatch(r2m, r2s_l25) == "target_source differs"
    wide = TuneJob.from_dict({**job_dict("transformer", "r2s", 6), "network": {**job_dict("lstm", "x", 6)["network"],
                                                                                "arch": "transformer", "d": 16}})
    assert jobs.weight_donor_mismatch(wide, r2s_l25) == "network differs"
    assert jobs.weight_donor_mismatch(TuneJob.from_dict(job_dict("transformer", "r2s", 6)), r2s_l25) is None
