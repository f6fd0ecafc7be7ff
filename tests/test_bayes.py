"""Exact Bayes predictors (bayes.py) and coin sources (data.py), SPEC 1.1 and 1.4."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from prefixlab.coins import bayes, data
from prefixlab.config import ConfigError
from prefixlab.coins.configs import SourceConfig

SOURCES = {
    "single2": SourceConfig(kind="single", biases=((0.2, 0.8),)),
    "mixture2": SourceConfig(kind="mixture", biases=((0.2, 0.8), (0.8, 0.2)), weights=(0.5, 0.5)),
    "mixture2_uneven": SourceConfig(kind="mixture", biases=((0.3, 0.7), (0.9, 0.1), (0.5, 0.5)), weights=(0.6, 0.3, 0.1)),
    "random2": SourceConfig(kind="random", alphas=(1.0, 1.0)),
    "random2_skew": SourceConfig(kind="random", alphas=(0.5, 2.0)),
    "single3": SourceConfig(kind="single", biases=((0.2, 0.3, 0.5),)),
    "mixture3": SourceConfig(kind="mixture", biases=((0.6, 0.3, 0.1), (0.1, 0.2, 0.7), (0.3, 0.4, 0.3)),
                             weights=(0.2, 0.5, 0.3)),
    "random3": SourceConfig(kind="random", alphas=(1.0, 2.0, 0.7)),
}
MAX_LEN = 8


def all_sequences(vocab: int, length: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(vocab), repeat=length)), dtype=torch.long)


def brute_marginal(cfg: SourceConfig, seq: tuple[int, ...]) -> float:
    """p(x_1..x_n) by explicit products over tokens (no count shortcuts) for single/mixture;
    the Dirichlet-multinomial closed form for random (checked by quadrature below)."""
    if cfg.kind == "random":
        return math.exp(bayes.sequence_log_prob(cfg, seq))
    total = 0.0
    for w, row in zip(cfg.weights if cfg.kind == "mixture" else (1.0,), cfg.biases):
        prod = w
        for x in seq:
            prod *= row[x]
        total += prod
    return total


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_log_predictive_matches_marginal_ratio_on_every_sequence(name):
    """log p(x_n = v | x_<n) = log p(x_<n, v) - log p(x_<n) for every prefix x_<n of length
    < 8 and every v: all sequences of length 8 cover every (history, next token) pair."""
    cfg = SOURCES[name]
    V = cfg.vocab
    tokens = all_sequences(V, MAX_LEN)
    logp = bayes.log_predictive(cfg, tokens)
    assert logp.shape == (V ** MAX_LEN, MAX_LEN, V) and logp.dtype == torch.float64
    # predictive distributions are normalised
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(V ** MAX_LEN, MAX_LEN, dtype=torch.float64))
    cache: dict[tuple, float] = {}

    def slp(seq):
        if seq not in cache:
            cache[seq] = bayes.sequence_log_prob(cfg, seq)
        return cache[seq]

    expected = torch.empty_like(logp)
    for n in range(MAX_LEN):
        # histories of length n in product order: row b of `tokens` has history number b // V**(8-n)
        hists = [tuple(h) for h in all_sequences(V, n).tolist()]
        table = torch.tensor([[slp(h + (v,)) - slp(h) for v in range(V)] for h in hists], dtype=torch.float64)
        idx = torch.arange(V ** MAX_LEN) // V ** (MAX_LEN - n)
        assert all(tuple(tokens[b, :n].tolist()) == hists[int(idx[b])] for b in range(0, V ** MAX_LEN, 97))
        expected[:, n] = table[idx]
    torch.testing.assert_close(logp, expected, rtol=0, atol=1e-10)
    # token_log_loss is the gathered negative
    loss = bayes.token_log_loss(cfg, tokens)
    torch.testing.assert_close(loss, -logp.gather(-1, tokens[..., None])[..., 0])
    # chain rule: the summed log loss is the negative marginal of the whole sequence
    marg = torch.tensor([slp(tuple(r)) for r in tokens.tolist()], dtype=torch.float64)
    torch.testing.assert_close(-loss.sum(1), marg, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_sequence_log_prob_is_the_true_marginal(name):
    """The marginals used as ground truth above are right: explicit products over tokens for
    single/mixture, numerical integration of the Dirichlet for random; and they sum to 1."""
    cfg = SOURCES[name]
    V = cfg.vocab
    for n in range(0, 6):
        probs = [math.exp(bayes.sequence_log_prob(cfg, tuple(s))) for s in itertools.product(range(V), repeat=n)]
        assert math.isclose(sum(probs), 1.0, rel_tol=1e-10)
    rng = np.random.default_rng(0)
    for _ in range(4):
        seq = tuple(int(t) for t in rng.integers(V, size=int(rng.integers(1, 7))))
        got = math.exp(bayes.sequence_log_prob(cfg, seq))
        if cfg.kind != "random":
            assert math.isclose(got, brute_marginal(cfg, seq), rel_tol=1e-10)
        elif V == 2:
            a0, a1 = cfg.alphas
            beta = math.gamma(a0) * math.gamma(a1) / math.gamma(a0 + a1)

            def f(t):  # t = probability of token 1
                like = 1.0
                for x in seq:
                    like *= t if x == 1 else 1 - t
                return like * (1 - t) ** (a0 - 1) * t ** (a1 - 1) / beta
            want, _ = integrate.quad(f, 0, 1, limit=200)
            assert math.isclose(got, want, rel_tol=1e-6)
        else:
            a = cfg.alphas
            norm = math.gamma(sum(a)) / math.prod(math.gamma(x) for x in a)

            def g(t1, t0):  # density over (t0, t1), t2 = 1 - t0 - t1
                t = (t0, t1, 1 - t0 - t1)
                if t[2] <= 0:
                    return 0.0
                like = math.prod(t[x] for x in seq)
                return like * norm * math.prod(t[i] ** (a[i] - 1) for i in range(3))
            want, _ = integrate.dblquad(g, 0, 1, 0, lambda t0: 1 - t0, epsabs=1e-11, epsrel=1e-7)
            assert math.isclose(got, want, rel_tol=1e-4)


def test_random_coins_is_laplace_rule():
    cfg = SOURCES["random2"]
    tokens = torch.tensor([[1, 1, 0, 1, 0, 0, 0]])
    got = bayes.log_predictive(cfg, tokens).exp()[0]
    ones = zeros = 0
    for n, x in enumerate(tokens[0].tolist()):
        assert math.isclose(float(got[n, 1]), (ones + 1) / (n + 2), rel_tol=1e-12)
        assert math.isclose(float(got[n, 0]), (zeros + 1) / (n + 2), rel_tol=1e-12)
        ones += x
        zeros += 1 - x


@pytest.mark.parametrize("name", ["mixture2", "mixture2_uneven", "random2_skew", "mixture3", "random3", "single3"])
def test_prefix_conditioning_equals_marginalising_over_prefix_and_sequence(name):
    cfg = SOURCES[name]
    V = cfg.vocab
    N = 4
    tokens = all_sequences(V, N)
    for L in range(0, 4 if V == 2 else 3):
        for prefix in itertools.product(range(V), repeat=L):
            counts = torch.bincount(torch.tensor(prefix, dtype=torch.long), minlength=V).double()
            got = bayes.log_predictive(cfg, tokens, counts)
            # 1) same as predicting the concatenated sequence and dropping the prefix positions
            joined = torch.cat([torch.tensor(prefix, dtype=torch.long).expand(len(tokens), L), tokens], 1)
            torch.testing.assert_close(got, bayes.log_predictive(cfg, joined)[:, L:], rtol=0, atol=1e-12)
            # 2) same as the brute-force ratio of marginals over prefix + sequence
            for b in (0, len(tokens) // 3, len(tokens) - 1):
                seq = tuple(tokens[b].tolist())
                for n in range(N):
                    for v in range(V):
                        want = (bayes.sequence_log_prob(cfg, prefix + seq[:n] + (v,))
                                - bayes.sequence_log_prob(cfg, prefix + seq[:n]))
                        assert math.isclose(float(got[b, n, v]), want, abs_tol=1e-10)
            # per-sequence counts (B, 1, V) broadcast the same way
            per_seq = counts.expand(len(tokens), 1, V)
            torch.testing.assert_close(bayes.log_predictive(cfg, tokens, per_seq), got)


def test_prefix_conditioning_changes_non_single_predictors():
    """Non-vacuity: conditioning on a prefix matters for mixture and random sources, not for single."""
    tokens = all_sequences(2, 3)
    c = torch.tensor([3.0, 0.0])
    for name in ("mixture2", "random2"):
        assert not torch.allclose(bayes.log_predictive(SOURCES[name], tokens, c), bayes.log_predictive(SOURCES[name], tokens))
    torch.testing.assert_close(bayes.log_predictive(SOURCES["single2"], tokens, c), bayes.log_predictive(SOURCES["single2"], tokens))


def test_two_coin_mixture_bayes_regret_at_49_is_log2():
    """Paper A Table (SPEC 1.7.10): TargetBayes on r2m has cumulative regret 0.69 at n = 49."""
    cfg = SOURCES["mixture2"]
    s = data.sample(cfg, 20000, 50, seed=123)
    regret = bayes.token_log_loss(cfg, s.tokens) + s.true_logp  # -log pi + log p_true
    cum = regret.cumsum(1)
    # Per sequence the cumulative regret of a 2-component Bayes mixture is at most log(1/w) = log 2.
    assert float(cum.max()) <= math.log(2) + 1e-9
    mean49 = float(cum[:, 49].mean())
    assert abs(mean49 - math.log(2)) < 0.01, mean49
    assert abs(round(mean49, 2) - 0.69) < 1e-9
    # it grows towards log 2: small at the first step, already close by step 20
    assert float(cum[:, 0].mean()) < 0.3 < float(cum[:, 20].mean())


def test_single_coin_bayes_has_zero_regret():
    cfg = SOURCES["single2"]
    s = data.sample(cfg, 64, 30, seed=1)
    torch.testing.assert_close(bayes.token_log_loss(cfg, s.tokens), -s.true_logp, rtol=0, atol=1e-14)


@pytest.mark.parametrize("V", [2, 3, 4])
@pytest.mark.parametrize("L", [0, 1, 2, 5, 6])
def test_count_vectors_enumerates_all_compositions(V, L):
    got = bayes.count_vectors(L, V)
    assert got.shape == (math.comb(L + V - 1, V - 1), V)
    rows = {tuple(int(x) for x in r) for r in got.tolist()}
    assert len(rows) == got.shape[0]  # no duplicates
    want = {tuple(sum(1 for t in seq if t == v) for v in range(V)) for seq in itertools.product(range(V), repeat=L)}
    assert rows == want
    for r in got:
        pre = bayes.prefix_from_counts(r)
        assert pre.shape == (L,) and torch.equal(torch.bincount(pre, minlength=V).double(), r)


@pytest.mark.parametrize("name", ["random2", "random3", "mixture2"])
def test_prebayes_prefix_search_matches_exhaustive_token_search(name):
    cfg = SOURCES[name]
    V, L = cfg.vocab, 3
    search = data.sample(SOURCES["single2"] if V == 2 else SOURCES["single3"], 200, 12, seed=5).tokens
    cands, scores, best = bayes.search_prefix_counts(cfg, search, L)
    brute = {}
    for pre in itertools.product(range(V), repeat=L):
        joined = torch.cat([torch.tensor(pre).expand(len(search), L), search], 1)
        brute[pre] = float(bayes.token_log_loss(cfg, joined)[:, L:].sum(1).mean())
    best_pre = min(brute, key=brute.get)
    assert torch.equal(cands[best], torch.bincount(torch.tensor(best_pre), minlength=V).double())
    assert math.isclose(float(scores[best]), brute[best_pre], rel_tol=1e-12)
    for c, s in zip(cands, scores):
        pre = tuple(bayes.prefix_from_counts(c).tolist())
        assert math.isclose(float(s), brute[pre], rel_tol=1e-12)


# ---------------------------------------------------------------------------
# data.sample
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(SOURCES))
def test_sample_shapes_determinism_and_true_logp(name):
    cfg = SOURCES[name]
    V = cfg.vocab
    a = data.sample(cfg, 33, 17, seed=42)
    b = data.sample(cfg, 33, 17, seed=42)
    c = data.sample(cfg, 33, 17, seed=43)
    assert a.tokens.shape == (33, 17) and a.tokens.dtype == torch.int64
    assert a.theta.shape == (33, V) and a.theta.dtype == torch.float64
    assert a.true_logp.shape == (33, 17) and a.true_logp.dtype == torch.float64
    assert a.vocab == V and a.onehot().shape == (33, 17, V)
    assert torch.equal(a.onehot().argmax(-1), a.tokens)
    assert int(a.tokens.min()) >= 0 and int(a.tokens.max()) < V
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.theta, b.theta) and torch.equal(a.true_logp, b.true_logp)
    assert not torch.equal(a.tokens, c.tokens)
    torch.testing.assert_close(a.theta.sum(1), torch.ones(33, dtype=torch.float64))
    want = torch.log(a.theta.gather(1, a.tokens))
    torch.testing.assert_close(a.true_logp, want, rtol=0, atol=0)
    if cfg.kind == "single":
        assert torch.equal(a.theta, torch.tensor(cfg.biases[0], dtype=torch.float64).expand(33, V))
    elif cfg.kind == "mixture":
        rows = torch.tensor(cfg.biases, dtype=torch.float64)
        assert all(any(torch.equal(t, r) for r in rows) for t in a.theta)


def test_sample_statistics():
    s = data.sample(SOURCES["single2"], 4000, 50, seed=0)
    assert abs(float((s.tokens == 0).double().mean()) - 0.2) < 0.005  # token 0 has probability 0.2
    m = data.sample(SOURCES["mixture2_uneven"], 20000, 2, seed=0)
    for row, w in zip(SOURCES["mixture2_uneven"].biases, (0.6, 0.3, 0.1)):
        frac = float((m.theta == torch.tensor(row, dtype=torch.float64)).all(1).double().mean())
        assert abs(frac - w) < 0.015
    r = data.sample(SOURCES["random3"], 20000, 2, seed=0)
    a = torch.tensor(SOURCES["random3"].alphas, dtype=torch.float64)
    torch.testing.assert_close(r.theta.mean(0), a / a.sum(), rtol=0, atol=0.01)
    s3 = data.sample(SOURCES["single3"], 4000, 50, seed=0)
    freq = torch.bincount(s3.tokens.flatten(), minlength=3).double() / s3.tokens.numel()
    torch.testing.assert_close(freq, torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64), rtol=0, atol=0.006)


def test_stream_is_reproducible_batch_by_batch():
    cfg = SOURCES["random2"]
    s1, s2 = data.Stream(cfg, 4, 6, seed=9), data.Stream(cfg, 4, 6, seed=9)
    first = [s1.next().tokens for _ in range(3)]
    second = [s2.next().tokens for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(first, second))
    assert not torch.equal(first[0], first[1])


BAD_SOURCES = [
    ({"kind": "coin"}, "source.kind"),
    ({"kind": "single", "biases": [[0.3, 0.3]]}, "source.biases"),
    ({"kind": "single", "biases": [[0.0, 1.0]]}, "source.biases"),
    ({"kind": "single", "biases": [[-0.2, 1.2]]}, "source.biases"),
    ({"kind": "mixture", "biases": [[0.2, 0.8], [0.1, 0.2, 0.7]], "weights": [0.5, 0.5]}, "source.biases"),
    ({"kind": "mixture", "biases": [[0.2, 0.8], [0.8, 0.2]], "weights": [1.0]}, "source.weights"),
    ({"kind": "mixture", "biases": [[0.2, 0.8], [0.8, 0.2]], "weights": [0.7, 0.7]}, "source.weights"),
    ({"kind": "mixture", "biases": [[0.2, 0.8], [0.8, 0.2]], "weights": [1.2, -0.2]}, "source.weights"),
    ({"kind": "random", "alphas": [1.0]}, "source.alphas"),
    ({"kind": "random", "alphas": [1.0, 0.0]}, "source.alphas"),
    ({"kind": "random", "alphas": [1.0, 1.0], "bias": 3}, "unknown key"),
    ({"biases": [[0.2, 0.8]]}, "kind: missing required key"),
    ([1, 2], "expected a mapping"),
]


@pytest.mark.parametrize("bad,needle", BAD_SOURCES)
def test_bad_source_configs_are_rejected(bad, needle):
    with pytest.raises(ConfigError) as err:
        SourceConfig.from_dict(bad)
    assert needle in str(err.value)


def test_good_source_configs_round_trip():
    for cfg in SOURCES.values():
        d = {"kind": cfg.kind, "biases": [list(r) for r in cfg.biases], "weights": list(cfg.weights), "alphas": list(cfg.alphas)}
        assert SourceConfig.from_dict(d) == cfg
