# One rule per figure; every figure reads only NetCDF and writes PDF + PNG.
# (Which files each figure reads: FIGURE_INPUTS in common.smk.)
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
            "python -m prefixlab.figures {params.name} {params.inputs} --settings {params.settings:q}"
            " --out-pdf {output.pdf} --out-png {output.png} > {log} 2>&1"


# Paper B figures (inputs: SORT_FIGURE_INPUTS in common.smk).
for _name in SORT_FIGURE_INPUTS:

    rule:
        name:
            f"figure_{_name}"
        input:
            unpack(fig_input(SORT_FIGURE_INPUTS[_name])),
        output:
            pdf=f"{FIG}/{_name}.pdf",
            png=report(f"{FIG}/{_name}.png", caption=f"../report/{_name}.rst", category="Paper B"),
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
            "python -m prefixlab.figures {params.name} {params.inputs} --settings {params.settings:q}"
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
        "python -m prefixlab.figures fig5_full {params.inputs} --settings {params.settings:q}"
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
        "python -m prefixlab.figures table_softpt {params.inputs} --settings {params.settings:q}"
        " --out-pdf {output.pdf} --out-png {output.png} --out-md {output.md} > {log} 2>&1"
