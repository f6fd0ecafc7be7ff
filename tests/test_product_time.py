"""benchmarks/product_time.py: what the population benchmark's --bound times and counts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import product_time  # noqa: E402


def test_products_are_timed_and_counted_elementwise_is_not():
    a, b = torch.randn(3, 4), torch.randn(4, 5)
    x, y = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    timer = product_time.ProductTimer()
    with timer:
        a @ b                      # mm
        torch.bmm(x, y)            # bmm
        torch.addmm(torch.randn(5), a, b)
        (a + 1).exp()              # elementwise: not timed
    assert timer.calls == {"matmul": 3}
    assert timer.matmul_flops == 2 * 3 * 4 * 5 + 2 * 2 * 3 * 4 * 5 + 2 * 3 * 4 * 5
    assert timer.total == timer.seconds["matmul"] > 0


def test_backward_products_are_seen():
    w = torch.randn(4, 5, requires_grad=True)
    a = torch.randn(3, 4, requires_grad=True)
    timer = product_time.ProductTimer()
    with timer:
        (a @ w).sum().backward()
    assert timer.calls["matmul"] == 3  # forward, input gradient, weight gradient
    assert timer.matmul_flops == 3 * 2 * 3 * 4 * 5


def test_cpu_attention_is_its_own_part():
    q, k, v = (torch.randn(2, 2, 5, 4) for _ in range(3))
    timer = product_time.ProductTimer()
    with timer:
        F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert timer.calls == {"attention": 1}


def test_bound_is_useful_flops_over_product_time(capsys):
    timer = product_time.ProductTimer()
    timer.seconds.update({"matmul": 2.0, "attention": 0.5})
    timer.calls.update({"matmul": 10, "attention": 2})
    timer.matmul_flops = 300.0
    bound = product_time.report("job", timer, step_seconds=5.0, useful_flops=200.0, peak=100.0)
    assert bound == pytest.approx(100 * 200.0 / 2.5 / 100.0)
    out = capsys.readouterr().out
    assert "products 2.50 s of a 5.00 s step (50%)" in out
    assert "against a peak of 0.0 GFLOP/s: matrix products at 150%" in out
