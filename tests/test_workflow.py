"""The Snakemake workflow end to end at the smoke scale, on a private copy of the repo.

One real run builds every target; the dry-run tests then check that a change reruns
exactly the jobs it affects; the destructive tests (interruption, corrupt input) run last.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from wfutil import RES, SCALE, check_all_figures, planned_jobs, snakemake, snakemake_cmd

from prefixlab import storage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(smoke_build):
    return smoke_build[0]


@pytest.fixture(scope="module")
def built(smoke_build):
    return smoke_build[0]


def test_lint_is_clean(repo):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint", *SCALE], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for rule" not in proc.stdout + proc.stderr


def test_all_figures_builds_every_target(built):
    check_all_figures(built, "smoke")
    storage.read(built / RES / "claims.nc", "claims")
    ds = storage.read(built / RES / "paper_a/eval/r2s_transformer.nc", "eval")
    assert set(ds.eval_dist.values) == {"single", "mixture", "random"}
    for log in (built / "logs/smoke/paper_a/tune").glob("*.log"):
        assert re.search(r"step \d+/\d+ loss [\d.]+ .*elapsed", log.read_text()), log


def test_local_run_s_jobs_ran_in_its_job_server(built):
    """All but the jobs that started while the server was importing ran in it, and it stopped
    with Snakemake (its log's last line) and removed its socket folder."""
    logs = sorted((built / "logs/smoke").rglob("*.log"))
    jobs = [p for p in logs if p.name != "jobserver-threads1.log"]
    served = [p for p in jobs if "prefixlab: ran in the job server as pid" in p.read_text()]
    assert len(served) >= len(jobs) - 4, f"{len(served)} of {len(jobs)} jobs ran in the job server"
    server_log = built / "logs/smoke/jobserver-threads1.log"
    deadline = time.time() + 60
    while time.time() < deadline and "stopped after" not in server_log.read_text():
        time.sleep(0.2)
    m = re.search(r"serving on (\S+)/threads-1\.sock .*\njobserver: stopped after (\d+) jobs", server_log.read_text())
    assert m and int(m.group(2)) == len(served), server_log.read_text()
    assert not os.path.exists(m.group(1)), "the job server left its socket folder"


def test_snakemake_exits_as_the_run_ends(smoke_build):
    """Not when its last rescheduling timer fires, up to a minute later (profiles/default,
    cancelled by common.smk's onsuccess)."""
    lag = smoke_build[2]
    assert lag < 10, f"Snakemake exited {lag:.0f} s after its last log line"


def test_all_figures_builds_paper_b(built):
    figs = built / RES / "figures"
    for name in ("figB1_descending", "figB2_elicit", "figB3_matrix", "figB4_double_hist", "figB5_theory"):
        for ext in ("pdf", "png"):
            assert (figs / f"{name}.{ext}").stat().st_size > 1000, name
    lines = [l for l in (built / RES / "claims.md").read_text().splitlines() if re.match(r"^B\d ", l)]
    assert [l.split()[0] for l in lines] == ["B1", "B2", "B3", "B4", "B5"]
    assert all(l.split()[1] in ("PASS", "FAIL") and "missing data" not in l for l in lines), lines
    for exp in ("b1_descending", "b2_elicit", "b3_matrix", "b4_double_hist"):
        storage.read(built / RES / f"paper_b/eval/{exp}.nc", "sort_eval")
    ds = storage.read(built / RES / "paper_b/eval/b1_descending.nc", "sort_eval")
    assert set(ds["map_model"].values) == {"pretrained", "finetune", "prefix"}
    claims = storage.read(built / RES / "claims.nc", "claims")
    assert bool(claims["passed"].sel(claim="B5"))  # the identity holds in float32 on every model


def test_paper_b_run_change_reruns_that_run_only(built):
    change = "scales: {smoke: {paper_b: {experiments: {b4_double_hist: {runs: {lora: {lr: 0.02}}}}}}}"
    jobs = planned_jobs(built, "all_figures", extra_configs=_extra_config(built, "blora", change))
    assert jobs == {"sort_tune": 1, "sort_evaluate": 1, "figure_figB4_double_hist": 1, "figure_figB5_theory": 1,
                    "figure_figB6_budget": 1, "claims": 1, "all_figures": 1}, jobs


def test_nothing_changed_reruns_nothing(built):
    assert planned_jobs(built, "all_figures") == {}


def _extra_config(repo, name, text):
    path = repo / f"{name}.yaml"
    path.write_text(text)
    return [path.name]


def test_tuning_change_reruns_tuning_and_downstream_only(built):
    jobs = planned_jobs(built, "all_figures", extra_configs=_extra_config(built, "steps", "scales: {smoke: {tune: {steps: 13}}}"))
    assert "pretrain" not in jobs
    assert jobs["tune"] == 10 and jobs["evaluate"] == 10 and jobs["claims"] == 1
    assert not any(r.startswith(("sort_", "figure_figB")) for r in jobs), jobs  # Paper B is untouched


def test_experiment_change_reruns_that_experiment_only(built):
    jobs = planned_jobs(built, "all_figures", extra_configs=_extra_config(built, "exp", "scales: {smoke: {experiments: {r2s: {prefix_length: 4}}}}"))
    assert "pretrain" not in jobs
    assert jobs["tune"] == 2 and jobs["evaluate"] == 2 and jobs["internal_states"] == 2


def test_figure_setting_reruns_figures_only(built):
    jobs = planned_jobs(built, "all_figures", extra_configs=_extra_config(built, "dpi", "scales: {smoke: {figures: {dpi: 61}}}"))
    assert jobs and all(r.startswith(("figure_", "table_")) or r == "all_figures" for r in jobs), jobs
    assert jobs["figure_fig5_full"] == 6


def _edited(repo, rel):
    """Append a comment: Snakemake compares small inputs by checksum, so a bare touch is no edit."""
    path = repo / rel
    saved, st = path.read_bytes(), path.stat()
    path.write_bytes(saved + b"\n# an edit\n")
    return path, saved, st


def test_corrupt_or_foreign_input_stops_dependent_rule(built):
    tune_nc = built / RES / "paper_a/tune/r2s_lstm.nc"
    eval_nc = RES / "paper_a/eval/r2s_lstm.nc"
    saved = tune_nc.read_bytes()
    st = tune_nc.stat()
    try:
        for content, needle in ((b"garbage" * 100, "not a readable NetCDF"),
                                ((built / RES / "paper_a/pretrain/lstm_base.nc").read_bytes(), "expected a prefixlab 'tune' file")):
            tune_nc.write_bytes(content)
            os.utime(tune_nc, (st.st_atime, st.st_mtime))
            proc = snakemake(built, str(eval_nc), options=["--forcerun", "evaluate"], check=False)
            assert proc.returncode != 0
            log = (built / "logs/smoke/paper_a/evaluate/r2s_lstm.log").read_text()
            assert needle in log and "r2s_lstm.nc" in log, log
            assert not (built / eval_nc).exists()
    finally:
        tune_nc.write_bytes(saved)
        os.utime(tune_nc, (st.st_atime, st.st_mtime))


SLOW_TUNE = "scales: {smoke: {tune: {steps: 200, log_every: 10}}}"
SLOW_OUTS = [RES / "paper_a/tune/r2s_transformer.nc", RES / "paper_a/tune/r2s_transformer_search.nc",
             RES / "paper_a/tune/r2s_transformer.pt"]
SLOW_LOG = "logs/smoke/paper_a/tune/r2s_transformer.log"


def _clear(built):
    for p in SLOW_OUTS:
        (built / p).unlink(missing_ok=True)
    (built / SLOW_LOG).unlink(missing_ok=True)  # an earlier run's log must not count as progress


@pytest.fixture(scope="module")
def slow_run(built):
    """A longer tuning job's command and its outputs from an uninterrupted run."""
    cmd = snakemake_cmd(str(SLOW_OUTS[0]), extra_configs=_extra_config(built, "slow", SLOW_TUNE))
    subprocess.run(cmd, cwd=built, check=True, capture_output=True)
    return cmd, {p: (built / p).read_bytes() for p in SLOW_OUTS}


def _start_and_wait_for_progress(built, cmd):
    _clear(built)
    proc = subprocess.Popen(cmd, cwd=built, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    log = built / SLOW_LOG
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and "step 20/" in log.read_text()):
        time.sleep(0.1)
    assert "step 20/" in log.read_text(), "tuning did not start"
    return proc


def _readme_recovery(built, cmd):
    """The README's recipe after a killed Snakemake, as written: `--unlock` once, then the
    same command (the default profile supplies rerun-incomplete)."""
    subprocess.run([*cmd[:cmd.index("--")], "--unlock"], cwd=built, check=True, capture_output=True)
    return subprocess.run(cmd, cwd=built, capture_output=True, text=True)


def test_killed_tuning_job_leaves_nothing_and_resumes_identically(built, slow_run):
    cmd, reference = slow_run
    proc = _start_and_wait_for_progress(built, cmd)
    os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and its job
    proc.wait()
    for p in SLOW_OUTS:
        assert not (built / p).exists(), f"{p} exists after SIGKILL"
    rerun = _readme_recovery(built, cmd)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    for p in SLOW_OUTS:
        assert (built / p).read_bytes() == reference[p], f"{p} differs from the uninterrupted run"


def test_killed_snakemake_recovers_by_the_readme_recipe(built, slow_run):
    """Only Snakemake is killed; its orphaned job runs on and writes its outputs, which
    Snakemake's metadata still marks incomplete. The README's recipe reruns that job."""
    cmd, reference = slow_run
    proc = _start_and_wait_for_progress(built, cmd)
    os.kill(proc.pid, signal.SIGKILL)  # Snakemake itself, not the job
    proc.wait()
    deadline = time.time() + 300
    while time.time() < deadline:  # the orphaned job finishes on its own
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    assert all((built / p).exists() for p in SLOW_OUTS), "the orphaned job did not finish"
    again = subprocess.run(cmd, cwd=built, capture_output=True, text=True)
    assert again.returncode != 0 and "locked" in again.stdout + again.stderr  # why the README says --unlock
    # without the default profile's rerun-incomplete the outputs would be refused as incomplete
    sep = cmd.index("--")
    subprocess.run([*cmd[:sep], "--unlock"], cwd=built, check=True, capture_output=True)
    bare = subprocess.run([*cmd[:sep], "--workflow-profile", "none", *cmd[sep:]], cwd=built, capture_output=True, text=True)
    assert bare.returncode != 0 and "IncompleteFilesException" in bare.stdout + bare.stderr, bare.stdout + bare.stderr
    rerun = _readme_recovery(built, cmd)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert re.search(r"^\s*tune\s+1$", rerun.stdout + rerun.stderr, re.M), rerun.stdout + rerun.stderr  # reran the job
    for p in SLOW_OUTS:
        assert (built / p).read_bytes() == reference[p], f"{p} differs from the uninterrupted run"
