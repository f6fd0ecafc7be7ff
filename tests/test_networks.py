"""Population-batched LSTM and Transformer (networks.py), SPEC 1.2 and 1.9."""

from __future__ import annotations

import pytest
import torch

from prefixlab.coins import networks
from prefixlab.coins.networks import PREFIX_NONE, PREFIX_SIMPLEX, PREFIX_SOFT, PREFIX_TOKEN, PrefixInput

from conftest import perturbed, reference_forward, tiny_net

ARCHS = ["lstm", "transformer"]
KINDS = [PREFIX_NONE, PREFIX_TOKEN, PREFIX_SIMPLEX, PREFIX_SOFT]


def population_params(cfg, members: int, seed: int = 1) -> dict:
    """Stacked params where every member has different (perturbed) weights."""
    base = networks.init_params(cfg)
    per = [perturbed(base, seed + i) for i in range(members)]
    return {k: torch.stack([p[k] for p in per]) for k in base}


def random_prefix(cfg, kinds, L, seed=0) -> PrefixInput:
    gen = torch.Generator().manual_seed(seed)
    P = len(kinds)
    return PrefixInput(torch.tensor(kinds), torch.randn(P, L, cfg.vocab, generator=gen), torch.randn(P, L, cfg.d, generator=gen))


def random_tokens(P, B, N, V, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.one_hot(torch.randint(V, (B, N), generator=gen), V).float().expand(P, B, N, V).clone()


def select(p: dict, i: int) -> dict:
    return {k: v[i:i + 1] for k, v in p.items()}


def one_prefix(prefix: PrefixInput, i: int) -> PrefixInput:
    return PrefixInput(prefix.kind[i:i + 1], prefix.token[i:i + 1], prefix.soft[i:i + 1])


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("L", [0, 3])
def test_causality_for_mixed_population(arch, L):
    """Changing x_j changes no prediction for x_1..x_j, for every member and prefix kind,
    and (non-vacuity) does change some later prediction."""
    cfg = tiny_net(arch, vocab=3)
    kinds = KINDS if L > 0 else [PREFIX_NONE] * 2
    P, B, N = len(kinds), 3, 7
    p = population_params(cfg, P)
    prefix = random_prefix(cfg, kinds, L)
    x = random_tokens(P, B, N, cfg.vocab)
    out, _ = networks.forward(cfg, p, x, prefix)
    assert out.shape == (P, B, N, cfg.vocab)
    for j in range(N):  # x_{j+1} in 1-based terms; predictions 0..j must not move
        x2 = x.clone()
        x2[:, :, j] = x2[:, :, j].roll(1, dims=-1)  # a different token at position j
        out2, _ = networks.forward(cfg, p, x2, prefix)
        assert torch.equal(out[:, :, :j + 1], out2[:, :, :j + 1]), f"prediction for x_<= {j + 1} depends on x_{j + 1}"
        if j + 1 < N:
            for i in range(P):
                assert not torch.allclose(out[i, :, j + 1:], out2[i, :, j + 1:]), f"member {i}: x_{j + 1} has no effect"


@pytest.mark.parametrize("arch", ARCHS)
def test_causality_holds_inside_recorded_states(arch):
    cfg = tiny_net(arch)
    L, N = 2, 6
    p = population_params(cfg, 4)
    prefix = random_prefix(cfg, KINDS, L)
    x = random_tokens(4, 2, N, 2)
    _, rec = networks.forward(cfg, p, x, prefix, record=True)
    x2 = x.clone()
    x2[:, :, 3] = 1 - x2[:, :, 3]
    _, rec2 = networks.forward(cfg, p, x2, prefix, record=True)
    # x_4 (index 3) enters at model position 1 + L + 3 for every member layout
    cut = 1 + L + 3
    for key in rec:
        assert torch.equal(rec[key][:, :, :cut], rec2[key][:, :, :cut])
        assert not torch.equal(rec[key][:, :, cut:], rec2[key][:, :, cut:])


@pytest.mark.parametrize("arch", ARCHS)
def test_plain_member_with_pads_equals_prefix_free_network(arch):
    """A PREFIX_NONE member in a population with L > 0 computes exactly what the same
    network computes with no prefix slots at all (pads invisible)."""
    cfg = tiny_net(arch)
    L, B, N = 4, 3, 6
    kinds = [PREFIX_TOKEN, PREFIX_NONE, PREFIX_SOFT, PREFIX_SIMPLEX]
    p = population_params(cfg, len(kinds))
    x = random_tokens(len(kinds), B, N, 2)
    out, rec = networks.forward(cfg, p, x, random_prefix(cfg, kinds, L), record=True)
    alone, rec0 = networks.forward(cfg, select(p, 1), x[1:2], random_prefix(cfg, [PREFIX_NONE], 0), record=True)
    assert torch.equal(out[1:2], alone)
    for key in rec:
        # the plain member's layout is [pads, BOS, x]: its states from position L on are the unpadded ones
        assert torch.equal(rec[key][1:2, :, L:], rec0[key])
    # the same without recording (on the CPU the LSTM takes PyTorch's fused path then)
    out, _ = networks.forward(cfg, p, x, random_prefix(cfg, kinds, L))
    alone, _ = networks.forward(cfg, select(p, 1), x[1:2], random_prefix(cfg, [PREFIX_NONE], 0))
    assert torch.equal(out[1:2], alone)
    # whatever sits in the pad slots' parameters is irrelevant for a plain member
    other = random_prefix(cfg, kinds, L, seed=5)
    out_b, _ = networks.forward(cfg, p, x, other)
    assert torch.equal(out_b[1], out[1])
    assert not torch.allclose(out_b[0], out[0])  # ...but matters for a prefix member


@pytest.mark.parametrize("arch", ARCHS)
def test_members_are_independent(arch):
    """Members with different weights (and prefixes) in one population give what each gives alone."""
    cfg = tiny_net(arch)
    L, B, N = 3, 4, 5
    kinds = [PREFIX_TOKEN, PREFIX_NONE, PREFIX_SOFT, PREFIX_SIMPLEX, PREFIX_TOKEN]
    P = len(kinds)
    p = population_params(cfg, P)
    prefix = random_prefix(cfg, kinds, L)
    gen = torch.Generator().manual_seed(3)
    x = torch.nn.functional.one_hot(torch.randint(2, (P, B, N), generator=gen), 2).float()  # own batch per member
    out, rec = networks.forward(cfg, p, x, prefix, record=True)
    for i in range(P):
        solo, rec_i = networks.forward(cfg, select(p, i), x[i:i + 1], one_prefix(prefix, i), record=True)
        torch.testing.assert_close(out[i:i + 1], solo, rtol=0, atol=1e-6)
        for key in rec:
            torch.testing.assert_close(rec[key][i:i + 1], rec_i[key], rtol=0, atol=1e-6)
    # the members really differ (else the comparison above proves nothing)
    assert not torch.allclose(out[0], out[4], atol=1e-3)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("layers", [1, 2])
def test_forward_matches_independent_reference(arch, layers):
    """The batched forward equals a plain single-network implementation of SPEC 1.2/1.9
    (BOS zero vector, embedding bias, sinusoidal positions over BOS+prefix+tokens, q/k
    LayerNorm, tanh-GELU, LoRA branch, LSTM gates) for every prefix kind."""
    cfg = tiny_net(arch, layers=layers, vocab=3)
    L, B, N = 2, 3, 6
    kinds = KINDS
    p = population_params(cfg, len(kinds))
    prefix = random_prefix(cfg, kinds, L)
    x = random_tokens(len(kinds), B, N, cfg.vocab)
    out, _ = networks.forward(cfg, p, x, prefix)
    for i, kind in enumerate(kinds):
        pi = {k: v[i] for k, v in p.items()}
        ref_prefix = {PREFIX_NONE: None, PREFIX_TOKEN: ("token", prefix.token[i]),
                      PREFIX_SIMPLEX: ("token", torch.softmax(prefix.token[i], -1)),
                      PREFIX_SOFT: ("soft", prefix.soft[i])}[kind]
        ref = reference_forward(cfg, pi, x[i], ref_prefix)
        torch.testing.assert_close(out[i].double(), ref, rtol=0, atol=2e-5)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("layers", [1, 2])
def test_recorded_state_shapes(arch, layers):
    cfg = tiny_net(arch, layers=layers, d=6, width=5, heads=3)
    P, B, N, L = 3, 2, 7, 4
    p = population_params(cfg, P)
    _, rec = networks.forward(cfg, p, random_tokens(P, B, N, 2), random_prefix(cfg, [0, 1, 3], L), record=True)
    T = 1 + L + N
    if arch == "lstm":
        assert set(rec) == {"cell", "hidden"}
        assert rec["cell"].shape == (P, B, T, layers * cfg.width)
        assert rec["hidden"].shape == (P, B, T, layers * cfg.width)
    else:
        assert set(rec) == {"attention"}
        assert rec["attention"].shape == (P, B, T, layers * cfg.d)
    _, none = networks.forward(cfg, p, random_tokens(P, B, N, 2), random_prefix(cfg, [0, 1, 3], L))
    assert none == {}


def test_lstm_hidden_state_is_the_torso_output():
    """The last layer's recorded hidden state is what the unembedding reads."""
    cfg = tiny_net("lstm")
    p = population_params(cfg, 2)
    L, N = 2, 5
    x = random_tokens(2, 3, N, 2)
    out, rec = networks.forward(cfg, p, x, random_prefix(cfg, [1, 0], L), record=True)
    h = rec["hidden"][:, :, L:L + N]
    logits = torch.einsum("pbnd,pdv->pbnv", h, p["unemb_w"]) + p["unemb_b"][:, None, None]
    torch.testing.assert_close(out, torch.log_softmax(logits, -1))


def test_lora_b_starts_at_zero_and_contributes_nothing():
    cfg = tiny_net("transformer", layers=2)
    base = networks.init_params(cfg)
    lora = [k for k in base if networks.is_lora(k)]
    assert sorted(lora) == sorted(f"lora_{n}{l}_{ab}" for n in "qkvo" for l in range(2) for ab in "ab")
    for k in lora:
        if k.endswith("_b"):
            assert base[k].shape == (cfg.lora_rank, cfg.d) and torch.count_nonzero(base[k]) == 0
        else:
            assert base[k].shape == (cfg.d, cfg.lora_rank) and torch.count_nonzero(base[k]) == base[k].numel()
    x = random_tokens(1, 4, 6, 2)
    prefix = random_prefix(cfg, [PREFIX_TOKEN], 2)
    ref, _ = networks.forward(cfg, networks.stack(base, 1), x, prefix)
    # arbitrary A with zero B: nothing changes
    gen = torch.Generator().manual_seed(0)
    other_a = {k: (torch.randn(v.shape, generator=gen) * 5 if k.startswith("lora_") and k.endswith("_a") else v) for k, v in base.items()}
    out_a, _ = networks.forward(cfg, networks.stack(other_a, 1), x, prefix)
    assert torch.equal(out_a, ref)
    # zero A as well: still the same; so the initial network is the LoRA-free network
    no_lora = {k: (torch.zeros_like(v) if networks.is_lora(k) else v) for k, v in base.items()}
    out0, _ = networks.forward(cfg, networks.stack(no_lora, 1), x, prefix)
    torch.testing.assert_close(out0, ref, rtol=0, atol=1e-6)
    # non-vacuity: a nonzero B does change the output, for each of q, k, v, o
    for n in "qkvo":
        changed = dict(base)
        changed[f"lora_{n}0_b"] = torch.randn(cfg.lora_rank, cfg.d, generator=gen)
        out_b, _ = networks.forward(cfg, networks.stack(changed, 1), x, prefix)
        assert not torch.allclose(out_b, ref, atol=1e-4), n


def test_init_follows_reference_scheme():
    """SPEC 1.9: LeCun-normal kernels (truncated, variance 1/fan_in), zero biases,
    orthogonal recurrent kernels, LayerNorm scale 1 / bias 0; seeded by init_seed."""
    cfg = tiny_net("lstm", d=64, width=64)
    p = networks.init_params(cfg)
    wx = p["lstm0_wx"]
    assert abs(float(wx.var()) - 1 / 64) < 0.1 / 64
    assert float(wx.abs().max()) <= 2 / 0.8796256610342398 / 8 + 1e-6  # truncated at 2 std of the unit normal
    wh = p["lstm0_wh"]
    torch.testing.assert_close(wh @ wh.T, torch.eye(64), rtol=0, atol=1e-4)
    for k in ("emb_b", "unemb_b", "lstm0_b"):
        assert torch.count_nonzero(p[k]) == 0
    t = networks.init_params(tiny_net("transformer", d=64, width=16, heads=4))
    for k in ("ln1_0_s", "ln2_0_s", "ln3_0_s", "lnq_0_s", "lnk_0_s"):
        assert torch.equal(t[k], torch.ones(64))
    for k in ("ln1_0_b", "ln2_0_b", "ln3_0_b"):
        assert torch.count_nonzero(t[k]) == 0
    assert t["mlp1_0"].shape == (64, 64) and t["mlp2_0"].shape == (64, 64)  # 4 * width
    same = networks.init_params(tiny_net("transformer", d=64, width=16, heads=4))
    other = networks.init_params(tiny_net("transformer", d=64, width=16, heads=4, init_seed=1))
    assert all(torch.equal(t[k], same[k]) for k in t)
    assert not torch.equal(t["wq_0"], other["wq_0"])


PREFIXED = [PREFIX_TOKEN, PREFIX_SIMPLEX, PREFIX_SOFT, PREFIX_TOKEN]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("shared", [False, True])
def test_shared_head_matches_the_full_layout(arch, layers, shared):
    """Every member prefixed, no recording: the BOS and slot rows run once per member
    (forward_shared_head). Predictions and every gradient (prefixes, weights) equal the full
    layout's (the recording forward, which feeds every position of every sample) within float
    rounding, for per-member and for shared weights, and the independent reference."""
    cfg = tiny_net(arch, layers=layers, vocab=3)
    L, B, N = 3, 4, 6
    P = len(PREFIXED)
    p = networks.init_params(cfg) if shared else population_params(cfg, P)
    if shared:
        p = perturbed(p, 7)
    prefix = random_prefix(cfg, PREFIXED, L)
    gen = torch.Generator().manual_seed(2)
    x = torch.nn.functional.one_hot(torch.randint(3, (P, B, N), generator=gen), 3).float()
    weight = torch.randn(P, B, N, 3, generator=gen)

    def run(record):
        params = {k: v.detach().clone().requires_grad_(True) for k, v in p.items()}
        pre = PrefixInput(prefix.kind, prefix.token.clone().requires_grad_(True), prefix.soft.clone().requires_grad_(True))
        out, _ = networks.forward(cfg, params, x, pre, record=record)
        grads = torch.autograd.grad((out * weight).sum(), [pre.token, pre.soft, *params.values()])
        return out, dict(zip(["prefix_token", "prefix_soft", *params], grads))

    out, grads = run(False)
    full, full_grads = run(True)
    torch.testing.assert_close(out, full, rtol=0, atol=2e-6)
    for name, g in grads.items():
        torch.testing.assert_close(g, full_grads[name], rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")
    assert float(grads["prefix_soft"].abs().sum()) > 0 and float(grads["prefix_token"].abs().sum()) > 0
    for i, kind in enumerate(PREFIXED):
        pi = p if shared else {k: v[i] for k, v in p.items()}
        ref_prefix = {PREFIX_TOKEN: ("token", prefix.token[i]), PREFIX_SIMPLEX: ("token", torch.softmax(prefix.token[i], -1)),
                      PREFIX_SOFT: ("soft", prefix.soft[i])}[kind]
        torch.testing.assert_close(out[i].double(), reference_forward(cfg, pi, x[i], ref_prefix), rtol=0, atol=2e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_head_with_one_token(arch):
    """N = 1: the only prediction is read at the last slot."""
    cfg = tiny_net(arch)
    p = population_params(cfg, 3)
    prefix = random_prefix(cfg, PREFIXED[:3], 2)
    x = random_tokens(3, 4, 1, cfg.vocab)
    out, _ = networks.forward(cfg, p, x, prefix)
    full, _ = networks.forward(cfg, p, x, prefix, record=True)
    assert out.shape == (3, 4, 1, cfg.vocab)
    torch.testing.assert_close(out, full, rtol=0, atol=2e-6)
