"""The predictors give the same losses and gradients with the fused kernels as with the
PyTorch reference: a population mixing prefixed members and plain members (with pads)."""

from __future__ import annotations

import pytest
import torch

from prefixlab import kernels
from prefixlab.coins import networks, population
from prefixlab.coins.population import Member

from conftest import perturbed, tiny_net
from .conftest import DEVICE, assert_close


@pytest.mark.parametrize("arch,layers", [("lstm", 1), ("lstm", 2), ("transformer", 1), ("transformer", 2)])
@pytest.mark.parametrize("record", [True, False])
def test_population_forward_and_gradients_match_reference(arch, layers, record):
    """record=False: the prefixed members run their BOS and slot rows once (the prefix segment
    of the attention kernel, the LSTM kernel's initial state)."""
    net = tiny_net(arch, layers=layers)
    base = {k: v.to(DEVICE) for k, v in perturbed(networks.init_params(net), seed=3).items()}
    methods = ["SoftPT", "RealPT", "FullWT", "EmbedWT"] + (["LoRAWT"] if arch == "transformer" else [])
    members = [Member(m, 0) for m in methods]
    onehot = torch.nn.functional.one_hot(torch.randint(0, 2, (3, 9), generator=torch.Generator().manual_seed(0)), 2)
    onehot = onehot.float().expand(len(members), -1, -1, -1).to(DEVICE)
    results = {}
    for mode in ("triton", "reference"):
        pop = population.build(net, base, members, 3, prefix_seed=100, device=DEVICE)
        params = [v for v in pop.params.values() if v.is_floating_point()]
        for v in params:
            v.requires_grad_(True)
        with kernels.mode(mode):
            logp, rec = pop.forward(onehot, record=record)
            loss = networks.sequence_log_loss(logp, onehot).sum()
            results[mode] = (logp.detach(), {k: r.detach() for k, r in rec.items()},
                             torch.autograd.grad(loss, params, allow_unused=True))
    (lp, rec, g), (lp_ref, rec_ref, g_ref) = results["triton"], results["reference"]
    assert_close("log-probabilities", lp, lp_ref)
    for k in rec_ref:
        assert_close(f"recorded {k}", rec[k], rec_ref[k])
    for i, (a, b) in enumerate(zip(g, g_ref)):
        if b is None:
            assert a is None or not a.abs().any()
        else:
            assert_close(f"gradient {i}", a, b, atol=1e-4, rtol=1e-3)
