rule train:
    """One model: a task × router × seed, trained on the task's dataset (GPU under SLURM)."""
    input:
        data=dataset_for(CKPT_DIR),
        configs=hydra_configs("train", task="{task}", router="{router}", scale=SCALE),
        matched=matched_evaluation,
    output:
        **files_in(CKPT_DIR, CKPT_FILES),
    log:
        f"{LOG_DIR}/train/{{task}}/{{router}}/seed{{seed}}.log",
    priority: train_priority
    conda:
        CONDA_ENV
    threads: threads("train")
    resources:
        mem_mb=planned_mem_mb("train"),
        gpu_mem_mb=planned_gpu_mem_mb("train"),
        runtime=runtime("train"),
        slurm_account=slurm_env("account"),
        slurm_partition=slurm_env("gpu"),
    params:
        data_dir=lambda wildcards, input: dir_of(input.data),
        data=data_params(),
        out_dir=lambda wildcards, output: dir_of(output.manifest_json),
        scale=SCALE,
        gpu_mem_gb=GPU_MEM_GB,
        overrides=overrides("train"),
        match=match_option,
    shell:
        "python -m anira.train task={wildcards.task} router={wildcards.router}"
        " seed={wildcards.seed} scale={params.scale} data_dir={params.data_dir}"
        " out_dir={params.out_dir} threads={threads} gpu_mem_gb={params.gpu_mem_gb}"
        " {params.match} {params.overrides} > {log} 2>&1"


rule models:
    """Target: every model of the study (the DVC stage `train`)."""
    input:
        rules.datasets.input,
        [path for name in CKPT_FILES for path in models(f"{CKPT_DIR}/{name}")],
