"""A whole paper-scale r2s tuning job (every method x 10 repetitions, batch 256, 1000 steps,
plus the HardPT search) with and without the fused kernels.

python benchmarks/tuning_job.py [--arch lstm|transformer|both] [--steps 1000] [--config config.yaml]

Settings come from config.yaml at paper scale (experiment r2s). The job runs twice, for
--steps and 2 x --steps tuning steps; the difference gives the time per step, the rest is
the fixed cost (population set-up, HardPT search), and the whole job's time is
fixed + per step x configured steps.
Untrained base weights stand in for pretrained ones (the cost is the same). On a CPU only
the reference path runs (the kernels need CUDA), at 1 and 2 steps: several minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from prefixlab.coins import jobs as coins_jobs
from prefixlab import cli, kernels, settings
from prefixlab.coins import networks, tune
from prefixlab.coins.jobs import TuneJob

ROOT = Path(__file__).resolve().parents[1]


def paper_job(config: Path, arch: str) -> TuneJob:
    import yaml

    cfg = settings.resolve(yaml.safe_load(config.read_text()), ROOT / "workflow/schemas/config.schema.yaml")
    return TuneJob.from_dict(coins_jobs.tune_job(cfg, "r2s", arch))


def time_job(job: TuneJob, steps: int, mode: str, device: str) -> float:
    short = dataclasses.replace(job, tune=dataclasses.replace(job.tune, steps=steps, log_every=10**9))
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with kernels.mode(mode):
        tune.run(short, networks.init_params(job.network), device)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="both", choices=("lstm", "transformer", "both"))
    ap.add_argument("--steps", type=int, default=0, help="steps of the shorter timed run (0: 100 on CUDA, 1 on CPU)")
    ap.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    args = ap.parse_args()
    cli.keep_freed_memory()  # as every job runs (cli.py)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    modes = ("reference", "triton") if device == "cuda" else ("reference",)
    for arch in (("lstm", "transformer") if args.arch == "both" else (args.arch,)):
        job = paper_job(args.config, arch)
        steps = args.steps or (100 if device == "cuda" else 1)
        members = len(tune.gradient_members(job))
        print(f"r2s/{arch}: {members} members, batch {job.tune.batch}, {job.tune.steps} steps configured, timing {steps}")
        results = {}
        for mode in modes:
            time_job(job, 1, mode, device)  # warm-up: kernel compilation, allocator
            t1, t2 = time_job(job, steps, mode, device), time_job(job, 2 * steps, mode, device)
            per_step = (t2 - t1) / steps
            fixed = max(0.0, t1 - per_step * steps)
            results[mode] = fixed + per_step * job.tune.steps
            print(f"  {mode:<9} {per_step * 1e3:9.1f} ms per step, {fixed:7.1f} s fixed (set-up, HardPT search) "
                  f"-> {results[mode]:8.1f} s for the whole job")
        if "triton" in results:
            print(f"tuning_job_speedup {arch}={results['reference'] / results['triton']:.2f}")


if __name__ == "__main__":
    main()
