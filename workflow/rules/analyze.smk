# Tidy CSV tables from the evaluation records; figures read only these.


EVAL_DIRS = per_model(EVAL_DIR, MODELS)


rule generalization:
    """Accuracy and mean depth per task × router × seed × split × size; LANO's generative
    metrics (in-language, distinct share, length TV, completions, KL) also pooled per split.
    """
    input:
        records=paths.eval_records(config, "examples", SPLITS),
        code="src/anira/analysis/generalization.py",
    output:
        table=f"{ANALYSIS_DIR}/generalization.csv",
        generative=f"{ANALYSIS_DIR}/generative.csv",
    log:
        f"{LOG_DIR}/analyze/generalization.log",
    conda:
        CONDA_ENV
    threads: resources.threads(config, "analyze")
    resources:
        **job_resources("analyze"),
    params:
        eval_dirs=EVAL_DIRS,
    shell:
        "python -m anira.analysis.generalization --out {output.table}"
        " --generative {output.generative} {params.eval_dirs}"
        " > {log} 2>&1"


rule alignment:
    """Correlation of depth with every complexity feature (paper Table 1) and binned curves."""
    input:
        records=paths.eval_records(config, "tokens", ANALYSIS["splits"]),
        code="src/anira/analysis/alignment.py",
    output:
        table=f"{ANALYSIS_DIR}/alignment.csv",
        curves=f"{ANALYSIS_DIR}/alignment_curves.csv",
    log:
        f"{LOG_DIR}/analyze/alignment.log",
    conda:
        CONDA_ENV
    threads: resources.threads(config, "analyze")
    resources:
        **job_resources("analyze"),
    params:
        eval_dirs=EVAL_DIRS,
        splits=ANALYSIS["splits"],
        bootstrap=ANALYSIS["bootstrap"],
        ci=ANALYSIS["ci"],
        seed=ANALYSIS["seed"],
        max_bins=ANALYSIS["max_bins"],
    shell:
        "python -m anira.analysis.alignment --out {output.table} --curves {output.curves}"
        " --splits {params.splits} --bootstrap {params.bootstrap} --ci {params.ci}"
        " --seed {params.seed} --max-bins {params.max_bins} {params.eval_dirs} > {log} 2>&1"


rule depth_hist:
    """Distribution of executed depth over answer tokens per task × router × split."""
    input:
        records=paths.eval_records(config, "tokens", SPLITS),
        code="src/anira/analysis/depth_hist.py",
    output:
        table=f"{ANALYSIS_DIR}/depth_hist.csv",
    log:
        f"{LOG_DIR}/analyze/depth_hist.log",
    conda:
        CONDA_ENV
    threads: resources.threads(config, "analyze")
    resources:
        **job_resources("analyze"),
    params:
        eval_dirs=EVAL_DIRS,
    shell:
        "python -m anira.analysis.depth_hist --out {output.table} {params.eval_dirs} > {log} 2>&1"


rule decision_timing:
    """Paper Table 2: depth regressed on BREVO features on correct samples, LMG shares of R²."""
    input:
        records=[
            paths.eval_records(config, kind, ANALYSIS["splits"])
            for kind in ("tokens", "examples", "generated")
        ],
        code="src/anira/analysis/decision_timing.py",
    output:
        table=f"{ANALYSIS_DIR}/decision_timing.csv",
    log:
        f"{LOG_DIR}/analyze/decision_timing.log",
    conda:
        CONDA_ENV
    threads: resources.threads(config, "analyze")
    resources:
        **job_resources("analyze"),
    params:
        eval_dirs=EVAL_DIRS,
        splits=ANALYSIS["splits"],
        bootstrap=ANALYSIS["bootstrap"],
        ci=ANALYSIS["ci"],
        seed=ANALYSIS["seed"],
    shell:
        "python -m anira.analysis.decision_timing --out {output.table} --splits {params.splits}"
        " --bootstrap {params.bootstrap} --ci {params.ci} --seed {params.seed}"
        " {params.eval_dirs} > {log} 2>&1"


rule probes:
    """Linear probes of every iteration's state for each task feature, with control tasks."""
    input:
        checkpoints=per_model(f"{CKPT_DIR}/{MANIFEST}", MODELS),
        data=[ancient(path) for path in expand(f"{DATA_DIR}/{MANIFEST}", task=TASKS)],
        code="src/anira/analysis/probes.py",
    output:
        table=f"{ANALYSIS_DIR}/probes.csv",
    log:
        f"{LOG_DIR}/analyze/probes.log",
    conda:
        CONDA_ENV
    threads: resources.threads(config, "analyze")
    resources:
        **job_resources("analyze"),
    params:
        models=model_options(MODELS, CKPT_DIR, DATA_DIR),
        split=ANALYSIS["probe_split"],
        max_examples=ANALYSIS["probe_max_examples"],
        folds=ANALYSIS["probe_folds"],
        bootstrap=ANALYSIS["bootstrap"],
        ci=ANALYSIS["ci"],
        seed=ANALYSIS["seed"],
    shell:
        "python -m anira.analysis.probes --out {output.table} {params.models}"
        " --split {params.split} --max-examples {params.max_examples} --folds {params.folds}"
        " --bootstrap {params.bootstrap} --ci {params.ci} --seed {params.seed}"
        " --threads {threads} > {log} 2>&1"


rule pareto:
    """Accuracy against mean active token-steps per answer token; the fixed-depth frontier."""
    input:
        records=[
            paths.eval_records(config, kind, ANALYSIS["splits"])
            for kind in ("tokens", "examples")
        ],
        other_rules=[f"{directory}/{MANIFEST}" for directory in RULE_EVAL_DIRS],
        checkpoints=per_model(f"{CKPT_DIR}/{MANIFEST}", MODELS),
        data=[ancient(path) for path in expand(f"{DATA_DIR}/{MANIFEST}", task=TASKS)],
        code="src/anira/analysis/pareto.py",
    output:
        table=f"{ANALYSIS_DIR}/pareto.csv",
    log:
        f"{LOG_DIR}/analyze/pareto.log",
    conda:
        CONDA_ENV
    threads: resources.threads(config, "analyze")
    resources:
        **job_resources("analyze"),
    params:
        models=model_options(MODELS, CKPT_DIR, DATA_DIR, EVAL_DIR),
        other_rules=" ".join(
            f"--model {CKPT_DIR} {DATA_DIR} {RULE_EVAL_DIR}".format(
                task=task, router=router, seed=seed, rule=rule
            )
            for task, router, seed, rule in OTHER_RULE_MODELS
        ),
        splits=ANALYSIS["splits"],
        max_examples=ANALYSIS["probe_max_examples"],
    shell:
        "python -m anira.analysis.pareto --out {output.table} {params.models} {params.other_rules}"
        " --splits {params.splits} --max-examples {params.max_examples}"
        " --threads {threads} > {log} 2>&1"


rule controls:
    """Each adaptive router against its controls at matched compute (random depths drawn from
    its val histogram, fixed depth at its val mean): accuracy difference with a hierarchical
    bootstrap interval, compute and alignment of both."""
    input:
        records=paths.eval_records(config, "examples", ANALYSIS["splits"]),
        checkpoints=per_model(f"{CKPT_DIR}/{MANIFEST}", MODELS),
        alignment=rules.alignment.output.table,
        code="src/anira/analysis/controls.py",
    output:
        table=f"{ANALYSIS_DIR}/controls.csv",
    log:
        f"{LOG_DIR}/analyze/controls.log",
    conda:
        CONDA_ENV
    threads: resources.threads(config, "analyze")
    resources:
        **job_resources("analyze"),
    params:
        models=model_options(MODELS, CKPT_DIR, EVAL_DIR),
        splits=ANALYSIS["splits"],
        bootstrap=ANALYSIS["bootstrap"],
        ci=ANALYSIS["ci"],
        seed=ANALYSIS["seed"],
    shell:
        "python -m anira.analysis.controls --out {output.table} --alignment {input.alignment}"
        " {params.models} --splits {params.splits} --bootstrap {params.bootstrap}"
        " --ci {params.ci} --seed {params.seed} > {log} 2>&1"


rule scorecard:
    """Each headline finding of the paper per task and router: its number, ours with a CI over
    seeds and examples, and whether it holds (not testable where a precondition fails).
    """
    input:
        generalization=rules.generalization.output.table,
        alignment=rules.alignment.output.table,
        decision_timing=rules.decision_timing.output.table,
        dynamics=rules.dynamics.output.table,
        depth_hist=rules.depth_hist.output.table,
        controls=rules.controls.output.table,
        code="src/anira/analysis/scorecard.py",
    output:
        table=report(
            f"{ANALYSIS_DIR}/scorecard.csv",
            caption="../report/scorecard.rst",
            category="Scorecard",
        ),
        markdown=f"{ANALYSIS_DIR}/scorecard.md",
    log:
        f"{LOG_DIR}/analyze/scorecard.log",
    conda:
        CONDA_ENV
    params:
        scale=SCALE,
        seed=ANALYSIS["seed"],
    shell:
        "python -m anira.analysis.scorecard --generalization {input.generalization}"
        " --alignment {input.alignment} --decision-timing {input.decision_timing}"
        " --dynamics {input.dynamics} --depth-hist {input.depth_hist}"
        " --controls {input.controls} --scale {params.scale} --seed {params.seed} --out {output.table}"
        " --markdown {output.markdown} > {log} 2>&1"


rule analyses:
    """Target: every analysis table (the DVC stage `analyze`)."""
    input:
        rules.generalization.output,
        rules.alignment.output,
        rules.depth_hist.output,
        rules.decision_timing.output,
        rules.probes.output,
        rules.pareto.output,
        rules.controls.output,
        rules.dynamics.output,
        rules.scorecard.output,
