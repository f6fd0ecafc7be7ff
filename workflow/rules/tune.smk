rule tune:
    """All tuning runs of one experiment x network as one batched population,
    plus the HardPT and PreBayesPT prefix searches (SPEC 1.4)."""
    input:
        code=TUNE_CODE,
        weights=pretrained_weights,
    output:
        nc=f"{PA}/tune/{{exp}}_{{arch}}.nc",
        search=f"{PA}/tune/{{exp}}_{{arch}}_search.nc",
        weights=f"{PA}/tune/{{exp}}_{{arch}}.pt",
    params:
        cfg=tune_config,
        weights=weights_flag,
        device=CFG["device"],
        kernels=CFG["kernels"],
    log:
        f"{LOGS}/tune/{{exp}}_{{arch}}.log",
    benchmark:
        f"{BENCH}/tune/{{exp}}_{{arch}}.tsv"
    threads: heavy_threads
    priority: PRIORITY_TUNE
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=device_gpus,
    conda:
        "../../envs/prefixlab.yaml"
    shell:
        "python -m prefixlab tune --config {params.cfg:q} {params.weights} --threads {threads} --device {params.device} --kernels {params.kernels}"
        " --out-nc {output.nc} --out-search {output.search} --out-weights {output.weights} > {log} 2>&1"


rule sort_tune:
    """Paper B: one run (fine-tuning, prefix or LoRA) of one experiment; its tasks x
    repetitions train as one population."""
    input:
        code=SORT_CODE,
        weights=sort_weights,
    output:
        nc=f"{PB}/tune/{{bexp}}_{{brun}}.nc",
        weights=f"{PB}/tune/{{bexp}}_{{brun}}.pt",
    params:
        cfg=sort_tune_config,
        device=CFG["device"],
        kernels=CFG["kernels"],
    log:
        f"{LOGS}/paper_b/tune/{{bexp}}_{{brun}}.log",
    benchmark:
        f"{BENCH}/paper_b/tune/{{bexp}}_{{brun}}.tsv"
    threads: heavy_threads
    priority: PRIORITY_TUNE
    resources:
        mem_mb=8000,
        runtime=720,
        gpu=device_gpus,
    conda:
        "../../envs/prefixlab.yaml"
    shell:
        "python -m prefixlab sort-tune --config {params.cfg:q} --weights {input.weights} --threads {threads}"
        " --device {params.device} --kernels {params.kernels} --out-nc {output.nc} --out-weights {output.weights} > {log} 2>&1"
