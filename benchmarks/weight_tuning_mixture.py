"""Why does weight tuning miss TargetBayes on the two-coin mixture (r2m)? Measured curves.
(Any experiment and tuning method works: --experiment r2s --methods SoftPT.)

python benchmarks/weight_tuning_mixture.py --weights results/quick/.../weights.pt [--scale quick]
       [--arch lstm] [--methods FullWT] [--lrs 3e-2 5e-3 1e-3] [--steps 200 800]
       [--clip-over all tuned] [--batch 0] [--sequences 512] [--repetitions 0]

Tunes only the given weight methods of experiment r2m (settings from config.yaml at --scale,
pretrained weights from --weights, or untrained with --weights none), one job per
(lr, steps, clip_norm_over, batch), and evaluates each on the experiment's target. Prints per job the
median over repetitions of cumulative regret minus TargetBayes's at n = 49 (the claim's number,
margin 0.1) and at n = 199, and the tuning loss of the last tenth of the steps.
Last lines read `gap <method> lr=<lr> steps=<s> clip=<over> batch=<b> n49=<gap> n199=<gap>`.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from prefixlab import cli, settings
from prefixlab.coins import evaluate, jobs as coins_jobs, networks, tune
from prefixlab.coins.jobs import EvalJob

ROOT = Path(__file__).resolve().parents[1]


def gap_at(ds, method: str, step: int) -> float:
    cum = ds["cum_regret"].sel(eval_dist=ds.attrs["target"]).values  # (method, repetition, step)
    methods = list(ds["method"].values)
    n = min(step, cum.shape[-1] - 1)
    return float(np.median(cum[methods.index(method), :, n]) - cum[methods.index("TargetBayes"), 0, n])


def main(argv=None) -> list[str]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="pretrained weights (.pt) of the r2m network, or 'none'")
    ap.add_argument("--scale", default="quick")
    ap.add_argument("--arch", default="lstm", choices=("lstm", "transformer"))
    ap.add_argument("--experiment", default="r2m", help="any configured experiment (its target is evaluated)")
    ap.add_argument("--methods", nargs="+", default=["FullWT"])
    ap.add_argument("--lrs", nargs="+", type=float, default=[0.0],
                    help="learning rate of every tuned method (0: the scale's tune.lr and tune.method_lr)")
    ap.add_argument("--steps", nargs="+", type=int, default=[0], help="0: the scale's tune.steps")
    ap.add_argument("--clip-over", nargs="+", default=["all"], choices=("all", "tuned"))
    ap.add_argument("--batch", nargs="+", type=int, default=[0], help="0: the scale's tune.batch")
    ap.add_argument("--sequences", type=int, default=512, help="evaluation sequences (the scale's if 0)")
    ap.add_argument("--repetitions", type=int, default=0,
                    help="repetitions per method (0: the scale's; fewer make a paper-scale point affordable on a CPU)")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args(argv)
    cli.keep_freed_memory()  # as every job runs (cli.py)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg = settings.resolve({**raw, "scale": args.scale}, ROOT / "workflow/schemas/config.schema.yaml")
    base = EvalJob.from_dict(coins_jobs.eval_job(cfg, args.experiment, args.arch))
    weights = None if args.weights == "none" else torch.load(args.weights, weights_only=True)
    lines = []
    print(f"{args.experiment} {args.arch} at scale {args.scale}: {base.tune_job.network}")
    print(f"{'method':8} {'lr':>8} {'steps':>6} {'clip':>5} {'batch':>5} {'n=49 gap':>9} {'n=199 gap':>9} "
          f"{'late loss':>9} {'seconds':>7}")
    for lr, steps, over, batch in itertools.product(args.lrs, args.steps, args.clip_over, args.batch):
        t = base.tune_job.tune
        # a given --lrs value applies to every tuned method, over the scale's tune.method_lr
        t = dataclasses.replace(t, methods=tuple(args.methods), hard_search=False, lr=lr or t.lr,
                                method_lr=() if lr else t.method_lr,
                                steps=steps or t.steps, clip_norm_over=over, batch=batch or t.batch,
                                repetitions=args.repetitions or t.repetitions)
        ev = dataclasses.replace(base.evaluate, sequences=args.sequences or base.evaluate.sequences,
                                 chunk=min(base.evaluate.chunk, args.sequences or base.evaluate.chunk))
        ej = dataclasses.replace(base, tune_job=dataclasses.replace(base.tune_job, tune=t), evaluate=ev)
        start = time.perf_counter()
        tune_ds, _, state = tune.run(ej.tune_job, weights, "cpu")
        ds = evaluate.regrets(ej, weights, tune_ds, state, "cpu")
        seconds = time.perf_counter() - start
        loss = tune_ds["tune_loss"]
        late = float(loss.isel(step=slice(-max(1, loss.sizes["step"] // 10), None)).mean())
        for m in args.methods:
            g49, g199 = gap_at(ds, m, 49), gap_at(ds, m, 199)
            print(f"{m:8} {t.lr_of(m):8.1e} {t.steps:6d} {over:>5} {t.batch:5d} {g49:9.3f} {g199:9.3f} {late:9.3f} "
                  f"{seconds:7.1f}", flush=True)
            lines.append(f"gap {m} lr={t.lr_of(m):g} steps={t.steps} clip={over} batch={t.batch} n49={g49:.3f} "
                         f"n199={g199:.3f}")
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
