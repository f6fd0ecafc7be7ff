# Figures: each reads only NetCDF and writes PDF + PNG.


# figure -> (the NetCDF files it reads, its caption in workflow/report/, its report category[,
# its settings when not figure_settings])
FIGURE_RULES = {
    "fig1_r2s_headline": (lambda w: keyed("eval", ["r2s"]), "fig1.rst", "Paper A"),
    "fig2_states_r2s": (lambda w: keyed("states", ["r2s"]), "fig2.rst", "Paper A"),
    "fig3_r2m_headline": (lambda w: keyed("eval", ["r2m"]), "fig3.rst", "Paper A"),
    "fig4_untrained": (lambda w: keyed("eval", ["u2m", "u2r"], ["transformer"]), "fig4.rst", "Paper A"),
    "fig6_states_r2m": (lambda w: keyed("states", ["r2m"]), "fig6.rst", "Paper A"),
    "fig7_hard_search": (lambda w: keyed("search", EXPS), "fig7.rst", "Paper A"),
    "fig8_losses": (lambda w: {**keyed("tune", EXPS), **pretrain_inputs()}, "fig8.rst", "Paper A"),
    "fig9_ablations": (lambda w: keyed("eval", ["r2s", "r2m"] + [e for e in EXPS if e.endswith(("_d4", "_maxi", "_L25"))]), "fig9.rst", "Paper A"),
    "figB1_descending": (lambda w: sort_keyed(["b1_descending"], with_tune=True), "figB1_descending.rst", "Paper B"),
    "figB2_elicit": (lambda w: sort_keyed(["b2_elicit"]), "figB2_elicit.rst", "Paper B"),
    "figB3_matrix": (lambda w: sort_keyed(["b3_matrix"]), "figB3_matrix.rst", "Paper B"),
    "figB4_double_hist": (lambda w: sort_keyed(["b4_double_hist"], with_tune=True), "figB4_double_hist.rst", "Paper B"),
    "figB5_theory": (lambda w: sort_keyed(BEXPS), "figB5_theory.rst", "Paper B"),
    "fig10_budget": (lambda w: {**keyed("tune", BUDGET_EXPS), **pretrain_inputs("base")}, "fig10_budget.rst", "Claims",
                     budget_settings),
    "figB6_budget": (lambda w: sort_tunes(BEXPS), "figB6_budget.rst", "Claims", sort_budget_settings),
}


for _name, (_inputs, _caption, _category, *_settings) in FIGURE_RULES.items():

    rule:
        name:
            f"figure_{_name}"
        input:
            unpack(fig_input(_name, _inputs)),
        output:
            pdf=f"{FIG}/{_name}.pdf",
            png=report(f"{FIG}/{_name}.png", caption=f"../report/{_caption}", category=_category),
        params:
            settings=_settings[0] if _settings else figure_settings,
            inputs=input_flags,
            name=_name,
            table="",
        log:
            f"{LOGS}/figures/{_name}.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            "../../envs/prefixlab.yaml"
        shell:
            "python -m prefixlab.figures {params.name} {params.inputs} --settings {params.settings:q}"
            " --out-pdf {output.pdf} --out-png {output.png} {params.table} > {log} 2>&1"


# Full results of one experiment and architecture.
use rule figure_fig1_r2s_headline as figure_fig5_full with:
    input:
        unpack(fig_input("fig5_full", lambda w: keyed("eval", [w.exp], [w.arch]))),
    output:
        pdf=f"{FIG}/fig5_full_{{exp}}_{{arch}}.pdf",
        png=report(f"{FIG}/fig5_full_{{exp}}_{{arch}}.png", caption="../report/fig5.rst", category="Paper A",
                   subcategory="Full results"),
    params:
        settings=figure_settings,
        inputs=input_flags,
        name="fig5_full",
        table="",
    log:
        f"{LOGS}/figures/fig5_full_{{exp}}_{{arch}}.log",


# SoftPT cumulative regret at n = 49 beside the paper's values (SPEC 1.7 item 10): the
# ablation figure's inputs, with the Markdown table beside the figure.
use rule figure_fig9_ablations as table_softpt with:
    input:
        unpack(fig_input("table_softpt", FIGURE_RULES["fig9_ablations"][0])),
    output:
        md=f"{FIG}/table_softpt.md",
        pdf=f"{FIG}/table_softpt.pdf",
        png=report(f"{FIG}/table_softpt.png", caption="../report/table_softpt.rst", category="Paper A"),
    params:
        settings=figure_settings,
        inputs=input_flags,
        name="table_softpt",
        table=lambda wildcards, output: f"--out-md {output.md}",
    log:
        f"{LOGS}/figures/table_softpt.log",
