"""The kernels compile for real GPUs and fit them, proven on this CPU machine.

Both Triton kernels (LSTM gates, prefix attention; forward and backward) are compiled ahead
of time for sm_80 (A100) and sm_90 (H100/H200) at every launch setting the paper and quick
scales select, Paper A and Paper B; ptxas reports registers and spills. A kernel that would
not compile, or would not launch (shared memory or registers over the target's limit),
fails here. Runs in a subprocess: this test session interprets the kernels
(TRITON_INTERPRET=1), and interpreted kernels cannot be compiled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KERNELS = {"lstm_fwd", "lstm_bwd", "attention_fwd", "attention_dkdv", "attention_dq"}


def compiled(*args, timeout=900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT / "src")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("aot") / "aot.json"
    proc = compiled("-m", "prefixlab.kernels.aot", "--scale", "paper", "--scale", "quick", "--json", str(out))
    print(proc.stdout)
    assert out.exists(), proc.stdout + proc.stderr
    return proc, json.loads(out.read_text())


def test_every_kernel_compiles_for_sm80_and_sm90(report):
    _, results = report
    seen = {(r["kernel"], r["target"]) for r in results}
    assert seen == {(k, t) for k in KERNELS for t in ("sm_80", "sm_90")}, seen
    # Paper B's per-layer prefixes need the prefix-key variant of the dK/dV kernel
    assert any(r["kernel"] == "attention_dkdv" and r["constexprs"].get("IS_PREFIX") for r in results)


def test_every_launch_fits_the_target(report):
    proc, results = report
    misfits = [(r["kernel"], r["target"], r["constexprs"], r["problems"]) for r in results if r["problems"]]
    assert not misfits, misfits
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for r in results:
        assert 0 < r["registers"] <= 255
        assert r["shared_bytes"] <= (163 if r["target"] == "sm_80" else 227) * 1024


def test_paper_shapes_are_the_ones_launched(report):
    """The launches follow the config: Paper A's widths 32-wide heads at T = 57 (tuning) and
    207 (evaluation), Maxi's 64-wide heads, Paper B's 64- and 96-wide heads."""
    _, results = report
    used = " ".join(r["used_by"] for r in results)
    for label in ("tune r2s", "(T=57 E=32)", "evaluate r2s", "(T=207 E=32)", "(T=57 E=64)", "paper_b b3_matrix",
                  "(T=19 E=96)", "LSTM widths [128, 256]", "quick: "):
        assert label in used, label


def test_an_oversized_launch_is_caught():
    """Negative control: tiles too large for any GPU are reported as not fitting."""
    proc = compiled("-c", "from prefixlab.kernels import aot; "
                          "r = aot.compile_launch(aot.Launch('attention_fwd', (('HAS_VALID', False), ('BM', 16), "
                          "('BN', 16), ('BE', 1024)), 8, 'control'), 'sm_80'); print(r.shared_bytes, r.problems)")
    assert proc.returncode == 0, proc.stderr
    assert "shared memory" in proc.stdout, proc.stdout
