# Training dynamics: the weights each model keeps at log-spaced steps (scale.train.
# dynamics_checkpoints, BREVO only at mini), evaluated on a fixed subset of `val`. A study
# without such models gets an empty table, and no fig_dynamics. It evaluates models, so it runs as
# an evaluation job does (a GPU under SLURM).


rule dynamics:
    """Accuracy, mean depth, depth entropy and alignment of each kept step, against the step."""
    input:
        checkpoints=per_model(f"{CKPT_DIR}/{MANIFEST}", DYNAMICS_MODELS),
        data=[
            ancient(path)
            for path in expand(
                f"{DATA_DIR}/{MANIFEST}",
                task=sorted({task for task, _, _ in DYNAMICS_MODELS}),
            )
        ],
        code="src/anira/analysis/dynamics.py",
    output:
        table=f"{ANALYSIS_DIR}/dynamics.csv",
    log:
        f"{LOG_DIR}/analyze/dynamics.log",
    conda:
        CONDA_ENV
    threads: resources.threads(config, "evaluate")
    resources:
        **job_resources("evaluate", runtime=resources.dynamics_runtime),
    params:
        models=model_options(DYNAMICS_MODELS, CKPT_DIR, DATA_DIR),
        max_examples=ANALYSIS["dynamics_examples"],
        bootstrap=ANALYSIS["bootstrap"],
        ci=ANALYSIS["ci"],
        seed=ANALYSIS["seed"],
    shell:
        "python -m anira.analysis.dynamics --out {output.table} {params.models} --split val"
        " --max-examples {params.max_examples} --bootstrap {params.bootstrap} --ci {params.ci}"
        " --seed {params.seed} --threads {threads} --device auto > {log} 2>&1"
