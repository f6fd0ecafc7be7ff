import importlib.util
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

SRC = Path(workflow.basedir) / "src"
# Jobs import the package from this checkout, installed or not.
sys.path.insert(0, str(SRC))

from prefixlab import settings  # noqa: E402
from prefixlab.config import ConfigError  # noqa: E402

try:
    CFG = settings.resolve(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
except ConfigError as err:
    raise WorkflowError(f"prefixlab: {err}")

SCALE = CFG["scale"]
RES = f"{CFG['results_dir']}/{SCALE}"
PA = f"{RES}/paper_a"
PB = f"{RES}/paper_b"
FIG = f"{RES}/figures"
LOGS = f"logs/{SCALE}"
BENCH = f"{RES}/benchmarks"
ARCHS = CFG["archs"]
EXPS = CFG["run_experiments"]



def job_path_entry():
    """The directory whose `python` every job runs: the interpreter running Snakemake
    (the virtualenv `make setup` builds, on the login node and, through the cluster
    executor, on compute nodes too), or nothing when --sdm conda activates envs/."""
    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
        return None
    if importlib.util.find_spec("torch") is None:
        raise WorkflowError(
            f"prefixlab: the Python running Snakemake ({sys.executable}) has no torch, so its jobs could not run. "
            "Run `make setup` once, then `source .venv/bin/activate` (or call .venv/bin/snakemake), "
            "or let Snakemake build envs/prefixlab.yaml with --sdm conda.")
    # not resolved: a virtualenv's python is a symlink to the base interpreter
    return os.path.dirname(sys.executable)


# Jobs import the package from this checkout too (installed or not). OpenMP threads
# that spin while waiting make torch many times slower as soon as anything else
# shares the CPU; passive waiting costs little when the CPU is idle.
# (Doubled braces: the prefix is formatted like a shell command.)
_path = job_path_entry()
shell.prefix("set -euo pipefail; "
             + (f"export PATH={_path}:$PATH; " if _path else "")
             + f"export PYTHONPATH={SRC}${{{{PYTHONPATH:+:$PYTHONPATH}}}} OMP_WAIT_POLICY=PASSIVE; ")

wildcard_constraints:
    arch="lstm|transformer",
    bmodel="|".join(CFG.get("paper_b", {}).get("models", {})) or "none",
    bexp="|".join(CFG.get("paper_b", {}).get("experiments", {})) or "none",
    brun="[A-Za-z0-9]+",
    exp="|".join(CFG["experiments"]),
    variant="|".join(CFG["networks"]),


# Snakemake's code trigger sees a rule's own script, not the modules it imports:
# each stage declares the package files it runs as inputs, so editing one stage's
# module reruns that stage and what depends on it, and nothing upstream.
def code(*modules):
    return [str(SRC / "prefixlab" / m) for m in modules]


KERNEL_CODE = sorted(str(p) for p in (SRC / "prefixlab" / "kernels").rglob("*.py"))
CORE_CODE = code("__init__.py", "types.py", "config.py", "jobs.py", "cli.py", "storage.py", "data.py", "init.py",
                 "networks.py", "population.py") + KERNEL_CODE
PRETRAIN_CODE = CORE_CODE + code("pretrain.py")
TUNE_CODE = CORE_CODE + code("bayes.py", "tune.py")
EVAL_CODE = TUNE_CODE + code("evaluate.py")
FIGURE_CODE = code("storage.py", "types.py") + sorted(str(p) for p in (SRC / "prefixlab" / "figures").glob("*.py"))
SORT_CODE = code("__init__.py", "types.py", "config.py", "cli.py", "storage.py", "population.py") + KERNEL_CODE + sorted(
    str(p) for p in (SRC / "prefixlab" / "sorting").glob("*.py") if p.name != "analysis.py")
SORT_EVAL_CODE = SORT_CODE + code("sorting/analysis.py")
CLAIMS_CODE = FIGURE_CODE + code("claims.py")


def local_cores():
    """--cores of a local run; None on a cluster executor, which has no local core count."""
    try:
        return workflow.cores or 1
    except WorkflowError:
        return None


# A torch job already uses every core it is given; running several side by side only
# oversubscribes the CPU. So by default a heavy job takes all --cores (on a cluster,
# CLUSTER_THREADS); tiny jobs, dominated by start-up, run side by side with threads_per_job: 1.
CLUSTER_THREADS = 4
_cores = local_cores()
heavy_threads = CFG["threads_per_job"] or _cores or CLUSTER_THREADS
if _cores:
    heavy_threads = min(heavy_threads, _cores)

# Upstream stages first: pretraining and tuning jobs are the longest and gate the rest,
# so starting them early keeps both cores busy to the end of a run.
PRIORITY_PRETRAIN, PRIORITY_TUNE = 20, 10


def exp_cfg(exp):
    return CFG["experiments"][exp]


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def device_gpus(wildcards=None):
    return 1 if CFG["device"] == "cuda" else 0


def pretrained_weights(wildcards):
    e = exp_cfg(wildcards.exp)
    return [f"{PA}/pretrain/{wildcards.arch}_{e['network']}.pt"] if e["pretrained"] else []


def weights_flag(wildcards, input):
    return f"--weights {input.weights}" if input.weights else ""


def pretrain_config(wildcards):
    return as_json(settings.pretrain_job(CFG, wildcards.variant, wildcards.arch))


def tune_config(wildcards):
    return as_json(settings.tune_job(CFG, wildcards.exp, wildcards.arch))


def eval_config(wildcards):
    return as_json(settings.eval_job(CFG, wildcards.exp, wildcards.arch))


def input_flags(wildcards, input):
    """--input key=path for every named input except code files."""
    return " ".join(f"--input {k}={v}" for k, v in input.items() if k != "code")


def run_pairs():
    return [(e, a) for e in EXPS for a in ARCHS]


def data_file(kind, exp, arch):
    return {
        "eval": f"{PA}/eval/{exp}_{arch}.nc",
        "states": f"{PA}/states/{exp}_{arch}.nc",
        "tune": f"{PA}/tune/{exp}_{arch}.nc",
        "search": f"{PA}/tune/{exp}_{arch}_search.nc",
    }[kind]


def keyed(kind, exps, archs=None):
    """{kind_exp_arch: path} for the configured experiments among `exps`."""
    return {f"{kind}_{e}_{a}": data_file(kind, e, a) for e in exps if e in EXPS for a in (archs or ARCHS) if a in ARCHS}


def pretrain_inputs():
    pairs = sorted({(a, exp_cfg(e)["network"]) for e in EXPS if exp_cfg(e)["pretrained"] for a in ARCHS})
    return {f"pretrain_{a}_{v}": f"{PA}/pretrain/{a}_{v}.nc" for a, v in pairs}


# ---- figures and claims: which NetCDF files each one reads ----
STATE_EXPS = [e for e in EXPS if exp_cfg(e).get("states")]
ABLATIONS = [e for e in EXPS if e.endswith(("_d4", "_maxi", "_L25"))]


def figure_settings(wildcards=None):
    return as_json(CFG.get("figures", {}))


def fig_input(names):
    """Rule input: keyed data files plus the figure code."""
    def inputs(wildcards):
        return {**names(wildcards), "code": FIGURE_CODE}

    return inputs


def _fig1(w):
    return keyed("eval", ["r2s"])


def _fig2(w):
    return keyed("states", ["r2s"])


def _fig3(w):
    return keyed("eval", ["r2m"])


def _fig4(w):
    return keyed("eval", ["u2m", "u2r"], ["transformer"])


def _fig5(w):
    return keyed("eval", [w.exp], [w.arch])


def _fig6(w):
    return keyed("states", ["r2m"])


def _fig7(w):
    return keyed("search", EXPS)


def _fig8(w):
    return {**keyed("tune", EXPS), **pretrain_inputs()}


def _fig9(w):
    return keyed("eval", ["r2s", "r2m"] + ABLATIONS)


FIGURE_INPUTS = {
    "fig1_r2s_headline": _fig1,
    "fig2_states_r2s": _fig2,
    "fig3_r2m_headline": _fig3,
    "fig4_untrained": _fig4,
    "fig6_states_r2m": _fig6,
    "fig7_hard_search": _fig7,
    "fig8_losses": _fig8,
    "fig9_ablations": _fig9,
}
CAPTIONS = {
    "fig1_r2s_headline": "fig1.rst",
    "fig2_states_r2s": "fig2.rst",
    "fig3_r2m_headline": "fig3.rst",
    "fig4_untrained": "fig4.rst",
    "fig6_states_r2m": "fig6.rst",
    "fig7_hard_search": "fig7.rst",
    "fig8_losses": "fig8.rst",
    "fig9_ablations": "fig9.rst",
}


def enabled_figures():
    """Figures whose data the configured experiments provide."""
    return [name for name, inputs in FIGURE_INPUTS.items() if inputs(None)]


def all_figure_outputs():
    outs = [f"{FIG}/{name}.png" for name in enabled_figures()]
    outs += [f"{FIG}/fig5_full_{e}_{a}.png" for e in EXPS if e in ("r2s", "r2m", "u2m", "u2r") for a in ARCHS]
    if any(e in EXPS for e in ("r2s", "r2m")):
        outs.append(f"{FIG}/table_softpt.md")
    outs += sort_figure_outputs()
    outs += [f"{RES}/claims.md", f"{RES}/claims.nc"]
    return outs


def claims_inputs(wildcards):
    return {**keyed("eval", EXPS), **keyed("states", STATE_EXPS), **sort_keyed(BEXPS),
            "code": CLAIMS_CODE}


def claims_settings(wildcards=None):
    """Claim thresholds from config; the steps they are read at follow the scale's lengths
    (the paper's n = 49, 99, 199 are N_tune - 1, N_train - 1, N_eval - 1)."""
    steps = {
        "step": CFG["tune"]["length"] - 1,
        "a1_step": CFG["pretrain"]["length"] - 1,
        "a4_late_step": CFG["evaluate"]["length"] - 1,
    }
    paper_b = {f"b_{k}": v for k, v in PAPER_B.get("claims", {}).items()}
    return as_json({**CFG.get("claims", {}), **paper_b, **steps, "scale": SCALE})


# ---- Paper B (SPEC 2): sorting-task GPTs ----
PAPER_B = CFG.get("paper_b") or {"run_experiments": [], "experiments": {}, "models": {}}
BEXPS = PAPER_B["run_experiments"]


def sort_exp(exp):
    return PAPER_B["experiments"][exp]


def sort_pretrain_config(wildcards):
    return as_json(settings.sort_pretrain_job(CFG, wildcards.bmodel))


def sort_tune_config(wildcards):
    return as_json(settings.sort_tune_job(CFG, wildcards.bexp, wildcards.brun))


def sort_eval_config(wildcards):
    return as_json(settings.sort_eval_job(CFG, wildcards.bexp))


def sort_weights(wildcards):
    return f"{PB}/pretrain/{sort_exp(wildcards.bexp)['model']}.pt"


def sort_tuned(wildcards):
    return {run: f"{PB}/tune/{wildcards.bexp}_{run}.pt" for run in sort_exp(wildcards.bexp)["runs"]}


def tuned_flags(wildcards, input):
    return " ".join(f"--tuned {run}={input[run]}" for run in sort_exp(wildcards.bexp)["runs"])


def sort_file(kind, exp, run=None):
    return {"eval": f"{PB}/eval/{exp}.nc", "tune": f"{PB}/tune/{exp}_{run}.nc"}[kind]


def sort_keyed(exps, with_tune=False):
    """{sorteval_<exp>: path} (and {sorttune_<exp>_<run>: path}) for the configured Paper-B experiments among `exps`."""
    out = {}
    for e in exps:
        if e in BEXPS:
            out[f"sorteval_{e}"] = sort_file("eval", e)
            if with_tune:
                out.update({f"sorttune_{e}_{r}": sort_file("tune", e, r) for r in sort_exp(e)["runs"]})
    return out


SORT_FIGURE_INPUTS = {
    "figB1_descending": lambda w: sort_keyed(["b1_descending"], with_tune=True),
    "figB2_elicit": lambda w: sort_keyed(["b2_elicit"]),
    "figB3_matrix": lambda w: sort_keyed(["b3_matrix"]),
    "figB4_double_hist": lambda w: sort_keyed(["b4_double_hist"], with_tune=True),
    "figB5_theory": lambda w: sort_keyed(BEXPS),
}


def sort_figure_outputs():
    return [f"{FIG}/{name}.png" for name, inputs in SORT_FIGURE_INPUTS.items() if inputs(None)]
