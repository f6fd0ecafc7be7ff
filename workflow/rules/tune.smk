# Tuning: every run of one experiment as one batched population.


rule tune:
    """All tuning runs of one experiment x network as one batched population,
    plus the HardPT and PreBayesPT prefix searches (SPEC 1.4)."""
    input:
        code=command_code("tune"),
        weights=pretrained_weights,
        donor=weight_donor_files,
    output:
        nc=f"{PA}/tune/{{exp}}_{{arch}}.nc",
        search=f"{PA}/tune/{{exp}}_{{arch}}_search.nc",
        weights=f"{PA}/tune/{{exp}}_{{arch}}.pt",
    params:
        cfg=lambda w: as_json(coins_jobs.tune_job(CFG, w.exp, w.arch)),
        weights=weights_flag,
        device=CFG["device"],
        kernels=CFG["kernels"],
        command="tune",
        search=search_flag,
        donor=donor_flags,
    log:
        f"{LOGS_A}/tune/{{exp}}_{{arch}}.log",
    benchmark:
        f"{BENCH_A}/tune/{{exp}}_{{arch}}.tsv"
    threads: heavy_threads
    priority: PRIORITY_TUNE
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=device_gpus,
    conda:
        "../../envs/prefixlab.yaml"
    shell:
        "python -m prefixlab {params.command} --config {params.cfg:q} {params.weights} --threads {threads} --device {params.device}"
        " --kernels {params.kernels} --out-nc {output.nc} {params.search} --out-weights {output.weights} {params.donor}"
        " > {log} 2>&1"


use rule tune as tune_weight_members with:
    """The weight-tuning members that several experiments share (r2s and r2s_L25 differ only
    in what reaches prefixes), trained once; each experiment's tuning job takes them."""
    input:
        code=command_code("tune"),
        weights=pretrained_weights,
    output:
        nc=f"{PA}/tune/weight_members/{{exp}}_{{arch}}.nc",
        search=f"{PA}/tune/weight_members/{{exp}}_{{arch}}_search.nc",
        weights=f"{PA}/tune/weight_members/{{exp}}_{{arch}}.pt",
    params:
        cfg=lambda w: as_json(coins_jobs.weight_members_job(CFG, w.exp, w.arch)),
        weights=weights_flag,
        device=CFG["device"],
        kernels=CFG["kernels"],
        command="tune",
        search=search_flag,
        donor="",
    log:
        f"{LOGS_A}/tune/weight_members/{{exp}}_{{arch}}.log",
    benchmark:
        f"{BENCH_A}/tune/weight_members/{{exp}}_{{arch}}.tsv"


use rule tune as sort_tune with:
    input:
        code=command_code("sort-tune"),
        weights=sort_weights,
    output:
        nc=f"{PB}/tune/{{bexp}}_{{brun}}.nc",
        weights=f"{PB}/tune/{{bexp}}_{{brun}}.pt",
    params:
        cfg=lambda w: as_json(sorting_jobs.tune_job(CFG, w.bexp, w.brun)),
        weights=weights_flag,
        device=CFG["device"],
        kernels=CFG["kernels"],
        command="sort-tune",
        search=search_flag,
        donor="",
    log:
        f"{LOGS_B}/tune/{{bexp}}_{{brun}}.log",
    benchmark:
        f"{BENCH_B}/tune/{{bexp}}_{{brun}}.tsv"
    resources:
        mem_mb=8000,
        runtime=720,
        gpu=device_gpus,
