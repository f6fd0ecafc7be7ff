"""User mistakes at the command line: one line naming the file, key or value, exit code 2,
no traceback, nothing written; Ctrl-C exits 130; stale temporaries are cleared."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prefixlab.sorting import jobs as sorting_jobs
from prefixlab import cli, storage
from test_storage import job_configs

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*argv, timeout=120):
    """The CLI as the workflow runs it: a fresh process, stderr captured."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "prefixlab", *argv, "--device", "cpu", "--threads", "1"],
                          capture_output=True, text=True, timeout=timeout, env=env)


def assert_one_line_error(proc, *needles, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if " ERROR " in l]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """Pretrained weights of the LSTM and of the Transformer (tiny)."""
    out = tmp_path_factory.mktemp("weights")
    paths = {}
    for arch in ("lstm", "transformer"):
        pre, _, _ = job_configs(arch)
        paths[arch] = out / f"{arch}.pt"
        proc = run_cli("pretrain", "--config", json.dumps(pre), "--out-weights", str(paths[arch]),
                       "--out-nc", str(out / f"{arch}.nc"))
        assert proc.returncode == 0, proc.stderr
    return paths


def tune_argv(cfg, weights, out: Path):
    return ["tune", "--config", json.dumps(cfg), "--weights", str(weights), "--out-nc", str(out / "t.nc"),
            "--out-search", str(out / "s.nc"), "--out-weights", str(out / "t.pt")]


def test_weights_of_another_architecture(pretrained, tmp_path):
    _, tune, _ = job_configs("lstm")
    proc = run_cli(*tune_argv(tune, pretrained["transformer"], tmp_path))
    assert_one_line_error(proc, "transformer.pt", "weights of another network", "lstm0_wx")
    assert not list(tmp_path.iterdir())


def test_weights_of_another_size(pretrained, tmp_path):
    _, tune, _ = job_configs("lstm")
    tune["network"] = {**tune["network"], "d": 16}
    proc = run_cli(*tune_argv(tune, pretrained["lstm"], tmp_path))
    assert_one_line_error(proc, "lstm.pt", "weights of another size", "(2, 8)", "(2, 16)")
    assert not list(tmp_path.iterdir())


def test_paper_b_weights_of_another_size(tmp_path):
    import yaml

    from prefixlab import settings
    from prefixlab.sorting import networks
    from prefixlab.sorting.jobs import SortTuneJob
    raw = {**yaml.safe_load((ROOT / "config.yaml").read_text()), "scale": "smoke"}
    cfg = settings.resolve(raw, ROOT / "workflow/schemas/config.schema.yaml")
    job = sorting_jobs.tune_job(cfg, "b1_descending", "prefix")
    model = SortTuneJob.from_dict(job).model
    wider = networks.init_weights(networks.GPTConfig(**{**model.__dict__, "d": 2 * model.d}))
    storage.save_torch(wider, tmp_path / "wide.pt")
    proc = run_cli("sort-tune", "--config", json.dumps(job), "--weights", str(tmp_path / "wide.pt"),
                   "--out-weights", str(tmp_path / "t.pt"), "--out-nc", str(tmp_path / "t.nc"))
    assert_one_line_error(proc, "wide.pt", "weights of another size", f"{2 * model.d}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.pt"]


@pytest.mark.parametrize("text,needles", [
    ('{"network": ', ["--config", "not valid JSON", "line 1"]),
    ("FILE:network: [1, 2\n", ["config file", "job.yaml", "not valid YAML", "line 2"]),
    ("FILE:- just\n- a list\n", ["job.yaml", "expected a mapping"]),
    ("FILE", ["config file", "does not exist"]),
])
def test_malformed_config(tmp_path, text, needles):
    if text.startswith("FILE"):
        path = tmp_path / "job.yaml"
        if text != "FILE":
            path.write_text(text[5:])
        text = str(path)
    proc = run_cli("pretrain", "--config", text, "--out-weights", str(tmp_path / "w.pt"), "--out-nc", str(tmp_path / "p.nc"))
    assert_one_line_error(proc, *needles)
    assert not (tmp_path / "w.pt").exists() and not (tmp_path / "p.nc").exists()


def test_unwritable_output_fails_before_training(tmp_path):
    pre, _, _ = job_configs("lstm")
    pre["pretrain"] = {**pre["pretrain"], "steps": 100000}  # would take minutes if it started
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where a folder should be")
    start = time.perf_counter()
    proc = run_cli("pretrain", "--config", json.dumps(pre), "--out-weights", str(tmp_path / "w.pt"),
                   "--out-nc", str(blocker / "p.nc"))
    assert_one_line_error(proc, "--out-nc", str(blocker / "p.nc"), "cannot write there")
    assert time.perf_counter() - start < 60
    assert not (tmp_path / "w.pt").exists()
    proc = run_cli("pretrain", "--config", json.dumps(pre), "--out-weights", str(tmp_path / "w.pt"), "--out-nc", str(tmp_path))
    assert_one_line_error(proc, "--out-nc", "is a directory")


def test_pretrained_tune_without_weights(tmp_path):
    _, tune, _ = job_configs("lstm")
    proc = run_cli("tune", "--config", json.dumps(tune), "--out-nc", str(tmp_path / "t.nc"),
                   "--out-search", str(tmp_path / "s.nc"), "--out-weights", str(tmp_path / "t.pt"))
    assert_one_line_error(proc, "needs --weights")


def test_a_finished_job_exits_with_its_outputs_and_whole_log(tmp_path):
    """The command line skips the interpreter's teardown (storage.exit_job): the outputs
    are complete and the log, to the stream and to --log, ends with the last step."""
    pre, _, _ = job_configs("transformer")
    steps = pre["pretrain"]["steps"]
    proc = run_cli("pretrain", "--config", json.dumps(pre), "--out-weights", str(tmp_path / "w.pt"),
                   "--out-nc", str(tmp_path / "p.nc"), "--log", str(tmp_path / "job.log"))
    assert proc.returncode == 0, proc.stderr
    assert f"step {steps}/{steps}" in proc.stderr.splitlines()[-1]
    assert (tmp_path / "job.log").read_text() == proc.stderr
    assert storage.read(tmp_path / "p.nc", "pretrain").sizes["step"] == steps
    assert storage.load_torch(tmp_path / "w.pt")


def test_ctrl_c_exits_130_in_one_line_and_writes_nothing(tmp_path):
    pre, _, _ = job_configs("transformer")
    pre["pretrain"] = {**pre["pretrain"], "steps": 100000, "log_every": 5}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "prefixlab", "pretrain", "--config", json.dumps(pre), "--device", "cpu",
                             "--threads", "1", "--out-weights", str(tmp_path / "w.pt"), "--out-nc", str(tmp_path / "p.nc"),
                             "--log", str(tmp_path / "job.log")], stderr=subprocess.PIPE, text=True, env=env,
                            # as from a terminal: a shell's background jobs start with SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log = tmp_path / "job.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and "step 10/" in log.read_text()):
        time.sleep(0.1)
    assert "step 10/" in log.read_text(), "training did not start"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    assert_one_line_error(done, "interrupted", code=130)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.log"]


def test_stale_temporaries_of_a_killed_write_are_removed(tmp_path, restore_global_state):
    pre, _, _ = job_configs("lstm")
    stale = [tmp_path / ".p.nc.tmp4242", tmp_path / ".w.pt.tmp77"]
    for path in stale:
        path.write_bytes(b"half-written")
    keep = tmp_path / ".p.nc.tmpnotes"  # not a temporary of ours: no pid
    keep.write_text("x")
    assert cli.main(["pretrain", "--config", json.dumps(pre), "--device", "cpu", "--out-weights", str(tmp_path / "w.pt"),
                     "--out-nc", str(tmp_path / "p.nc")]) == 0
    assert not any(p.exists() for p in stale)
    assert keep.exists()
    storage.read(tmp_path / "p.nc", "pretrain")
