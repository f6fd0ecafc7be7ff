"""Where a step's time goes between products and everything else, without the profiler.

`ProductTimer` is a dispatch mode that times each matrix product, attention and fused LSTM
call with `perf_counter` as it runs inside a real step (the CPU runs them synchronously), and
lets every other operator run untimed. torch.profiler measured elementwise operators slower
than they run without it on this project's machines; a dispatch mode costs each untimed
operator some Python, which lands outside the timed calls.

What it prints answers "how fast could this step be with PyTorch's own CPU kernels?":
the useful FLOPs over the products' time alone is the rate the step would reach if
everything else (layer norms, GELU, softmax outside SDPA, Adam, copies) took no time.
"""

from __future__ import annotations

import collections
import math
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# aten operator -> the part it is reported under
KINDS = {
    "mm": "matmul", "bmm": "matmul", "addmm": "matmul", "baddbmm": "matmul",
    "_scaled_dot_product_flash_attention_for_cpu": "attention",
    "_scaled_dot_product_flash_attention_for_cpu_backward": "attention",
    "mkldnn_rnn_layer": "fused LSTM", "mkldnn_rnn_layer_backward": "fused LSTM",
}


def _matmul_flops(name: str, args) -> float:
    """Executed FLOPs of one matrix product from its operands' shapes."""
    a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
    batch = a.shape[0] if a.dim() == 3 else 1
    return 2.0 * batch * a.shape[-2] * a.shape[-1] * b.shape[-1]


class ProductTimer(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seconds = collections.Counter()
        self.calls = collections.Counter()
        self.matmul_flops = 0.0
        self.peak = None  # the caller's matmul peak measured just before, FLOP/s

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = KINDS.get(func.overloadpacket.__name__)
        if kind is None:
            return func(*args, **kwargs)
        start = time.perf_counter()
        out = func(*args, **kwargs)
        self.seconds[kind] += time.perf_counter() - start
        self.calls[kind] += 1
        if kind == "matmul":
            self.matmul_flops += _matmul_flops(func.overloadpacket.__name__, args)
        return out

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def report(label: str, timer: ProductTimer, step_seconds: float, useful_flops: float, peak: float) -> float:
    """Print the split of one step and return the bound: useful FLOPs over the products' time
    alone, in % of peak."""
    parts = ", ".join(f"{kind} {s:.2f} s ({timer.calls[kind]} calls)" for kind, s in timer.seconds.most_common())
    matmul = timer.seconds["matmul"]
    rate = timer.matmul_flops / matmul / peak if matmul else math.nan
    bound = 100 * useful_flops / timer.total / peak
    print(f"{label}: products {timer.total:.2f} s of a {step_seconds:.2f} s step ({100 * timer.total / step_seconds:.0f}%): "
          f"{parts}; against a peak of {peak / 1e9:.1f} GFLOP/s: matrix products at {100 * rate:.0f}% (executed FLOPs), "
          f"useful FLOPs over the products' time alone {bound:.0f}%")
    return bound
