# The claims report of both papers (SPEC 1.8, 2.3).


rule claims:
    """Check claims A1-A6 and B1-B5; reports PASS/FAIL with numbers, never aborts the run."""
    input:
        unpack(claims_inputs),
    output:
        md=report(f"{RES}/claims.md", caption="../report/claims.rst", category="Claims"),
        nc=f"{RES}/claims.nc",
    params:
        settings=claims_settings,
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
        "python -m prefixlab.figures claims {params.inputs} --settings {params.settings:q}"
        " --out-md {output.md} --out-nc {output.nc} > {log} 2>&1"
