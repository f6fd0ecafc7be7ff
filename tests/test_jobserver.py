"""The job server runs a job exactly as the job's own process would, or declines.

A server (src/prefixlab/jobserver.py) is started in front of a probe module that reports
where and how it ran; a real pretraining job is then run through the server and on its
own, and their outputs must be the same bytes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prefixlab import jobserver

SRC = Path(__file__).resolve().parents[1] / "src"

PROBE = '''
import json, os, sys, tempfile, time
if __name__ == "__main__":
    from prefixlab import jobserver
    jobserver.delegate("probe")
    mode = sys.argv[1]
    print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "argv": sys.argv[1:], "cwd": os.getcwd(),
                      "tmp": tempfile.gettempdir(), "torch_loaded": "torch" in sys.modules,
                      "main": __name__, "umask": os.umask(0o22)}), flush=True)
    print("to stderr", file=sys.stderr)
    if mode == "sleep":
        time.sleep(120)
    if mode == "raise":
        raise RuntimeError("probe failed")
    sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
'''


def _wait_for(predicate, timeout=120.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server answering jobs run from `cwd` with `env`; (cwd, env, server process, socket)."""
    cwd = tmp_path_factory.mktemp("jobs")
    (cwd / "probe.py").write_text(PROBE)
    directory = Path(tmp_path_factory.mktemp("sockets")) / f"{jobserver.DIRECTORY_PREFIX}test"
    directory.mkdir()
    env = {k: v for k, v in os.environ.items() if k != jobserver.ENV_VAR}
    env.update(PYTHONPATH=f"{SRC}:{cwd}", OMP_NUM_THREADS="1", TMPDIR=str(cwd), **{jobserver.ENV_VAR: str(directory)})
    sock = jobserver.socket_path(str(directory), env)
    proc = subprocess.Popen([sys.executable, "-m", "prefixlab.jobserver", "serve", "--socket", sock,
                             "--owner", str(os.getpid())], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: os.path.exists(sock) or proc.poll() is not None, what="the server's socket")
    assert proc.poll() is None, proc.stdout.read()
    yield cwd, env, proc, sock
    proc.terminate()
    proc.wait(30)


def _probe(server, *args, env_extra=None, **kw):
    cwd, env, proc, _ = server
    run_env = {**env, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "probe", *args], cwd=cwd, env=run_env, capture_output=True,
                          text=True, timeout=60, **kw)


def test_job_runs_in_the_server_with_its_arguments_streams_and_status(server, tmp_path):
    cwd, env, proc, _ = server
    out = _probe(server, "exit", "3", env_extra={"TMPDIR": str(tmp_path)})
    report = json.loads(out.stdout.splitlines()[0])
    assert report["ppid"] == proc.pid and report["torch_loaded"], "the job did not run in the server"
    assert out.returncode == 3
    first, last = out.stderr.splitlines()
    assert first == "to stderr"
    assert re.fullmatch(rf"prefixlab: ran in the job server as pid {report['pid']}: [0-9.]+ s CPU, max RSS \d+ MB",
                        last), last
    assert report["argv"] == ["exit", "3"] and report["main"] == "__main__" and report["cwd"] == str(cwd)
    assert report["tmp"] == str(tmp_path), "the job's own TMPDIR was not used"
    assert report["umask"] == jobserver._umask()


def test_uncaught_exception_prints_its_traceback_and_exits_1(server):
    out = _probe(server, "raise")
    assert json.loads(out.stdout)["ppid"] == server[2].pid
    assert out.returncode == 1
    assert "RuntimeError: probe failed" in out.stderr and "Traceback" in out.stderr


def test_job_whose_environment_differs_runs_on_its_own(server):
    out = _probe(server, "exit", "0", env_extra={"PREFIXLAB_SOMETHING": "1", "OMP_WAIT_POLICY": "ACTIVE"})
    first, rest = out.stderr.split("\n", 1)
    assert first == ("prefixlab: job server not used: environment differs from the server's in "
                     "OMP_WAIT_POLICY, PREFIXLAB_SOMETHING")
    report = json.loads(out.stdout)
    assert report["ppid"] != server[2].pid and not report["torch_loaded"]
    assert out.returncode == 0 and rest == "to stderr\n"


def test_job_after_a_package_file_changed_runs_on_its_own(server):
    path = SRC / "prefixlab" / "norms.py"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        out = _probe(server, "exit", "0")
    finally:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert out.stderr.startswith("prefixlab: job server not used: ") and "norms.py changed" in out.stderr
    assert json.loads(out.stdout)["ppid"] != server[2].pid
    assert json.loads(_probe(server, "exit", "0").stdout)["ppid"] == server[2].pid  # restored: served again


def test_signal_to_the_client_reaches_the_job(server):
    cwd, env, proc, _ = server
    client = subprocess.Popen([sys.executable, "-m", "probe", "sleep"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    job = json.loads(client.stdout.readline())["pid"]
    assert job != client.pid
    client.send_signal(signal.SIGTERM)
    assert client.wait(30) == -signal.SIGTERM
    _wait_for(lambda: not _alive(job), 30, "the job to end")


def test_killed_client_takes_its_job_with_it(server):
    cwd, env, proc, _ = server
    client = subprocess.Popen([sys.executable, "-m", "probe", "sleep"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    job = json.loads(client.stdout.readline())["pid"]
    client.kill()
    client.wait(30)
    _wait_for(lambda: not _alive(job), 30, "the job to end")
    assert json.loads(_probe(server, "exit", "0").stdout)["ppid"] == proc.pid  # still serving


def test_server_stops_and_cleans_up_when_its_owner_exits(tmp_path):
    directory = tmp_path / f"{jobserver.DIRECTORY_PREFIX}owner"
    directory.mkdir()
    owner = subprocess.Popen(["sleep", "300"])
    sock = str(directory / "threads-1.sock")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen([sys.executable, "-m", "prefixlab.jobserver", "serve", "--socket", sock,
                             "--owner", str(owner.pid)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: os.path.exists(sock) or proc.poll() is not None, what="the server's socket")
        owner.kill()
        owner.wait()
        assert proc.wait(30) == 0
        assert not directory.exists(), "the server left its socket folder behind"
        assert "stopped after 0 jobs" in proc.stdout.read()
    finally:
        owner.kill()
        proc.kill()


def test_server_whose_owner_ended_while_it_imported_cleans_up(tmp_path):
    directory = tmp_path / f"{jobserver.DIRECTORY_PREFIX}short"
    directory.mkdir()
    owner = subprocess.Popen(["true"])
    owner.wait()
    sock = str(directory / "threads-1.sock")
    proc = subprocess.run([sys.executable, "-m", "prefixlab.jobserver", "serve", "--socket", sock,
                           "--owner", str(owner.pid)], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(SRC)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "not serving" in proc.stdout, proc.stdout + proc.stderr
    assert not directory.exists(), "the server left its socket folder behind"


def test_no_server_or_off_runs_the_job_here(server, tmp_path):
    for value in ("off", str(tmp_path)):  # switched off; a folder where no server answers
        out = _probe(server, "exit", "0", env_extra={jobserver.ENV_VAR: value})
        assert json.loads(out.stdout)["ppid"] != server[2].pid and out.stderr == "to stderr\n"


PRETRAIN = {"network": {"arch": "transformer", "d": 16, "heads": 2, "init_seed": 3, "layers": 1, "lora_rank": 2,
                        "vocab": 2, "width": 16},
            "pretrain": {"batch": 8, "clip": 1.0, "data_seed": 5, "length": 20, "log_every": 10, "lr": 0.003,
                         "steps": 30},
            "source": {"alphas": [1.0, 1.0], "kind": "random"}}


def test_real_job_writes_the_same_bytes_in_the_server_and_on_its_own(server):
    cwd, env, proc, _ = server
    outputs = {}
    for where in ("server", "off"):
        run_env = {**env, jobserver.ENV_VAR: env[jobserver.ENV_VAR] if where == "server" else "off"}
        (cwd / where).mkdir()  # the same file names in both: torch.save records the name
        out = subprocess.run([sys.executable, "-m", "prefixlab", "pretrain", "--config", json.dumps(PRETRAIN),
                              "--threads", "1", "--device", "cpu", "--kernels", "reference",
                              "--out-weights", f"{where}/job.pt", "--out-nc", f"{where}/job.nc"],
                             cwd=cwd, env=run_env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert "job server not used" not in out.stderr
        outputs[where] = ((cwd / where / "job.nc").read_bytes(), (cwd / where / "job.pt").read_bytes())
    assert outputs["server"][0] == outputs["off"][0], "NetCDF differs"
    assert outputs["server"][1] == outputs["off"][1], "weights differ"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
