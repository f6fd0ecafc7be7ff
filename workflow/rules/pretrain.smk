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
