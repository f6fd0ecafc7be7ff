"""The population's Adam against torch.optim.Adam, one member row at a time."""

from __future__ import annotations

import torch

from prefixlab.optim import MemberAdam

BETAS, EPS = (0.9, 0.999), 1e-8


def test_each_trained_row_takes_torchs_adam_step_and_frozen_rows_stay_bitwise():
    gen = torch.Generator().manual_seed(0)
    params = {"w": torch.randn(4, 3, 5, generator=gen), "b": torch.randn(2, 7, generator=gen)}
    member_of_row = {"w": torch.tensor([0, 1, 2, 3]), "b": torch.tensor([1, 3])}
    trainable = {"w": torch.tensor([True, False, True, True]), "b": torch.tensor([True, True])}
    member_lr = torch.tensor([1e-2, 3e-2, 1e-3, 5e-2])
    start = {n: p.clone() for n, p in params.items()}
    adam = MemberAdam(params, member_of_row, BETAS, EPS, trainable, member_lr)
    # torch's Adam on each trained row alone, with that member's rate
    rows = [(n, r) for n in params for r in range(len(member_of_row[n])) if trainable[n][r]]
    alone = {(n, r): start[n][r].clone().requires_grad_(True) for n, r in rows}
    opts = {k: torch.optim.Adam([t], lr=float(member_lr[member_of_row[k[0]][k[1]]]), betas=BETAS, eps=EPS)
            for k, t in alone.items()}
    for t in range(1, 6):
        grads = {n: torch.randn(p.shape, generator=gen) for n, p in params.items()}
        scale = torch.rand(4, generator=gen)
        with torch.no_grad():
            adam.step(grads, scale, lr=1.0, t=t)
        for (n, r), x in alone.items():
            x.grad = grads[n][r] * scale[member_of_row[n][r]]
            opts[n, r].step()
    for (n, r), x in alone.items():
        torch.testing.assert_close(params[n][r], x.detach(), rtol=1e-5, atol=1e-7)
        assert not torch.equal(params[n][r], start[n][r])
    assert torch.equal(params["w"][1], start["w"][1])


def test_a_single_rate_applies_to_every_member_and_all_rows_train_when_no_mask():
    gen = torch.Generator().manual_seed(1)
    params = {"w": torch.randn(3, 4, generator=gen)}
    x = params["w"].clone().requires_grad_(True)
    adam = MemberAdam(params, {"w": torch.arange(3)}, BETAS, EPS)
    opt = torch.optim.Adam([x], lr=0.05, betas=BETAS, eps=EPS)
    for t in range(1, 4):
        g = torch.randn(3, 4, generator=gen)
        with torch.no_grad():
            adam.step({"w": g}, torch.ones(3), lr=0.05, t=t)
        x.grad = g
        opt.step()
    torch.testing.assert_close(params["w"], x.detach(), rtol=1e-5, atol=1e-7)


def test_nothing_to_train_is_a_step_that_changes_nothing():
    params = {"w": torch.ones(2, 3)}
    adam = MemberAdam(params, {"w": torch.arange(2)}, BETAS, EPS, {"w": torch.zeros(2, dtype=torch.bool)})
    adam.step({"w": torch.ones(2, 3)}, torch.ones(2), lr=0.1, t=1)
    assert torch.equal(params["w"], torch.ones(2, 3))
    MemberAdam({}, {}, BETAS, EPS).step({}, torch.ones(0), lr=0.1, t=1)
