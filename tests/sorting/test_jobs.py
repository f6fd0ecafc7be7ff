"""Paper B jobs through the CLI at the smoke scale: outputs, schemas and errors."""

import copy
import json
from pathlib import Path

import pytest
import yaml

from prefixlab.sorting import jobs as sorting_jobs
from prefixlab import cli, settings, storage

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cfg():
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["scale"] = "smoke"
    return settings.resolve(raw, ROOT / "workflow/schemas/config.schema.yaml")


def run(*argv):
    return cli.main([*argv, "--device", "cpu", "--threads", "1"])


@pytest.fixture(scope="module")
def b4(cfg, tmp_path_factory):
    """Pretrain, tune (prefix and LoRA) and evaluate experiment b4 at the smoke scale."""
    d = tmp_path_factory.mktemp("b4")
    model = cfg["paper_b"]["experiments"]["b4_double_hist"]["model"]
    assert run("sort-pretrain", "--config", json.dumps(sorting_jobs.pretrain_job(cfg, model)),
               "--out-weights", str(d / "pre.pt"), "--out-nc", str(d / "pre.nc")) == 0
    for r in ("prefix", "lora"):
        assert run("sort-tune", "--config", json.dumps(sorting_jobs.tune_job(cfg, "b4_double_hist", r)),
                   "--weights", str(d / "pre.pt"), "--out-weights", str(d / f"{r}.pt"), "--out-nc", str(d / f"{r}.nc")) == 0
    assert run("sort-evaluate", "--config", json.dumps(sorting_jobs.eval_job(cfg, "b4_double_hist")),
               "--weights", str(d / "pre.pt"), "--tuned", f"prefix={d / 'prefix.pt'}", "--tuned", f"lora={d / 'lora.pt'}",
               "--out-nc", str(d / "eval.nc")) == 0
    return d


def test_outputs_follow_the_schemas(b4, cfg):
    storage.read(b4 / "pre.nc", "sort_pretrain")
    tune = storage.read(b4 / "prefix.nc", "sort_tune")
    model = cfg["paper_b"]["models"][cfg["paper_b"]["experiments"]["b4_double_hist"]["model"]]
    assert tune["prefix"].shape == (1, model["layers"], model["prefix_length"], model["d"])
    assert json.loads(tune.attrs["config"])["run"] == "prefix"
    ev = storage.read(b4 / "eval.nc", "sort_eval")
    assert list(ev["model"].values) == ["pretrained", "prefix:double_hist:0", "lora:double_hist:0"]
    assert ((ev["accuracy"] >= 0) & (ev["accuracy"] <= 1)).all()
    counts = json.loads(ev.attrs["trainable_parameters"])
    lora = storage.read(b4 / "lora.nc", "sort_tune")
    assert counts == {"prefix": tune.attrs["trainable_parameters"], "lora": lora.attrs["trainable_parameters"]}
    assert counts["prefix"] == model["layers"] * model["prefix_length"] * model["d"]
    assert counts["lora"] == model["layers"] * (2 * model["d"] + 5 * model["d"] + 5 * model["d"])
    # trained + random prefixes in the theory check, all within float32 round-off
    assert list(ev["probe_kind"].values) == ["trained"] + ["random"] * cfg["paper_b"]["evaluate"]["theory_random_prefixes"]
    assert float(ev["theory_attention_dev"].max()) < 1e-5 and float(ev["theory_output_dev"].max()) < 1e-5


def test_rerun_is_bitwise_identical(b4, cfg, tmp_path):
    assert run("sort-tune", "--config", json.dumps(sorting_jobs.tune_job(cfg, "b4_double_hist", "lora")),
               "--weights", str(b4 / "pre.pt"), "--out-weights", str(tmp_path / "lora.pt"), "--out-nc", str(tmp_path / "lora.nc")) == 0
    assert (tmp_path / "lora.nc").read_bytes() == (b4 / "lora.nc").read_bytes()
    assert (tmp_path / "lora.pt").read_bytes() == (b4 / "lora.pt").read_bytes()


def test_bad_job_config_names_the_key_and_writes_nothing(b4, cfg, tmp_path, capfd):
    job = copy.deepcopy(sorting_jobs.tune_job(cfg, "b4_double_hist", "lora"))
    job["spec"]["tasks"] = ["random"]
    out = tmp_path / "x.nc"
    assert run("sort-tune", "--config", json.dumps(job), "--weights", str(b4 / "pre.pt"),
               "--out-weights", str(tmp_path / "x.pt"), "--out-nc", str(out)) == 2
    assert "paper_b.experiments.b4_double_hist.runs.lora.tasks" in capfd.readouterr().err
    assert not list(tmp_path.iterdir())


def test_missing_tuned_weights_are_an_error(b4, cfg, tmp_path, capfd):
    assert run("sort-evaluate", "--config", json.dumps(sorting_jobs.eval_job(cfg, "b4_double_hist")),
               "--weights", str(b4 / "pre.pt"), "--tuned", f"prefix={b4 / 'prefix.pt'}", "--out-nc", str(tmp_path / "e.nc")) == 2
    assert "no --tuned weights for run(s) ['lora']" in capfd.readouterr().err
    assert not (tmp_path / "e.nc").exists()


def test_diverging_run_names_member_and_writes_nothing(b4, cfg, tmp_path, capfd):
    job = copy.deepcopy(sorting_jobs.tune_job(cfg, "b4_double_hist", "prefix"))
    job["spec"]["lr"] = 1.0
    job["train"]["clip"] = 1e30
    import torch
    weights = storage.load_torch(b4 / "pre.pt")
    torch.save({n: t * 1e30 for n, t in weights.items()}, tmp_path / "inf.pt")
    code = run("sort-tune", "--config", json.dumps(job), "--weights", str(tmp_path / "inf.pt"),
               "--out-weights", str(tmp_path / "o.pt"), "--out-nc", str(tmp_path / "o.nc"))
    err = capfd.readouterr().err
    assert code == 3 and "non-finite loss at step 0" in err and "double_hist" in err
    assert not (tmp_path / "o.nc").exists() and not (tmp_path / "o.pt").exists()
