"""Editing any module of the package reruns exactly the stages that import it.

The workflow derives each rule's code inputs from the package's own imports
(workflow/rules/common.smk). This test derives the expectation independently: the
standard library's modulefinder lists what each stage's entry modules import (function-
level imports included), then every module of the package is edited in turn in the
smoke-scale build and Snakemake's dry run must rerun exactly the jobs of those stages and
the jobs downstream of them (the job graph read from one --forceall dry run).
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
    commands = {"pretrain": "pretrain", "tune": "tune", "tune_weight_members": "tune", "evaluate": "evaluate",
                "internal_states": "states",
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


def _planned(repo, options=()) -> dict[str, tuple[str, frozenset[str]]]:
    """Jobs of a dry run: id (the rule and its outputs) -> (rule, input files)."""
    out = snakemake(repo, "all_figures", options=["-n", "--nolock", *options]).stdout
    jobs = {}
    for block in re.split(r"\n(?=\[[^\n]*\]\n(?:local)?rule )", out):
        m = re.search(r"^(?:local)?rule (\S+):$", block, re.M)
        if not m:
            continue
        field = {k: v for k, v in re.findall(r"^    (input|output): (.*)$", block, re.M)}
        ins = frozenset(x.strip() for x in field.get("input", "").split(",") if x.strip())
        jobs[f"{m.group(1)} -> {field.get('output', '')}"] = (m.group(1), ins)
    return jobs


@pytest.fixture(scope="module")
def every_job(smoke_build):
    return _planned(smoke_build[0], options=["--forceall"])


def _with_downstream(jobs, chosen: set[str]) -> set[str]:
    """`chosen` jobs and every job that reads what they write (the target rule included)."""
    outputs = {job: {o.strip() for o in job.split(" -> ", 1)[1].split(",") if o.strip()} for job in jobs}
    done, todo = set(chosen), list(chosen)
    while todo:
        written = outputs[todo.pop()]
        for job, (_, ins) in jobs.items():
            if job not in done and (ins & written or (not outputs[job] and written)):
                done.add(job)
                todo.append(job)
    return done


def test_every_module_is_some_stage_s_code():
    used = set().union(*(_files_run_by(e) for e in _entries().values()))
    # launches, aot: kernels compiled ahead of time; settings: the workflow's own; precompile: set-up
    unused = sorted(set(MODULES) - used - {"src/prefixlab/launches.py", "src/prefixlab/settings.py",
                                           "src/prefixlab/kernels/aot.py", "src/prefixlab/precompile.py"})
    assert not unused, f"modules no job imports: {unused}"


@pytest.mark.parametrize("module", MODULES)
def test_editing_a_module_reruns_the_stages_importing_it(smoke_build, every_job, module):
    repo = smoke_build[0]
    importers = {rule for rule, entry in _entries().items() if module in _files_run_by(entry)}
    expected = _with_downstream(every_job, {job for job, (rule, _) in every_job.items() if rule in importers})
    path = repo / module
    saved, st = path.read_bytes(), path.stat()
    # a comment, not a bare touch: Snakemake compares small inputs by checksum
    path.write_bytes(saved + b"\n# an edit\n")
    try:
        rerun = set(_planned(repo))
    finally:
        path.write_bytes(saved)
        os.utime(path, (st.st_atime, st.st_mtime))
    rules = sorted({j.split(" -> ")[0] for j in rerun ^ expected})
    assert rerun == expected, (f"{module} (imported by {sorted(importers)}): {len(rerun)} jobs rerun, {len(expected)} "
                               f"expected; they differ in rules {rules}")
