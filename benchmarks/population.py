"""Paper A's tuning population on this machine: per-member cost, useful FLOP rate, LSTM
recurrence against torch.nn.LSTM, evaluation and the HardPT search.

python benchmarks/population.py [--steps 2] [--rounds 3] [--repetitions 10] [--threads 0] [--profile] [--bound] [--arch both]

Paper shapes throughout: d 128, width 128, batch 256, length 50 + prefix 6 (57 positions).
Useful FLOPs count only what a member needs, as the chain rule prunes it: 2 x the
multiply-accumulates of every matmul (embedding, projections, attention QK^T and AV over all
keys, MLP, LSTM products, unembedding) over the rows a member needs, forward, plus the
backward products that lead to a gradient it uses. A weight member (its clipping norm takes
every network gradient, SPEC 1.9) needs every input and weight gradient: the backward is
twice the forward but for the embedding's input. A prefixed member computes its BOS and
slots once (every gradient but the weights'), then 49 content rows per sequence, whose
layer-0 inputs do not depend on the prefix: no gradient through their embedding, their
first layer's query/key/value projections (Transformer) or input projection (LSTM); their
first attention needs dP over every key and dK, dV of the head's keys only; later layers,
the MLP, the output projection, the recurrence and the unembedding need every input
gradient. Any other member BOS and 49 tokens per sequence (it also feeds x_50, which predicts
nothing: not counted).
Elementwise work is not counted. Rates are given as % of this CPU's fp32 matmul peak
(2048^3 torch.matmul), so they compare across machines.

1. per-member step: 3 SoftPT members vs 3 FullWT members, timed in turn --rounds times
   (ms per member-step, medians, ratio)
2. the paper population (every gradient method x repetitions) for one step: GFLOP/s,
   % of peak, and its per-member cost against the 3-member populations above
3. the LSTM layer as the torso runs it (input projection + recurrence, forward + backward,
   one member) against torch.nn.LSTM at the same shapes, frozen weights (SoftPT) and trained
   (FullWT), in turn --rounds times (median ratio)
4. forward-only: evaluation (a 512-sequence chunk of 200 steps, every evaluation member)
   and the HardPT search (all V^L prefixes on a 512-sequence chunk of the search set)
--profile: torch profiler table (top ops by self time) of one population step per torso.
--check-count: the FLOP count of one SoftPT and one FullWT member's step beside torch's
FlopCounterMode over the same step (reference kernels), then exit.
--bound: one more population step, evaluation and search each run under product_time's
timer: the seconds inside matrix products, attention and the fused LSTM, and the useful
FLOPs over those seconds alone, the rate the job would reach if everything else were free
(against the matmul peak measured just before that pass: this machine's speed wanders).

Machine-readable last lines: prefix_member_cost <arch>=<ratio>, population_peak
<arch>=<percent>, lstm_vs_torch <method>=<ratio>, forward_peak <job>=<percent>, and with
--bound product_bound <job>=<percent>.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import torch

import product_time
from product_time import ProductTimer

from prefixlab import cli
from prefixlab.coins import networks, population, tune
from prefixlab.coins.configs import NetworkConfig, SourceConfig
from prefixlab.coins.methods import GRADIENT_METHODS, WEIGHT_METHODS
from prefixlab.coins.population import Member

SINGLE = SourceConfig(kind="single", biases=((0.2, 0.8),))
L, N, BATCH = 6, 50, 256
EVAL_N, EVAL_CHUNK = 200, 512


def methods_for(arch):
    return [m for m in GRADIENT_METHODS if not (m == "LoRAWT" and arch != "transformer")]


def forward_macs(net: NetworkConfig, rows: int, keys: int) -> dict[str, float]:
    """Multiply-accumulates of a forward over `rows` positions attending to `keys` keys, per part."""
    V, D, W = net.vocab, net.d, net.width
    macs = {"embed": rows * V * D, "unembed": rows * networks.torso_out_dim(net) * V}
    fan = D
    for l in range(net.layers):
        if net.arch == "lstm":
            macs[f"input{l}"], macs[f"recurrent{l}"] = rows * fan * 4 * W, rows * W * 4 * W
            fan = W
        else:
            macs[f"qkv{l}"], macs[f"out{l}"] = rows * 3 * D * D, rows * D * D
            macs[f"mlp{l}"], macs[f"attention{l}"] = rows * 2 * D * 4 * W, rows * 2 * keys * D
    return macs


def forward_flops(net: NetworkConfig, rows: int, keys: int) -> float:
    return 2.0 * sum(forward_macs(net, rows, keys).values())


def backward_macs(net: NetworkConfig, forward: dict[str, float], rows: int, keys: int, prefix_keys: int | None) -> float:
    """The backward products a member needs after `forward` (forward_macs(net, rows, keys)):
    prefix_keys None for every input and weight gradient (a weight member), else the number of
    head keys whose gradient the rows' layer-0 attention must give (a prefixed member's content
    rows, whose layer-0 inputs do not depend on the prefix); 0 for a head whose every input
    gradient is needed but no weight's."""
    if prefix_keys is None:
        return sum(2 * m for m in forward.values()) - forward["embed"]  # the one-hot input needs none
    total = 0.0
    for part, m in forward.items():
        if part == "embed" or (prefix_keys and part in ("qkv0", "input0")):
            continue
        if part.startswith("attention"):
            # dQ, dK, dV and dP: twice the forward's two products; behind a head at layer 0
            # only dP (every key) and the head keys' dK and dV
            total += rows * (keys + 2 * prefix_keys) * net.d if (prefix_keys and part == "attention0") else 2 * m
        else:
            total += m
    return total


def member_segments(method: str, sequences: int, length: int) -> list[tuple[int, int, int | None]]:
    """(rows, keys, prefix_keys for backward_macs) of what a member computes on `sequences` of
    `length` tokens: a prefixed member its BOS and L slot rows once, then length - 1 content rows
    per sequence behind them (as networks.forward computes it); any other member BOS and
    length - 1 tokens per sequence."""
    if method in population.METHOD_PREFIX_KIND:
        return [(1 + L, 1 + L, 0), (sequences * (length - 1), L + length, 1 + L)]
    return [(sequences * length, length, None)]


def member_step_flops(net: NetworkConfig, method: str, sequences: int, length: int, attention: bool = True) -> float:
    """A member's forward and the backward it needs (member_segments).
    attention=False: the other matmuls alone (what torch's FlopCounterMode sees on the CPU)."""
    macs = 0.0
    for rows, keys, prefix_keys in member_segments(method, sequences, length):
        forward = {k: v for k, v in forward_macs(net, rows, keys).items() if attention or not k.startswith("attention")}
        macs += sum(forward.values()) + backward_macs(net, forward, rows, keys, prefix_keys)
    return 2.0 * macs


def member_forward_flops(net: NetworkConfig, method: str, sequences: int, length: int) -> float:
    """A member's forward alone (member_segments)."""
    return sum(forward_flops(net, rows, keys) for rows, keys, _ in member_segments(method, sequences, length))


def useful_step_flops(net, members, batch) -> float:
    """FLOPs a step needs: every member's forward and the backward it needs."""
    assert all(m.method in WEIGHT_METHODS or m.method in population.METHOD_PREFIX_KIND for m in members)
    return sum(member_step_flops(net, m.method, batch, N) for m in members)


def matmul_peak() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(2):
        a @ b
    n = 10
    start = time.perf_counter()
    for _ in range(n):
        a @ b
    return 2 * 2048**3 * n / (time.perf_counter() - start)


def seconds_per_step(net, base, members, steps, batch=BATCH, timer=None):
    """Seconds per step; with a ProductTimer, one more step runs under it."""
    pop = population.build(net, base, members, L, prefix_seed=100)
    reps = max(m.repetition for m in members) + 1
    kw = dict(batch=batch, length=N, lr=5e-3, clip=1.0, data_seeds=list(range(11, 11 + reps)), log_every=10**9)
    population.train(pop, SINGLE, steps=1, **kw)  # warm-up
    start = time.perf_counter()
    population.train(pop, SINGLE, steps=steps, **kw)
    seconds = (time.perf_counter() - start) / steps
    if timer is not None:
        timed_pass(timer, lambda: population.train(pop, SINGLE, steps=1, **kw))
    return seconds


def timed_pass(timer: ProductTimer, fn) -> None:
    """One more run of fn under the timer, beside the matmul peak of this moment (this
    machine's speed wanders over minutes)."""
    timer.peak = matmul_peak()
    with timer:
        fn()


def bound_line(timer: ProductTimer, label: str, job: str, seconds: float, flops: float) -> str:
    """Print the timed pass's split (product_time.report) and return its machine-readable line."""
    return f"product_bound {job}={product_time.report(label, timer, seconds, flops, timer.peak):.0f}"


def best_of(fn, runs=3):
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def lstm_vs_torch(net: NetworkConfig, train_weights: bool, rounds: int) -> list[tuple[float, float]]:
    """(ours, torch.nn.LSTM) seconds, best of 3 each, timed in turn `rounds` times: input
    projection + recurrence, forward + backward, one member."""
    T, D, W = 1 + L + N, net.d, net.width
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, T, D, generator=gen, requires_grad=True)
    p = networks.init_params(net)
    wx, wh, b = (p[k].clone().requires_grad_(train_weights) for k in ("lstm0_wx", "lstm0_wh", "lstm0_b"))
    up = torch.randn(BATCH, T, W, generator=gen)

    def ours():  # the torso's own dispatch: PyTorch's fused LSTM on the CPU, the kernel on CUDA
        h, _ = networks.lstm_torso(net, {"lstm0_wx": wx, "lstm0_wh": wh, "lstm0_b": b}, x[None], None, None, False)
        torch.autograd.grad(h, [x] + ([wx, wh, b] if train_weights else []), up[None])

    ref = torch.nn.LSTM(D, W, batch_first=True)
    for q in ref.parameters():
        q.requires_grad_(train_weights)

    def theirs():
        h, _ = ref(x)
        torch.autograd.grad(h, [x] + (list(ref.parameters()) if train_weights else []), up)

    return [(best_of(ours), best_of(theirs)) for _ in range(rounds)]


def eval_members(arch):
    methods = [m for m in methods_for(arch)]
    return [Member(m, r) for m in methods for r in range(10)] + [Member("NoTuning", 0), Member("HardPT", 0)] + \
        [Member("RandomPF", r) for r in range(10)]


@torch.no_grad()
def forward_rate(net, base, members, sequences, length, token_prefixes=None, timer=None):
    """Seconds and FLOPs of one forward of `members` on `sequences` x `length` tokens; with a
    ProductTimer, one more forward runs under it."""
    pop = population.build(net, base, members, L, prefix_seed=100, token_prefixes=token_prefixes)
    tokens = torch.randint(net.vocab, (sequences, length), generator=torch.Generator().manual_seed(1))
    onehot = torch.nn.functional.one_hot(tokens, net.vocab).float()

    def run():
        step = tune.chunk_size(pop.size, 1 + L + length, net)
        for s in range(0, sequences, step):
            pop.forward(onehot[s:s + step].expand(pop.size, -1, -1, -1))

    t = best_of(run, runs=1)
    if timer is not None:
        timed_pass(timer, run)
    return t, sum(member_forward_flops(net, m.method, sequences, length) for m in members)


def check_count(net, base, batch=4):
    """Print this count's matmul FLOPs of one member's step beside torch's FlopCounterMode over the
    same step through the reference kernels (autograd runs only the products a gradient needs).
    FlopCounterMode does not see the CPU's attention; a member without prefix also feeds x_N,
    which this count leaves out (its rows: 51 executed, 50 counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    from prefixlab import kernels

    for method in ("SoftPT", "FullWT"):
        pop = population.build(net, base, [Member(method, 0)], L, prefix_seed=100)
        kw = dict(batch=batch, length=N, lr=5e-3, clip=1.0, data_seeds=[11], log_every=10**9)
        with kernels.mode("reference"), FlopCounterMode(display=False) as counter:
            population.train(pop, SINGLE, steps=1, **kw)
        ours = member_step_flops(net, method, batch, N, attention=False)
        print(f"{net.arch} {method} count check, batch {batch}: FlopCounterMode {counter.get_total_flops() / 1e6:.2f} "
              f"MFLOP executed, this count {ours / 1e6:.2f} MFLOP (matmuls but attention)")


def profile_step(net, base, members):
    from torch.profiler import profile

    pop = population.build(net, base, members, L, prefix_seed=100)
    kw = dict(batch=BATCH, length=N, lr=5e-3, clip=1.0, data_seeds=list(range(11, 21)), log_every=10**9)
    population.train(pop, SINGLE, steps=1, **kw)
    with profile() as prof:
        population.train(pop, SINGLE, steps=1, **kw)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="SoftPT and FullWT, and ours and torch.nn.LSTM, timed in turn this many times (medians)")
    ap.add_argument("--repetitions", type=int, default=10, help="repetitions of the paper population (published: 10)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--check-count", action="store_true", help="the FLOP count against torch's FlopCounterMode, then exit")
    ap.add_argument("--bound", action="store_true",
                    help="time the products inside the population step, evaluation and search (product_time.py)")
    ap.add_argument("--arch", choices=("lstm", "transformer", "both"), default="both")
    args = ap.parse_args()
    cli.keep_freed_memory()  # as every job runs (cli.py)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    peak = matmul_peak()
    print(f"threads={torch.get_num_threads()} fp32 matmul peak {peak / 1e9:.1f} GFLOP/s (2048^3 torch.matmul)")
    lines = []
    for arch in ("lstm", "transformer") if args.arch == "both" else (args.arch,):
        net = NetworkConfig(arch=arch)
        base = networks.init_params(net)
        if args.check_count:
            check_count(net, base)
            continue
        # SoftPT and FullWT in turn, `rounds` times, medians: this machine's speed wanders by 10-20%
        # over minutes, which one timing of each (the benchmark before 2026-12-06) read as their ratio
        times = {"SoftPT": [], "FullWT": []}
        for _ in range(args.rounds):
            for method in times:
                times[method].append(seconds_per_step(net, base, [Member(method, r) for r in range(3)], args.steps))
        cost = {}
        for method, ts in times.items():
            t = statistics.median(ts)
            cost[method] = t / 3
            flops = useful_step_flops(net, [Member(method, r) for r in range(3)], BATCH)
            print(f"{arch} {method}: 3 members, batch {BATCH}: {cost[method] * 1e3:.0f} ms per member-step "
                  f"(median of {' / '.join(f'{x / 3 * 1e3:.0f}' for x in ts)}), "
                  f"{flops / t / 1e9:.1f} useful GFLOP/s = {100 * flops / t / peak:.0f}% of peak")
        ratio = cost["SoftPT"] / cost["FullWT"]
        flop_ratio = useful_step_flops(net, [Member("SoftPT", 0)], BATCH) / useful_step_flops(net, [Member("FullWT", 0)], BATCH)
        print(f"{arch}: a prefix member costs {ratio:.2f}x a FullWT member (useful FLOPs: {flop_ratio:.2f}x; goal <= 0.6)")
        lines.append(f"prefix_member_cost {arch}={ratio:.2f}")

        members = [Member(m, r) for m in methods_for(arch) for r in range(args.repetitions)]
        timer = ProductTimer() if args.bound else None
        t = seconds_per_step(net, base, members, max(1, args.steps // 2), timer=timer)
        flops = useful_step_flops(net, members, BATCH)
        small = sum(cost["FullWT" if m.method in WEIGHT_METHODS else "SoftPT"] for m in members)
        chunks = population.member_chunks(population.build(net, base, members, L), BATCH, 1 + L + N)
        print(f"{arch} paper population: {len(members)} members ({len(methods_for(arch))} methods x {args.repetitions}), "
              f"{len(chunks)} chunks, {t:.1f} s per step, {flops / t / 1e9:.1f} useful GFLOP/s = "
              f"{100 * flops / t / peak:.0f}% of peak; per member {t / small:.2f}x the 3-member cost")
        lines.append(f"population_peak {arch}={100 * flops / t / peak:.0f}")
        if timer is not None:
            lines.append(bound_line(timer, f"{arch} paper population", f"population_{arch}", t, flops))
        if args.profile:
            profile_step(net, base, [Member(m, r) for m in methods_for(arch) for r in range(2)])

        if arch == "lstm":
            for method, train_weights in (("SoftPT", False), ("FullWT", True)):
                # the same oneDNN call on both sides: single timings scattered 0.88-1.05x, so the
                # ratio is the median of rounds timed in turn
                pairs = lstm_vs_torch(net, train_weights, args.rounds)
                ratio = statistics.median(o / t for o, t in pairs)
                print(f"lstm recurrence, one member, {method} (weights {'trained' if train_weights else 'frozen'}): "
                      f"ours / torch.nn.LSTM {', '.join(f'{o * 1e3:.0f} / {t * 1e3:.0f}' for o, t in pairs)} ms: "
                      f"median ratio {ratio:.2f}")
                lines.append(f"lstm_vs_torch {method}={ratio:.2f}")

        timer = ProductTimer() if args.bound else None
        t, flops = forward_rate(net, base, eval_members(arch), EVAL_CHUNK, EVAL_N, timer=timer)
        print(f"{arch} evaluation: {len(eval_members(arch))} members x {EVAL_CHUNK} sequences x {EVAL_N} steps: {t:.1f} s, "
              f"{flops / t / 1e9:.1f} GFLOP/s = {100 * flops / t / peak:.0f}% of peak")
        lines.append(f"forward_peak evaluate_{arch}={100 * flops / t / peak:.0f}")
        if timer is not None:
            lines.append(bound_line(timer, f"{arch} evaluation", f"evaluate_{arch}", t, flops))
        cands = list(itertools.product(range(net.vocab), repeat=L))
        onehots = torch.nn.functional.one_hot(torch.tensor(cands), net.vocab).float()
        timer = ProductTimer() if args.bound else None
        t, flops = forward_rate(net, base, [Member("HardPT", 0)] * len(cands), EVAL_CHUNK, N, dict(enumerate(onehots)),
                                timer=timer)
        print(f"{arch} HardPT search: {len(cands)} prefixes x {EVAL_CHUNK} sequences x {N} steps: {t:.1f} s, "
              f"{flops / t / 1e9:.1f} GFLOP/s = {100 * flops / t / peak:.0f}% of peak")
        lines.append(f"forward_peak search_{arch}={100 * flops / t / peak:.0f}")
        if timer is not None:
            lines.append(bound_line(timer, f"{arch} HardPT search", f"search_{arch}", t, flops))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
