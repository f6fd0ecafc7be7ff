# Evaluation: Paper A's regrets and internal states, Paper B's accuracies and theory check.


rule evaluate:
    """Per-step log loss and regrets on the three evaluation distributions (SPEC 1.5)."""
    input:
        code=command_code("evaluate"),
        weights=pretrained_weights,
        tune_nc=f"{PA}/tune/{{exp}}_{{arch}}.nc",
        tune_weights=f"{PA}/tune/{{exp}}_{{arch}}.pt",
    output:
        f"{PA}/eval/{{exp}}_{{arch}}.nc",
    params:
        cfg=eval_config,
        weights=weights_flag,
        device=CFG["device"],
        kernels=CFG["kernels"],
        command="evaluate",
    log:
        f"{LOGS_A}/evaluate/{{exp}}_{{arch}}.log",
    benchmark:
        f"{BENCH_A}/evaluate/{{exp}}_{{arch}}.tsv"
    threads: heavy_threads
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=device_gpus,
    conda:
        "../../envs/prefixlab.yaml"
    shell:
        "python -m prefixlab {params.command} --config {params.cfg:q} {params.weights} --threads {threads} --device {params.device}"
        " --kernels {params.kernels} --tune-nc {input.tune_nc} --tune-weights {input.tune_weights} --out-nc {output} > {log} 2>&1"


# Internal-state trajectories for the PCA figures (SPEC 1.9): the same job, another command.
use rule evaluate as internal_states with:
    input:
        code=command_code("states"),
        weights=pretrained_weights,
        tune_nc=f"{PA}/tune/{{exp}}_{{arch}}.nc",
        tune_weights=f"{PA}/tune/{{exp}}_{{arch}}.pt",
    output:
        f"{PA}/states/{{exp}}_{{arch}}.nc",
    params:
        cfg=eval_config,
        weights=weights_flag,
        device=CFG["device"],
        kernels=CFG["kernels"],
        command="states",
    log:
        f"{LOGS_A}/states/{{exp}}_{{arch}}.log",
    benchmark:
        f"{BENCH_A}/states/{{exp}}_{{arch}}.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=device_gpus,


rule sort_evaluate:
    """Paper B: accuracies on every evaluation task, the theory check, and the
    experiment's attention maps or block-output shifts (SPEC 2.3)."""
    input:
        unpack(sort_tuned),
        code=command_code("sort-evaluate"),
        weights=sort_weights,
    output:
        f"{PB}/eval/{{bexp}}.nc",
    params:
        cfg=lambda w: as_json(sorting_jobs.eval_job(CFG, w.bexp)),
        tuned=tuned_flags,
        device=CFG["device"],
        kernels=CFG["kernels"],
    log:
        f"{LOGS_B}/evaluate/{{bexp}}.log",
    benchmark:
        f"{BENCH_B}/evaluate/{{bexp}}.tsv"
    threads: heavy_threads
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=device_gpus,
    conda:
        "../../envs/prefixlab.yaml"
    shell:
        "python -m prefixlab sort-evaluate --config {params.cfg:q} --weights {input.weights} {params.tuned} --threads {threads}"
        " --device {params.device} --kernels {params.kernels} --out-nc {output} > {log} 2>&1"
