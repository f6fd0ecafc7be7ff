"""Typed Paper-B job configs built from the config subtrees the workflow passes to the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from prefixlab.config import as_config_key, build, check, check_defined, require
from prefixlab.sorting.configs import METHODS, TASKS, DigitSpec, GPTConfig, OptimConfig

ARCH_KEYS = ("layers", "heads", "d", "prefix_length", "ln_1", "lora_rank", "init_seed")


def gpt_config(model: dict, digits: DigitSpec, dropout: float, where: str) -> GPTConfig:
    arch = {k: v for k, v in model.items() if k in ARCH_KEYS}
    return build(GPTConfig, {**arch, "dropout": dropout, "vocab": digits.vocab, "digits": digits.digits}, where)


def _tasks(tasks, where: str) -> tuple[str, ...]:
    check(bool(tasks), where, "no tasks given")
    unknown = [t for t in tasks if t not in TASKS]
    check(not unknown, where, f"unknown task(s) {unknown}; known: {list(TASKS)}")
    return tuple(tasks)


@dataclass(frozen=True, kw_only=True)
class SortPretrainJob:
    name: str
    model: GPTConfig
    digits: DigitSpec
    task: str
    opt: OptimConfig
    data_seed: int
    dropout_seed: int

    @classmethod
    def from_dict(cls, d: dict) -> "SortPretrainJob":
        require(d, ("name", "model", "digits", "train", "seeds"), "paper_b pretrain job")
        where = f"paper_b.models.{d['name']}"
        digits = build(DigitSpec, d["digits"], "paper_b.digits")
        m, t = d["model"], d["train"]
        require(m, ("task", "steps", "lr"), where)
        opt = build(OptimConfig, {"steps": m["steps"], "lr": m["lr"], "batch": t["batch"], "clip": t["clip"],
                                   "weight_decay": t["weight_decay"]["finetune"], "log_every": t["log_every"]}, where)
        return cls(name=d["name"], model=gpt_config(m, digits, t["dropout"], where), digits=digits,
                   task=_tasks([m["task"]], f"{where}.task")[0], opt=opt, data_seed=d["seeds"]["pretrain_data"],
                   dropout_seed=d["seeds"]["dropout"])


@dataclass(frozen=True, kw_only=True)
class SortTuneJob:
    experiment: str
    run: str
    model: GPTConfig
    digits: DigitSpec
    method: str
    tasks: tuple[str, ...]
    repetitions: int
    opt: OptimConfig
    data_seed_start: int
    init_seed_start: int
    dropout_seed: int
    # test accuracy of every member on its own task, measured during training
    curve_every: int
    curve_samples: int
    curve_seed: int

    @property
    def members(self) -> list[tuple[str, int]]:
        """(task, repetition) of each population member."""
        return [(t, r) for r in range(self.repetitions) for t in self.tasks]

    def member_seed(self, start: int, task: str, repetition: int) -> int:
        # A member's seeds depend on its task and repetition only, so adding a task to a
        # run leaves the other members' results unchanged.
        return start + 1000 * repetition + TASKS.index(task)

    @property
    def data_seeds(self) -> list[int]:
        return [self.member_seed(self.data_seed_start, t, r) for t, r in self.members]

    @property
    def init_seeds(self) -> list[int]:
        return [self.member_seed(self.init_seed_start, t, r) for t, r in self.members]

    @classmethod
    def from_dict(cls, d: dict) -> "SortTuneJob":
        require(d, ("experiment", "run", "model", "digits", "train", "seeds", "spec", "repetitions"), "paper_b tune job")
        where = f"paper_b.experiments.{d['experiment']}.runs.{d['run']}"
        digits = build(DigitSpec, d["digits"], "paper_b.digits")
        s, t = d["spec"], d["train"]
        require(s, ("method", "tasks", "steps", "lr"), where)
        check(s["method"] in METHODS, f"{where}.method", f"unknown method {s['method']!r}; known: {list(METHODS)}")
        tasks = _tasks(s["tasks"], f"{where}.tasks")
        check("random" not in tasks, f"{where}.tasks", "'random' is the pretraining mix, not a tuning target")
        opt = build(OptimConfig, {"steps": s["steps"], "lr": s["lr"], "batch": t["batch"], "clip": t["clip"],
                                   "weight_decay": t["weight_decay"][s["method"]], "log_every": t["log_every"]}, where)
        seeds = d["seeds"]
        return cls(experiment=d["experiment"], run=d["run"], model=gpt_config(d["model"], digits, t.get("dropout", 0.0), where),
                   digits=digits, method=s["method"], tasks=tasks, repetitions=int(d["repetitions"]), opt=opt,
                   data_seed_start=seeds["tune_data_start"], init_seed_start=seeds["tune_init_start"],
                   dropout_seed=seeds["dropout"], curve_every=int(t["curve_every"]), curve_samples=int(t["curve_samples"]),
                   curve_seed=int(seeds["curve"]))


@dataclass(frozen=True, kw_only=True)
class SortEvalJob:
    experiment: str
    model: GPTConfig
    digits: DigitSpec
    runs: dict  # run name -> SortTuneJob
    eval_tasks: tuple[str, ...]
    samples: int
    seed: int
    chunk: int
    example: tuple[int, ...]
    attention_maps: bool
    shift_figure: bool
    shift_samples: int
    theory_samples: int
    theory_random_prefixes: int
    theory_seed: int

    @classmethod
    def from_dict(cls, d: dict) -> "SortEvalJob":
        require(d, ("experiment", "model", "digits", "train", "seeds", "runs", "repetitions", "evaluate", "eval_tasks"),
              "paper_b evaluate job")
        where = f"paper_b.experiments.{d['experiment']}"
        digits = build(DigitSpec, d["digits"], "paper_b.digits")
        runs = {name: SortTuneJob.from_dict({**d, "run": name, "spec": spec}) for name, spec in d["runs"].items()}
        e = d["evaluate"]
        require(e, ("samples", "seed", "chunk", "example", "shift_samples", "theory_samples", "theory_random_prefixes",
                  "theory_seed"), "paper_b.evaluate")
        example = tuple(int(v) for v in e["example"])
        check(len(example) == digits.digits and all(0 <= v <= digits.max_digit for v in example),
              "paper_b.evaluate.example", f"need {digits.digits} digits in 0..{digits.max_digit}, got {list(example)}")
        return cls(experiment=d["experiment"], model=gpt_config(d["model"], digits, d["train"]["dropout"], where),
                   digits=digits, runs=runs, eval_tasks=_tasks(d["eval_tasks"], f"{where}.eval_tasks"),
                   samples=int(e["samples"]), seed=int(e["seed"]), chunk=int(e["chunk"]), example=example,
                   attention_maps=bool(d.get("attention_maps", False)), shift_figure=bool(d.get("shift_figure", False)),
                   shift_samples=int(e["shift_samples"]), theory_samples=int(e["theory_samples"]),
                   theory_random_prefixes=int(e["theory_random_prefixes"]), theory_seed=int(e["theory_seed"]))


# ----------------------------------------------------------------------------- the workflow's job subtrees

def pretrain_job(cfg: dict, model: str) -> dict:
    b = cfg["paper_b"]
    return {"name": model, "model": b["models"][model], "digits": b["digits"], "train": b["train"],
            "seeds": b["seeds"]}


def _arch(model: dict) -> dict:
    """A tuning job depends on the network's shape; its pretraining settings reach it
    through the weights file."""
    return {k: v for k, v in model.items() if k not in ("task", "steps", "lr")}


def tune_job(cfg: dict, exp: str, run: str) -> dict:
    b = cfg["paper_b"]
    e = b["experiments"][exp]
    spec = e["runs"][run]
    method = spec["method"]
    # only what this run's optimiser uses, so e.g. a fine-tuning weight decay change
    # leaves prefix runs alone
    train = {k: v for k, v in b["train"].items() if k != "dropout" or method == "finetune"}
    train["weight_decay"] = {method: b["train"]["weight_decay"][method]}
    return {"experiment": exp, "run": run, "model": _arch(b["models"][e["model"]]), "digits": b["digits"],
            "train": train, "seeds": b["seeds"], "repetitions": b["repetitions"], "spec": spec}


def eval_job(cfg: dict, exp: str) -> dict:
    b = cfg["paper_b"]
    e = b["experiments"][exp]
    return {"experiment": exp, "model": _arch(b["models"][e["model"]]), "digits": b["digits"], "train": b["train"],
            "seeds": b["seeds"], "repetitions": b["repetitions"], "runs": e["runs"], "eval_tasks": e["eval_tasks"],
            "attention_maps": e.get("attention_maps", False), "shift_figure": e.get("shift_figure", False),
            "evaluate": b["evaluate"]}

def check_config(cfg: dict) -> None:
    """Paper B's part of settings.check_jobs (nothing without a paper_b section)."""
    b = cfg.get("paper_b")
    if not b:
        return
    _check_references(b)
    as_config_key(build, DigitSpec, b["digits"], "paper_b.digits")
    for exp in b["run_experiments"]:
        as_config_key(SortPretrainJob.from_dict, pretrain_job(cfg, b["experiments"][exp]["model"]))
        as_config_key(SortEvalJob.from_dict, eval_job(cfg, exp))  # includes every run's tune job


def _check_references(b: dict) -> None:
    for name in b["run_experiments"]:
        check_defined(name, b["experiments"], "paper_b.run_experiments", "experiment")
    for name, e in b["experiments"].items():
        check_defined(e["model"], b["models"], f"paper_b.experiments.{name}.model", "model")
