import json
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

SRC = Path(workflow.basedir) / "src"
# Jobs import the package from this checkout, installed or not.
sys.path.insert(0, str(SRC))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))

from prefixlab import settings  # noqa: E402
from prefixlab.config import ConfigError  # noqa: E402

try:
    CFG = settings.resolve(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
except ConfigError as err:
    raise WorkflowError(f"prefixlab: {err}")

SCALE = CFG["scale"]
RES = f"{CFG['results_dir']}/{SCALE}"
PA = f"{RES}/paper_a"
FIG = f"{RES}/figures"
LOGS = f"logs/{SCALE}"
BENCH = f"{RES}/benchmarks"
ARCHS = CFG["archs"]
EXPS = CFG["run_experiments"]
PY = "python -m prefixlab"

wildcard_constraints:
    arch="lstm|transformer",
    exp="|".join(CFG["experiments"]),
    variant="|".join(CFG["networks"]),


# Snakemake's code trigger sees a rule's own script, not the modules it imports:
# each stage declares the package files it runs as inputs, so editing one stage's
# module reruns that stage and what depends on it, and nothing upstream.
def code(*modules):
    return [str(SRC / "prefixlab" / m) for m in modules]


CORE_CODE = code("__init__.py", "types.py", "config.py", "jobs.py", "cli.py", "storage.py", "data.py", "init.py", "networks.py", "population.py")
PRETRAIN_CODE = CORE_CODE + code("pretrain.py")
TUNE_CODE = CORE_CODE + code("bayes.py", "tune.py")
EVAL_CODE = TUNE_CODE + code("evaluate.py")
FIGURE_CODE = code("storage.py", "types.py") + sorted(str(p) for p in (SRC / "prefixlab" / "figures").glob("*.py"))
CLAIMS_CODE = FIGURE_CODE + code("claims.py")


# A torch job already uses every core it is given; running several side by side only
# oversubscribes the CPU (OpenMP spin-waits make that several times slower). So a
# heavy job takes all --cores; profiles may set per-rule threads (set-threads).
heavy_threads = max(1, workflow.cores or 1)


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
