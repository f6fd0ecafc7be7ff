"""Paper B: a prefix-tuning population vs the same runs one after another, and the
prefix-attention kernel vs the PyTorch reference inside the model.

python benchmarks/sorting_population.py [--steps 5] [--members 6] [--device auto]

Shape: experiment 3's model (4 layers, 4 heads, d 256, L 10, batch 64), one member
per task of the accuracy matrix. Prints seconds per tuning step; on CUDA also with
kernels forced to the reference path. The last line reads
`population_speedup sorting=<ratio>`.
"""

from __future__ import annotations

import argparse
import time

import torch

from prefixlab.sorting.configs import OptimConfig
from prefixlab import kernels
from prefixlab.sorting import networks, population
from prefixlab.sorting.data import TASKS, DigitSpec

SPEC = DigitSpec()


def seconds_per_step(cfg, base, members: int, steps: int, device) -> float:
    tasks = [t for t in TASKS if t != "random"][:members]
    tasks += tasks[: members - len(tasks)]
    seeds = list(range(members))
    own = {n: t.to(device) for n, t in networks.member_tensors(cfg, base, "prefix", members, seeds).items()}
    model = networks.Model(cfg, base, own)
    opt = OptimConfig(steps=1, lr=1e-3, log_every=10**9, weight_decay=0.01)
    population.train(model, "prefix", tasks, seeds, SPEC, opt, device, 0)  # warm-up (and Triton compilation)
    opt = OptimConfig(steps=steps, lr=1e-3, log_every=10**9, weight_decay=0.01)
    if device != "cpu":
        torch.cuda.synchronize()
    start = time.perf_counter()
    population.train(model, "prefix", tasks, seeds, SPEC, opt, device, 0)
    if device != "cpu":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--members", type=int, default=6)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = networks.GPTConfig(layers=4, heads=4, d=256, prefix_length=10)
    base = {n: t.to(device) for n, t in networks.init_weights(cfg).items()}
    print(f"device {device}; model 4 layers x 4 heads, d 256, L 10, batch 64; {args.members} prefix-tuning members")
    pop = seconds_per_step(cfg, base, args.members, args.steps, device)
    solo = seconds_per_step(cfg, base, 1, args.steps, device)
    print(f"population of {args.members}: {pop * 1e3:.1f} ms/step; one member: {solo * 1e3:.1f} ms/step; "
          f"{args.members} one after another: {args.members * solo * 1e3:.1f} ms/step")
    if device == "cuda":
        with kernels.mode("reference"):
            ref = seconds_per_step(cfg, base, args.members, args.steps, device)
        print(f"population with the PyTorch reference attention: {ref * 1e3:.1f} ms/step "
              f"(fused kernel speedup {ref / pop:.2f}x)")
    print(f"population_speedup sorting={args.members * solo / pop:.2f}")


if __name__ == "__main__":
    main()
