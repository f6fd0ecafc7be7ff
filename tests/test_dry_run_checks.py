"""Every check a job makes of its config runs in the dry run first (settings.resolve, which
common.smk calls while Snakemake parses the workflow), and names the config key.

The checks are listed from the source: every `check(...)` / `positive_ints(...)` call in
the modules that parse job configs. A new check without a case below fails
test_every_job_check_has_a_dry_run_case.
"""

from __future__ import annotations

import ast
import copy
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from prefixlab.coins import jobs as coins_jobs
from prefixlab import settings
from prefixlab.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src/prefixlab"
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
JOB_CONFIG_MODULES = ("config.py", "coins/configs.py", "coins/jobs.py", "sorting/configs.py", "sorting/jobs.py")


def job_checks() -> Counter:
    """(module, class or function, key expression) of every check, with its multiplicity."""
    sites = Counter()
    for rel in JOB_CONFIG_MODULES:
        tree = ast.parse((PKG / rel).read_text())
        for scope in tree.body:  # module-level classes and functions
            if not isinstance(scope, (ast.ClassDef, ast.FunctionDef)) or scope.name in ("check", "positive_ints"):
                continue
            for node in ast.walk(scope):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                    continue
                if node.func.id == "check":
                    sites[(rel, scope.name, ast.unparse(node.args[1]))] += 1
                elif node.func.id == "positive_ints":
                    for key in node.args[1].elts:
                        sites[(rel, scope.name, repr(key.value))] += 1
    return sites


B = "paper_b"


def run(**spec):
    return {B: {"experiments": {"b1_descending": {"runs": {"prefix": spec}}}}}


# (module, scope, key expression) -> [(override of the smoke scale, config key the error must name), ...]
CASES = {
    ("coins/configs.py", "NetworkConfig", "'arch'"): [({"archs": ["gru"]}, "archs")],
    ("coins/configs.py", "NetworkConfig", "'d'"): [({"networks": {"base": {"d": 0}}}, "networks.base.d")],
    ("coins/configs.py", "NetworkConfig", "'width'"): [({"networks": {"base": {"width": 0}}}, "networks.base.width")],
    ("coins/configs.py", "NetworkConfig", "'layers'"): [({"networks": {"base": {"layers": 0}}}, "networks.base.layers")],
    ("coins/configs.py", "NetworkConfig", "'heads'"): [({"networks": {"base": {"heads": 0}}}, "networks.base.heads"),
                                                ({"networks": {"base": {"heads": 3}}}, "networks.base.heads")],
    ("coins/configs.py", "NetworkConfig", "'lora_rank'"): [({"networks": {"base": {"lora_rank": 0}}}, "networks.base.lora_rank")],
    ("coins/configs.py", "NetworkConfig", "'vocab'"): [
        ({"sources": {"random": {"alphas": [1.0]}, "single": {"biases": [[1.0]]},
                      "mixture": {"biases": [[1.0], [1.0]]}}}, "sources"),
        ({"sources": {"random": {"alphas": []}}}, "sources")],
    ("coins/configs.py", "SourceConfig", "'kind'"): [({"sources": {"single": {"kind": "dice"}}}, "sources.single.kind")],
    ("coins/configs.py", "SourceConfig", "'biases'"): [
        ({"sources": {"mixture": {"biases": [[0.2, 0.8], [0.1, 0.2, 0.7]]}}}, "sources"),
        ({"sources": {"single": {"biases": [[0.5, 0.6]]}}}, "sources.single.biases")],
    ("coins/configs.py", "SourceConfig", "'weights'"): [
        ({"sources": {"mixture": {"weights": [1.0]}}}, "sources.mixture.weights"),
        ({"sources": {"mixture": {"weights": [0.5, 0.6]}}}, "sources.mixture.weights")],
    ("coins/configs.py", "SourceConfig", "'alphas'"): [({"sources": {"random": {"alphas": [1.0, -1.0]}}}, "sources.random.alphas")],
    **{("coins/configs.py", "TrainConfig", repr(k)): [({"pretrain": {k: 0}}, f"pretrain.{k}")]
       for k in ("steps", "batch", "length", "log_every", "lr", "clip")},
    **{("coins/configs.py", "TuneConfig", repr(k)): [({"tune": {k: 0}}, f"tune.{k}")]
       for k in ("steps", "batch", "length", "repetitions", "search_sequences", "log_every", "lr", "clip")},
    ("coins/configs.py", "TuneConfig", "'prefix_length'"): [({"experiments": {"r2s": {"prefix_length": 0}}}, "experiments.r2s.prefix_length")],
    ("coins/configs.py", "TuneConfig", "'clip_norm_over'"): [({"tune": {"clip_norm_over": "some"}}, "tune.clip_norm_over")],
    ("coins/configs.py", "TuneConfig", "'methods'"): [({"methods": ["SoftPT", "MagicPT"]}, "methods")],
    ("coins/configs.py", "TuneConfig", "'method_lr'"): [({"tune": {"method_lr": {"HardPT": 0.01}}}, "tune.method_lr"),
                                                       ({"tune": {"method_lr": {"FullWT": 0}}}, "tune.method_lr")],
    **{("coins/configs.py", "EvalConfig", repr(k)): [({"evaluate": {k: 0}}, f"evaluate.{k}")]
       for k in ("sequences", "length", "chunk", "state_pretrain_sequences", "state_target_per_repetition", "state_positions")},
    ("coins/jobs.py", "TuneJob", "f\"experiments.{d['experiment']}.target\""): [({"experiments": {"r2s": {"target": "dice"}}}, "experiments.r2s.target")],
    ("coins/jobs.py", "TuneJob", "f'experiments.{job.experiment}.methods'"): [({"experiments": {"u2m": {"methods": ["FullWT"]}}}, "experiments.u2m.methods")],
    ("coins/jobs.py", "_check_vocab", "f'sources.{name}'"): [
        ({"sources": {"single": {"biases": [[0.2, 0.3, 0.5]]}}}, "sources")],
    ("sorting/configs.py", "DigitSpec", "'vocab'"): [({B: {"digits": {"vocab": 9}}}, "paper_b.digits.vocab"),
                                                    ({B: {"digits": {"max_digit": 3, "vocab": 9}, "evaluate": {"example": [1] * 10}}}, "paper_b.digits.vocab")],
    ("sorting/configs.py", "DigitSpec", "'redraw_prob'"): [({B: {"digits": {"redraw_prob": 1.5}}}, "paper_b.digits.redraw_prob")],
    ("sorting/configs.py", "DigitSpec", "'test_mod'"): [({B: {"digits": {"test_mod": 1}}}, "paper_b.digits.test_mod")],
    **{("sorting/configs.py", "GPTConfig", repr(k)): [({B: {"models": {"asc_1l1h": {k: 0}}}}, f"paper_b.models.asc_1l1h.{k}")]
       for k in ("layers", "d", "prefix_length", "lora_rank")},
    ("sorting/configs.py", "GPTConfig", "'heads'"): [({B: {"models": {"asc_1l1h": {"heads": 0}}}}, "paper_b.models.asc_1l1h.heads"),
                                                    ({B: {"models": {"asc_1l1h": {"heads": 3}}}}, "paper_b.models.asc_1l1h.heads")],
    ("sorting/configs.py", "GPTConfig", "'dropout'"): [({B: {"train": {"dropout": 1.0}}}, "paper_b")],
    **{("sorting/configs.py", "OptimConfig", repr(k)): [(run(**{k: 0}), "paper_b.experiments.b1_descending.runs.prefix.")]
       for k in ("steps", "lr")},
    ("sorting/configs.py", "OptimConfig", "'batch'"): [({B: {"train": {"batch": 0}}}, "paper_b")],
    ("sorting/configs.py", "OptimConfig", "'log_every'"): [({B: {"train": {"log_every": 0}}}, "paper_b")],
    ("sorting/configs.py", "OptimConfig", "'clip'"): [({B: {"train": {"clip": 0}}}, "paper_b")],
    ("sorting/configs.py", "OptimConfig", "'weight_decay'"): [({B: {"train": {"weight_decay": {"prefix": -0.1}}}}, "paper_b")],
    ("sorting/jobs.py", "_tasks", "where"): [(run(tasks=[]), "paper_b.experiments.b1_descending.runs.prefix.tasks"),
                                             (run(tasks=["juggle"]), "paper_b.experiments.b1_descending.runs.prefix.tasks")],
    ("sorting/jobs.py", "SortTuneJob", "f'{where}.method'"): [(run(method="distill"), "paper_b.experiments.b1_descending.runs.prefix.method")],
    ("sorting/jobs.py", "SortTuneJob", "f'{where}.tasks'"): [(run(tasks=["random"]), "paper_b.experiments.b1_descending.runs.prefix.tasks")],
    ("sorting/jobs.py", "SortEvalJob", "'paper_b.evaluate.example'"): [({B: {"evaluate": {"example": [9] * 10}}}, "paper_b.evaluate.example")],
}


def test_every_job_check_has_a_dry_run_case():
    sites = job_checks()
    assert len(sites) > 40, sites  # the AST scan found the checks
    missing = {s: n for s, n in sites.items() if len(CASES.get(s, ())) < n}
    assert not missing, f"checks without (enough) dry-run cases: {missing}"
    stale = set(CASES) - set(sites)
    assert not stale, f"cases for checks that no longer exist: {stale}"


def smoke_config(override: dict) -> dict:
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["scale"] = "smoke"
    top = {k: v for k, v in override.items() if k == "sources"}  # scales cannot override sources
    raw = settings.deep_merge(raw, top)
    raw["scales"]["smoke"] = settings.deep_merge(raw["scales"]["smoke"], {k: v for k, v in override.items() if k not in top})
    return raw


@pytest.mark.parametrize("site,override,key", [(s, o, k) for s, cases in CASES.items() for o, k in cases],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_dry_run_catches_the_check_and_names_the_key(site, override, key):
    with pytest.raises(ConfigError) as err:
        settings.resolve(smoke_config(override), SCHEMA)
    # the schema names the key where it was written (under the scale), the job checks
    # where it lands after the scale is applied
    msg = str(err.value)
    assert f"config key '{key}" in msg or f"config key 'scales.smoke.{key}" in msg, msg


def test_unbroken_config_resolves():
    settings.resolve(smoke_config({}), SCHEMA)


def test_cases_reach_the_job_parser_too():
    """The checks are the jobs' own: a bad value that passes the schema reaches the same
    parser a job runs, which rejects it (here, with schema and section checks skipped)."""
    from prefixlab.coins.jobs import EvalJob
    cfg = settings.resolve(smoke_config({}), SCHEMA)
    bad = copy.deepcopy(cfg)
    bad["sources"]["mixture"]["weights"] = [0.5, 0.6]
    with pytest.raises(ConfigError, match="weights"):
        EvalJob.from_dict(coins_jobs.eval_job(bad, "r2m", "lstm"))
    with pytest.raises(ConfigError, match="config key 'sources.mixture.weights'"):
        settings.check_jobs(bad)


def test_snakemake_dry_run_stops_on_a_job_check(tmp_path):
    (tmp_path / "bad.yaml").write_text("scales: {smoke: {paper_b: {digits: {vocab: 9}}}}")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--config", "scale=smoke", "--configfile",
                           str(tmp_path / "bad.yaml"), "--", "all_figures"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert "config key 'paper_b.digits.vocab'" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_cpu_scale_dry_runs_every_job_of_both_papers(tmp_path):
    """`--config scale=cpu all_figures` plans the quick scale's jobs plus one pretraining (Paper
    B's experiment 3 on its own 4-layer model) and less two shared weight-member jobs (r2m's own
    FullWT rate at cpu scale makes its weight members differ from r2m_L25's), in a checkout with
    no results (a copy of the workflow sources, so the project's results/ do not count)."""
    import shutil
    for rel in ("Snakefile", "config.yaml", "workflow", "src"):
        src = ROOT / rel
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / rel)
    plans = {}
    for scale in ("cpu", "quick"):
        proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "2", "--config", f"scale={scale}",
                               "--", "all_figures"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        table = proc.stdout.split("Job stats:")[1].split("total")[0]
        plans[scale] = {line.split()[0]: int(line.split()[1]) for line in table.strip().splitlines()[2:]}
        assert f"results/{scale}/claims.md" in proc.stdout
    expected = {**plans["quick"], "sort_pretrain": plans["quick"]["sort_pretrain"] + 1,
                "tune_weight_members": plans["quick"]["tune_weight_members"] - 2}
    assert plans["cpu"] == expected and plans["cpu"]["tune"] > 0 and plans["cpu"]["tune_weight_members"] == 2, plans


def test_slurm_profile_groups_every_figure_and_the_claims_report():
    """A figure rule missing from the profile's `report` group goes to SLURM as a job of its own."""
    from wfutil import planned_jobs
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    plan = planned_jobs(ROOT, "all_figures", options=["--forceall"])
    report_rules = {rule for rule in plan if rule.startswith(("figure_", "table_")) or rule == "claims"}
    assert len(report_rules) > 10, plan
    ungrouped = sorted(rule for rule in report_rules if profile["groups"].get(rule) != "report")
    assert not ungrouped, f"profiles/slurm/config.yaml groups: add {ungrouped} to the report group"
