# One rule and one script per figure, named after the figure; figures read only CSV tables (local
# rules: workflow/Snakefile).


FIGURE_STYLE = "src/anira/figures/style.py"


rule fig_generalization:
    """Accuracy and mean depth against size, a panel per task, a line per router."""
    input:
        table=rules.generalization.output.table,
        code=["src/anira/figures/fig_generalization.py", FIGURE_STYLE],
    output:
        **figure_outputs("fig_generalization", "Generalisation"),
    log:
        f"{LOG_DIR}/figures/fig_generalization.log",
    conda:
        CONDA_ENV
    shell:
        "python -m anira.figures.fig_generalization {input.table} --out {output.pdf} {output.png}"
        " > {log} 2>&1"


rule fig_alignment:
    """Depth against each complexity feature, a line per router."""
    input:
        table=rules.alignment.output.curves,
        code=["src/anira/figures/fig_alignment.py", FIGURE_STYLE],
    output:
        **figure_outputs("fig_alignment", "Alignment (Table 1)"),
    log:
        f"{LOG_DIR}/figures/fig_alignment.log",
    conda:
        CONDA_ENV
    shell:
        "python -m anira.figures.fig_alignment {input.table} --out {output.pdf} {output.png}"
        " > {log} 2>&1"


rule fig_depth_hist:
    """Distribution of executed depth per task and router."""
    input:
        table=rules.depth_hist.output.table,
        code=["src/anira/figures/fig_depth_hist.py", FIGURE_STYLE],
    output:
        **figure_outputs("fig_depth_hist", "Alignment (Table 1)"),
    log:
        f"{LOG_DIR}/figures/fig_depth_hist.log",
    conda:
        CONDA_ENV
    shell:
        "python -m anira.figures.fig_depth_hist {input.table} --out {output.pdf} {output.png}"
        " > {log} 2>&1"


rule fig_decision_timing:
    """Share of explained depth variance per feature group (size, structure, execution state)."""
    input:
        table=rules.decision_timing.output.table,
        code=["src/anira/figures/fig_decision_timing.py", FIGURE_STYLE],
    output:
        **figure_outputs("fig_decision_timing", "Decision timing (Table 2)"),
    log:
        f"{LOG_DIR}/figures/fig_decision_timing.log",
    conda:
        CONDA_ENV
    shell:
        "python -m anira.figures.fig_decision_timing {input.table} --out {output.pdf} {output.png}"
        " > {log} 2>&1"


rule fig_probes:
    """Probe score against iteration, a panel per task feature, a line per router."""
    input:
        table=rules.probes.output.table,
        code=["src/anira/figures/fig_probes.py", FIGURE_STYLE],
    output:
        **figure_outputs("fig_probes", "Probes"),
    log:
        f"{LOG_DIR}/figures/fig_probes.log",
    conda:
        CONDA_ENV
    shell:
        "python -m anira.figures.fig_probes {input.table} --out {output.pdf} {output.png}"
        " > {log} 2>&1"


rule fig_pareto:
    """Accuracy against compute, a point per model, the fixed-depth frontier as a line."""
    input:
        table=rules.pareto.output.table,
        code=["src/anira/figures/fig_pareto.py", FIGURE_STYLE],
    output:
        **figure_outputs("fig_pareto", "Accuracy and compute"),
    log:
        f"{LOG_DIR}/figures/fig_pareto.log",
    conda:
        CONDA_ENV
    shell:
        "python -m anira.figures.fig_pareto {input.table} --out {output.pdf} {output.png}"
        " > {log} 2>&1"


rule fig_dynamics:
    """Accuracy, depth, depth entropy and alignment against the training step, per router."""
    input:
        table=rules.dynamics.output.table,
        code=["src/anira/figures/fig_dynamics.py", FIGURE_STYLE],
    output:
        **figure_outputs("fig_dynamics", "Training dynamics"),
    log:
        f"{LOG_DIR}/figures/fig_dynamics.log",
    conda:
        CONDA_ENV
    shell:
        "python -m anira.figures.fig_dynamics {input.table} --out {output.pdf} {output.png}"
        " > {log} 2>&1"


rule figures:
    """Target: the figures of the study config (the DVC stage `figures`)."""
    input:
        [
            f"{FIGURES_DIR}/{name}.{ext}"
            for name in config["figures"]
            if name != "fig_dynamics"
            or DYNAMICS_MODELS  # no model keeps weights: no figure
            for ext in ("pdf", "png")
        ],
