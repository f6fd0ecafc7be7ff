"""Population vs one-after-another tuning throughput, and matmul efficiency.

python benchmarks/population.py [--steps 5] [--threads 0]

Part 1: tuning steps per second of one population of all gradient methods x 3
repetitions (batch 32, length 50, prefix 6, paper-sized networks) against the same
members trained one after another in this process.
Part 2: per-member time of one tuning step at batch 256 for SoftPT and FullWT, and
the fraction of this CPU's fp32 matmul peak it reaches. FLOPs counted: 3 x the
forward matmul FLOPs (backward = 2 x forward), forward = 2 x multiply-accumulates
of every matmul (projections, attention QK^T and AV over all T keys, MLP, LSTM
input and recurrent products, embedding, unembedding); elementwise work not counted.
The last two lines read `population_speedup <arch>=<ratio>`.
"""

from __future__ import annotations

import argparse
import time

import torch

from prefixlab.coins import networks, population
from prefixlab.coins.configs import NetworkConfig, SourceConfig
from prefixlab.coins.population import Member
from prefixlab.coins.methods import GRADIENT_METHODS

SINGLE = SourceConfig(kind="single", biases=((0.2, 0.8),))
L, N = 6, 50


def methods_for(arch):
    return [m for m in GRADIENT_METHODS if not (m == "LoRAWT" and arch != "transformer")]


def time_training(net, base, members, steps, batch, reps):
    pop = population.build(net, base, members, L, prefix_seed=100)
    kw = dict(steps=1, batch=batch, length=N, lr=5e-3, clip=1.0, data_seeds=list(range(11, 11 + reps)), log_every=10**9)
    population.train(pop, SINGLE, **kw)  # warm-up
    kw["steps"] = steps
    start = time.perf_counter()
    population.train(pop, SINGLE, **kw)
    return (time.perf_counter() - start) / steps


def forward_flops_per_sequence(net: NetworkConfig) -> float:
    T, V, D, W = 1 + L + N, net.vocab, net.d, net.width
    macs = T * (V * D + networks.torso_out_dim(net) * V)
    if net.arch == "lstm":
        fan = D
        for _ in range(net.layers):
            macs += T * (fan * 4 * W + W * 4 * W)
            fan = W
    else:
        macs += net.layers * T * (4 * D * D + 2 * T * D + 2 * D * 4 * W)
    return 2.0 * macs


def matmul_peak() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(2):
        a @ b
    n = 10
    start = time.perf_counter()
    for _ in range(n):
        a @ b
    return 2 * 2048**3 * n / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    peak = matmul_peak()
    print(f"threads={torch.get_num_threads()} fp32 matmul peak {peak / 1e9:.1f} GFLOP/s (2048^3 torch.matmul)")
    speedups = {}
    for arch in ("lstm", "transformer"):
        net = NetworkConfig(arch=arch)
        base = networks.init_params(net)
        members = [Member(m, r) for m in methods_for(arch) for r in range(3)]
        t_pop = time_training(net, base, members, args.steps, 32, 3)
        t_seq = sum(time_training(net, base, [m], args.steps, 32, 3) for m in members)
        speedups[arch] = t_seq / t_pop
        print(f"{arch}: {len(members)} members ({len(methods_for(arch))} methods x 3), batch 32: "
              f"population {1 / t_pop:.2f} steps/s, one after another {1 / t_seq:.2f} steps/s, speedup {speedups[arch]:.2f}x")
        for method in ("SoftPT", "FullWT"):
            reps = 3
            t = time_training(net, base, [Member(method, r) for r in range(reps)], max(2, args.steps // 2), 256, reps)
            flops = 3 * forward_flops_per_sequence(net) * 256 * reps
            print(f"{arch} {method}: batch 256, {reps} members: {t / reps * 1e3:.0f} ms per member-step, "
                  f"{flops / t / 1e9:.1f} GFLOP/s = {100 * flops / t / peak:.0f}% of matmul peak")
    for arch, s in speedups.items():
        print(f"population_speedup {arch}={s:.2f}")


if __name__ == "__main__":
    main()
