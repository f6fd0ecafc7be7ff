"""Paper B tuning runs at other learning rates and step counts: measured accuracy curves.

python benchmarks/sorting_curves.py --weights results/cpu/paper_b/pretrain/random_4l4h_L12.pt
       [--scale cpu] [--experiment b4_double_hist] [--run lora] [--tasks double_hist]
       [--lrs 1e-2 5e-3] [--steps 8000] [--curve-every 500] [--threads 2]

Trains the run of `--experiment`/`--run` (settings from config.yaml at --scale, pretrained GPT from
--weights) once per (lr, steps), and prints its training loss every tenth of the steps and each
member's test accuracy on its own task at the checkpoints (the curve figB6_budget draws).
Last lines read `curve <experiment>/<run> <task> lr=<lr> steps=<s> final=<accuracy> best=<accuracy>`.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from prefixlab import cli, settings, storage
from prefixlab.sorting import jobs as sorting_jobs, networks, tune
from prefixlab.sorting.jobs import SortTuneJob

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> list[str]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="the experiment's pretrained GPT (.pt)")
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--experiment", default="b4_double_hist")
    ap.add_argument("--run", default="lora")
    ap.add_argument("--tasks", nargs="+", default=None, help="a subset of the run's tasks (default: all)")
    ap.add_argument("--lrs", nargs="+", type=float, default=[0.0], help="0: the run's configured lr")
    ap.add_argument("--steps", nargs="+", type=int, default=[0], help="0: the run's configured steps")
    ap.add_argument("--curve-every", type=int, default=500)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    cli.keep_freed_memory()  # as every job runs (cli.py)
    if args.threads:
        torch.set_num_threads(args.threads)
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg = settings.resolve({**raw, "scale": args.scale}, ROOT / "workflow/schemas/config.schema.yaml")
    job_cfg = sorting_jobs.tune_job(cfg, args.experiment, args.run)
    lines = []
    for lr, steps in itertools.product(args.lrs, args.steps):
        spec = {**job_cfg["spec"], "lr": lr or job_cfg["spec"]["lr"], "steps": steps or job_cfg["spec"]["steps"]}
        if args.tasks:
            spec["tasks"] = list(args.tasks)
        job = SortTuneJob.from_dict({**job_cfg, "spec": spec, "train": {**job_cfg["train"], "curve_every": args.curve_every}})
        start = time.perf_counter()
        _, ds = tune.tune(job, storage.load_weights(args.weights, networks.init_weights(job.model)), "cpu")
        seconds = time.perf_counter() - start
        loss = ds["loss"].values
        every = max(1, spec["steps"] // 10)
        print(f"{args.experiment}/{args.run} lr {spec['lr']:g} steps {spec['steps']}: {seconds:.0f} s")
        print("  loss every", every, "steps:", np.round(loss[:, ::every].astype(float), 3).tolist())
        print("  checkpoints:", ds["checkpoint"].values.tolist())
        for i, task in enumerate(ds["task"].values.astype(str)):
            acc = ds["curve_accuracy"].values[i]
            print(f"  accuracy {task}:", np.round(acc.astype(float) * 100, 1).tolist(), flush=True)
            lines.append(f"curve {args.experiment}/{args.run} {task} lr={spec['lr']:g} steps={spec['steps']} "
                         f"final={acc[-1]:.3f} best={acc.max():.3f}")
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
