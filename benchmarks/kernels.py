"""Fused kernels against the best PyTorch paths, forward + backward, side by side.

python benchmarks/kernels.py [--members 80] [--batch 256] [--repeats 10]
python benchmarks/kernels.py --aot     # resources of every launch, compiled for sm_80 / sm_90 on any machine

LSTM (population of P members, batch B, T = 57 = 1 + 6 + 50 positions, widths 128 and 256, input = width):
  fused        kernels.lstm (Triton)                       CUDA only
  batched      the PyTorch reference recurrence (one bmm per step for the whole population)
  cudnn-loop   torch.nn.LSTM (cuDNN) called once per member  CUDA only
Prefix attention (P members x B batch, 4 heads of 32, T = 57, prefix of 6 entries):
  fused        kernels.prefix_attention (Triton)             CUDA only
  sdpa         scaled_dot_product_attention on the concatenated prefix + content keys/values
On a CPU the reference paths run at small shapes so the script always runs; on CUDA the
last two lines read `speedup lstm=<ratio>` and `speedup prefix_attention=<ratio>`
(fused against the faster PyTorch path).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from prefixlab import kernels
from prefixlab.kernels.lstm import lstm_recurrence
from prefixlab.kernels.prefix_attention import prefix_attention

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of fn() over `repeats` runs after two warm-ups."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def lstm_cases(P, B, T, W, D, device):
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(P, B, T, D, generator=g).to(device)
    wx = (torch.randn(P, D, 4 * W, generator=g) / D**0.5).to(device).requires_grad_()
    wh = (torch.randn(P, W, 4 * W, generator=g) / W**0.5).to(device).requires_grad_()

    def population(mode):
        def run():
            with kernels.mode(mode):
                xproj = torch.bmm(x.reshape(P, B * T, D), wx).reshape(P, B, T, 4 * W)
                h, _ = lstm_recurrence(xproj, wh)
                h.sum().backward()
        return run

    cases = {"batched": population("reference")}
    if device.type == "cuda":
        cases["fused"] = population("triton")
        nets = [torch.nn.LSTM(D, W, batch_first=True).to(device) for _ in range(P)]

        def cudnn_loop():
            for p, net in enumerate(nets):
                out, _ = net(x[p])
                out.sum().backward()
        cases["cudnn-loop"] = cudnn_loop
    return cases


def attention_cases(P, B, H, T, E, Lp, device):
    g = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (torch.randn(P, B, H, T, E, generator=g).to(device).requires_grad_() for _ in range(3))
    pk, pv = (torch.randn(P, H, Lp, E, generator=g).to(device).requires_grad_() for _ in range(2))

    def run(mode):
        def go():
            with kernels.mode(mode):
                prefix_attention(q, k, v, pk, pv).sum().backward()
        return go

    cases = {"sdpa": run("reference")}
    if device.type == "cuda":
        cases["fused"] = run("triton")
    return cases


def report(title, cases, repeats, device):
    times = {name: timed(fn, repeats, device) for name, fn in cases.items()}
    print(title)
    for name, t in times.items():
        print(f"  {name:<11} {t * 1e3:9.2f} ms forward+backward")
    if "fused" in times:
        best = min(t for name, t in times.items() if name != "fused")
        return best / times["fused"]
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--members", type=int, default=80)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--widths", type=int, nargs="+", default=[128, 256],
                    help="LSTM widths (input width = width): the paper's 128 and the Maxi networks' 256")
    ap.add_argument("--aot", action="store_true",
                    help="instead: compile every kernel the paper and quick scales launch for sm_80 and sm_90 "
                         "(no GPU needed) and print shared memory, registers and spills")
    args = ap.parse_args()
    if args.aot:
        from prefixlab import launches
        raise SystemExit(launches.main(["--scale", "paper", "--scale", "quick",
                                   "--config", str(ROOT / "config.yaml"),
                                   "--schema", str(ROOT / "workflow/schemas/config.schema.yaml")]))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    P, B = args.members, args.batch
    if device.type == "cpu":
        P, B = min(P, 8), min(B, 16)  # the reference paths only, at shapes a laptop runs in seconds
        print(f"CPU: no Triton path; reference paths at P={P}, B={B}")
    else:
        print(f"{torch.cuda.get_device_name()}: P={P}, B={B}")
    lstm_speedups = [report(f"LSTM recurrence, P={P} B={B} T=57 W={W} D={W}", lstm_cases(P, B, 57, W, W, device),
                            args.repeats, device) for W in args.widths]
    for W, s in zip(args.widths, lstm_speedups):
        if s is not None:
            print(f"speedup lstm_w{W}={s:.2f}")
    s_lstm = lstm_speedups[0]  # the first width (the paper's 128 by default) is the headline
    s_att = report(f"prefix attention, P={P} B={B} H=4 T=57 E=32 Lp=6", attention_cases(P, B, 4, 57, 32, 6, device),
                   args.repeats, device)
    if s_lstm is not None:
        print(f"speedup lstm={s_lstm:.2f}")
        print(f"speedup prefix_attention={s_att:.2f}")


if __name__ == "__main__":
    main()
