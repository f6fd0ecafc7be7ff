"""What the paper scale costs on this device: a few timed steps of every paper-scale job kind,
extrapolated to the configured steps, summed to an estimate of `all_figures` per paper.

python benchmarks/paper_scale.py [--device auto] [--steps 0] [--budget-s 0] [--papers a b]

Each training job (Paper A pretraining and tuning populations, Paper B pretraining and
tuning runs) runs at s and 2 s steps: the difference is the time per step, the rest the fixed
cost (set-up, the HardPT search), and the job's time is fixed + per step x configured steps.
Evaluations run on a part of their sequences and scale linearly. Paper A jobs of the same
cost class (same network, prefix length, search, pretrained or not: r2s and r2m, u2m and u2r)
are timed once. Untrained weights stand in for pretrained ones (the cost is the same).
Jobs run one after another, as on one GPU; the estimate is the sum. The last lines name the
slowest jobs and read `paper_scale_hours <paper>=<h>`. --budget-s stops measuring once the
budget is spent and says which jobs were left unmeasured.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

import torch
import yaml

from prefixlab.sorting import jobs as sorting_jobs
from prefixlab.coins import jobs as coins_jobs
from prefixlab.sorting import evaluate as sorting_evaluate, pretrain as sorting_pretrain, tune as sorting_tune
from prefixlab import cli, settings
from prefixlab.coins import evaluate, networks, pretrain, tune
from prefixlab.coins.jobs import EvalJob, PretrainJob
from prefixlab.sorting.jobs import SortEvalJob, SortPretrainJob, SortTuneJob

ROOT = Path(__file__).resolve().parents[1]
QUIET = 10**9  # log_every that never logs


@dataclasses.dataclass
class Estimate:
    paper: str
    kind: str
    job: str
    seconds: float
    per_step: float = 0.0
    fixed: float = 0.0
    steps: int = 0
    note: str = ""


class Clock:
    def __init__(self, device: str, budget_s: float):
        self.device, self.budget, self.start = device, budget_s, time.perf_counter()

    def __call__(self, fn):
        if self.device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t, out

    @property
    def spent(self) -> bool:
        return bool(self.budget) and time.perf_counter() - self.start > self.budget


def line(e: Estimate) -> str:
    per = f"{e.per_step * 1e3:8.1f}ms" if e.per_step else ""
    return f"{e.paper:5} {e.kind:14} {e.job:28} {per:>10} {e.fixed:8.1f} {e.steps or '':>7} {e.seconds:9.0f}s  {e.note}"


class Estimates(list):
    """Printed as they come, so a run stopped early still shows what it measured."""

    def append(self, e: Estimate) -> None:
        super().append(e)
        print(line(e), flush=True)

    def __iadd__(self, more):
        for e in more:
            self.append(e)
        return self


def guarded(out: Estimates, paper: str, kind: str, jobs: list[str], measure) -> None:
    """measure() appends its estimates; a job that does not fit in memory is recorded as such."""
    try:
        measure()
    except (MemoryError, RuntimeError) as err:
        if not isinstance(err, MemoryError) and "memory" not in str(err).lower() and "alloc" not in str(err).lower():
            raise
        for job in jobs:
            out.append(Estimate(paper, kind, job, float("nan"), note=f"out of memory ({str(err)[:60]})"))


def by_steps(clock: Clock, run, s: int, configured: int, warm: bool):
    """run(k) trains k steps; returns (estimated seconds, per step, fixed, output of the s-step run)."""
    if warm:
        clock(lambda: run(1))  # kernel compilation and allocator warm-up stay out of the timings
    t1, out = clock(lambda: run(s))
    t2, _ = clock(lambda: run(2 * s))
    per = max(t2 - t1, 0.0) / s or t2 / (2 * s)
    fixed = max(0.0, t1 - per * s)
    return fixed + per * configured, per, fixed, out


def cost_class(cfg: dict, exp: str) -> tuple:
    e = cfg["experiments"][exp]
    return (e["network"], e.get("prefix_length"), e.get("hard_search", True), e["pretrained"],
            tuple(coins_jobs.experiment_methods(cfg, exp)))


def paper_a(cfg: dict, clock: Clock, s: int, warm: bool, out: Estimates) -> None:
    dev = clock.device
    for arch in cfg["archs"]:
        variants = sorted({cfg["experiments"][e]["network"] for e in cfg["run_experiments"]
                           if cfg["experiments"][e]["pretrained"]})
        for v in variants:
            if clock.spent:
                out.append(Estimate("a", "pretrain", f"{arch}_{v}", float("nan"), note="not measured (budget)"))
                continue
            job = PretrainJob.from_dict(coins_jobs.pretrain_job(cfg, v, arch))

            def measure(job=job, v=v):
                def run(k):
                    return pretrain.run(dataclasses.replace(job, train=dataclasses.replace(job.train, steps=k, log_every=QUIET)), dev)

                sec, per, fixed, _ = by_steps(clock, run, s, job.train.steps, warm)
                out.append(Estimate("a", "pretrain", f"{arch}_{v}", sec, per, fixed, job.train.steps))

            guarded(out, "a", "pretrain", [f"{arch}_{v}"], measure)
        classes: dict[tuple, list[str]] = {}
        for exp in cfg["run_experiments"]:
            classes.setdefault(cost_class(cfg, exp), []).append(exp)
        for exps in classes.values():
            names = [f"{e}_{arch}" for e in exps]
            if clock.spent:
                out += [Estimate("a", k, n, float("nan"), note="not measured (budget)") for n in names for k in ("tune", "evaluate")]
                continue

            def measure(exp=exps[0], exps=exps):
                ej = EvalJob.from_dict(coins_jobs.eval_job(cfg, exp, arch))
                job = ej.tune_job
                weights = networks.init_params(job.network)

                def run(k):
                    return tune.run(dataclasses.replace(job, tune=dataclasses.replace(job.tune, steps=k, log_every=QUIET)),
                                    weights, dev)

                sec, per, fixed, (tune_ds, _, state) = by_steps(clock, run, s, job.tune.steps, warm)
                same = f"timed as {exp}" if len(exps) > 1 else ""
                for e in exps:
                    out.append(Estimate("a", "tune", f"{e}_{arch}", sec, per, fixed, job.tune.steps, same))
                n = min(ej.evaluate.chunk, ej.evaluate.sequences)
                part = dataclasses.replace(ej, evaluate=dataclasses.replace(ej.evaluate, sequences=n))
                t_eval, _ = clock(lambda: evaluate.regrets(part, weights if job.pretrained else None, tune_ds, state, dev))
                for e in exps:
                    out.append(Estimate("a", "evaluate", f"{e}_{arch}", t_eval * ej.evaluate.sequences / n,
                                        note=f"{n} of {ej.evaluate.sequences} sequences"))

            guarded(out, "a", "tune/evaluate", names, measure)


def paper_b(cfg: dict, clock: Clock, s: int, warm: bool, out: Estimates) -> None:
    dev, b = clock.device, cfg["paper_b"]
    pretrained = {}
    for name in dict.fromkeys(b["experiments"][exp]["model"] for exp in b["run_experiments"]):
        if clock.spent:
            out.append(Estimate("b", "sort_pretrain", name, float("nan"), note="not measured (budget)"))
            continue
        job = SortPretrainJob.from_dict(sorting_jobs.pretrain_job(cfg, name))

        def measure(job=job, name=name):
            def run(k):
                return sorting_pretrain.pretrain(dataclasses.replace(job, opt=dataclasses.replace(job.opt, steps=k, log_every=QUIET)), dev)

            sec, per, fixed, (weights, _) = by_steps(clock, run, s, job.opt.steps, warm)
            pretrained[name] = weights
            out.append(Estimate("b", "sort_pretrain", name, sec, per, fixed, job.opt.steps))

        guarded(out, "b", "sort_pretrain", [name], measure)
    for exp in b["run_experiments"]:
        base = pretrained.get(b["experiments"][exp]["model"])
        ej = SortEvalJob.from_dict(sorting_jobs.eval_job(cfg, exp))
        tuned = {}
        for run_name in ej.runs:
            if clock.spent or base is None:
                out.append(Estimate("b", "sort_tune", f"{exp}_{run_name}", float("nan"), note="not measured"))
                continue
            job = SortTuneJob.from_dict(sorting_jobs.tune_job(cfg, exp, run_name))

            def measure(job=job, run_name=run_name):
                def run(k):
                    return sorting_tune.tune(dataclasses.replace(job, opt=dataclasses.replace(job.opt, steps=k, log_every=QUIET)),
                                     base, dev)

                sec, per, fixed, (trained, _) = by_steps(clock, run, s, job.opt.steps, warm)
                tuned[run_name] = trained
                out.append(Estimate("b", "sort_tune", f"{exp}_{run_name}", sec, per, fixed, job.opt.steps))

            guarded(out, "b", "sort_tune", [f"{exp}_{run_name}"], measure)
        if clock.spent or len(tuned) < len(ej.runs):
            out.append(Estimate("b", "sort_evaluate", exp, float("nan"), note="not measured"))
            continue

        def measure(ej=ej, base=base, tuned=tuned):
            n = min(ej.chunk, ej.samples)
            t_eval, _ = clock(lambda: sorting_evaluate.evaluate(dataclasses.replace(ej, samples=n), base, tuned, dev))
            out.append(Estimate("b", "sort_evaluate", ej.experiment, t_eval * ej.samples / n, note=f"{n} of {ej.samples} samples"))

        guarded(out, "b", "sort_evaluate", [exp], measure)


def report(estimates: list[Estimate]) -> list[str]:
    lines = []
    for paper in sorted({e.paper for e in estimates}):
        mine = [e for e in estimates if e.paper == paper]
        total = sum(e.seconds for e in mine if e.seconds == e.seconds)
        missing = sum(e.seconds != e.seconds for e in mine)
        lines.append(f"paper {paper.upper()}: {total / 3600:.2f} h for {len(mine) - missing} measured jobs"
                     + (f", {missing} not measured (a lower bound)" if missing else ""))
    measured = sorted((e for e in estimates if e.seconds == e.seconds), key=lambda e: -e.seconds)
    lines.append("slowest: " + ", ".join(f"{e.kind} {e.job} {e.seconds / 3600:.2f} h" for e in measured[:5]))
    for paper in sorted({e.paper for e in estimates}):
        total = sum(e.seconds for e in estimates if e.paper == paper and e.seconds == e.seconds)
        lines.append(f"paper_scale_hours {paper}={total / 3600:.2f}")
    return lines


def main(argv=None) -> list[str]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--steps", type=int, default=0, help="steps of the shorter timed run (0: 20 on CUDA, 1 on CPU)")
    ap.add_argument("--budget-s", type=float, default=0, help="stop measuring after this many seconds (0: no limit)")
    ap.add_argument("--papers", nargs="+", default=["a", "b"], choices=("a", "b"))
    ap.add_argument("--archs", nargs="+", default=None, choices=("lstm", "transformer"),
                    help="Paper A torsos to measure (default: those the config runs)")
    ap.add_argument("--scale", default="paper")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--max-mem-gb", type=float, default=0,
                    help="address-space limit: a job needing more is reported as out of memory (0: none)")
    args = ap.parse_args(argv)
    cli.keep_freed_memory()  # as every job runs (cli.py)
    if args.max_mem_gb:
        import resource
        limit = int(args.max_mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logging.basicConfig(level=logging.WARNING)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg = settings.resolve({**raw, "scale": args.scale}, ROOT / "workflow/schemas/config.schema.yaml")
    if args.archs:
        cfg = {**cfg, "archs": [a for a in cfg["archs"] if a in args.archs]}
    s = args.steps or (20 if device == "cuda" else 1)
    clock = Clock(device, args.budget_s)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"paper-scale job estimates on {name}, scale {args.scale} (jobs one after another)")
    print(f"{'paper':5} {'kind':14} {'job':28} {'per step':>10} {'fixed s':>8} {'steps':>7} {'estimate':>10}  note")
    estimates = Estimates()
    if "a" in args.papers:
        paper_a(cfg, clock, s, device == "cuda", estimates)
    if "b" in args.papers and cfg.get("paper_b"):
        paper_b(cfg, clock, s, device == "cuda", estimates)
    lines = report(estimates)
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
