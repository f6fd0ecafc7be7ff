rule evaluate:
    """Per-step log loss and regrets on the three evaluation distributions (SPEC 1.5)."""
    input:
        code=EVAL_CODE,
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
    log:
        f"{LOGS}/evaluate/{{exp}}_{{arch}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{exp}}_{{arch}}.tsv"
    threads: heavy_threads
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=device_gpus,
    conda:
        "../../envs/prefixlab.yaml"
    shell:
        "python -m prefixlab evaluate --config {params.cfg:q} {params.weights} --threads {threads} --device {params.device} --kernels {params.kernels}"
        " --tune-nc {input.tune_nc} --tune-weights {input.tune_weights} --out-nc {output} > {log} 2>&1"


rule internal_states:
    """Internal-state trajectories for the PCA figures (SPEC 1.9)."""
    input:
        code=EVAL_CODE,
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
    log:
        f"{LOGS}/states/{{exp}}_{{arch}}.log",
    threads: heavy_threads
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/prefixlab.yaml"
    shell:
        "python -m prefixlab states --config {params.cfg:q} {params.weights} --threads {threads} --device {params.device} --kernels {params.kernels}"
        " --tune-nc {input.tune_nc} --tune-weights {input.tune_weights} --out-nc {output} > {log} 2>&1"


rule sort_evaluate:
    """Paper B: accuracies on every evaluation task, the theory check, and the
    experiment's attention maps or block-output shifts (SPEC 2.3)."""
    input:
        unpack(sort_tuned),
        code=SORT_EVAL_CODE,
        weights=sort_weights,
    output:
        f"{PB}/eval/{{bexp}}.nc",
    params:
        cfg=sort_eval_config,
        tuned=tuned_flags,
        device=CFG["device"],
        kernels=CFG["kernels"],
    log:
        f"{LOGS}/paper_b/evaluate/{{bexp}}.log",
    benchmark:
        f"{BENCH}/paper_b/evaluate/{{bexp}}.tsv"
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
