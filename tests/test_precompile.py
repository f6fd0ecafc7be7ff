"""Set-up's precompile writes the bytecode jobs would otherwise compile in every run."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(args, tmp_path, **env):
    return subprocess.run([sys.executable, "-m", "prefixlab.precompile", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=tmp_path, timeout=300)


def test_writes_bytecode_even_where_the_environment_forbids_it(tmp_path):
    cache = tmp_path / "pycache"
    done = _run(["figures"], tmp_path, PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=str(cache))
    assert done.returncode == 0, done.stderr
    written = {p.name.split(".")[0] for p in cache.rglob("*.pyc")}
    # xarray's NetCDF backend and matplotlib's PDF and PNG writers load only when used
    assert {"netCDF4_", "backend_pdf", "backend_agg", "regret"} <= written
    assert not list(tmp_path.glob("*.nc")) and not list(tmp_path.glob("*.pdf"))


def test_unknown_group_is_named(tmp_path):
    done = _run(["figurs"], tmp_path)
    assert done.returncode == 2
    assert "figurs" in done.stderr and "figures" in done.stderr
