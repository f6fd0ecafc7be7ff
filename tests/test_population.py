"""Batched tuning (population.py) and the HardPT search (tune.py), SPEC 1.4 and 1.9."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from prefixlab.optim import TrainingError
from prefixlab import cli
from prefixlab.coins import bayes, data, networks, population, tune
from prefixlab.coins.jobs import TuneJob
from prefixlab.coins.networks import PrefixInput
from prefixlab.coins.population import Member, PREFIX_SOFT_KEY, PREFIX_TOKEN_KEY

from conftest import MIXTURE, RANDOM, SINGLE, perturbed, reference_forward, tiny_net

L = 2
TRAIN = dict(steps=3, batch=4, length=6, lr=1e-2, clip=1.0)
SEEDS = [11, 12, 13]


def test_reference_loss_is_the_bayes_loss_of_each_training_batch():
    """Training loss minus reference_loss is the batch's cumulative regret: the reference
    must score exactly the batch each step trained on."""
    cfg = tiny_net("lstm")
    pop = population.build(cfg, networks.init_params(cfg), [Member("SoftPT", r) for r in range(2)], L, prefix_seed=100)
    res = population.train(pop, MIXTURE, data_seeds=SEEDS, reference=MIXTURE, **TRAIN)
    streams = [data.Stream(MIXTURE, TRAIN["batch"], TRAIN["length"], SEEDS[r]) for r in range(2)]
    for step in range(TRAIN["steps"]):
        for r, stream in enumerate(streams):
            want = bayes.token_log_loss(MIXTURE, stream.next().tokens).sum(-1).mean()
            assert res.reference_loss[step, r] == pytest.approx(float(want), rel=1e-12)
    assert population.train(pop, MIXTURE, data_seeds=SEEDS, **TRAIN).reference_loss is None


def snapshot(pop):
    """Per member, every tensor it computes with (own or shared network, its prefix)."""
    return [pop.member_params(i) for i in range(pop.size)]


def expected_tuned(method: str, names) -> set[str]:
    net = [n for n in names if n not in (PREFIX_TOKEN_KEY, PREFIX_SOFT_KEY)]
    return {
        "SimplexPT": {PREFIX_TOKEN_KEY}, "RealPT": {PREFIX_TOKEN_KEY}, "SoftPT": {PREFIX_SOFT_KEY},
        "FullWT": {n for n in net if not n.startswith("lora_")},
        "LoRAWT": {n for n in net if n.startswith("lora_")},
        "EmbedWT": {"emb_w", "emb_b"}, "UnembedWT": {"unemb_w", "unemb_b"},
        "Un+EmbedWT": {"emb_w", "emb_b", "unemb_w", "unemb_b"},
        "HardPT": set(), "NoTuning": set(),
    }[method]


def methods_for(arch):
    ms = ["SimplexPT", "RealPT", "SoftPT", "FullWT", "LoRAWT", "EmbedWT", "UnembedWT", "Un+EmbedWT", "HardPT", "NoTuning"]
    return [m for m in ms if not (m == "LoRAWT" and arch == "lstm")]


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_each_method_changes_exactly_its_own_parameters(arch):
    cfg = tiny_net(arch)
    base = networks.init_params(cfg)
    members = [Member(m, i % 2) for i, m in enumerate(methods_for(arch))]
    pop = population.build(cfg, base, members, L, prefix_seed=100)
    before = snapshot(pop)
    population.train(pop, SINGLE, data_seeds=SEEDS, **TRAIN)
    after = snapshot(pop)
    for i, m in enumerate(members):
        assert set(after[i]) == set(before[i]) == set(base) | {PREFIX_TOKEN_KEY, PREFIX_SOFT_KEY}
        changed = {n for n in after[i] if not torch.equal(after[i][n], before[i][n])}
        assert changed == expected_tuned(m.method, after[i]), f"{m.label()}: changed {sorted(changed)}"
    # the members all started from the same network
    for n in base:
        assert all(torch.equal(before[i][n], base[n]) for i in range(len(members)))
    # frozen members share one copy of the network and train no weights
    frozen = [i for i, m in enumerate(members) if m.method not in population.OWN_WEIGHT_METHODS]
    assert frozen and sorted(set(range(len(members))) - set(frozen)) == pop.own_rows.tolist()
    assert all(v.shape[0] == len(pop.own_rows) for v in pop.network_params().values())
    assert all(not v.requires_grad for v in pop.shared.values())


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_loss_covers_sequence_positions_only(arch):
    """The step-0 loss of every member equals an independent forward's log loss summed over the
    N sequence positions (predictions read after BOS + prefix), averaged over the batch; and the
    step-0 gradient norm of a prefix member is the norm of that loss's gradient w.r.t. its prefix."""
    cfg = tiny_net(arch)
    base = perturbed(networks.init_params(cfg), seed=4)
    methods = ["SimplexPT", "RealPT", "SoftPT", "EmbedWT", "NoTuning"]
    members = [Member(m, r) for r in range(2) for m in methods]
    pop = population.build(cfg, base, members, 3, prefix_seed=100)
    init = snapshot(pop)
    res = population.train(pop, MIXTURE, steps=1, batch=5, length=7, lr=1e-3, clip=1.0, data_seeds=SEEDS)
    assert res.loss.shape == (1, len(members)) and res.grad_norm.shape == (1, len(members))
    batches = {r: data.Stream(MIXTURE, 5, 7, SEEDS[r]).next().onehot() for r in range(2)}
    for i, m in enumerate(members):
        x = batches[m.repetition]
        tok = init[i][PREFIX_TOKEN_KEY].clone().double().requires_grad_(True)
        soft = init[i][PREFIX_SOFT_KEY].clone().double().requires_grad_(True)
        prefix = {"SimplexPT": ("token", torch.softmax(tok, -1)), "RealPT": ("token", tok), "SoftPT": ("soft", soft),
                  "EmbedWT": None, "NoTuning": None}[m.method]
        logp = reference_forward(cfg, base, x, prefix)
        assert logp.shape[1] == 7  # one prediction per sequence token, none for prefix slots
        loss = -(logp * x.double()).sum((1, 2)).mean()
        assert math.isclose(float(res.loss[0, i]), float(loss.detach()), rel_tol=1e-5), m.label()
        if prefix is not None:
            (g,) = torch.autograd.grad(loss, soft if m.method == "SoftPT" else tok)
            assert math.isclose(float(res.grad_norm[0, i]), float(g.norm()), rel_tol=1e-4), m.label()


def _train_members(arch, members, clip_norm_over="all", steps=5, clip=1.0, source=MIXTURE, lr=1e-2, member_lr=None):
    cfg = tiny_net(arch)
    pop = population.build(cfg, networks.init_params(cfg), members, L, prefix_seed=100)
    res = population.train(pop, source, steps=steps, batch=4, length=6, lr=lr, clip=clip,
                           data_seeds=SEEDS, clip_norm_over=clip_norm_over, member_lr=member_lr)
    return pop, res


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_each_member_trains_at_its_own_learning_rate(arch):
    """tune.method_lr: a member with its own rate equals the same member trained alone at that rate."""
    members = [Member("SoftPT", 0), Member("FullWT", 0), Member("FullWT", 1), Member("EmbedWT", 1)]
    rates = [3e-2, 1e-3, 1e-3, 3e-2]
    pop, res = _train_members(arch, members, member_lr=rates)
    for i, (m, lr) in enumerate(zip(members, rates)):
        solo, solo_res = _train_members(arch, [m], lr=lr)
        np.testing.assert_allclose(res.loss[:, i], solo_res.loss[:, 0], rtol=1e-5, atol=1e-5, err_msg=m.label())
        mine, alone = pop.member_params(i), solo.member_params(0)
        for n in mine:
            torch.testing.assert_close(mine[n], alone[n], rtol=0, atol=1e-5, msg=f"{m.label()} {n}")
    # the rate matters: FullWT at the prefix rate ends elsewhere
    fast, _ = _train_members(arch, [members[1]], lr=3e-2)
    moved = fast.member_params(0)
    assert any(not torch.allclose(moved[n], pop.member_params(1)[n], atol=1e-5) for n in moved)
    with pytest.raises(ValueError, match="member_lr has 2 entries for 4 members"):
        _train_members(arch, members, member_lr=rates[:2])


def test_method_lr_reaches_the_tuning_population():
    from prefixlab.coins.configs import TuneConfig
    t = TuneConfig.from_dict({"steps": 1, "batch": 2, "length": 3, "lr": 0.03, "method_lr": {"FullWT": 0.005}})
    assert t.method_lr == (("FullWT", 0.005),)
    assert (t.lr_of("FullWT"), t.lr_of("SoftPT")) == (0.005, 0.03)


@pytest.mark.parametrize("arch,methods", [
    ("transformer", ["SoftPT", "FullWT", "LoRAWT", "SimplexPT", "Un+EmbedWT"]),
    ("lstm", ["RealPT", "Un+EmbedWT", "SimplexPT", "FullWT"]),
])
def test_population_equals_members_trained_alone(arch, methods):
    members = [Member(m, i % 3) for i, m in enumerate(methods)]
    pop, res = _train_members(arch, members)
    for i, m in enumerate(members):
        solo, solo_res = _train_members(arch, [m])
        np.testing.assert_allclose(res.loss[:, i], solo_res.loss[:, 0], rtol=1e-5, atol=1e-5, err_msg=m.label())
        np.testing.assert_allclose(res.grad_norm[:, i], solo_res.grad_norm[:, 0], rtol=1e-4, atol=1e-6, err_msg=m.label())
        mine, alone = pop.member_params(i), solo.member_params(0)
        for n in mine:
            torch.testing.assert_close(mine[n], alone[n], rtol=0, atol=1e-5, msg=f"{m.label()} {n}")
    # non-vacuity: training moved the tuned parameters, and members differ
    assert not np.allclose(res.loss[0], res.loss[-1])


def test_same_repetition_sees_same_data_stream(monkeypatch):
    seen = []
    real = population.Population.forward

    def spy(self, onehot, record=False):
        seen.append(onehot.detach().clone())
        return real(self, onehot, record)

    monkeypatch.setattr(population.Population, "forward", spy)
    members = [Member("SoftPT", 0), Member("FullWT", 1), Member("EmbedWT", 0), Member("RealPT", 2),
               Member("SimplexPT", 1), Member("LoRAWT", 2)]
    _train_members("transformer", members, steps=3)
    assert len(seen) == 3
    streams = {r: data.Stream(MIXTURE, 4, 6, SEEDS[r]) for r in range(3)}
    for batch in seen:
        want = {r: s.next().onehot() for r, s in streams.items()}
        for i, m in enumerate(members):
            assert torch.equal(batch[i], want[m.repetition]), m.label()
        assert not torch.equal(want[0], want[1])


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_same_seeds_give_bitwise_identical_results(arch):
    members = [Member(m, i % 2) for i, m in enumerate(methods_for(arch))]
    a, ra = _train_members(arch, members)
    b, rb = _train_members(arch, members)
    assert np.array_equal(ra.loss, rb.loss) and np.array_equal(ra.grad_norm, rb.grad_norm)
    for n in a.params:
        assert torch.equal(a.params[n], b.params[n]), n
    assert all(torch.equal(a.shared[n], b.shared[n]) for n in a.shared)
    # and a different data seed gives a different run
    cfg = tiny_net(arch)
    c = population.build(cfg, networks.init_params(cfg), members, L, prefix_seed=100)
    rc = population.train(c, MIXTURE, steps=5, batch=4, length=6, lr=1e-2, clip=1.0, data_seeds=[21, 22, 23])
    assert not np.array_equal(ra.loss, rc.loss)


def test_nonfinite_weight_raises_training_error_naming_member():
    cfg = tiny_net("transformer")
    members = [Member("SoftPT", 0), Member("FullWT", 1), Member("EmbedWT", 0)]
    pop = population.build(cfg, networks.init_params(cfg), members, L, prefix_seed=100)
    pop.params["unemb_w"][pop.own_index(torch.tensor([1]))[0], 0, 0] = float("nan")
    with pytest.raises(TrainingError) as err:
        population.train(pop, SINGLE, data_seeds=SEEDS, label="tune r2s/transformer", **TRAIN)
    msg = str(err.value)
    assert "step 0" in msg and "member 1 (FullWT/rep1)" in msg and "tune r2s/transformer" in msg
    assert "member 0" not in msg and "member 2" not in msg


def test_divergence_at_a_later_step_names_that_step(monkeypatch):
    real = population.Population.forward
    calls = []

    def corrupt(self, onehot, record=False):
        logp, st = real(self, onehot, record)
        calls.append(1)
        if len(calls) == 3:  # step index 2
            logp = logp.clone()
            logp[2, 0, 0, 0] = float("inf")
            logp[3, 1, 2, 1] = float("nan")
        return logp, st

    monkeypatch.setattr(population.Population, "forward", corrupt)
    members = [Member("SoftPT", 0), Member("FullWT", 1), Member("RealPT", 1), Member("LoRAWT", 0)]
    with pytest.raises(TrainingError, match=r"step 2 ") as err:
        _train_members("transformer", members, steps=5)
    msg = str(err.value)
    assert "member 2 (RealPT/rep1)" in msg and "member 3 (LoRAWT/rep0)" in msg
    assert "member 0" not in msg and "member 1" not in msg


def tune_job_dict(arch="transformer", **tune_kw):
    t = dict(steps=3, batch=4, length=6, lr=1e-2, prefix_length=2, repetitions=2, search_sequences=8,
             methods=["HardPT", "SimplexPT", "SoftPT", "EmbedWT"], log_every=1)
    t.update(tune_kw)
    return {"experiment": "u2m", "network": {"arch": arch, "d": 8, "width": 8, "layers": 1, "heads": 2, "lora_rank": 2, "vocab": 2},
            "pretrained": False, "pretrain_source": {"kind": "random", "alphas": [1.0, 1.0]}, "target": "mixture",
            "target_source": {"kind": "mixture", "biases": [[0.2, 0.8], [0.8, 0.2]], "weights": [0.5, 0.5]}, "tune": t}


def test_cli_tune_divergence_writes_nothing(tmp_path, capsys, restore_global_state):
    """lr = 1e30 blows the Transformer up after the first update: the CLI exits non-zero,
    names step and member, and leaves no output (not even a temporary file)."""
    cfg = tune_job_dict(lr=1e30, steps=5)
    out = tmp_path / "out"
    out.mkdir()
    argv = ["tune", "--config", json.dumps(cfg), "--device", "cpu", "--out-nc", str(out / "t.nc"),
            "--out-search", str(out / "s.nc"), "--out-weights", str(out / "t.pt")]
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc != 0
    assert "non-finite loss at step" in err and "no output written" in err and "/rep" in err
    assert list(out.iterdir()) == []
    # the same job with a sane learning rate writes all three outputs (so the check above can fail)
    cfg["tune"]["lr"] = 1e-2
    argv[2] = json.dumps(cfg)
    assert cli.main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["s.nc", "t.nc", "t.pt"]


def test_clip_norm_definitions():
    """Step-0 gradient norms: weight methods clip over all network gradients (LoRA included)
    with 'all', over their tuned subset with 'tuned'; prefix methods over their prefix either way."""
    cfg = tiny_net("transformer")
    base = networks.init_params(cfg)
    members = [Member("EmbedWT", 0), Member("FullWT", 0), Member("LoRAWT", 0), Member("UnembedWT", 0), Member("SoftPT", 0)]
    x = data.Stream(SINGLE, 4, 6, SEEDS[0]).next().onehot()
    probe = population.build(cfg, base, members, L, prefix_seed=100)
    # an independent forward: every member its own copy of every tensor, so grads[n][i] is member i's
    params = {**networks.stack(base, len(members)), PREFIX_TOKEN_KEY: probe.params[PREFIX_TOKEN_KEY],
              PREFIX_SOFT_KEY: probe.params[PREFIX_SOFT_KEY]}
    params = {n: v.clone().requires_grad_(True) for n, v in params.items()}
    prefix = PrefixInput(probe.kind, params[PREFIX_TOKEN_KEY], params[PREFIX_SOFT_KEY])
    logp, _ = networks.forward(cfg, params, x.expand(len(members), -1, -1, -1), prefix)
    loss = networks.sequence_log_loss(logp, x.expand(len(members), -1, -1, -1)).sum(-1).mean(-1)
    grads = dict(zip(params, torch.autograd.grad(loss.sum(), list(params.values()))))

    def norm(i, names):
        return math.sqrt(sum(float(grads[n][i].double().pow(2).sum()) for n in names))

    net_names = [n for n in base]
    for mode in ("all", "tuned"):
        pop = population.build(cfg, base, members, L, prefix_seed=100)
        res = population.train(pop, SINGLE, steps=1, batch=4, length=6, lr=1e-2, clip=1.0, data_seeds=SEEDS, clip_norm_over=mode)
        for i, m in enumerate(members):
            if m.method == "SoftPT":
                want = norm(i, [PREFIX_SOFT_KEY])
            elif mode == "all":
                want = norm(i, net_names)
            else:
                want = norm(i, expected_tuned(m.method, params))
            assert math.isclose(float(res.grad_norm[0, i]), want, rel_tol=1e-4), (mode, m.label())
    # FullWT's 'all' set adds LoRA B's gradient (nonzero although B = 0): the norms differ
    assert norm(1, net_names) > norm(1, expected_tuned("FullWT", params)) * (1 + 1e-6)


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_clip_norm_over_all_vs_tuned_changes_weight_methods_only(arch):
    methods = ["EmbedWT", "UnembedWT", "Un+EmbedWT", "SoftPT", "RealPT", "SimplexPT"]
    if arch == "transformer":
        methods += ["LoRAWT", "FullWT"]
    members = [Member(m, 0) for m in methods]
    a, ra = _train_members(arch, members, "all", clip=1e-3)
    b, rb = _train_members(arch, members, "tuned", clip=1e-3)
    for i, m in enumerate(members):
        mine, theirs = a.member_params(i), b.member_params(i)
        same = all(torch.equal(mine[n], theirs[n]) for n in mine)
        if m.method.endswith("PT"):
            assert same and np.array_equal(ra.grad_norm[:, i], rb.grad_norm[:, i]), m.label()
        else:
            assert not same, f"{m.label()}: clip_norm_over made no difference"
            assert (ra.grad_norm[:, i] > rb.grad_norm[:, i]).all(), m.label()
    # without LoRA, FullWT's 'all' and 'tuned' sets coincide on the LSTM
    if arch == "lstm":
        a, ra = _train_members("lstm", [Member("FullWT", 0)], "all", clip=1e-3)
        b, rb = _train_members("lstm", [Member("FullWT", 0)], "tuned", clip=1e-3)
        assert np.array_equal(ra.grad_norm, rb.grad_norm)
        assert all(torch.equal(a.params[n], b.params[n]) for n in a.params)


@pytest.mark.parametrize("arch,vocab,length", [("transformer", 2, 3), ("lstm", 3, 2)])
def test_hard_prefix_search_matches_separate_scoring(arch, vocab, length, monkeypatch):
    target = {"kind": "single", "biases": [[0.2, 0.8]]} if vocab == 2 else {"kind": "single", "biases": [[0.2, 0.3, 0.5]]}
    d = tune_job_dict(arch, prefix_length=length)
    d["network"]["vocab"] = vocab
    d["pretrain_source"] = {"kind": "random", "alphas": [1.0] * vocab}
    d["target"], d["target_source"] = "single", target
    job = TuneJob.from_dict(d)
    base = perturbed(networks.init_params(job.network), seed=2, scale=0.5)
    tokens = data.sample(job.target_source, 24, 6, seed=1).tokens
    cands, scores = tune.hard_prefix_search(job, base, tokens)
    assert cands.shape == (vocab ** length, length) and scores.shape == (vocab ** length,)
    assert {tuple(c) for c in cands.tolist()} == set(itertools.product(range(vocab), repeat=length))
    x = torch.nn.functional.one_hot(tokens, vocab).float()
    separate = []
    for c in cands:
        logp = reference_forward(job.network, base, x, ("token", torch.nn.functional.one_hot(c, vocab).float()))
        separate.append(float(-(logp * x.double()).sum((1, 2)).mean()))
    separate = torch.tensor(separate, dtype=torch.float64)
    torch.testing.assert_close(scores, separate, rtol=1e-5, atol=1e-5)
    ordered = separate.sort().values
    assert float(ordered[1] - ordered[0]) > 1e-3, "scores too close to compare the argmin"
    assert int(torch.argmin(scores)) == int(torch.argmin(separate))
    assert float(separate.max() - separate.min()) > 0.05  # prefixes matter for this network
    # chunking the search set (small activation budget) changes nothing
    monkeypatch.setattr(tune, "ACTIVATION_BUDGET", 2000)
    assert tune.chunk_size(len(cands), 1 + length + 6, job.network) < len(tokens)
    _, chunked = tune.hard_prefix_search(job, base, tokens)
    torch.testing.assert_close(chunked, scores, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_member_chunks_change_nothing(arch, monkeypatch):
    """Training in chunks of members (a paper-size population) gives what one pass gives."""
    methods = ["SoftPT", "FullWT", "SimplexPT", "EmbedWT", "RealPT"] + (["LoRAWT"] if arch == "transformer" else [])
    members = [Member(m, i % 3) for i, m in enumerate(methods)]
    whole, rw = _train_members(arch, members, steps=3)
    cfg = tiny_net(arch)
    per_member = 4 * networks.activation_elements(cfg, 1 + L + 6)
    monkeypatch.setattr(population, "TRAIN_ACTIVATION_BUDGET", 2 * per_member)
    probe = population.build(cfg, networks.init_params(cfg), members, L)
    chunks = population.member_chunks(probe, 4, 1 + L + 6)
    assert [len(c) for c in chunks] == [2, 2, len(members) - 4]
    chunked, rc = _train_members(arch, members, steps=3)
    np.testing.assert_allclose(rc.loss, rw.loss, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rc.grad_norm, rw.grad_norm, rtol=1e-5, atol=1e-6)
    for i in range(len(members)):
        a, b = chunked.member_params(i), whole.member_params(i)
        for n in a:
            torch.testing.assert_close(a[n], b[n], rtol=0, atol=1e-6, msg=f"{members[i].label()} {n}")
