"""The study as the Snakemake workflow runs it: its logic as plain functions of the study config
(the dict Snakemake reads from ``config/config.yaml`` or ``config/study/<name>.yaml``), so that it
is tested outside Snakemake (``tests/test_study.py``) and ``workflow/rules/*.smk`` keep only the
rules and thin calls into it.

- :mod:`anira.study.grid`: validation of the study config, its overrides and its models (the
  tasks × routers × seeds grid, the models keeping weights over training, the online models
  evaluated under their other inference rule, the controls and the models they match).
- :mod:`anira.study.paths`: output paths, the Hydra files and options of each job.
- :mod:`anira.study.resources`: memory plans, each job's resources, and priorities.
- :mod:`anira.study.integrity`: which finished outputs must be redone, and why.
- :mod:`anira.study.dvc`: ``dvc.yaml``, derived from the default study
  (``python -m anira.study.dvc > dvc.yaml``).

Paths are relative to the repository root, where Snakemake runs.
"""
