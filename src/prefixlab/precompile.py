"""Write the bytecode of the modules the workflow's jobs import, once, at set-up.

Every job, or in a local run the job server that forks them (jobserver.py, which imports
what load_jobs and load_figures import), is a fresh interpreter; without bytecode on disk
each one compiles torch, xarray and matplotlib again (with PYTHONDONTWRITEBYTECODE set nothing is ever cached).
Byte-compiling the whole environment covers that but compiles four times as many files as
the jobs import (sympy, test suites, tools no job loads): 13.4 s on two cores, against 4.3 s
here, where three interpreters import what the three kinds of process load (job commands,
figures, Snakemake itself), write and read a NetCDF file and save a small figure (xarray's
backend, the PDF fonts and the PNG writer load only when used). A module missed here is
compiled by each job that imports it, as before.

    python -m prefixlab.precompile            all three groups, in parallel
    python -m prefixlab.precompile GROUP      one group
"""

from __future__ import annotations

import functools
import importlib
import subprocess
import sys

import prefixlab


@functools.cache
def _netcdf_round_trip() -> None:
    """Write and read one small NetCDF file: xarray loads its backend only on first use
    (once a process: the job server's preload calls both loaders)."""
    import os
    import tempfile

    import numpy as np
    import xarray as xr

    fd, path = tempfile.mkstemp(suffix=".nc")
    os.close(fd)
    try:
        xr.Dataset({"x": ("n", np.zeros(2))}).to_netcdf(path)
        with xr.open_dataset(path) as ds:
            ds.load()
    finally:
        os.unlink(path)


def load_jobs() -> None:
    """Import what job commands import, their NetCDF backend included (also the job server's preload)."""
    importlib.import_module("prefixlab.cli")
    for target in prefixlab.COMMANDS.values():
        importlib.import_module(prefixlab.module_of(target))
    _netcdf_round_trip()


def load_figures() -> None:
    """Import what figure and claims jobs import, and the PDF and PNG writers a first save loads."""
    import tempfile
    from pathlib import Path

    importlib.import_module("prefixlab.figures")
    for target in list(prefixlab.FIGURES.values()) + list(prefixlab.CLAIM_MODULES):
        importlib.import_module(prefixlab.module_of(target))
    _netcdf_round_trip()
    from prefixlab import plotting

    fig = plotting.plt.figure(figsize=(2, 2))
    fig.gca().plot([0, 1], [0, 1], label="x")
    fig.gca().legend()
    with tempfile.TemporaryDirectory() as tmp:
        plotting.write_figure(fig, Path(tmp) / "f.pdf", Path(tmp) / "f.png")
    plotting.plt.close(fig)


def _workflow() -> None:
    # Snakemake's own process: once per run, so a miss here costs little.
    for name in ("snakemake.cli", "snakemake.api", "snakemake.workflow", "snakemake.dag", "snakemake.utils",
                 "jsonschema"):
        importlib.import_module(name)


GROUPS = {"jobs": load_jobs, "figures": load_figures, "workflow": _workflow}


def main(argv: list[str]) -> int:
    # Set-up must write bytecode even where the environment says not to: the point is to
    # write it once here, where jobs could not.
    sys.dont_write_bytecode = False
    if argv:
        unknown = [g for g in argv if g not in GROUPS]
        if unknown:
            print(f"precompile: unknown group(s) {unknown}; choose from {sorted(GROUPS)}", file=sys.stderr)
            return 2
        for group in argv:
            GROUPS[group]()
        return 0
    procs = [subprocess.Popen([sys.executable, "-m", "prefixlab.precompile", g]) for g in GROUPS]
    return max(p.wait() for p in procs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
