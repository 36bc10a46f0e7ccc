rule evaluate:
    """Per-token and per-example records of one model on every split (GPU under SLURM)."""
    input:
        data=dataset_for(EVAL_DIR),
        checkpoint=checkpoint_files,
        configs=hydra_configs("evaluate", scale=SCALE),
    output:
        **files_in(EVAL_DIR, paths.EVAL_FILES),
    log:
        f"{LOG_DIR}/evaluate/{{task}}/{{router}}/seed{{seed}}.log",
    priority: of_model(resources.evaluate_priority)
    conda:
        CONDA_ENV
    threads: resources.threads(config, "evaluate")
    resources:
        **job_resources("evaluate", planned=True),
    params:
        data_dir=lambda wildcards, input: dir_of(input.data),
        data=paths.data_params(config),
        checkpoint=lambda wildcards, input: dir_of(input.checkpoint[0]),
        out_dir=lambda wildcards, output: dir_of(output.manifest_json),
        inference="",  # the trained inference rule, every split
        batch=of_model(resources.eval_batch_option),
        overrides=grid.quoted_overrides(config, "evaluate"),
    shell:
        "python -m anira.evaluate checkpoint={params.checkpoint} data_dir={params.data_dir}"
        " out_dir={params.out_dir}{params.inference} threads={threads} {params.batch}"
        " {params.overrides} > {log} 2>&1"


# Online models evaluated under the inference rule they were not trained with (median ↔ mode),
# where the task has a fixed-depth frontier, so the accuracy–compute frontier shows both rules.
RULE_EVAL_FILES = paths.rule_eval_files(config)
RULE_EVAL_DIRS = [
    RULE_EVAL_DIR.format(task=task, router=router, seed=seed, rule=rule)
    for task, router, seed, rule in OTHER_RULE_MODELS
]


use rule evaluate as evaluate_rule with:
    input:
        data=dataset_for(RULE_EVAL_DIR),
        checkpoint=checkpoint_files,
        configs=hydra_configs("evaluate", scale=SCALE),
    output:
        **files_in(RULE_EVAL_DIR, RULE_EVAL_FILES),
    log:
        f"{LOG_DIR}/evaluate/{{task}}/{{router}}-{{rule}}/seed{{seed}}.log",
    wildcard_constraints:
        rule="|".join(ONLINE_RULES),
    priority: 0  # no control waits for it
    params:
        inference=lambda wildcards: f" {paths.inference_options(config, wildcards.rule)}",


rule evaluations:
    """Target: every evaluation of the study (the DVC stage `evaluate`)."""
    input:
        rules.models.input,
        [
            path
            for name in paths.EVAL_FILES
            for path in per_model(f"{EVAL_DIR}/{name}", MODELS)
        ],
        [
            f"{directory}/{name}"
            for directory in RULE_EVAL_DIRS
            for name in RULE_EVAL_FILES
        ],
