"""The kernels compile for real GPUs and fit them, proven on this CPU machine.

Both Triton kernels (LSTM gates, prefix attention; forward and backward) are compiled ahead
of time for sm_80 (A100) and sm_90 (H100/H200) at every launch setting the paper and quick
scales select, Paper A and Paper B, with the Triton installed here and with Triton 3.6
(`make test` installs it in .venv/triton-3.6); ptxas reports registers and spills. A kernel
that would not compile, would not launch (shared memory or registers over the target's
limit) or spills more than the stated budget fails here. Runs in a subprocess: this test
session interprets the kernels (TRITON_INTERPRET=1), and interpreted kernels cannot be
compiled.
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


OLD_TRITON = Path(os.environ.get("PREFIXLAB_OLD_TRITON", ROOT / ".venv" / "triton-3.6"))
SPILL_BUDGET_BYTES = 16  # the budget kernels/aot.py states, restated so that raising it there fails here


def compiled(*args, triton_path=None, timeout=900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([*([str(triton_path)] if triton_path else []), str(ROOT / "src")])
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module", params=["installed", "3.6"])
def report(request, tmp_path_factory):
    triton_path = None
    if request.param == "3.6":
        if not (OLD_TRITON / "triton").is_dir():
            pytest.fail(f"Triton 3.6 not found in {OLD_TRITON}: `make test` installs it "
                        f"(pip install --no-deps --target {OLD_TRITON} triton==3.6.0)")
        triton_path = OLD_TRITON
    out = tmp_path_factory.mktemp("aot") / "aot.json"
    proc = compiled("-m", "prefixlab.launches", "--scale", "paper", "--scale", "quick", "--json", str(out),
                    triton_path=triton_path)
    print(proc.stdout)
    assert out.exists(), proc.stdout + proc.stderr
    results = json.loads(out.read_text())
    if request.param == "3.6":
        assert {r["triton"] for r in results} == {"3.6.0"}
    return proc, results


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


def test_no_launch_spills_over_the_budget(report):
    proc, results = report
    spilling = [(r["kernel"], r["target"], r["constexprs"], r["spill_store_bytes"]) for r in results
                if r["spill_store_bytes"] > SPILL_BUDGET_BYTES]
    assert not spilling, spilling
    assert f"over the {SPILL_BUDGET_BYTES} B budget" in proc.stdout


def test_paper_shapes_are_the_ones_launched(report):
    """The launches follow the config: Paper A's widths 32-wide heads at T = 57 (tuning) and
    207 (evaluation), Maxi's 64-wide heads, Paper B's 64- and 96-wide heads."""
    _, results = report
    used = " ".join(r["used_by"] for r in results)
    for label in ("tune r2s", "(T=57 E=32)", "evaluate r2s", "(T=207 E=32)", "(T=57 E=64)", "paper_b b3_matrix",
                  "(T=19 E=96)", "LSTM widths [128, 256]", "quick: "):
        assert label in used, label
    # 96-wide heads (a 128-wide tile) take the score products 32 columns at a time
    assert any(r["kernel"] == "attention_dkdv" and r["constexprs"]["BE"] == 128 and r["constexprs"]["EC"] == 32
               for r in results)


def test_interpreted_kernels_match_the_reference_with_triton_3_6():
    """The kernel tests of this folder (forward and every gradient against the reference),
    run again under Triton 3.6's interpreter."""
    if not (OLD_TRITON / "triton").is_dir():
        pytest.fail(f"Triton 3.6 not found in {OLD_TRITON}: `make test` installs it")
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join([str(OLD_TRITON), str(ROOT / "src")])}
    version = subprocess.run([sys.executable, "-c", "import triton; print(triton.__version__)"], env=env,
                             capture_output=True, text=True).stdout.strip()
    assert version == "3.6.0", version
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__).parent),
                           "--ignore", __file__, "-W", "ignore"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " skipped" not in proc.stdout, proc.stdout[-2000:]


def test_an_untiled_wide_dkdv_spills_over_the_budget():
    """Negative control for the spill check: dK/dV on 32 x 128 tiles with all 128 columns in
    one score product (EC = BE) spills kilobytes."""
    proc = compiled("-c", "from prefixlab.kernels import aot; "
                          "r = aot.compile_launch(aot.Launch('attention_dkdv', (('HAS_VALID', False), ('IS_PREFIX', False), "
                          "('BM', 32), ('BN', 32), ('BE', 128), ('EC', 128)), 8, 'control'), 'sm_80'); "
                          "print(r.spill_store_bytes, r.spills_over_budget)")
    assert proc.returncode == 0, proc.stderr
    spilled, over = proc.stdout.split()
    assert int(spilled) > 100 and over == "True", proc.stdout


def test_an_oversized_launch_is_caught():
    """Negative control: tiles too large for any GPU are reported as not fitting."""
    proc = compiled("-c", "from prefixlab.kernels import aot; "
                          "r = aot.compile_launch(aot.Launch('attention_fwd', (('HAS_VALID', False), ('BM', 16), "
                          "('BN', 16), ('BE', 1024)), 8, 'control'), 'sm_80'); print(r.shared_bytes, r.problems)")
    assert proc.returncode == 0, proc.stderr
    assert "shared memory" in proc.stdout, proc.stdout
