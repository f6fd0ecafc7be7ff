"""Editing any module of the package reruns exactly the stages that import it.

The workflow derives each rule's code inputs from the package's own imports
(workflow/rules/common.smk). This test derives the expectation independently: the
standard library's modulefinder lists what each stage's entry modules import (function-
level imports included), then every module of the package is edited in turn in the
smoke-scale build and Snakemake's dry run must name exactly those stages as rerun for an
updated input (their downstream jobs follow as "input files updated by another job").
"""

from __future__ import annotations

import modulefinder
import os
import re
import tempfile
from functools import cache
from pathlib import Path

import pytest
from wfutil import ROOT, snakemake

import prefixlab

pytestmark = pytest.mark.slow
SRC = ROOT / "src"
MODULES = sorted(str(p.relative_to(ROOT)) for p in (SRC / "prefixlab").rglob("*.py"))


def _entries() -> dict[str, tuple[str, ...]]:
    """Rule -> the modules its job runs, from the commands the rules call."""
    cli = "prefixlab.__main__"
    commands = {"pretrain": "pretrain", "tune": "tune", "evaluate": "evaluate", "internal_states": "states",
                "sort_pretrain": "sort-pretrain", "sort_tune": "sort-tune", "sort_evaluate": "sort-evaluate"}
    out = {rule: (cli, prefixlab.module_of(prefixlab.COMMANDS[c])) for rule, c in commands.items()}
    for name, target in prefixlab.FIGURES.items():
        rule = name if name == "table_softpt" else f"figure_{name}"
        out[rule] = ("prefixlab.figures", prefixlab.module_of(target))
    out["claims"] = ("prefixlab.figures", *prefixlab.CLAIM_MODULES)
    return out


@cache
def _files_run_by(modules: tuple[str, ...]) -> frozenset[str]:
    """Package files Python would run for `import <modules>` (found in this checkout only)."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "entry.py"
        script.write_text("".join(f"import {m}\n" for m in modules))
        finder = modulefinder.ModuleFinder(path=[str(SRC)])
        finder.run_script(str(script))
    return frozenset(str(Path(m.__file__).resolve().relative_to(ROOT)) for name, m in finder.modules.items()
                     if name.startswith("prefixlab") and m.__file__)


def _directly_rerun(repo) -> set[str]:
    """Rules a dry run reruns because one of their own input files changed."""
    out = snakemake(repo, "all_figures", options=["-n"]).stdout
    m = re.search(r"^\s*updated input files:\n\s*(.+)$", out, re.M)
    return set(m.group(1).split(", ")) if m else set()


def test_every_module_is_some_stage_s_code():
    used = set().union(*(_files_run_by(e) for e in _entries().values()))
    unused = sorted(set(MODULES) - used - {"src/prefixlab/launches.py", "src/prefixlab/settings.py",
                                           "src/prefixlab/kernels/aot.py"})
    assert not unused, f"modules no job imports: {unused}"


@pytest.mark.parametrize("module", MODULES)
def test_editing_a_module_reruns_the_stages_importing_it(smoke_build, module):
    repo = smoke_build[0]
    expected = {rule for rule, entry in _entries().items() if module in _files_run_by(entry)}
    path = repo / module
    saved, st = path.read_bytes(), path.stat()
    # a comment, not a bare touch: Snakemake compares small inputs by checksum
    path.write_bytes(saved + b"\n# an edit\n")
    try:
        rerun = _directly_rerun(repo)
    finally:
        path.write_bytes(saved)
        os.utime(path, (st.st_atime, st.st_mtime))
    assert rerun == expected, f"{module}: reruns {sorted(rerun)}, imported by {sorted(expected)}"
