"""Launch limits the interpreter does not enforce but a GPU does: grid axes 1 and 2 take at
most 65535 programs, and the kernels index with 32-bit offsets."""

from __future__ import annotations

import pytest
import torch

from prefixlab import kernels
from prefixlab.kernels.lstm import fused as lstm_fused
from prefixlab.kernels.prefix_attention import fused as attention_fused

GRID_Y_Z_LIMIT = 65535


class GridRecorder:
    """Stands in for a Triton kernel: records each launch grid, runs nothing."""

    def __init__(self):
        self.grids = []

    def __getitem__(self, grid):
        self.grids.append(tuple(grid))
        return lambda *args, **kwargs: None


def test_paper_size_attention_grids_fit_every_axis(monkeypatch):
    # Paper A's population at paper size: 80 members x batch 256 x 4 heads = 81920 (batch, head) rows
    P, B, H, T, E, Lp = 80, 256, 4, 3, 2, 2
    recorders = {name: GridRecorder() for name in ("_fwd_kernel", "_bwd_dkdv_kernel", "_bwd_dq_kernel")}
    for name, rec in recorders.items():
        monkeypatch.setattr(attention_fused, name, rec)
    q = k = v = torch.zeros(P, B, H, T, E)
    pk = pv = torch.zeros(P, H, Lp, E)
    out, lse = attention_fused.attention_fwd(q, k, v, pk, pv, None, 1.0)
    attention_fused.attention_bwd(torch.zeros_like(q), q, k, v, pk, pv, None, out, lse, 1.0)
    grids = [g for rec in recorders.values() for g in rec.grids]
    assert len(grids) == 4  # forward, dK/dV content and prefix, dQ
    for grid in grids:
        assert P * B * H in grid, grid
        assert all(n <= GRID_Y_Z_LIMIT for n in grid[1:]), f"grid {grid}: axis 1 or 2 over {GRID_Y_Z_LIMIT}"


def test_paper_size_lstm_grid_is_one_axis(monkeypatch):
    rec_fwd, rec_bwd = GridRecorder(), GridRecorder()
    monkeypatch.setattr(lstm_fused, "_cell_fwd_kernel", rec_fwd)
    monkeypatch.setattr(lstm_fused, "_cell_bwd_kernel", rec_bwd)
    P, B, T, W = 80, 256, 2, 256
    xproj, wh = torch.zeros(P, B, T, 4 * W), torch.zeros(P, W, 4 * W)
    H, C, gates = lstm_fused.lstm_fwd(xproj, wh, None, None, None)
    lstm_fused.lstm_bwd(torch.zeros_like(H), None, wh, None, None, None, H, C, gates)
    for grid in rec_fwd.grids + rec_bwd.grids:
        assert len(grid) == 1 and grid[0] < 2**31, grid


def test_tensors_over_the_32_bit_index_range_are_refused():
    huge = torch.empty(2**31, device="meta")
    with pytest.raises(ValueError, match=r"kernels\.lstm: gates has 2147483648 elements.*32-bit"):
        kernels.check_indexable("lstm", gates=huge)
    kernels.check_indexable("lstm", gates=torch.empty(2**31 - 1, device="meta"), none=None)
