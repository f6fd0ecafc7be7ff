# One rule per figure; every figure reads only NetCDF and writes PDF + PNG.
FIGURES_PY = "python -m prefixlab.figures"
STATE_EXPS = [e for e in EXPS if exp_cfg(e).get("states")]
ABLATIONS = [e for e in EXPS if e.endswith(("_d4", "_maxi", "_L25"))]


def figure_settings(wildcards=None):
    return as_json(CFG.get("figures", {}))


def fig_input(names):
    """Rule input: keyed data files plus the figure code."""
    def inputs(wildcards):
        return {**names(wildcards), "code": FIGURE_CODE}

    return inputs


def _fig1(w):
    return keyed("eval", ["r2s"])


def _fig2(w):
    return keyed("states", ["r2s"])


def _fig3(w):
    return keyed("eval", ["r2m"])


def _fig4(w):
    return keyed("eval", ["u2m", "u2r"], ["transformer"])


def _fig5(w):
    return keyed("eval", [w.exp], [w.arch])


def _fig6(w):
    return keyed("states", ["r2m"])


def _fig7(w):
    return keyed("search", EXPS)


def _fig8(w):
    return {**keyed("tune", EXPS), **pretrain_inputs()}


def _fig9(w):
    return keyed("eval", ["r2s", "r2m"] + ABLATIONS)


FIGURE_INPUTS = {
    "fig1_r2s_headline": _fig1,
    "fig2_states_r2s": _fig2,
    "fig3_r2m_headline": _fig3,
    "fig4_untrained": _fig4,
    "fig6_states_r2m": _fig6,
    "fig7_hard_search": _fig7,
    "fig8_losses": _fig8,
    "fig9_ablations": _fig9,
}
CAPTIONS = {
    "fig1_r2s_headline": "fig1.rst",
    "fig2_states_r2s": "fig2.rst",
    "fig3_r2m_headline": "fig3.rst",
    "fig4_untrained": "fig4.rst",
    "fig6_states_r2m": "fig6.rst",
    "fig7_hard_search": "fig7.rst",
    "fig8_losses": "fig8.rst",
    "fig9_ablations": "fig9.rst",
}


def enabled_figures():
    """Figures whose data the configured experiments provide."""
    return [name for name, inputs in FIGURE_INPUTS.items() if inputs(None)]


def all_figure_outputs():
    outs = [f"{FIG}/{name}.png" for name in enabled_figures()]
    outs += [f"{FIG}/fig5_full_{e}_{a}.png" for e in EXPS if e in ("r2s", "r2m", "u2m", "u2r") for a in ARCHS]
    if any(e in EXPS for e in ("r2s", "r2m")):
        outs.append(f"{FIG}/table_softpt.md")
    outs += [f"{RES}/claims.md", f"{RES}/claims.nc"]
    return outs


for _name in FIGURE_INPUTS:

    rule:
        name:
            f"figure_{_name}"
        input:
            unpack(fig_input(FIGURE_INPUTS[_name])),
        output:
            pdf=f"{FIG}/{_name}.pdf",
            png=report(f"{FIG}/{_name}.png", caption=f"../report/{CAPTIONS[_name]}", category="Paper A"),
        params:
            settings=figure_settings,
            inputs=input_flags,
            name=_name,
        log:
            f"{LOGS}/figures/{_name}.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            "../../envs/prefixlab.yaml"
        shell:
            "{FIGURES_PY} {params.name} {params.inputs} --settings {params.settings:q}"
            " --out-pdf {output.pdf} --out-png {output.png} > {log} 2>&1"


rule figure_fig5_full:
    """Full results of one experiment and architecture."""
    input:
        unpack(fig_input(_fig5)),
    output:
        pdf=f"{FIG}/fig5_full_{{exp}}_{{arch}}.pdf",
        png=report(f"{FIG}/fig5_full_{{exp}}_{{arch}}.png", caption="../report/fig5.rst", category="Paper A",
                   subcategory="Full results"),
    params:
        settings=figure_settings,
        inputs=input_flags,
    log:
        f"{LOGS}/figures/fig5_full_{{exp}}_{{arch}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/prefixlab.yaml"
    shell:
        "{FIGURES_PY} fig5_full {params.inputs} --settings {params.settings:q}"
        " --out-pdf {output.pdf} --out-png {output.png} > {log} 2>&1"


rule table_softpt:
    """SoftPT cumulative regret at n = 49 beside the paper's values (SPEC 1.7 item 10)."""
    input:
        unpack(fig_input(_fig9)),
    output:
        md=f"{FIG}/table_softpt.md",
        pdf=f"{FIG}/table_softpt.pdf",
        png=report(f"{FIG}/table_softpt.png", caption="../report/table_softpt.rst", category="Paper A"),
    params:
        settings=figure_settings,
        inputs=input_flags,
    log:
        f"{LOGS}/figures/table_softpt.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/prefixlab.yaml"
    shell:
        "{FIGURES_PY} table_softpt {params.inputs} --settings {params.settings:q}"
        " --out-pdf {output.pdf} --out-png {output.png} --out-md {output.md} > {log} 2>&1"
