"""The Snakemake side of the study: its config checked, the models and paths the rules name, and
the input functions, params and resources of a model's job, each a thin call into anira.study with
this run's `config`; and the one hook into Snakemake's DAG, which forces a broken output.
"""

import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from anira import layout
from anira.layout import MANIFEST, SPLITS
from anira.model.config import ONLINE_RULES
from anira.study import grid, paths, resources
from anira.study.grid import StudyError
from anira.study.integrity import Integrity
from anira.study.paths import dir_of, files_in, hydra_configs, model_options, per_model

CONDA_ENV = "../envs/anira.yaml"  # relative to the rule files

try:
    grid.validate(config, Path(workflow.basedir, "schemas", "config.schema.yaml"))
    resources.resolve(config)
    grid.check_matches(config)
except StudyError as err:
    raise WorkflowError(str(err)) from None


wildcard_constraints:
    **grid.wildcard_constraints(config),


SCALE = config["scale"]
TASKS = config["tasks"]
ANALYSIS = config["analysis"]
SHARDS = config["generation_shards"]
MODELS = grid.models(config)
DYNAMICS_MODELS = grid.dynamics_models(config)
OTHER_RULE_MODELS = grid.other_rule_models(config)

# Output layout (anira.layout): results/<scale>/{data,checkpoints,eval,analysis,logs}/...
PATHS = paths.paths(config)
DATA_DIR = PATHS.data
PARTS_DIR = PATHS.parts
CKPT_DIR = PATHS.checkpoint
EVAL_DIR = PATHS.eval
RULE_EVAL_DIR = PATHS.rule_eval
ANALYSIS_DIR = PATHS.analysis
LOG_DIR = PATHS.logs
FIGURES_DIR = PATHS.figures


def model_of(wildcards):
    return wildcards.task, wildcards.router, int(wildcards.seed)


def of_model(function, *args):
    """`function(config, model, *args)` as a function of the wildcards of a model's job."""
    return lambda wildcards: function(config, model_of(wildcards), *args)


def on_slurm():
    plugin = workflow.executor_plugin
    return plugin is not None and plugin.name == "slurm"


def slurm_env(kind):
    """A resource callable: the SLURM setting `kind` from the environment, only under SLURM;
    outside it None, which leaves the resource unset."""

    def evaluate(wildcards):
        if not on_slurm():
            return None
        try:
            return resources.slurm_setting(kind, os.environ)
        except StudyError as err:
            raise WorkflowError(str(err)) from None

    return evaluate


def job_resources(phase, planned=False, runtime=None):
    """The resources of a job of `phase` (generate, train, evaluate, analyze): its memory and
    runtime (with `planned`, the floor plus the model's memory plan, the plan's GPU memory, and
    the model's estimated runtime above the floor; or `runtime(config, attempt)`), the runtime
    growing with the attempt, and under SLURM the account and the phase's partition."""
    runtime = runtime or (
        lambda config, attempt: resources.runtime(config, phase, attempt)
    )
    sized = {
        "mem_mb": resources.mem_mb(config, phase),
        "runtime": lambda wildcards, attempt: runtime(config, attempt),
    }
    if planned:
        sized = {
            "mem_mb": of_model(resources.planned_mem_mb, phase),
            "gpu_mem_mb": of_model(resources.planned_gpu_mem_mb, phase),
            "runtime": lambda wildcards, attempt: resources.planned_runtime(
                config, model_of(wildcards), phase, attempt
            ),
        }
    return {
        **sized,
        "slurm_account": slurm_env("account"),
        "slurm_partition": slurm_env("gpu" if phase in resources.GPU_PHASES else "cpu"),
    }


def matched_evaluation(wildcards):
    """A control's input: the manifest of the evaluation of the model it matches (the DAG edge
    from that evaluation to the control's training); nothing for any other router."""
    matched = grid.matched_model(config, model_of(wildcards))
    if matched is None:
        return []
    task, router, seed = matched
    return f"{EVAL_DIR}/{MANIFEST}".format(task=task, router=router, seed=seed)


def match_option(wildcards, input):
    """`match_records=<dir>` for a control's training (its matched evaluation), else nothing."""
    return f"match_records={dir_of(input.matched)}" if input.matched else ""


def checkpoint_files(wildcards):
    """The files of the checkpoint of `wildcards.task`, `.router` and `.seed`."""
    return [f"{CKPT_DIR}/{name}".format(**wildcards) for name in paths.CHECKPOINT_FILES]


# Finished outputs that fail their manifest, or were made from other data, are redone in this
# run (anira.study.integrity): output directory → why, decided once per process.
INTEGRITY = Integrity(config)
_REDO = {}


def force(manifest):
    """Mark the job writing `manifest` forced, as `--forcerun` of it would. Snakemake has no
    public hook for this while the DAG is built: `workflow.dag.forcefiles` is the set
    `--forcerun` fills (Snakemake 9.27, pinned in pyproject.toml; tests/test_workflow.py checks
    that a dry run lists such a job as forced). Deleting the output instead would change the tree
    in a dry run, which must leave it as it is."""
    workflow.dag.forcefiles.add(manifest)


def redo(directory, problems):
    """Whether the finished output `directory` is redone: `problems()` (file → why) decided on
    the first call, each reported, and its job forced. Forcing a job reruns the jobs that read it,
    except where they read it through `ancient` (the datasets: regenerating identical data never
    retrains; `dataset_for` drops `ancient` for a job that is redone)."""
    if directory not in _REDO:
        _REDO[directory] = problems()
        redone = "would be redone (dry run)" if workflow.dryrun else "will be redone"
        for name, problem in _REDO[directory].items():
            print(
                f"anira: {directory}/{name}: {problem}; {directory} {redone}",
                file=sys.stderr,
            )
    if _REDO[directory]:
        force(f"{directory}/{MANIFEST}")
    return bool(_REDO[directory])


def redo_if_broken(pattern):
    """An input function (it adds no input) that redoes the dataset directory `pattern`
    (formatted with the job's wildcards) when a file of it fails its manifest: deleted, truncated
    or modified, which file times alone never reveal. It runs while the DAG is built (not when the
    Snakefile is parsed), for the jobs the targets need only, and changes no file: a dry run lists
    the job as to do and leaves the tree as it is; a real run reruns the job."""

    def check(wildcards):
        directory = pattern.format(**wildcards)
        redo(directory, lambda: INTEGRITY.data_problems(directory))
        return []

    return check


def dataset_for(pattern):
    """An input function: the dataset of `wildcards.task` as the job writing the output directory
    `pattern` reads it, its manifest, after redoing that directory where it fails its manifest or
    records a dataset other than the study's. The manifest is `ancient`, so that a regenerated
    identical dataset does not make the job rerun, unless the job is redone: Snakemake never
    reconsiders a job that reads `ancient` output of a job it reruns, so a flagged model or
    evaluation would otherwise survive a run that regenerates its data (a change of the data's
    config also reruns through `data_params`)."""

    def data(wildcards):
        directory = pattern.format(**wildcards)
        redone = redo(
            directory, lambda: INTEGRITY.output_problems(directory, wildcards.task)
        )
        manifest = f"{DATA_DIR}/{MANIFEST}".format(task=wildcards.task)
        return manifest if redone else ancient(manifest)

    return data


def figure_outputs(name, category):
    """The PDF and PNG of a figure; the PNG goes into the HTML report (`snakemake --report`)
    under `category`, captioned by workflow/report/<name>.rst."""
    return {
        "pdf": f"{FIGURES_DIR}/{name}.pdf",
        "png": report(
            f"{FIGURES_DIR}/{name}.png",
            caption=f"../report/{name}.rst",
            category=category,
        ),
    }
