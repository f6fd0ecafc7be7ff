rule pretrain:
    """Pretrain one network variant on Random Coins (SPEC 1.3)."""
    input:
        code=PRETRAIN_CODE,
    output:
        weights=f"{PA}/pretrain/{{arch}}_{{variant}}.pt",
        nc=f"{PA}/pretrain/{{arch}}_{{variant}}.nc",
    params:
        cfg=pretrain_config,
        device=CFG["device"],
        kernels=CFG["kernels"],
    log:
        f"{LOGS}/pretrain/{{arch}}_{{variant}}.log",
    benchmark:
        f"{BENCH}/pretrain/{{arch}}_{{variant}}.tsv"
    threads: heavy_threads
    priority: PRIORITY_PRETRAIN
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=device_gpus,
    conda:
        "../../envs/prefixlab.yaml"
    shell:
        "python -m prefixlab pretrain --config {params.cfg:q} --threads {threads} --device {params.device} --kernels {params.kernels}"
        " --out-weights {output.weights} --out-nc {output.nc} > {log} 2>&1"


rule sort_pretrain:
    """Paper B: pretrain one GPT on its task (SPEC 2.2, 2.3)."""
    input:
        code=SORT_CODE,
    output:
        weights=f"{PB}/pretrain/{{bmodel}}.pt",
        nc=f"{PB}/pretrain/{{bmodel}}.nc",
    params:
        cfg=sort_pretrain_config,
        device=CFG["device"],
        kernels=CFG["kernels"],
    log:
        f"{LOGS}/paper_b/pretrain/{{bmodel}}.log",
    benchmark:
        f"{BENCH}/paper_b/pretrain/{{bmodel}}.tsv"
    threads: heavy_threads
    priority: PRIORITY_PRETRAIN
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=device_gpus,
    conda:
        "../../envs/prefixlab.yaml"
    shell:
        "python -m prefixlab sort-pretrain --config {params.cfg:q} --threads {threads} --device {params.device} --kernels {params.kernels}"
        " --out-weights {output.weights} --out-nc {output.nc} > {log} 2>&1"
