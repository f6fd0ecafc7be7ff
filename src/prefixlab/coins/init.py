"""Initialisers of the reference implementation (SPEC 1.9), seeded explicitly."""

from __future__ import annotations

import math

import torch

# Std of a unit normal truncated to [-2, 2]; dividing by it keeps the variance at 1/fan_in.
_TRUNC_STD = 0.87962566103423978


def lecun_normal(fan_in: int, fan_out: int, gen: torch.Generator) -> torch.Tensor:
    std = math.sqrt(1.0 / fan_in) / _TRUNC_STD
    w = torch.empty(fan_in, fan_out)
    torch.nn.init.trunc_normal_(w, 0.0, 1.0, -2.0, 2.0, generator=gen)
    return w * std


def orthogonal(rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    w = torch.empty(rows, cols)
    torch.nn.init.orthogonal_(w, generator=gen)
    return w
