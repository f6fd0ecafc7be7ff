# Pretraining: Paper A's networks on Random Coins, Paper B's GPTs on their task.


rule pretrain:
    """Pretrain one network variant on Random Coins (SPEC 1.3)."""
    input:
        code=command_code("pretrain"),
    output:
        weights=f"{PA}/pretrain/{{arch}}_{{variant}}.pt",
        nc=f"{PA}/pretrain/{{arch}}_{{variant}}.nc",
    params:
        cfg=lambda w: as_json(coins_jobs.pretrain_job(CFG, w.variant, w.arch)),
        device=CFG["device"],
        kernels=CFG["kernels"],
        command="pretrain",
    log:
        f"{LOGS_A}/pretrain/{{arch}}_{{variant}}.log",
    benchmark:
        f"{BENCH_A}/pretrain/{{arch}}_{{variant}}.tsv"
    threads: heavy_threads
    priority: PRIORITY_PRETRAIN
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=device_gpus,
    conda:
        "../../envs/prefixlab.yaml"
    shell:
        "python -m prefixlab {params.command} --config {params.cfg:q} --threads {threads} --device {params.device} --kernels {params.kernels}"
        " --out-weights {output.weights} --out-nc {output.nc} > {log} 2>&1"


use rule pretrain as sort_pretrain with:
    input:
        code=command_code("sort-pretrain"),
    output:
        weights=f"{PB}/pretrain/{{bmodel}}.pt",
        nc=f"{PB}/pretrain/{{bmodel}}.nc",
    params:
        cfg=lambda w: as_json(sorting_jobs.pretrain_job(CFG, w.bmodel)),
        device=CFG["device"],
        kernels=CFG["kernels"],
        command="sort-pretrain",
    log:
        f"{LOGS_B}/pretrain/{{bmodel}}.log",
    benchmark:
        f"{BENCH_B}/pretrain/{{bmodel}}.tsv"
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=device_gpus,
