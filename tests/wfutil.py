"""Running the workflow from tests: private copies of the repo and Snakemake commands."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCALE = ["--config", "scale=smoke"]  # config.yaml's smoke scale: every rule, tiny sizes
RES = Path("results/smoke")


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
    # --config and --configfile take several values, so targets go after an explicit "--"
    return [sys.executable, "-m", "snakemake", *(["--cores", "2"] if cores else []), *options, *SCALE,
            *(["--configfile", *extra_configs] if extra_configs else []), "--", *targets]


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


PAPER_A_FIGURES = ("fig1_r2s_headline", "fig2_states_r2s", "fig3_r2m_headline", "fig4_untrained", "fig6_states_r2m",
                   "fig7_hard_search", "fig8_losses", "fig9_ablations", "fig10_budget", "table_softpt")
PAPER_B_FIGURES = ("figB1_descending", "figB2_elicit", "figB3_matrix", "figB4_double_hist", "figB5_theory", "figB6_budget")
CLAIM_IDS = ["A1", "A2", "A3", "A4", "A5", "A6", "B1", "B2", "B3", "B4", "B5"]


def check_all_figures(repo, scale: str, fig5=("r2s_lstm", "r2s_transformer", "r2m_lstm", "u2m_transformer")) -> None:
    """Every figure of both papers (PDF and PNG), the SoftPT table and the claims report
    with a verdict for every claim exist under results/<scale>/; AssertionError otherwise."""
    res = Path(repo) / "results" / scale
    names = [*PAPER_A_FIGURES, *(f"fig5_full_{e}" for e in fig5), *PAPER_B_FIGURES]
    for name in names:
        for ext in ("pdf", "png"):
            path = res / "figures" / f"{name}.{ext}"
            assert path.exists() and path.stat().st_size > 1000, f"missing or empty: {path}"
    assert (res / "figures/table_softpt.md").read_text().strip(), "empty SoftPT table"
    verdicts = {m.group(1): m.group(2) for m in re.finditer(r"^([AB]\d) (\w+)", (res / "claims.md").read_text(), re.M)}
    assert sorted(verdicts) == CLAIM_IDS, f"claims report lists {sorted(verdicts)}"
    assert set(verdicts.values()) <= {"PASS", "FAIL"}, verdicts
    assert (res / "claims.nc").stat().st_size > 0
