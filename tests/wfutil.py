"""Running the workflow from tests: private copies of the repo and Snakemake commands."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = "tests/tiny.yaml"
RES = Path("results/tiny")


def copy_worktree(dest: Path) -> Path:
    """Copy tracked and untracked-not-ignored files of this checkout to dest."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    return dest


def snakemake_cmd(*targets, options=(), extra_configs=(), cores=True):
    # --configfile takes several values, so targets go after an explicit "--"
    return [sys.executable, "-m", "snakemake", *(["--cores", "2"] if cores else []), *options,
            "--configfile", TINY, *extra_configs, "--", *targets]


def snakemake(repo, *targets, options=(), extra_configs=(), check=True, timeout=600, env=None, cores=True):
    cmd = snakemake_cmd(*targets, options=options, extra_configs=extra_configs, cores=cores)
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[2:])} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def planned_jobs(repo, *targets, extra_configs=(), options=()) -> dict[str, int]:
    """Rule -> job count of a dry run (empty when nothing would run)."""
    out = snakemake(repo, *targets, options=["-n", *options], extra_configs=extra_configs).stdout
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+(\d+)\s*$", table, re.M)}


def netcdf_snapshot(repo: Path) -> dict[str, bytes]:
    return {str(p.relative_to(repo)): p.read_bytes() for p in sorted((repo / RES).rglob("*.nc"))}
