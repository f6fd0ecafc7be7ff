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

import argparse
import logging
import sys

from prefixlab import storage
from prefixlab.figures import common

log = logging.getLogger("prefixlab.figures")


def _figures():
    from prefixlab.figures import losses, regret, search, sorting, states, table
    return {
        "figB1_descending": sorting.figB1_descending,
        "figB2_elicit": sorting.figB2_elicit,
        "figB3_matrix": sorting.figB3_matrix,
        "figB4_double_hist": sorting.figB4_double_hist,
        "figB5_theory": sorting.figB5_theory,
        "fig1_r2s_headline": regret.fig1_r2s_headline,
        "fig2_states_r2s": states.fig2_states_r2s,
        "fig3_r2m_headline": regret.fig3_r2m_headline,
        "fig4_untrained": regret.fig4_untrained,
        "fig5_full": regret.fig5_full,
        "fig6_states_r2m": states.fig6_states_r2m,
        "fig7_hard_search": search.fig7_hard_search,
        "fig8_losses": losses.fig8_losses,
        "fig9_ablations": regret.fig9_ablations,
        "table_softpt": table.table_softpt,
    }


NAMES = ("fig1_r2s_headline", "fig2_states_r2s", "fig3_r2m_headline", "fig4_untrained", "fig5_full", "fig6_states_r2m",
         "fig7_hard_search", "fig8_losses", "fig9_ablations", "table_softpt", "claims",
         "figB1_descending", "figB2_elicit", "figB3_matrix", "figB4_double_hist", "figB5_theory")


def _pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, path = item.partition("=")
        if not sep or not key or not path:
            raise common.FigureInputError(f"--input {item!r}: expected key=path")
        if key in out:
            raise common.FigureInputError(f"--input: key {key!r} given twice")
        common.kind_of(key)
        common.split_key(key)
        out[key] = path
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m prefixlab.figures", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=NAMES)
    ap.add_argument("--input", action="append", default=[], metavar="KEY=PATH", help="a keyed NetCDF input (repeatable)")
    ap.add_argument("--settings", default="{}", help="JSON object (figures: dpi, bar_steps; claims: see prefixlab.claims)")
    ap.add_argument("--out-pdf")
    ap.add_argument("--out-png")
    ap.add_argument("--out-md", help="table_softpt: the Markdown table; claims: the report")
    ap.add_argument("--out-nc", help="claims: the NetCDF of kind 'claims'")
    return ap


def _required(args, *names):
    missing = [f"--{n.replace('_', '-')}" for n in names if not getattr(args, n)]
    if missing:
        raise common.FigureInputError(f"{args.name}: missing {' '.join(missing)}")


def run(args) -> None:
    settings = common.parse_settings(args.settings)
    pairs = _pairs(args.input)
    if args.name == "claims":
        _required(args, "out_md", "out_nc")
    else:
        _required(args, "out_pdf", "out_png")
    data = common.load_inputs(pairs)  # raises DataError before anything is written
    if args.name == "claims":
        from prefixlab import claims
        result = claims.check_all(data, settings)
        from prefixlab import claims_b
        claims.write(result, args.out_md, args.out_nc, settings, notes=claims_b.model_notes(data))
        for line in claims.markdown_lines(result):
            log.info("%s", line)
        return
    from prefixlab.figures import style
    fs = common.FigureSettings.from_dict(settings)
    fig = _figures()[args.name](data, settings)
    if args.name == "table_softpt" and args.out_md:
        from prefixlab.figures import table
        text = table.table_softpt_markdown(data, settings)
        with style.atomic_outputs(args.out_md, args.out_pdf, args.out_png) as (md, pdf, png):
            md.write_text(text)
            style.write_figure(fig, pdf, png, fs.dpi)
    else:
        style.save(fig, args.out_pdf, args.out_png, fs.dpi)
    log.info("%s: wrote %s and %s", args.name, args.out_pdf, args.out_png)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # INFO for our messages only: fontTools logs every glyph subset at INFO while writing PDFs.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr, force=True)
    log.setLevel(logging.INFO)
    try:
        run(args)
    except (storage.DataError, common.FigureInputError) as err:
        log.error("%s", err)
        return 2
    return 0
