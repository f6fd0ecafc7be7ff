"""The smoke-scale workflow through profiles/slurm on a real single-node SLURM.

A session fixture installs slurm-wlm and munge (Debian) when missing, starts the daemons,
and stops them by PID afterwards. Skipped, with the reason, only where SLURM cannot be
installed (not root, no apt-get).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from wfutil import RES, ROOT, copy_worktree, netcdf_snapshot, snakemake, snakemake_cmd

pytestmark = pytest.mark.slow
SCRIPT = ROOT / "tests/slurm/slurm_cluster.sh"
# No accounting database here: the plugin must poll squeue, and quickly. The node has
# 2 CPUs, so the figures' group job may ask for 2 cores (it runs them two at a time).
SLURM = ["--workflow-profile", "profiles/slurm", "--cores", "2", "--slurm-status-command", "squeue",
         "--slurm-init-seconds-before-status-checks", "1"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.skip("SLURM is not installed and this machine has no apt-get to install it")
    if os.geteuid() != 0 and shutil.which("slurmctld") is None:
        pytest.skip("SLURM is not installed and installing it needs root")
    subprocess.run(["bash", str(SCRIPT), "install"], check=True, timeout=240)
    state = tmp_path_factory.mktemp("slurm")
    subprocess.run(["bash", str(SCRIPT), "start", str(state)], check=True, timeout=60)
    try:
        yield state
    finally:
        subprocess.run(["scancel", "--user", "root"], capture_output=True)
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], timeout=60)


def submitted_jobs(state: Path) -> list[str]:
    text = (state / "jobcomp.txt").read_text() if (state / "jobcomp.txt").exists() else ""
    return [line for line in text.splitlines() if line.strip()]


# Two experiments (pretrained and untrained paths) keep the cluster run to about a dozen
# SLURM jobs: the plugin's polling makes each serial job cost seconds.
SUBSET = "scales: {smoke: {run_experiments: [r2s, u2m], paper_b: {run_experiments: [b4_double_hist]}}}"


@pytest.fixture(scope="module")
def cluster_build(cluster, smoke_build, tmp_path_factory):
    repo = copy_worktree(tmp_path_factory.mktemp("slurm_wf") / "repo")
    (repo / "subset.yaml").write_text(SUBSET)
    before = len(submitted_jobs(cluster))
    start = time.perf_counter()
    snakemake(repo, "all_figures", options=SLURM, extra_configs=["subset.yaml"], timeout=300, cores=False)
    elapsed = time.perf_counter() - start
    jobs = len(submitted_jobs(cluster)) - before
    print(f"smoke all_figures on SLURM: {elapsed:.0f}s, {jobs} SLURM jobs")
    return repo, jobs


def test_every_target_built_and_identical_to_local_run(cluster_build, smoke_build):
    repo, jobs = cluster_build
    local = smoke_build[1]
    remote = {p: b for p, b in netcdf_snapshot(repo).items() if "/paper_a/" in p}
    assert len(remote) == 16, sorted(remote)  # pretrain 2, tune 4 + 4 searches, eval 4, states 2
    different = [p for p in remote if remote[p] != local[p]]
    assert not different, f"NetCDF differs between SLURM and local runs: {different}"
    sorting = {p: b for p, b in netcdf_snapshot(repo).items() if "/paper_b/" in p}
    assert len(sorting) == 4, sorted(sorting)  # pretrain 1, tune 2 (prefix, LoRA), eval 1
    assert all(sorting[p] == local[p] for p in sorting), "Paper B NetCDF differs between SLURM and local runs"
    dry = snakemake(repo, "all_figures", options=["-n"], extra_configs=["subset.yaml"])
    assert "Nothing to be done" in dry.stdout + dry.stderr, "targets missing after the cluster run"
    assert (repo / RES / "claims.md").read_text().startswith("# Paper A and B claims")
    # 12 Paper A jobs (pretrain, tune, evaluate, states) + 4 Paper B jobs (pretrain, tune x 2,
    # evaluate); figures and claims went as one group job
    assert jobs == 17, jobs
    assert list((repo / "logs/slurm").rglob("*.log")), "no SLURM job logs under logs/slurm"


def test_scancel_fails_cleanly_and_rerun_resumes_identically(cluster, cluster_build, tmp_path_factory):
    repo, _ = cluster_build
    target = RES / "paper_a/tune/r2s_transformer.nc"
    outs = [target, RES / "paper_a/tune/r2s_transformer_search.nc", RES / "paper_a/tune/r2s_transformer.pt"]
    slow = repo / "slow.yaml"
    slow.write_text("scales: {smoke: {tune: {steps: 1500, log_every: 20}}}")
    cmd = snakemake_cmd(str(target), options=SLURM, extra_configs=["subset.yaml", slow.name], cores=False)
    subprocess.run(cmd, cwd=repo, check=True, capture_output=True, timeout=300)
    reference = {p: (repo / p).read_bytes() for p in outs}
    log = repo / "logs/smoke/paper_a/tune/r2s_transformer.log"
    for p in outs:
        (repo / p).unlink()
    log.unlink()
    proc = subprocess.Popen(cmd, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and "step 100/" in log.read_text()):
        time.sleep(0.2)
    assert "step 100/" in log.read_text(), "tuning did not start on the cluster"
    jobs = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True,
                          check=True).stdout.split()
    assert jobs, "no running SLURM job to cancel"
    subprocess.run(["scancel", *jobs], check=True)
    try:
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("snakemake did not notice the cancelled job")
    assert proc.returncode != 0, "a cancelled job must fail the run"
    for p in outs:
        assert not (repo / p).exists(), f"{p} exists after scancel"
    subprocess.run(cmd, cwd=repo, check=True, capture_output=True, timeout=300)
    for p in outs:
        assert (repo / p).read_bytes() == reference[p], f"{p} differs from the uninterrupted run"
