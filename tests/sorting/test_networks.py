"""Paper B model (SPEC 2.2): per-layer prefix semantics, loss positions, parameter
counts, population == solo, the theory identity, and the kernel path."""

import numpy as np
import pytest
import torch

from prefixlab.sorting.configs import OptimConfig
from prefixlab import kernels
from prefixlab.sorting import analysis, networks, population
from prefixlab.sorting.data import DigitSpec, sample_task_batch, sequences

SPEC = DigitSpec()


def tiny(**kw):
    args = dict(layers=2, heads=2, d=8, prefix_length=3, dropout=0.1, init_seed=0)
    args.update(kw)
    return networks.GPTConfig(**args)


def roughened(base: dict, seed: int = 1, scale: float = 0.5) -> dict:
    """Weights far from the N(0, 0.02) init so attention is far from uniform."""
    g = torch.Generator().manual_seed(seed)
    return {n: t + scale * torch.randn(t.shape, generator=g) for n, t in base.items()}


def batch(cfg, n=5, seed=0, task="ascending"):
    x, y, _ = sample_task_batch(np.random.default_rng(seed), task, n, SPEC, "train")
    return x, y, torch.from_numpy(sequences(x, y, cfg.prefix_length))


def overwrite_reference(cfg, base, prefix, tokens):
    """Independent reading of SPEC 2.2: run the full sequence and, before every layer,
    overwrite the residual rows 0..L-1 with that layer's prefix vectors (at layer 0
    instead of token + position embedding). Single member, plain PyTorch ops."""
    L, H, D = cfg.prefix_length, cfg.heads, cfg.d
    S = tokens.shape[-1]
    x = base["wte"][tokens] + base["wpe"][:S]
    ln = torch.nn.functional.layer_norm
    for l in range(cfg.layers):
        x = x.clone()
        x[:, :L] = prefix[l]
        h = ln(x, (D,), base[f"h{l}.ln_1.w"], base[f"h{l}.ln_1.b"]) if cfg.ln_1 else x
        q, k, v = (h @ base[f"h{l}.attn_qkv.w"] + base[f"h{l}.attn_qkv.b"]).split(D, -1)
        q, k, v = (t.view(*t.shape[:2], H, D // H).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / (D // H) ** 0.5
        att = att.masked_fill(~torch.ones(S, S, dtype=torch.bool).tril(), float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(*x.shape)
        x = x + y @ base[f"h{l}.attn_proj.w"] + base[f"h{l}.attn_proj.b"]
        m = ln(x, (D,), base[f"h{l}.ln_2.w"], base[f"h{l}.ln_2.b"]) @ base[f"h{l}.mlp_fc.w"] + base[f"h{l}.mlp_fc.b"]
        x = x + torch.nn.functional.gelu(m, approximate="tanh") @ base[f"h{l}.mlp_proj.w"] + base[f"h{l}.mlp_proj.b"]
    return ln(x, (D,), base["ln_f.w"], base["ln_f.b"]) @ base["head.w"]


@pytest.mark.parametrize("ln_1", [True, False])
def test_per_layer_prefix_replaces_each_layers_attention_input(ln_1):
    cfg = tiny(ln_1=ln_1)
    base = roughened(networks.init_weights(cfg))
    prefix = torch.randn(2, cfg.layers, cfg.prefix_length, cfg.d, generator=torch.Generator().manual_seed(3))
    _, _, tokens = batch(cfg)
    model = networks.Model(cfg, base, {"prefix": prefix})
    logits = model.forward(tokens.expand(2, *tokens.shape))
    for p in range(2):
        ref = overwrite_reference(cfg, base, prefix[p], tokens)
        torch.testing.assert_close(logits[p], ref[:, cfg.prefix_length:], rtol=1e-5, atol=1e-5)


def test_plain_model_matches_reference_with_slot_tokens():
    cfg = tiny()
    base = roughened(networks.init_weights(cfg))
    _, _, tokens = batch(cfg)
    # without a prefix the slots are ordinary token-0 inputs with positions 0..L-1
    slot_rows = (base["wte"][0] + base["wpe"][:cfg.prefix_length])[None].expand(cfg.layers, -1, -1)
    # that equals overwriting only at layer 0, so compare against a one-layer-overwrite reference
    cfg1 = tiny(layers=1)
    base1 = {n: t for n, t in base.items() if not n.startswith("h1.")}
    ref = overwrite_reference(cfg1, base1, slot_rows[:1], tokens)
    got = networks.Model(cfg1, base1).forward(tokens[None])[0]
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["lora", "finetune", None])
def test_slot_rows_computed_once_equal_the_full_sequence(method):
    # Without dropout the forward computes the slot rows once per member and lets the content
    # attend to them as a prefix; the recording forward still runs every position of every sample.
    cfg = tiny(lora_rank=2)
    base = roughened(networks.init_weights(cfg))
    own = {}
    if method:
        own = networks.member_tensors(cfg, base, method, 2, [0, 1])
        g = torch.Generator().manual_seed(4)
        own = {n: (t + 0.3 * torch.randn(t.shape, generator=g)).requires_grad_(True) for n, t in own.items()}
    model = networks.Model(cfg, base, own, members=2)
    x, y, tokens = batch(cfg, n=6)
    tokens, outputs = tokens.expand(2, *tokens.shape), torch.from_numpy(y).expand(2, *y.shape)
    assert model._slots_shared(tokens, 0.0, False)
    shared = model.forward(tokens)
    full, _ = model.forward(tokens, record=True)
    assert shared.shape == full.shape == (2, 6, cfg.positions, cfg.vocab)
    torch.testing.assert_close(shared, full, rtol=1e-5, atol=1e-5)
    if method:
        def grads(logits):
            loss = -networks.output_log_probs(logits, outputs, model.content_offset, cfg.digits).sum()
            return torch.autograd.grad(loss, list(own.values()))
        for a, b in zip(grads(model.forward(tokens)), grads(model.forward(tokens, record=True)[0])):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_slot_rows_that_differ_between_samples_run_per_sample():
    cfg = tiny()
    base = roughened(networks.init_weights(cfg))
    model = networks.Model(cfg, base)
    _, _, tokens = batch(cfg, n=4)
    tokens = tokens.clone()
    tokens[2, 1] = 5  # one sample's second slot holds another token
    tokens = tokens[None]
    assert not model._slots_shared(tokens, 0.0, False)
    assert model._slots_shared(tokens[:, :2], 0.0, False)
    torch.testing.assert_close(model.forward(tokens), model.forward(tokens, record=True)[0], rtol=1e-5, atol=1e-5)
    for p_drop, record in ((0.1, False), (0.0, True)):
        assert not model._slots_shared(tokens[:, :2], p_drop, record)


@pytest.mark.parametrize("prefix_mode", [True, False])
def test_loss_covers_output_positions_only(prefix_mode):
    cfg = tiny()
    base = networks.init_weights(cfg)
    own = networks.member_tensors(cfg, base, "prefix", 1, [0]) if prefix_mode else {}
    x, y, tokens = batch(cfg)
    logits = networks.Model(cfg, base, own).forward(tokens[None]).detach().requires_grad_(True)
    offset = 0 if prefix_mode else cfg.prefix_length
    loss = -networks.output_log_probs(logits, torch.from_numpy(y)[None], offset, cfg.digits).mean()
    (grad,) = torch.autograd.grad(loss, logits)
    touched = grad.abs().sum((0, 1, 3)) > 0  # per position
    first = offset + cfg.digits - 1  # the last input digit predicts output digit 0
    expected = torch.zeros_like(touched)
    expected[first:first + cfg.digits] = True
    assert torch.equal(touched, expected)
    # in the full sequence: never a prefix slot, never an input digit but the last
    full = torch.arange(cfg.positions)[cfg.prefix_length - offset:][touched]
    assert full.min() == cfg.prefix_length + cfg.digits - 1 and full.max() == cfg.positions - 1


def test_parameter_counts_as_configured():
    paper = networks.GPTConfig(layers=4, heads=4, d=256, prefix_length=12)
    assert paper.lora_parameters() == 12288 == paper.prefix_parameters()
    cfg = tiny(lora_rank=1)
    base = networks.init_weights(cfg)
    for method, expected in (("prefix", cfg.prefix_parameters()), ("lora", cfg.lora_parameters())):
        own = networks.member_tensors(cfg, base, method, 3, [0, 1, 2])
        assert sum(t[0].numel() for t in own.values()) == expected
    assert cfg.lora_parameters() == 2 * (8 + 8 + 8 + 32 + 32 + 8)
    full = networks.member_tensors(cfg, base, "finetune", 2, [0, 1])
    assert sum(t[0].numel() for t in full.values()) == sum(t.numel() for t in base.values())
    assert cfg.all_parameters() == sum(t.numel() for t in base.values())


def test_lora_starts_at_the_pretrained_function_and_targets_the_named_matrices():
    cfg = tiny(lora_rank=1)
    base = roughened(networks.init_weights(cfg))
    own = networks.member_tensors(cfg, base, "lora", 2, [0, 1])
    assert {n.split(".")[1] for n in own} == {"attn_proj", "mlp_fc", "mlp_proj"}
    _, _, tokens = batch(cfg)
    t2 = tokens.expand(2, *tokens.shape)
    torch.testing.assert_close(networks.Model(cfg, base, own).forward(t2), networks.Model(cfg, base).forward(t2), rtol=0, atol=0)


def test_weight_decay_targets_linear_weights_only():
    decayed = sorted(n for n in networks.init_weights(tiny()) if networks.is_decayed(n))
    assert decayed == sorted([f"h{l}.{k}.w" for l in range(2) for k in ("attn_qkv", "attn_proj", "mlp_fc", "mlp_proj")]
                             + ["head.w"])


@pytest.mark.parametrize("method", ["prefix", "lora", "finetune"])
def test_population_equals_members_trained_alone(method):
    cfg = tiny(dropout=0.0)  # dropout masks are drawn for the whole population at once
    base = roughened(networks.init_weights(cfg), scale=0.1)
    opt = OptimConfig(steps=3, lr=1e-2, batch=4, weight_decay=0.01)
    tasks_, seeds = ["ascending", "add1", "descending"], [5, 6, 7]
    together = networks.member_tensors(cfg, base, method, 3, seeds)
    res = population.train(networks.Model(cfg, base, together), method, tasks_, seeds, SPEC, opt, "cpu", 0)
    for i in range(3):
        alone = networks.member_tensors(cfg, base, method, 1, [seeds[i]])
        r = population.train(networks.Model(cfg, base, alone), method, [tasks_[i]], [seeds[i]], SPEC, opt, "cpu", 0)
        np.testing.assert_allclose(res.loss[:, i], r.loss[:, 0], rtol=1e-5, atol=1e-6)
        for n in together:
            torch.testing.assert_close(together[n][i], alone[n][0], rtol=1e-4, atol=1e-6)


def test_tuning_changes_only_its_own_tensors_and_is_reproducible():
    cfg = tiny()
    base = networks.init_weights(cfg)
    frozen = {n: t.clone() for n, t in base.items()}
    opt = OptimConfig(steps=2, lr=1e-2, batch=4, weight_decay=0.01)
    runs = []
    for _ in range(2):
        own = networks.member_tensors(cfg, base, "prefix", 2, [0, 1])
        start = own["prefix"].clone()
        r = population.train(networks.Model(cfg, base, own), "prefix", ["add1", "add2"], [1, 2], SPEC, opt, "cpu", 0)
        assert not torch.equal(own["prefix"], start)
        runs.append((r.loss, own["prefix"]))
    assert all(torch.equal(base[n], frozen[n]) for n in base)
    assert np.array_equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_dropout_only_while_fine_tuning():
    cfg = tiny(dropout=0.5)
    base = networks.init_weights(cfg)
    _, _, tokens = batch(cfg)
    model = networks.Model(cfg, base)
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(model.forward(tokens[None], train=True, generator=g), model.forward(tokens[None]))
    assert torch.equal(model.forward(tokens[None]), model.forward(tokens[None]))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_equals_mask_times_input_over_keep_rate(p):
    """The dropout's where-form gives the product form's numbers, forward and backward, and
    draws the same mask from the generator (a fine-tuning run's numbers do not move)."""
    x = torch.randn(3, 5, 7, 11, requires_grad=True)
    grad = torch.randn(3, 5, 7, 11)
    out = networks._dropout(x, p, torch.Generator().manual_seed(4))
    keep = torch.rand(x.shape, generator=torch.Generator().manual_seed(4)) >= p
    expected = x * keep / (1 - p)
    assert torch.equal(out, expected) and 0 < int(keep.sum()) < keep.numel()
    (g_out,) = torch.autograd.grad(out, x, grad)
    (g_expected,) = torch.autograd.grad(expected, x, grad)
    assert torch.equal(g_out, g_expected)


@pytest.mark.parametrize("L, ln_1", [(1, True), (1, False), (3, True)])
def test_theory_identity_on_random_weights(L, ln_1):
    cfg = tiny(prefix_length=L, ln_1=ln_1)
    base = roughened(networks.init_weights(cfg), scale=1.0)
    prefixes = 3 * torch.randn(4, cfg.layers, L, cfg.d, generator=torch.Generator().manual_seed(2))
    x, y, _ = batch(cfg, n=6)
    out = analysis.theory_check(cfg, base, prefixes, x, y)
    assert out["attention"].max() < 1e-5 and out["output"].max() < 1e-5
    if L == 1:
        assert out["direction"].max() < 1e-5
    else:
        assert np.isnan(out["direction"]).all()
    # the prefixes take a real share of the attention: the identity is not trivially 0 = 0
    assert (out["prefix_mass"] > 0.01).all()


def test_theory_check_detects_a_prefix_that_changes_the_content_input():
    """Negative control: at layer 1 (whose content input the prefix changes) the identity fails."""
    cfg = tiny(prefix_length=1)
    base = roughened(networks.init_weights(cfg), scale=1.0)
    prefixes = 3 * torch.randn(2, cfg.layers, 1, cfg.d, generator=torch.Generator().manual_seed(2))
    x, y, tokens = batch(cfg, n=4)
    _, free = networks.Model(cfg, base).forward(tokens[None], record=True)
    _, pre = networks.Model(cfg, base, {"prefix": prefixes}).forward(tokens.expand(2, *tokens.shape), record=True)
    content = free[1]["probs"][..., 1:, 1:]
    content = content / content.sum(-1, keepdim=True)
    mass = pre[1]["probs"][..., :1].sum(-1, keepdim=True)
    assert ((1 - mass) * content - pre[1]["probs"][..., 1:]).abs().max() > 1e-3


def test_greedy_decoding_agrees_with_one_pass_accuracy():
    cfg = tiny(layers=1)
    base = roughened(networks.init_weights(cfg), scale=0.3)
    x, y, _ = batch(cfg, n=40, task="add1")
    own = networks.member_tensors(cfg, base, "prefix", 2, [0, 1])
    model = networks.Model(cfg, base, own)
    decoded = analysis.greedy_decode(model, x)
    np.testing.assert_allclose(analysis.accuracy(model, x, y, chunk=16), (decoded == y[None]).all(-1).mean(-1))
    # a model that outputs add1 exactly: every digit is its input + 1 -> perfect accuracy
    assert analysis.accuracy(model, x, y).shape == (2,)


def test_kernel_path_matches_reference_for_prefix_tuning():
    cfg = tiny(heads=2, d=8, prefix_length=2)
    base = roughened(networks.init_weights(cfg), scale=0.3)
    _, y, tokens = batch(cfg, n=3)
    results = []
    for mode in ("reference", "triton"):
        own = {"prefix": torch.randn(2, cfg.layers, 2, cfg.d, generator=torch.Generator().manual_seed(4)).requires_grad_(True)}
        with kernels.mode(mode):
            loss = population.member_loss(networks.Model(cfg, base, own), tokens.expand(2, *tokens.shape),
                                     torch.from_numpy(y).expand(2, *y.shape), train=False)
            (grad,) = torch.autograd.grad(loss.sum(), own["prefix"])
        results.append((loss.detach(), grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-5)


def test_checkpoints_fall_every_few_steps_and_at_the_end():
    assert population.checkpoints(10, 4).tolist() == [4, 8, 10]
    assert population.checkpoints(8, 4).tolist() == [4, 8]
    assert population.checkpoints(3, 5).tolist() == [3]


@pytest.mark.parametrize("method", ["finetune", "lora"])
def test_a_probe_during_training_leaves_the_trained_numbers_unchanged(method):
    cfg = tiny()  # dropout on while fine-tuning: the probe must not touch its generator either
    base = roughened(networks.init_weights(cfg), scale=0.1)
    opt = OptimConfig(steps=5, lr=1e-2, batch=4, weight_decay=0.01)
    x, y = analysis.test_set("add1", 12, SPEC, 3)
    results = []
    for with_probe in (False, True):
        own = networks.member_tensors(cfg, base, method, 2, [0, 1])
        model = networks.Model(cfg, base, own)
        probe = (lambda: analysis.accuracy(model, x, y)) if with_probe else None
        r = population.train(model, method, ["add1", "add2"], [1, 2], SPEC, opt, "cpu", 0, probe=probe, probe_every=2)
        results.append((r, own))
    (plain, own_plain), (probed, own_probed) = results
    np.testing.assert_array_equal(plain.loss, probed.loss)
    for n in own_plain:
        torch.testing.assert_close(own_plain[n], own_probed[n], rtol=0, atol=0)
    assert plain.probes is None and probed.probes.shape == (3, 2)  # after steps 2, 4 and 5
    # the last checkpoint measures the final tensors
    final = analysis.accuracy(networks.Model(cfg, base, own_probed), x, y)
    np.testing.assert_array_equal(probed.probes[-1], final)
