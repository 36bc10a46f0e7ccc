# Online models evaluated under the inference rule they were not trained with (median ↔ mode),
# where the task has a fixed-depth frontier, so the accuracy–compute frontier shows both rules.


OTHER_RULE_MODELS = other_rule_models()
RULE_EVAL_DIR = layout.eval_dir(RESULTS, "{task}", "{router}", "{seed}", "{rule}")
RULE_EVAL_FILES = [*layout.eval_files(config["analysis"]["splits"]), MANIFEST]
RULE_EVAL_DIRS = [
    RULE_EVAL_DIR.format(task=task, router=router, seed=seed, rule=rule)
    for task, router, seed, rule in OTHER_RULE_MODELS
]


rule evaluate_rule:
    """One online model's records under another inference rule, on the frontier's splits."""
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
    conda:
        CONDA_ENV
    threads: threads("evaluate")
    resources:
        mem_mb=mem_mb("evaluate"),
        runtime=runtime("evaluate"),
        slurm_account=slurm_env("account"),
        slurm_partition=slurm_env("gpu"),
    params:
        data_dir=lambda wildcards, input: dir_of(input.data),
        data=data_params(),
        checkpoint=lambda wildcards, input: dir_of(input.checkpoint[0]),
        out_dir=lambda wildcards, output: dir_of(output.manifest_json),
        splits=shlex.quote(f"splits=[{','.join(config['analysis']['splits'])}]"),
        overrides=overrides("evaluate"),
    shell:
        "python -m anira.evaluate checkpoint={params.checkpoint} data_dir={params.data_dir}"
        " out_dir={params.out_dir} inference_rule={wildcards.rule} {params.splits}"
        " threads={threads} {params.overrides} > {log} 2>&1"
