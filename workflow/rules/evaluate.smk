rule evaluate:
    """Per-token and per-example records of one model on every split (GPU under SLURM)."""
    input:
        data=dataset_for(EVAL_DIR),
        checkpoint=checkpoint_files,
        configs=hydra_configs("evaluate", scale=SCALE),
    output:
        **files_in(EVAL_DIR, EVAL_FILES),
    log:
        f"{LOG_DIR}/evaluate/{{task}}/{{router}}/seed{{seed}}.log",
    priority: evaluate_priority
    conda:
        CONDA_ENV
    threads: threads("evaluate")
    resources:
        mem_mb=planned_mem_mb("evaluate"),
        gpu_mem_mb=planned_gpu_mem_mb("evaluate"),
        runtime=runtime("evaluate"),
        slurm_account=slurm_env("account"),
        slurm_partition=slurm_env("gpu"),
    params:
        data_dir=lambda wildcards, input: dir_of(input.data),
        data=data_params(),
        checkpoint=lambda wildcards, input: dir_of(input.checkpoint[0]),
        out_dir=lambda wildcards, output: dir_of(output.manifest_json),
        batch=eval_batch,
        overrides=overrides("evaluate"),
    shell:
        "python -m anira.evaluate checkpoint={params.checkpoint} data_dir={params.data_dir}"
        " out_dir={params.out_dir} threads={threads} {params.batch} {params.overrides}"
        " > {log} 2>&1"


rule evaluations:
    """Target: every evaluation of the study (the DVC stage `evaluate`)."""
    input:
        rules.models.input,
        [path for name in EVAL_FILES for path in models(f"{EVAL_DIR}/{name}")],
        [
            f"{directory}/{name}"
            for directory in RULE_EVAL_DIRS
            for name in RULE_EVAL_FILES
        ],
