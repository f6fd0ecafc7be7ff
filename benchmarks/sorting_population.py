"""Paper B's tuning populations at paper shapes: per-member cost and useful FLOP rate.

python benchmarks/sorting_population.py [--steps 3] [--device auto] [--threads 0] [--profile]

Shapes (config.yaml, SPEC 2.3): experiment 3's prefix population (4 layers, 4 heads, d 256,
L 10, batch 64, one member per pretraining task) and experiment 4's rank-1 LoRA run
(the L 12 model). A prefix or LoRA member runs the shared frozen base; a fine-tuning
member has its own weights.

Useful FLOPs: forward = 2 x multiply-accumulates of every matmul on the positions a
member computes (prefix tuning and LoRA: the 19 content positions, keys over prefix +
causal content; fine-tuning, whose dropout differs per sample: all 29 positions), plus
what runs once per member: prefix tuning's key/value projections, LoRA's slot rows (every
layer, as they run once without dropout).
Prefix and LoRA members need 2 x forward (forward and input gradients; LoRA's own
gradients are rank 1), fine-tuning members 3 x. Rates are % of the fp32 matmul peak
(2048^3 torch.matmul on this device).

Machine-readable last lines: prefix_member_cost sorting=<ratio>,
population_peak sorting_prefix=<percent>, population_peak sorting_lora=<percent>.
On CUDA the prefix population is also timed with the PyTorch reference attention.
"""

from __future__ import annotations

import argparse
import time

import torch

from prefixlab import cli, kernels
from prefixlab.sorting import networks, population
from prefixlab.sorting.configs import OptimConfig
from prefixlab.sorting.data import PRETRAIN_TASKS, DigitSpec

SPEC = DigitSpec()
BATCH = 64


def forward_flops(cfg: networks.GPTConfig, method: str) -> float:
    """Forward FLOPs of one member on one batch."""
    D, V, N, L = cfg.d, cfg.vocab, cfg.digits, cfg.prefix_length
    if method == "prefix":
        S, keys = 2 * N - 1, L + N  # content positions; mean keys seen (prefix + causal half, counted full)
        slot_macs = cfg.layers * L * 3 * D * D  # the prefix's keys and values, once per member
    elif method == "lora":  # the slot rows once per member (causal among themselves), then the content
        S, keys = 2 * N - 1, L + N
        slot_macs = cfg.layers * L * (12 * D * D + 2 * L * D)
    else:
        S, keys, slot_macs = L + 2 * N - 1, (L + 2 * N - 1), 0
    per_position = cfg.layers * (12 * D * D + 2 * keys * D) + D * V
    return 2.0 * (BATCH * S * per_position + slot_macs)


def matmul_peak(device) -> float:
    a, b = torch.randn(2048, 2048, device=device), torch.randn(2048, 2048, device=device)
    for _ in range(2):
        a @ b
    n = 10 if device == "cpu" else 200
    sync(device)
    start = time.perf_counter()
    for _ in range(n):
        a @ b
    sync(device)
    return 2 * 2048**3 * n / (time.perf_counter() - start)


def sync(device):
    if device != "cpu":
        torch.cuda.synchronize()


def seconds_per_step(cfg, base, method: str, tasks: list[str], steps: int, device) -> float:
    seeds = list(range(len(tasks)))
    own = {n: t.to(device) for n, t in networks.member_tensors(cfg, base, method, len(tasks), seeds).items()}
    model = networks.Model(cfg, base, own)
    opt = OptimConfig(steps=1, lr=1e-3, log_every=10**9, weight_decay=0.01, batch=BATCH)
    population.train(model, method, tasks, seeds, SPEC, opt, device, 0)  # warm-up (and Triton compilation)
    opt = OptimConfig(steps=steps, lr=1e-3, log_every=10**9, weight_decay=0.01, batch=BATCH)
    sync(device)
    start = time.perf_counter()
    population.train(model, method, tasks, seeds, SPEC, opt, device, 0)
    sync(device)
    return (time.perf_counter() - start) / steps


def profile_step(cfg, base, method, tasks, device):
    from torch.profiler import profile

    seconds_per_step(cfg, base, method, tasks, 1, device)
    with profile() as prof:
        seconds_per_step(cfg, base, method, tasks, 1, device)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    cli.keep_freed_memory()  # as every job runs (cli.py)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = matmul_peak(device)
    print(f"device {device}, threads={torch.get_num_threads()}, fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    exp3 = networks.GPTConfig(layers=4, heads=4, d=256, prefix_length=10)
    exp4 = networks.GPTConfig(layers=4, heads=4, d=256, prefix_length=12)
    tasks = list(PRETRAIN_TASKS)
    lines = []
    cost, rate = {}, {}
    for method, cfg, members in (("prefix", exp3, tasks), ("finetune", exp3, tasks), ("lora", exp4, ["double_hist"])):
        base = {n: t.to(device) for n, t in networks.init_weights(cfg).items()}
        t = seconds_per_step(cfg, base, method, members, args.steps, device)
        flops = (3 if method == "finetune" else 2) * forward_flops(cfg, method) * len(members)
        cost[method], rate[method] = t / len(members), flops / t
        print(f"{method}: {len(members)} member(s), batch {BATCH}: {cost[method] * 1e3:.1f} ms per member-step, "
              f"{flops / t / 1e9:.1f} useful GFLOP/s = {100 * flops / t / peak:.0f}% of peak")
        if args.profile:
            profile_step(cfg, base, method, members, device)
        if method == "prefix" and device == "cuda":
            with kernels.mode("reference"):
                ref = seconds_per_step(cfg, base, method, members, args.steps, device)
            print(f"prefix population with the PyTorch reference attention: {ref * 1e3:.1f} ms/step "
                  f"(fused kernel speedup {ref / t:.2f}x)")
    ratio = cost["prefix"] / cost["finetune"]
    print(f"a prefix member costs {ratio:.2f}x a fine-tuning member (goal <= 0.6)")
    lines.append(f"prefix_member_cost sorting={ratio:.2f}")
    lines.append(f"population_peak sorting_prefix={100 * rate['prefix'] / peak:.0f}")
    lines.append(f"population_peak sorting_lora={100 * rate['lora'] / peak:.0f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
