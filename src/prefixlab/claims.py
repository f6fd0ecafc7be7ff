"""The claims protocol both papers follow, and the report they share.

A paper's claims module defines `CLAIMS` (a list of `ClaimCheck`: id, what the paper
claims, the experiments and figures it rests on, the check, its deciding number and how
that is compared with the threshold, and the published value of that number), its
settings `DEFAULTS`, `wanted(data)` and `notes(data)`. `check_all` runs the checks of
the papers it is given; a claim whose inputs are missing is a FAIL reading "missing
data: <keys>", never an exception, so the workflow always gets its report. `write`
puts the Markdown report and its NetCDF in place together.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

import numpy as np
import xarray as xr

from prefixlab import storage
from prefixlab.plotting import FigureInputError, Inputs, atomic_outputs

# (passed, the number that decides it, every number behind the verdict)
Verdict = tuple[bool, float, str]


@dataclass(frozen=True)
class ClaimCheck:
    id: str
    description: str  # what the paper claims
    experiments: tuple[str, ...]  # the experiments whose outputs it reads
    figures: tuple[str, ...]  # the figures that show it
    check: Callable[[Inputs, dict], Verdict]
    threshold: Callable[[dict], float]  # what the deciding number is compared with, from the settings
    measure: str  # what the deciding number is, in words
    relation: str  # how a passing deciding number relates to the threshold: one of RELATIONS
    # the paper's value of the deciding number (SPEC 1.7, 2.3); NaN where the paper reports none
    published: float = float("nan")
    percent: bool = False  # an accuracy: shown as a percentage

    def __post_init__(self):
        if self.relation not in RELATIONS:
            raise ValueError(f"claim {self.id}: relation {self.relation!r} is not one of {RELATIONS}")


RELATIONS = ("<", "<=", ">", ">=")


@dataclass(frozen=True)
class Claim:
    """A claim's verdict on one run's outputs."""

    check: ClaimCheck
    passed: bool
    value: float  # the number that decides the claim
    reference: float  # the threshold it is compared with
    details: str  # every number behind the verdict
    scale: str  # the scale whose outputs it was computed on

    id = property(lambda self: self.check.id)
    description = property(lambda self: self.check.description)
    experiments = property(lambda self: self.check.experiments)
    figures = property(lambda self: self.check.figures)
    published = property(lambda self: self.check.published)

    def number(self, x: float) -> str:
        if not math.isfinite(x):
            return "nan"
        if self.check.percent:
            return f"{100 * x:.1f}%"
        return f"{x:.3g}" if x and abs(x) < 1e-2 else f"{x:.3f}"

    def headline(self) -> str:
        """Scale, deciding number against its threshold, and the published value."""
        published = self.number(self.published) if math.isfinite(self.published) else "not reported as a number"
        return (f"[scale {self.scale or 'unnamed'}] {self.check.measure} = {self.number(self.value)} "
                f"(pass: {self.check.relation} {self.number(self.reference)}; published {published})")

    def line(self) -> str:
        where = f"[experiments: {', '.join(self.experiments)}; figures: {', '.join(self.figures)}]"
        return (f"{self.id} {'PASS' if self.passed else 'FAIL'} {self.headline()}. {self.details} "
                f"(claim: {self.description}) {where}")


class MissingData(Exception):
    def __init__(self, keys):
        super().__init__(", ".join(keys))
        self.keys = list(keys)


def need(data: Inputs, *keys: str) -> list[xr.Dataset]:
    """The inputs under `keys`; MissingData naming those that are absent."""
    missing = [k for k in keys if k not in data]
    if missing:
        raise MissingData(missing)
    return [data[k] for k in keys]


def resolve_settings(papers: list[ModuleType], settings: dict | None) -> dict:
    defaults = {"scale": ""}
    for paper in papers:
        defaults.update(paper.DEFAULTS)
    unknown = sorted(set(settings or {}) - set(defaults))
    if unknown:
        raise FigureInputError(f"claims settings: unknown key(s) {unknown}; known: {sorted(defaults)}")
    s = {**defaults, **(settings or {})}
    for k, v in s.items():
        if k != "scale" and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise FigureInputError(f"claims settings: {k} must be a non-negative number, got {v!r}")
    return s


def run_check(claim: ClaimCheck, data: Inputs, s: dict) -> Claim:
    try:
        passed, value, details = claim.check(data, s)
    except MissingData as err:
        passed, value, details = False, float("nan"), f"missing data: {err}"
    return Claim(claim, bool(passed), float(value), float(claim.threshold(s)), details, str(s.get("scale", "")))


def check_all(papers: list[ModuleType], data: Inputs, settings: dict | None = None) -> list[Claim]:
    """Every claim of every paper that wants these inputs, in order."""
    s = resolve_settings(papers, settings)
    return [run_check(c, data, s) for paper in papers if paper.wanted(data) for c in paper.CLAIMS]


# ----------------------------------------------------------------------------- helpers for checks

def fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.3f}"


def finite_max(xs) -> float:
    xs = [x for x in xs if math.isfinite(x)]
    return max(xs) if xs else float("nan")


def finite_min(xs) -> float:
    xs = [x for x in xs if math.isfinite(x)]
    return min(xs) if xs else float("nan")


# ----------------------------------------------------------------------------- output

def markdown(claims: list[Claim], settings: dict, intro: list[str]) -> str:
    n_pass = sum(c.passed for c in claims)
    papers = "Paper A and B" if any(c.id.startswith("B") for c in claims) else "Paper A"
    scale = settings.get("scale", "")
    head = [f"# {papers} claims{' (scale: ' + scale + ')' if scale else ''}: {n_pass}/{len(claims)} PASS", ""]
    if scale and scale != "paper":
        head += ["Reduced-scale run: the verdicts test the qualitative claims on smaller training budgets, "
                 "not the paper's numbers.", ""]
    head += [*intro, f"Settings: {json.dumps({k: v for k, v in settings.items() if k != 'scale'}, sort_keys=True)}.", ""]
    head += ["| claim | verdict | scale | deciding number | passes if | published |", "|---|---|---|---:|---|---:|"]
    head += [f"| {c.id} | {'PASS' if c.passed else 'FAIL'} | {c.scale or 'unnamed'} | {c.number(c.value)} | "
             f"{c.check.relation} {c.number(c.reference)} | {c.number(c.published) if math.isfinite(c.published) else '-'} |"
             for c in claims]
    head += ["", "What each deciding number is, and every number behind each verdict:", ""]
    body = []
    for c in claims:
        body += [c.line(), ""]
    return "\n".join(head + body)


def to_dataset(claims: list[Claim]) -> xr.Dataset:
    def text(values):
        return ("claim", np.array(values, dtype=object))

    return xr.Dataset(
        {
            "passed": storage.var(np.array([c.passed for c in claims], dtype=np.int8), ("claim",), "1",
                                  "claim verdict (1 PASS, 0 FAIL)"),
            "value": storage.var(np.array([c.value for c in claims], dtype=np.float64), ("claim",), "nats or 1",
                                 "the number that decides the claim (see details)"),
            "reference": storage.var(np.array([c.reference for c in claims], dtype=np.float64), ("claim",), "nats or 1",
                                     "threshold the value is compared with"),
            "published": storage.var(np.array([c.published for c in claims], dtype=np.float64), ("claim",), "nats or 1",
                                     "the paper's value of the deciding number (NaN: not reported as a number)"),
        },
        coords={
            "claim": [c.id for c in claims],
            "description": text([c.description for c in claims]),
            "details": text([c.details for c in claims]),
            "experiments": text([" ".join(c.experiments) for c in claims]),
            "figures": text([" ".join(c.figures) for c in claims]),
            "measure": text([c.check.measure for c in claims]),
            "relation": text([c.check.relation for c in claims]),
            "scale": text([c.scale for c in claims]),
        },
    )


def write(claims: list[Claim], md_path, nc_path, settings: dict, intro: list[str]) -> None:
    """Write the Markdown report and the NetCDF together (both or neither)."""
    ds = to_dataset(claims)
    ds.attrs["settings"] = json.dumps(settings, sort_keys=True)
    with atomic_outputs(md_path) as (tmp_md,):
        tmp_md.write_text(markdown(claims, settings, intro))
        tmp_nc = storage.write(ds, nc_path, "claims", {"claims": settings}, {}, publish=False)
        try:
            os.replace(tmp_nc, nc_path)
        except BaseException:
            tmp_nc.unlink(missing_ok=True)
            raise
