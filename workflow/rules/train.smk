rule train:
    """One model: a task × router × seed, trained on the task's dataset (GPU under SLURM)."""
    input:
        data=dataset_for(CKPT_DIR),
        configs=hydra_configs("train", task="{task}", router="{router}", scale=SCALE),
        matched=matched_evaluation,
    output:
        **files_in(CKPT_DIR, paths.CHECKPOINT_FILES),
    log:
        f"{LOG_DIR}/train/{{task}}/{{router}}/seed{{seed}}.log",
    priority: of_model(resources.train_priority)
    conda:
        CONDA_ENV
    threads: resources.threads(config, "train")
    resources:
        **job_resources("train", planned=True),
    params:
        data_dir=lambda wildcards, input: dir_of(input.data),
        data=paths.data_params(config),
        out_dir=lambda wildcards, output: dir_of(output.manifest_json),
        scale=SCALE,
        gpu_mem_gb=config["gpu_mem_gb"],
        overrides=grid.quoted_overrides(config, "train"),
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
        [
            path
            for name in paths.CHECKPOINT_FILES
            for path in per_model(f"{CKPT_DIR}/{name}", MODELS)
        ],
