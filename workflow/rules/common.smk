import ast
import functools
import importlib.util
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.settings.types import DeploymentMethod

SRC = Path(workflow.basedir) / "src"
# Jobs import the package from this checkout, installed or not.
sys.path.insert(0, str(SRC))

from prefixlab import CLAIM_MODULES, COMMANDS, FIGURES, jobserver, module_of, settings  # noqa: E402
from prefixlab.coins import jobs as coins_jobs  # noqa: E402
from prefixlab.sorting import jobs as sorting_jobs  # noqa: E402
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
# logs and benchmarks of each paper's jobs, beside its results
LOGS_A, LOGS_B = f"{LOGS}/paper_a", f"{LOGS}/paper_b"
BENCH_A, BENCH_B = f"{BENCH}/paper_a", f"{BENCH}/paper_b"
ARCHS = CFG["archs"]
EXPS = CFG["run_experiments"]
PAPER_B = CFG.get("paper_b") or {"run_experiments": [], "experiments": {}, "models": {}}
BEXPS = PAPER_B["run_experiments"]



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


# Snakemake's code trigger sees a rule's own script, not the modules it imports: each
# rule declares as inputs the package files its job imports, directly or not, derived
# from the modules' own import statements (function-level ones included). Editing a
# module reruns exactly the stages that import it, and what depends on them.
def _module_file(name):
    """Path of module `name` (dotted) in this checkout, or None outside the package."""
    if name != "prefixlab" and not name.startswith("prefixlab."):
        return None
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported_modules(path):
    """Dotted names of the package modules one file imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # submodules
    return {n for n in names if _module_file(n)}


@functools.cache
def imports_of(module):
    """Every package file that importing `module` runs: its own, its packages' __init__.py
    and, recursively, those of each module it imports."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for k in range(1, len(parts) + 1):  # a module's packages run first
            pkg = ".".join(parts[:k])
            if pkg not in seen and _module_file(pkg):
                seen.add(pkg)
                todo.extend(_imported_modules(_module_file(pkg)))
    return frozenset(str(_module_file(n)) for n in seen)


def code(*modules):
    """Rule input: the package files the given entry modules run."""
    return sorted(set().union(*(imports_of(m) for m in modules)))


def command_code(command):
    """Code of a `python -m prefixlab <command>` job."""
    return code("prefixlab.__main__", module_of(COMMANDS[command]))


def figure_code(*targets):
    """Code of a `python -m prefixlab.figures` job drawing `targets` (figures, or claims modules)."""
    return code("prefixlab.figures", *(module_of(t) for t in targets))


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

# A local run's jobs run in forks of a server that has imported their modules once (1-1.5 s
# of each job otherwise; src/prefixlab/jobserver.py). Started through shell(), so the server
# sees exactly the environment a job sees (the prefix above, Snakemake's thread variables),
# one per thread count jobs use; each stops when this Snakemake process exits. A job the
# server cannot take exactly as its own process would runs on its own, as does every job
# with PREFIXLAB_JOBSERVER=off, on a cluster, and under --sdm conda.
def start_job_servers():
    if os.environ.get(jobserver.ENV_VAR) == "off" or not _path or not _cores:
        return
    directory = tempfile.mkdtemp(prefix=jobserver.DIRECTORY_PREFIX)
    os.environ[jobserver.ENV_VAR] = directory
    os.makedirs(LOGS, exist_ok=True)
    for threads in sorted({1, heavy_threads}):
        try:
            shell("python -m prefixlab.jobserver start --socket {sock:q} --owner {owner} --log {log:q}",
                  threads=threads, owner=os.getpid(), log=f"{LOGS}/jobserver-threads{threads}.log",
                  sock=jobserver.socket_path(directory, {"OMP_NUM_THREADS": str(threads)}))
        except Exception as err:  # a speed-up only: its jobs run on their own
            logger.warning(f"prefixlab: job server for {threads}-thread jobs not started ({err}); they run on their own")


onstart:
    start_job_servers()


# The default profile lets Snakemake reschedule once a minute while jobs wait (why there). Each
# rescheduling is a threading.Timer, which Python waits for at exit: a finished run would
# stay up to a minute. Once the run is over they have nothing left to wake.
def cancel_rescheduling_timers():
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer) and "_schedule_reevalutation" in getattr(
                thread.function, "__qualname__", ""):
            thread.cancel()


onsuccess:
    cancel_rescheduling_timers()


onerror:
    cancel_rescheduling_timers()


# Upstream stages first: pretraining and tuning jobs are the longest and gate the rest,
# so starting them early keeps both cores busy to the end of a run.
PRIORITY_PRETRAIN, PRIORITY_TUNE = 20, 10


def exp_cfg(exp):
    return CFG["experiments"][exp]


def sort_exp(exp):
    return PAPER_B["experiments"][exp]


def as_json(obj):
    return json.dumps(obj, sort_keys=True)


def device_gpus(wildcards=None):
    return 1 if CFG["device"] == "cuda" else 0


def input_flags(wildcards, input):
    """--input key=path for every named input except code files."""
    return " ".join(f"--input {k}={v}" for k, v in input.items() if k != "code")


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


def pretrain_inputs(variant=None):
    pairs = sorted({(a, exp_cfg(e)["network"]) for e in EXPS if exp_cfg(e)["pretrained"] for a in ARCHS})
    pairs = [(a, v) for a, v in pairs if variant in (None, v)]
    return {f"pretrain_{a}_{v}": f"{PA}/pretrain/{a}_{v}.nc" for a, v in pairs}


def sort_file(kind, exp, run=None):
    return {"eval": f"{PB}/eval/{exp}.nc", "tune": f"{PB}/tune/{exp}_{run}.nc"}[kind]


def sort_tunes(exps):
    """{sorttune_<exp>_<run>: path} of every run of the configured Paper-B experiments among `exps`."""
    return {f"sorttune_{e}_{r}": sort_file("tune", e, r) for e in exps if e in BEXPS for r in sort_exp(e)["runs"]}


def sort_keyed(exps, with_tune=False):
    """{sorteval_<exp>: path} (and {sorttune_<exp>_<run>: path}) for the configured Paper-B experiments among `exps`."""
    out = {}
    for e in exps:
        if e in BEXPS:
            out[f"sorteval_{e}"] = sort_file("eval", e)
            if with_tune:
                out.update({f"sorttune_{e}_{r}": sort_file("tune", e, r) for r in sort_exp(e)["runs"]})
    return out


# ---- shared by several rules, or too long for a lambda beside the rule ----


def pretrained_weights(wildcards):
    e = exp_cfg(wildcards.exp)
    return [f"{PA}/pretrain/{wildcards.arch}_{e['network']}.pt"] if e["pretrained"] else []


def weights_flag(wildcards, input):
    return f"--weights {input.weights}" if input.weights else ""


def weight_donor_files(wildcards):
    """The weight members this experiment shares with another (.nc, .pt; coins/jobs.py
    weight_group: r2s and r2s_L25 take theirs from one job), or none."""
    group = coins_jobs.weight_group(CFG, wildcards.exp, wildcards.arch)
    return [f"{PA}/tune/weight_members/{group}_{wildcards.arch}.{ext}" for ext in ("nc", "pt")] if group else []


def donor_flags(wildcards, input):
    return f"--donor-nc {input.donor[0]} --donor-weights {input.donor[1]}" if input.donor else ""


def search_flag(wildcards, output):
    return f"--out-search {output.search}" if "search" in output.keys() else ""


def sort_weights(wildcards):
    return f"{PB}/pretrain/{sort_exp(wildcards.bexp)['model']}.pt"


def eval_config(wildcards):
    return as_json(coins_jobs.eval_job(CFG, wildcards.exp, wildcards.arch))


def sort_tuned(wildcards):
    return {run: f"{PB}/tune/{wildcards.bexp}_{run}.pt" for run in sort_exp(wildcards.bexp)["runs"]}


def tuned_flags(wildcards, input):
    return " ".join(f"--tuned {run}={input[run]}" for run in sort_exp(wildcards.bexp)["runs"])


def figure_settings(wildcards=None):
    return as_json(CFG.get("figures", {}))


# Tuning jobs whose training curves the claims' budget figure draws (A2-A5).
BUDGET_EXPS = ["r2s", "r2m", "u2m", "u2r", "r2s_d4", "r2m_d4", "r2s_maxi", "r2m_maxi"]


def budget_settings(wildcards=None):
    """The figure settings and the thresholds the budget figure draws, nothing else."""
    claims = {k: CFG["claims"][k] for k in ("margin", "a1_margin", "a4_margin") if k in CFG.get("claims", {})}
    return as_json({**CFG.get("figures", {}), "claims": claims})


def sort_budget_settings(wildcards=None):
    claims = {k: PAPER_B["claims"][k] for k in ("success", "failure") if k in PAPER_B.get("claims", {})}
    return as_json({**CFG.get("figures", {}), "claims": claims})


def fig_input(name, names):
    """Rule input: keyed data files plus the code that draws figure `name`."""
    def inputs(wildcards):
        return {**names(wildcards), "code": figure_code(FIGURES[name])}

    return inputs


def all_figure_outputs():
    """Every figure whose data the configured experiments provide, the SoftPT table and the claims report."""
    outs = [f"{FIG}/{name}.png" for name, (inputs, *_) in FIGURE_RULES.items() if inputs(None)]
    outs += [f"{FIG}/fig5_full_{e}_{a}.png" for e in EXPS if e in ("r2s", "r2m", "u2m", "u2r") for a in ARCHS]
    if any(e in EXPS for e in ("r2s", "r2m")):
        outs.append(f"{FIG}/table_softpt.md")
    return outs + [f"{RES}/claims.md", f"{RES}/claims.nc"]


def claims_inputs(wildcards):
    states = [e for e in EXPS if exp_cfg(e).get("states")]
    return {**keyed("eval", EXPS), **keyed("states", states), **sort_keyed(BEXPS),
            "code": figure_code(*CLAIM_MODULES)}


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
