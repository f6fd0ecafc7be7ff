def claims_inputs(wildcards):
    return {**keyed("eval", EXPS), **keyed("states", STATE_EXPS), "code": CLAIMS_CODE}


rule claims:
    """Check claims A1-A6 (SPEC 1.8); reports PASS/FAIL with numbers, never aborts the run."""
    input:
        unpack(claims_inputs),
    output:
        md=report(f"{RES}/claims.md", caption="../report/claims.rst", category="Claims"),
        nc=f"{RES}/claims.nc",
    params:
        settings=lambda w: as_json({**CFG.get("claims", {}), "scale": SCALE}),
        inputs=input_flags,
    log:
        f"{LOGS}/claims.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/prefixlab.yaml"
    shell:
        "{FIGURES_PY} claims {params.inputs} --settings {params.settings:q}"
        " --out-md {output.md} --out-nc {output.nc} > {log} 2>&1"
