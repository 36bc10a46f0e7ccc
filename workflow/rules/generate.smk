rule generate:
    """One task's dataset: every split as Parquet, the vocabulary and a checksum manifest."""
    input:
        hydra_configs("generate", task="{task}", scale=SCALE),
        integrity=redo_if_broken(DATA_DIR),
    output:
        **files_in(DATA_DIR, DATA_FILES),
    log:
        f"{LOG_DIR}/generate/{{task}}.log",
    priority: generate_priority
    conda:
        CONDA_ENV
    threads: threads("generate")
    resources:
        mem_mb=mem_mb("generate"),
        runtime=runtime("generate"),
        slurm_account=slurm_env("account"),
        slurm_partition=slurm_env("cpu"),
    params:
        out_dir=lambda wildcards, output: dir_of(output.manifest_json),
        scale=SCALE,
        seed=config["data_seed"],
        overrides=overrides("generate"),
    shell:
        "python -m anira.generate task={wildcards.task} scale={params.scale} seed={params.seed}"
        " out_dir={params.out_dir} {params.overrides} > {log} 2>&1"


rule datasets:
    """Target: every dataset of the study (the DVC stage `generate`), every file of each."""
    input:
        expand(f"{DATA_DIR}/{{name}}", task=TASKS, name=DATA_FILES),
