"""Command line for figures, the SoftPT table and the claims report.

    python -m prefixlab.figures <name> --input key=path [--input key=path ...]
        --settings '<json>' --out-pdf P --out-png Q [--out-md M]
    python -m prefixlab.figures claims --input key=path ... --settings '<json>'
        --out-md claims.md --out-nc claims.nc

Input keys name their kind by prefix: eval_<exp>_<arch>, states_<exp>_<arch>,
tune_<exp>_<arch>, search_<exp>_<arch>, pretrain_<arch>_<variant>. Every input is
read and validated before anything is drawn; a missing, foreign or corrupt input
exits with status 2 and writes nothing. Outputs appear together or not at all.
"""

from __future__ import annotations

if __name__ == "__main__":  # before the imports below (see prefixlab/__main__.py)
    from prefixlab import jobserver

    jobserver.delegate("prefixlab.figures")

import argparse  # noqa: E402
import importlib
import logging
import sys

from prefixlab import CLAIM_MODULES, FIGURES, claims, plotting, storage

log = logging.getLogger("prefixlab.figures")


NAMES = (*FIGURES, "claims")


def _function(target: str):
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def _pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, path = item.partition("=")
        if not sep or not key or not path:
            raise plotting.FigureInputError(f"--input {item!r}: expected key=path")
        if key in out:
            raise plotting.FigureInputError(f"--input: key {key!r} given twice")
        plotting.kind_of(key)
        plotting.split_key(key)
        out[key] = path
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m prefixlab.figures", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=NAMES)
    ap.add_argument("--input", action="append", default=[], metavar="KEY=PATH", help="a keyed NetCDF input (repeatable)")
    ap.add_argument("--settings", default="{}", help="JSON object (figures: dpi, bar_steps; claims: the DEFAULTS of each paper's claims module)")
    ap.add_argument("--out-pdf")
    ap.add_argument("--out-png")
    ap.add_argument("--out-md", help="table_softpt: the Markdown table; claims: the report")
    ap.add_argument("--out-nc", help="claims: the NetCDF of kind 'claims'")
    return ap


def _required(args, *names):
    missing = [f"--{n.replace('_', '-')}" for n in names if not getattr(args, n)]
    if missing:
        raise plotting.FigureInputError(f"{args.name}: missing {' '.join(missing)}")


def run(args) -> None:
    settings = plotting.parse_settings(args.settings)
    pairs = _pairs(args.input)
    if args.name == "claims":
        _required(args, "out_md", "out_nc")
    else:
        _required(args, "out_pdf", "out_png")
    data = plotting.load_inputs(pairs)  # raises DataError before anything is written
    if args.name == "claims":
        papers = [importlib.import_module(m) for m in CLAIM_MODULES]
        result = claims.check_all(papers, data, settings)
        intro = [line for paper in papers if paper.wanted(data) for line in paper.notes(data)]
        claims.write(result, args.out_md, args.out_nc, claims.resolve_settings(papers, settings), intro)
        for c in result:
            log.info("%s", c.line())
        return
    fs = plotting.FigureSettings.from_dict(settings)
    fig = _function(FIGURES[args.name])(data, settings)
    if args.out_md:
        # a figure with a table beside it: "<function>_markdown" in the same module
        text = _function(FIGURES[args.name] + "_markdown")(data, settings)
        with plotting.atomic_outputs(args.out_md, args.out_pdf, args.out_png) as (md, pdf, png):
            md.write_text(text)
            plotting.write_figure(fig, pdf, png, fs.dpi)
    else:
        plotting.save(fig, args.out_pdf, args.out_png, fs.dpi)
    log.info("%s: wrote %s and %s", args.name, args.out_pdf, args.out_png)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # INFO for our messages only: fontTools logs every glyph subset at INFO while writing PDFs.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr, force=True)
    log.setLevel(logging.INFO)
    try:
        run(args)
    except (storage.DataError, plotting.FigureInputError) as err:
        log.error("%s", err)
        return 2
    return 0


if __name__ == "__main__":
    storage.exit_job(main())
