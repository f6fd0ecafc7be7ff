"""Run a local workflow's jobs in forks of one process that has already imported them.

A job spends 1-1.5 s importing torch, xarray and matplotlib before it computes anything:
about 120 of the quick scale's 1 760 job-seconds. A local run therefore starts a server
(`onstart` in workflow/rules/common.smk) that imports every job's modules once, then forks
one child per job. The job's own `python -m prefixlab ...` process becomes a client: it
hands the server its argv, working directory, environment and standard streams, waits, and
exits with the child's status; signals it receives go to the child.

A job runs in the server only when nothing it would have read at start-up differs: the
same interpreter, the same sys.path, the same environment (but for the per-job temporary
directory and the shell's own bookkeeping variables) and package files unchanged since the
server imported them. Otherwise, or when no server answers, it runs as before, in its own
process, and the refusal is the first line of its log. Results are the same either way
(every quick-scale output bitwise, tests/test_jobserver.py). Snakemake's `benchmark:`
records then measure the client: the job's wall time, but not its CPU time and memory,
which the last line of a served job's log gives instead.

    python -m prefixlab.jobserver start --socket S --owner PID --log L   detach a server
    python -m prefixlab.jobserver serve --socket S --owner PID           run one in front
    PREFIXLAB_JOBSERVER=off                                              no server at all

The server is single-threaded (forking a process with threads is unsafe), imports only
(it runs no torch operation, so no thread pool exists to be copied), and stops when its
owner (the Snakemake process) exits or on SIGTERM.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import struct
import sys

ENV_VAR = "PREFIXLAB_JOBSERVER"
DIRECTORY_PREFIX = "prefixlab-jobs-"  # a run's temporary folder of sockets
# Differ between jobs, and nothing imported reads them: Snakemake's per-job temporary
# directory (tempfile reads it on first use, and the child forgets the server's) and
# what the shell sets for itself.
PER_JOB_ENV = frozenset({"TMPDIR", "TMP", "TEMP", "TEMPDIR", "SHLVL", "_", "PWD", "OLDPWD"})
# Signals a client passes on to its job, as they would have reached the job's own process.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_HEADER = struct.Struct("!I")
_serving = False  # True in a child the server forked: its job must not delegate again


def socket_path(directory: str, environ=os.environ) -> str:
    """A job's server: one per thread count, since OMP_NUM_THREADS and friends are read
    once, when torch and numpy load."""
    return os.path.join(directory, f"threads-{environ.get('OMP_NUM_THREADS', 'default')}.sock")


# ---------------------------------------------------------------------------- client


def delegate(module: str) -> None:
    """Run `python -m <module>` in this job's server and exit with its status; return
    (and let the caller run the job itself) where there is no server or it declines."""
    directory = os.environ.get(ENV_VAR, "")
    if _serving or not directory or directory == "off":
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_path(directory))
    except OSError:  # not started yet (it is importing), or gone: run here
        sock.close()
        return
    request = {"module": module, "argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ),
               "umask": _umask(), "executable": sys.executable, "path": sys.path}
    streams = [_usable_fd(fd) for fd in (0, 1, 2)]
    try:
        payload = json.dumps(request).encode()
        socket.send_fds(sock, [_HEADER.pack(len(payload)) + payload], streams)
        replies = sock.makefile("rb")
        first = json.loads(replies.readline() or b"{}")
    except (OSError, ValueError):
        sock.close()
        return
    if "pid" not in first:
        print(f"prefixlab: job server not used: {first.get('refused', 'no answer')}", file=sys.stderr, flush=True)
        sock.close()
        return
    pid = first["pid"]
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, frame: _forward(pid, signum))
    try:
        last = json.loads(replies.readline() or b"{}")
    except (OSError, ValueError):
        last = {}
    if "exit" not in last:  # the server was killed: its job must not go on to write outputs
        _forward(pid, signal.SIGKILL)
        print("prefixlab: the job server ended before the job did; job killed", file=sys.stderr, flush=True)
        os._exit(1)
    # What Snakemake's benchmark records cannot see (they measure this process), for the log.
    print(f"prefixlab: ran in the job server as pid {pid}: {last['cpu_s']:.1f} s CPU, "
          f"max RSS {last['max_rss_kb'] / 1024:.0f} MB", file=sys.stderr, flush=True)
    code = last["exit"]
    if code < 0:  # killed by a signal: so is this process, for the shell to see
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code
    os._exit(code)


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _usable_fd(fd: int) -> int:
    try:
        os.fstat(fd)
        return fd
    except OSError:  # closed in this process: the job gets /dev/null there
        return os.open(os.devnull, os.O_RDWR)


# ---------------------------------------------------------------------------- server


# The server's environment before preload: what a job's own must equal. Importing changes it
# (netCDF4 sets HDF5_PLUGIN_PATH), and those changes a fresh job would make too.
_startup_env: dict[str, str] = {}
_preload_env: dict[str, str | None] = {}


def preload() -> None:
    """Import what every job command, figure and claims report imports, backends included."""
    from prefixlab import precompile

    precompile.load_jobs()
    precompile.load_figures()


def _package_files() -> dict[str, int | None]:
    """Modification times of the package's modules loaded now."""
    root = os.path.dirname(os.path.abspath(__file__))
    paths = {getattr(mod, "__file__", None) for mod in list(sys.modules.values())}
    return {p: _mtime(p) for p in paths if p and os.path.abspath(p).startswith(root + os.sep)}


def _refusal(request: dict, files: dict[str, int | None]) -> str | None:
    """Why the server cannot run this job as its own process would, or None."""
    if request.get("executable") != sys.executable:
        return f"interpreter {request.get('executable')} is not the server's {sys.executable}"
    if request.get("path") != sys.path:
        return "sys.path differs from the server's"
    env = request.get("env") or {}
    differ = sorted(k for k in set(env) | set(_startup_env)
                    if k not in PER_JOB_ENV and env.get(k) != _startup_env.get(k))
    if differ:
        return f"environment differs from the server's in {', '.join(differ[:8])}"
    changed = [p for p, t in files.items() if _mtime(p) != t]
    if changed:
        return f"{os.path.relpath(changed[0])} changed since the server imported it"
    return None


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    conn.settimeout(10)
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    if len(data) < _HEADER.size:
        raise ValueError("short request")
    (size,) = _HEADER.unpack_from(data)
    data = data[_HEADER.size:]
    while len(data) < size:
        more = conn.recv(size - len(data))
        if not more:
            raise ValueError("truncated request")
        data += more
    conn.settimeout(None)
    return json.loads(data), fds


def _send(conn: socket.socket, message: dict) -> None:
    try:
        conn.sendall(json.dumps(message).encode() + b"\n")
    except OSError:  # the client is gone; its job's end is noted all the same
        pass


def _run_child(request: dict, fds: list[int], server_sockets: list[socket.socket], server_fds: list[int]) -> None:
    """In the forked child: become the job's process, run it, never return. The server's
    sockets and descriptors are closed first: the job must not hold its clients' connections."""
    global _serving
    code = 1
    try:
        _serving = True
        signal.set_wakeup_fd(-1)
        for sock in server_sockets:
            sock.close()
        for fd in server_fds:
            os.close(fd)
        for sig in (*FORWARDED, signal.SIGCHLD):  # as a fresh interpreter has them
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for key, value in _preload_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.umask(request["umask"])
        import tempfile

        tempfile.tempdir = None  # read TMPDIR afresh, as the job's own process would
        code = _run_module(request["module"], request["argv"])
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            if code < 0:  # an uncaught Ctrl-C ends the process by that signal, as Python's own exit does
                signal.signal(-code, signal.SIG_DFL)
                os.kill(os.getpid(), -code)
        finally:
            os._exit(code if code >= 0 else 128 - code)


def _run_module(module: str, argv: list[str]) -> int:
    """`python -m module *argv`, as the interpreter would run it, to an exit status."""
    import runpy
    import traceback

    sys.argv = [module, *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        if stop.code is None:
            return 0
        if isinstance(stop.code, int):
            return stop.code
        print(stop.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        return -signal.SIGINT
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def serve(path: str, owner: int) -> int:
    """Answer jobs on the Unix socket `path` until SIGTERM or until `owner` exits."""
    global _startup_env, _preload_env
    _startup_env = dict(os.environ)
    preload()
    _preload_env = {k: os.environ.get(k) for k in set(os.environ) | set(_startup_env)
                    if os.environ.get(k) != _startup_env.get(k)}
    files = _package_files()
    # What the imports made lives as long as any job: out of the collector's reach, a job's
    # full collections do not walk it, nor copy the pages it sits on.
    gc.freeze()
    try:
        owner_fd = os.pidfd_open(owner)
    except (AttributeError, OSError):  # gone while the server imported (a short run), or no pidfd
        print(f"jobserver: owner {owner} not there to watch; not serving", flush=True)
        _remove_folder(path)
        return 0
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches clients, which forward it
    signal.set_wakeup_fd(wake_w)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".new")
    listener.listen(64)
    os.rename(path + ".new", path)  # the socket appears only once the server answers
    print(f"jobserver: serving on {path} (pid {os.getpid()}, {len(files)} package files loaded)", flush=True)
    jobs: dict[int, tuple[int, socket.socket | None]] = {}  # pidfd -> (pid, client connection)
    served = 0
    try:
        while True:
            if stopping and listener is not None:
                listener.close()
                listener = None
                os.unlink(path)
            if listener is None and not jobs:
                break
            watched = [wake_r, owner_fd, *jobs] + ([listener] if listener is not None else [])
            watched += [conn for _, conn in jobs.values() if conn is not None]
            ready, _, _ = select.select(watched, [], [])
            if wake_r in ready:
                os.read(wake_r, 512)
            if owner_fd in ready:
                stopping.append(True)
            for pidfd in [fd for fd in jobs if fd in ready]:
                pid, conn = jobs.pop(pidfd)
                _, status, usage = os.wait4(pid, 0)
                os.close(pidfd)
                if conn is not None:
                    _send(conn, {"exit": os.waitstatus_to_exitcode(status), "cpu_s": usage.ru_utime + usage.ru_stime,
                                 "max_rss_kb": usage.ru_maxrss})
                    conn.close()
            for pidfd, (pid, conn) in list(jobs.items()):
                if conn is not None and conn in ready and _client_gone(conn):
                    # the client was killed outright: so is its job, as if it had been the job
                    _forward(pid, signal.SIGKILL)
                    conn.close()
                    jobs[pidfd] = (pid, None)
            if listener is not None and listener in ready:
                conn, _ = listener.accept()
                try:
                    request, fds = _receive(conn)
                except (OSError, ValueError) as err:
                    print(f"jobserver: bad request: {err}", flush=True)
                    conn.close()
                    continue
                reason = _refusal(request, files)
                if reason:
                    _send(conn, {"refused": reason})
                    conn.close()
                    for fd in fds:
                        os.close(fd)
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _run_child(request, fds, [listener, conn, *(c for _, c in jobs.values() if c is not None)],
                               [wake_r, wake_w, owner_fd, *jobs])
                for fd in fds:
                    os.close(fd)
                jobs[os.pidfd_open(pid)] = (pid, conn)
                _send(conn, {"pid": pid})
                served += 1
    finally:
        if listener is not None:
            listener.close()
            os.unlink(path)
        _remove_folder(path)
    import resource

    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"jobserver: stopped after {served} jobs (its own max RSS {rss_mb:.0f} MB)", flush=True)
    return 0


def _remove_folder(path: str) -> None:
    """The last of a run's servers removes the run's socket folder."""
    if os.path.basename(os.path.dirname(path)).startswith(DIRECTORY_PREFIX):
        try:
            os.rmdir(os.path.dirname(path))
        except OSError:  # another server's socket is still there
            pass


def _client_gone(conn: socket.socket) -> bool:
    """A readable client connection: closed (the client sends nothing after its request)."""
    try:
        return not conn.recv(1, socket.MSG_PEEK)
    except OSError:
        return True


def start(path: str, owner: int, log: str) -> int:
    """Detach a server (its own session, output to `log`) and return at once."""
    import subprocess

    with open(log, "ab") as out:
        subprocess.Popen([sys.executable, "-m", "prefixlab.jobserver", "serve", "--socket", path, "--owner", str(owner)],
                         stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m prefixlab.jobserver", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("start", "serve"))
    parser.add_argument("--socket", required=True, help="Unix socket path the server answers on")
    parser.add_argument("--owner", type=int, required=True, help="pid whose exit stops the server")
    parser.add_argument("--log", help="start: file the detached server writes to")
    args = parser.parse_args(argv)
    if args.action == "start":
        if not args.log:
            parser.error("start needs --log")
        return start(args.socket, args.owner, args.log)
    return serve(args.socket, args.owner)


if __name__ == "__main__":
    # Through the package's own module, whose `_serving` the jobs' delegate() reads (this
    # file, run as __main__, is a second copy of it).
    from prefixlab.jobserver import main as _main

    sys.exit(_main())
