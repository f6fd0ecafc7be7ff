# The claims report of both papers (SPEC 1.8, 2.3).


def claims_inputs(wildcards):
    states = [e for e in EXPS if exp_cfg(e).get("states")]
    return {**keyed("eval", EXPS), **keyed("states", states), **sort_keyed(BEXPS),
            "code": figure_code(*CLAIM_MODULES)}


def claims_settings(wildcards=None):
    """Claim thresholds from config; the steps they are read at follow the scale's lengths
    (the paper's n = 49, 99, 199 are N_tune - 1, N_train - 1, N_eval - 1)."""
    steps = {
        "step": CFG["tune"]["length"] - 1,
        "a1_step": CFG["pretrain"]["length"] - 1,
        "a4_late_step": CFG["evaluate"]["length"] - 1,
    }
    paper_b = {f"b_{k}": v for k, v in PAPER_B.get("claims", {}).items()}
    return as_json({**CFG.get("claims", {}), **paper_b, **steps, "scale": SCALE})


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
