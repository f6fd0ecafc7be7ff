"""Shared helpers for the core-library tests: tiny networks and an independent
single-network reference forward pass written from SPEC 1.2 / 1.9."""

from __future__ import annotations

import math
import os
import shutil

# Triton reads TRITON_INTERPRET when a kernel is decorated, so it must be set before any
# kernel module is imported: without a GPU, the kernel tests run in the interpreter.
if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import time

import pytest
import torch

from prefixlab.coins import networks
from prefixlab.coins.configs import NetworkConfig, SourceConfig

# The tensors here are tiny: intra-op threading only adds synchronisation overhead
# (about 100x slower per forward on a busy 2-core machine), so the suite runs single-threaded.
torch.set_num_threads(1)

SINGLE = SourceConfig(kind="single", biases=((0.2, 0.8),))
MIXTURE = SourceConfig(kind="mixture", biases=((0.2, 0.8), (0.8, 0.2)), weights=(0.5, 0.5))
RANDOM = SourceConfig(kind="random", alphas=(1.0, 1.0))


def tiny_net(arch: str, **kw) -> NetworkConfig:
    args = dict(arch=arch, d=8, width=8, layers=1, heads=2, lora_rank=2, init_seed=0, vocab=2)
    args.update(kw)
    return NetworkConfig(**args)


def perturbed(params: dict, seed: int, scale: float = 0.3) -> dict:
    """A copy of `params` with every tensor (LoRA B and biases included) moved randomly,
    so that no branch of the network is trivially zero."""
    gen = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=gen) for k, v in params.items()}


# ---------------------------------------------------------------------------
# Reference forward pass: one network, one sequence batch, float64, plain loops.
# ---------------------------------------------------------------------------

def _ln(x, scale, bias=None, eps=1e-6):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    y = (x - mu) / torch.sqrt(var + eps) * scale
    return y if bias is None else y + bias


def _sinusoid(T: int, D: int) -> torch.Tensor:
    n_sin, n_cos = D // 2, D - D // 2
    out = torch.zeros(T, D, dtype=torch.float64)
    for t in range(T):
        for i in range(n_sin):
            out[t, i] = math.sin(t * 1e-4 ** (i / max(n_sin - 1, 1)))
        for i in range(n_cos):
            out[t, n_sin + i] = math.cos(t * 1e-4 ** (i / max(n_cos - 1, 1)))
    return out


def _gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def reference_forward(cfg: NetworkConfig, p: dict, onehot: torch.Tensor, prefix=None) -> torch.Tensor:
    """log pi(x_n | prefix, x_<n) for a single network: onehot (B, N, V) -> (B, N, V) float64.

    prefix: None, ("token", (L, V) token-space vectors fed through the embedding) or
    ("soft", (L, D) embedding-space vectors placed after the BOS embedding).
    """
    p = {k: v.detach().double() for k, v in p.items()}
    onehot = onehot.double()
    B, N, V = onehot.shape
    D = cfg.d
    bos = torch.zeros(B, 1, V, dtype=torch.float64)
    emb = lambda z: z @ p["emb_w"] + p["emb_b"]  # noqa: E731
    parts = [emb(bos)]
    L = 0
    if prefix is not None:
        kind, vec = prefix
        vec = vec.double()
        L = vec.shape[0]
        slot = emb(vec) if kind == "token" else vec
        parts.append(slot[None].expand(B, L, -1))
    parts.append(emb(onehot))
    x = torch.cat(parts, 1)  # (B, T, D)
    T = x.shape[1]
    if cfg.arch == "transformer":
        x = x + _sinusoid(T, D)
        H = cfg.heads
        hd = D // H
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        for l in range(cfg.layers):
            def proj(z, n):
                return z @ p[f"w{n}_{l}"] + (z @ p[f"lora_{n}{l}_a"]) @ p[f"lora_{n}{l}_b"]
            a = _ln(x, p[f"ln1_{l}_s"], p[f"ln1_{l}_b"])
            q = _ln(proj(a, "q"), p[f"lnq_{l}_s"])
            k = _ln(proj(a, "k"), p[f"lnk_{l}_s"])
            v = proj(a, "v")
            heads = []
            for h in range(H):
                sl = slice(h * hd, (h + 1) * hd)
                logits = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(hd)
                logits = logits.masked_fill(~causal, float("-inf"))
                heads.append(torch.softmax(logits, -1) @ v[..., sl])
            att = proj(torch.cat(heads, -1), "o")
            x = x + att
            m = _gelu_tanh(_ln(x, p[f"ln2_{l}_s"], p[f"ln2_{l}_b"]) @ p[f"mlp1_{l}"]) @ p[f"mlp2_{l}"]
            x = _ln(x + m, p[f"ln3_{l}_s"], p[f"ln3_{l}_b"])
    else:
        W = cfg.width
        for l in range(cfg.layers):
            h = torch.zeros(B, W, dtype=torch.float64)
            c = torch.zeros(B, W, dtype=torch.float64)
            outs = []
            for t in range(T):
                g = x[:, t] @ p[f"lstm{l}_wx"] + h @ p[f"lstm{l}_wh"] + p[f"lstm{l}_b"]
                i_, g_, f_, o_ = g[:, :W], g[:, W:2 * W], g[:, 2 * W:3 * W], g[:, 3 * W:]
                c = torch.sigmoid(f_) * c + torch.sigmoid(i_) * torch.tanh(g_)
                h = torch.sigmoid(o_) * torch.tanh(c)
                outs.append(h)
            x = torch.stack(outs, 1)
    logits = x[:, L:L + N] @ p["unemb_w"] + p["unemb_b"]
    return torch.log_softmax(logits, -1)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture
def restore_global_state():
    """cli.main reconfigures logging (force=True) and torch's determinism flags; undo that."""
    import logging
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    det, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    yield
    for h in root.handlers:
        if h not in handlers:
            h.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    torch.use_deterministic_algorithms(det, warn_only=warn_only)
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory):
    """The whole workflow at the smoke scale, run once locally on a private copy of the repo:
    (repo, NetCDF bytes right after the build, seconds from Snakemake's last log line to its
    exit) for the workflow and cluster tests."""
    from wfutil import copy_worktree, netcdf_snapshot, snakemake

    repo = copy_worktree(tmp_path_factory.mktemp("wf") / "repo")
    start = time.perf_counter()
    snakemake(repo, "all_figures")
    exited = time.time()
    print(f"smoke all_figures: {time.perf_counter() - start:.0f}s")
    log = max((repo / ".snakemake/log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    return repo, netcdf_snapshot(repo), exited - log.stat().st_mtime
