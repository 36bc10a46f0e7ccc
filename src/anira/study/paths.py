"""Where the study's files land (anira.layout under its results root) and what each job is given:
its Hydra files, the directories and options of the models it reads."""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterable
from pathlib import Path

from anira import layout
from anira.compose import default_choices
from anira.study.grid import Model, Study, models, quoted_overrides, results_root

# A task's extra files (LANO's grammar) are not declared: they differ per task, and the
# integrity check covers them through the manifest.
DATA_FILES = (*layout.data_files(), layout.MANIFEST)
CHECKPOINT_FILES = (*layout.CHECKPOINT_FILES, layout.MANIFEST)
EVAL_FILES = (*layout.eval_files(), layout.MANIFEST)


@dataclasses.dataclass(frozen=True)
class Paths:
    """The study's output paths; those of one job are patterns with `{task}`, `{router}`,
    `{seed}` (and `{rule}`) wildcards."""

    results: str
    data: str
    parts: str
    checkpoint: str
    eval: str
    rule_eval: str
    analysis: str
    logs: str
    figures: str


def paths(study: Study) -> Paths:
    """The output layout (anira.layout): <results>/{data,checkpoints,eval,analysis,logs}/..."""
    results = results_root(study)
    return Paths(
        results=results,
        data=layout.data_dir(results, "{task}"),
        parts=layout.parts_dir(results, "{task}"),
        checkpoint=layout.checkpoint_dir(results, "{task}", "{router}", "{seed}"),
        eval=layout.eval_dir(results, "{task}", "{router}", "{seed}"),
        rule_eval=layout.eval_dir(results, "{task}", "{router}", "{seed}", "{rule}"),
        analysis=layout.analysis_dir(results),
        logs=layout.log_dir(results),
        figures=study["figures_dir"],
    )


def rule_eval_files(study: Study) -> list[str]:
    """The files of an online model's evaluation under its other inference rule (the frontier's
    splits only)."""
    return [*layout.eval_files(study["analysis"]["splits"]), layout.MANIFEST]


def files_in(directory: str, names: Iterable[str]) -> dict[str, str]:
    """Named outputs: `{directory}/{name}` keyed by the name with dots as underscores."""
    return {name.replace(".", "_"): f"{directory}/{name}" for name in names}


def dir_of(path: str) -> str:
    return str(Path(path).parent)


def per_model(pattern: str, grid: Iterable[Model]) -> list[str]:
    """`pattern` formatted for every (task, router, seed) of `grid`."""
    return [pattern.format(task=task, router=router, seed=seed) for task, router, seed in grid]


def model_options(grid: Iterable[Model], *patterns: str) -> str:
    """`--model <pattern>...` for every model of `grid`, e.g. the checkpoint and data patterns."""
    return " ".join(
        "--model " + " ".join(p.format(task=task, router=router, seed=seed) for p in patterns)
        for task, router, seed in grid
    )


def eval_records(study: Study, kind: str, splits: Iterable[str]) -> list[str]:
    """The evaluation Parquet files of every model for `kind` (tokens | examples | generated)."""
    pattern = paths(study).eval
    return [
        path
        for split in splits
        for path in per_model(f"{pattern}/{layout.record_file(split, kind)}", models(study))
    ]


def generation_parts(study: Study, task: str) -> list[str]:
    """The parts a sharded generation of `task` gathers (none with one shard)."""
    shards = study["generation_shards"]
    if shards == 1:
        return []
    parts = paths(study).parts.format(task=task)
    return [layout.part_file(parts, shard) for shard in range(shards)]


def inference_options(study: Study, rule: str) -> str:
    """The evaluate options of an online model's evaluation under the inference rule `rule`: on
    the frontier's splits (the analysis splits) only."""
    splits = ",".join(study["analysis"]["splits"])
    return f"inference_rule={rule} {shlex.quote(f'splits=[{splits}]')}"


def data_params(study: Study) -> str:
    """What the data depends on beyond the Hydra configs a reading rule lists (the seed and the
    study's generate overrides), as a param of the rule: a change reruns it."""
    return f"seed={study['data_seed']} {quoted_overrides(study, 'generate')}"


def hydra_configs(app: str, **choices: str) -> list[str]:
    """The Hydra YAML files `python -m anira.<app>` reads with these group choices.

    They are inputs of the rule, so editing one reruns exactly the jobs that read it. Choices may be
    wildcard names (`task="{task}"`); files of the app's defaults list that exist are added.
    """
    merged = {**default_choices(app), **choices}
    files = [f"config/{app}.yaml"] if Path("config", f"{app}.yaml").is_file() else []
    for group, option in sorted(merged.items()):
        path = f"config/{group}/{option}.yaml"
        if "{" in option or Path(path).is_file():
            files.append(path)
    return files
