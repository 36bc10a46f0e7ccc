rule generate_part:
    """One shard of a task's training examples (`generation_shards` > 1), gathered by `generate`."""
    input:
        hydra_configs("generate", task="{task}", scale=SCALE),
    output:
        temp(layout.part_file(PARTS_DIR, "{shard}")),
    log:
        f"{LOG_DIR}/generate/{{task}}.part{{shard}}.log",
    priority: lambda wildcards: resources.generate_priority(config, wildcards.task)
    conda:
        CONDA_ENV
    threads: resources.threads(config, "generate")
    resources:
        **job_resources("generate"),
    params:
        parts_dir=PARTS_DIR,
        scale=SCALE,
        seed=config["data_seed"],
        shards=SHARDS,
        overrides=grid.quoted_overrides(config, "generate"),
    shell:
        "python -m anira.generate task={wildcards.task} scale={params.scale} seed={params.seed}"
        " shards={params.shards} shard={wildcards.shard} parts_dir={params.parts_dir}"
        " {params.overrides} > {log} 2>&1"


rule generate:
    """One task's dataset: every split as Parquet, the vocabulary and a checksum manifest (with
    `generation_shards` > 1, the training split gathered from the shards' parts)."""
    input:
        hydra_configs("generate", task="{task}", scale=SCALE),
        parts=lambda wildcards: paths.generation_parts(config, wildcards.task),
        integrity=redo_if_broken(DATA_DIR),
    output:
        **files_in(DATA_DIR, paths.DATA_FILES),
    log:
        f"{LOG_DIR}/generate/{{task}}.log",
    priority: lambda wildcards: resources.generate_priority(config, wildcards.task)
    conda:
        CONDA_ENV
    threads: resources.threads(config, "generate")
    resources:
        **job_resources("generate"),
    params:
        out_dir=lambda wildcards, output: dir_of(output.manifest_json),
        scale=SCALE,
        seed=config["data_seed"],
        shards=f"shards={SHARDS} parts_dir={PARTS_DIR}" if SHARDS > 1 else "",
        overrides=grid.quoted_overrides(config, "generate"),
    shell:
        "python -m anira.generate task={wildcards.task} scale={params.scale} seed={params.seed}"
        " out_dir={params.out_dir} {params.shards} {params.overrides} > {log} 2>&1"


rule datasets:
    """Target: every dataset of the study (the DVC stage `generate`), every file of each."""
    input:
        expand(f"{DATA_DIR}/{{name}}", task=TASKS, name=paths.DATA_FILES),
