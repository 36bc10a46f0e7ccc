"""Helpers shared by the rules: study-config validation, output paths, Hydra inputs, resources,
and the integrity check of finished outputs."""

import copy
import functools
import os
import shlex
import sys
from pathlib import Path

import jsonschema
import yaml

from snakemake.exceptions import WorkflowError

from anira import layout
from anira.compose import compose, default_choices
from anira.dataset import manifest_content
from anira.io import AniraInputError, failed_files, sha256_file
from anira.layout import MANIFEST, SPLITS
from anira.memory import estimated_shapes, fit_evaluation, fit_training
from anira.model.config import ONLINE_RULES
from anira.spec import compose_run, dataset_config_sha256, dataset_files

CONDA_ENV = "../envs/anira.yaml"  # relative to the rule files


def hydra_options(group):
    """The options of a Hydra group: the names of config/<group>/*.yaml."""
    return sorted(path.stem for path in Path("config", group).glob("*.yaml"))


def _with_defaults(validator_class):
    """A jsonschema validator that fills in each property's `default` before validating it."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if validator.is_type(instance, "object"):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def validate_study(study):
    """Validate the study grid (filling in defaults); names must match the Hydra groups."""
    schema = yaml.safe_load(
        Path(workflow.basedir, "schemas", "config.schema.yaml").read_text()
    )
    for group in ("task", "router", "scale"):
        options = hydra_options(group)
        if not options:
            raise WorkflowError(
                f"no Hydra configs in config/{group}/: run from the repository root"
            )
        schema["$defs"][group]["enum"] = options
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(study), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for error in errors:
            where = ".".join(str(p) for p in error.absolute_path) or "config"
            lines.append(f"  {where}: {error.message}")
        raise WorkflowError("invalid study config:\n" + "\n".join(lines))
    return study


validate_study(config)

SCALE = config["scale"]
RESULTS = config["results_root"] or f"results/{SCALE}"
FIGURES_DIR = config["figures_dir"]


def usable_path(key, path):
    """Refuse a path the rules cannot carry: whitespace splits their shell commands and log paths
    (Snakemake then reports a missing log, and the shell writes a stray file), and non-ASCII
    characters break tools on some clusters' locales."""
    if any(c.isspace() for c in path) or not path.isascii():
        raise WorkflowError(
            f"invalid study config: {key} {path!r} has whitespace or non-ASCII characters, "
            "which the workflow's shell commands cannot carry; choose a plain path"
        )


usable_path("results_root", RESULTS)
usable_path("figures_dir", FIGURES_DIR)
TASKS = config["tasks"]
ROUTERS = config["routers"]
SEEDS = config["seeds"]
if SCALE not in config["resources"]:
    raise WorkflowError(f"config resources has no entry for scale {SCALE!r}")


def study_models():
    """(task, router, seed) of every model: the tasks × routers grid with each task's
    `task_seeds` (default `seeds`), plus each task's `task_routers` with the study's `seeds`.
    """
    grid = []
    for task in TASKS:
        grid += [
            (task, router, seed)
            for router in ROUTERS
            for seed in config["task_seeds"].get(task, SEEDS)
        ]
        grid += [
            (task, router, seed)
            for router in config["task_routers"].get(task, [])
            for seed in SEEDS
        ]
    return grid


@functools.cache
def run_spec(task, router, seed):
    """The resolved spec of a model's training (anira.spec), as its train job will see it."""
    return compose_run(task, router, SCALE, seed, overrides_of("train"))


def dynamics_models():
    """(task, router, seed) of the models that keep weights over training, as their spec says."""
    return [
        model for model in study_models() if run_spec(*model).train.dynamics_checkpoints
    ]


# Scheduling. With more ready jobs than cores Snakemake starts the highest priority first: the
# longest trainings go first and short jobs fill the cores at the end (longest-processing-time
# first), instead of a long training running alone at the end of the study.
def training_cost(task, router, seed):
    """A training's cost in layer-steps: steps × (core iterations + prelude + coda)."""
    spec = run_spec(task, router, seed)
    return spec.train.steps * (spec.model.max_depth + 2)


def unblocked_controls_cost(task, router, seed):
    """The cost of the controls that wait for this model's evaluation (their `match`)."""
    return sum(
        training_cost(*model)
        for model in study_models()
        if model[0] == task and model[2] == seed and run_spec(*model).match == router
    )


def train_priority(wildcards):
    """Own cost plus the controls it unblocks, so a matched model trains early."""
    model = wildcards.task, wildcards.router, int(wildcards.seed)
    return training_cost(*model) + unblocked_controls_cost(*model)


def evaluate_priority(wildcards):
    """The controls it unblocks: a matched model's evaluation runs before other trainings."""
    return unblocked_controls_cost(
        wildcards.task, wildcards.router, int(wildcards.seed)
    )


def generate_priority(wildcards):
    """A dataset goes before the trainings it unblocks: the sum of their costs."""
    return sum(
        training_cost(*model) for model in study_models() if model[0] == wildcards.task
    )


def other_rule_models():
    """(task, router, seed, rule) of every online model of a task with a fixed-depth frontier (two
    or more fixed-depth models), for each inference rule other than its trained one, so that the
    frontier compares both."""
    fixed, online = {}, []
    for task, router, seed in study_models():
        spec = run_spec(task, router, seed)
        if spec.model.router == "fixed":
            fixed.setdefault(task, set()).add(router)
        elif spec.model.router == "online":
            online += [
                (task, router, seed, rule)
                for rule in ONLINE_RULES
                if rule != spec.model.online_rule
            ]
    return [model for model in online if len(fixed.get(model[0], ())) >= 2]


wildcard_constraints:
    task="|".join(TASKS),
    router="|".join(ROUTERS + sum(config["task_routers"].values(), [])),
    seed=r"\d+",
    shard=r"\d+",
    split="|".join(SPLITS),


# Output layout (anira.layout): results/<scale>/{data,checkpoints,eval,analysis,logs}/...
DATA_DIR = layout.data_dir(RESULTS, "{task}")
PARTS_DIR = layout.parts_dir(RESULTS, "{task}")
CKPT_DIR = layout.checkpoint_dir(RESULTS, "{task}", "{router}", "{seed}")
EVAL_DIR = layout.eval_dir(RESULTS, "{task}", "{router}", "{seed}")
ANALYSIS_DIR = layout.analysis_dir(RESULTS)
LOG_DIR = layout.log_dir(RESULTS)

# A task's extra files (LANO's grammar) are not declared: they differ per task, and the
# integrity check below covers them through the manifest.
DATA_FILES = [*layout.data_files(), MANIFEST]
CKPT_FILES = [*layout.CHECKPOINT_FILES, MANIFEST]
EVAL_FILES = [*layout.eval_files(), MANIFEST]


def overrides_of(phase):
    return tuple(config["overrides"].get(phase, []))


def resolve_study():
    """Resolve every run of the study as its job will (anira.spec), so a bad value or a typo in
    the study's overrides fails here, before any job starts."""
    try:
        compose(
            "evaluate",
            [*overrides_of("evaluate"), "checkpoint=-", "data_dir=-", "out_dir=-"],
        )
        for task in TASKS:
            dataset_files(task, SCALE, config["data_seed"], overrides_of("generate"))
        for model in study_models():
            run_spec(*model)
            memory_plans(*model)
    except AniraInputError as err:
        raise WorkflowError(f"invalid study config: {err}") from None


GPU_MEM_GB = config["gpu_mem_gb"]


@functools.cache
def memory_plans(task, router, seed):
    """The training and evaluation memory plans (anira.memory) of a model at its dataset's
    estimated longest sequences, for a GPU of `gpu_mem_gb`: the training's micro-batch and the
    evaluation's batch that fit, or one error line when a single sequence does not fit.
    """
    spec = run_spec(task, router, seed)
    vocab, train_len, eval_len = estimated_shapes(
        task, SCALE, config["data_seed"], overrides_of("generate")
    )
    mcfg = spec.model_for(vocab, eval_len)
    what = f"task {task} router {router}"
    train = fit_training(mcfg, spec.train.batch_size, train_len, GPU_MEM_GB, what)
    evaluate = fit_evaluation(mcfg, spec.eval_batch_size, eval_len, GPU_MEM_GB, what)
    return {"train": train, "evaluate": evaluate}


resolve_study()


def check_matches():
    """Every control (a router with `match`) needs the model it matches in the study: the
    adaptive router of the same task and seed, whose evaluation sets the control's depths.
    """
    trained = set(study_models())
    for task, router, seed in study_models():
        match = run_spec(task, router, seed).match
        if match is not None and (task, match, seed) not in trained:
            raise WorkflowError(
                f"invalid study config: {task}/{router} seed {seed} matches {match}, which "
                "the study does not train at that seed"
            )


check_matches()


def matched_evaluation(wildcards):
    """A control's input: the manifest of the evaluation of the model it matches (the DAG edge
    from that evaluation to the control's training); nothing for any other router."""
    match = run_spec(wildcards.task, wildcards.router, int(wildcards.seed)).match
    if match is None:
        return []
    return f"{EVAL_DIR}/{MANIFEST}".format(
        task=wildcards.task, router=match, seed=wildcards.seed
    )


def match_option(wildcards, input):
    """`match_records=<dir>` for a control's training (its matched evaluation), else nothing."""
    return f"match_records={dir_of(input.matched)}" if input.matched else ""


# Checks already made in this process: output directory → why it must be redone, and → the files
# failing its manifest; a directory is hashed once however often Snakemake evaluates the input
# functions of its job.
_CHECKED = {}
_FAILED = {}


def failed(directory):
    if directory not in _FAILED:
        _FAILED[directory] = failed_files(directory)
    return _FAILED[directory]


@functools.cache
def study_data_config(task):
    """The SHA-256 of the `config.yaml` the study's generate job writes for `task`."""
    return dataset_config_sha256(
        task, SCALE, config["data_seed"], overrides_of("generate")
    )


def data_problems(directory):
    """Why a dataset directory must be regenerated: files failing its manifest, or a manifest
    without the content records that loading checks (written before them)."""
    problems = failed(directory)
    if problems or not Path(directory, MANIFEST).is_file():
        return problems
    if not manifest_content(Path(directory)):
        return {MANIFEST: "records no row counts (written before content checks)"}
    return {}


def data_digest(task):
    """The digest of the dataset of `task` on disk (its manifest's SHA-256), or None when it is
    missing or broken (then it is regenerated, and an output's recorded config decides).
    """
    directory = DATA_DIR.format(task=task)
    if not Path(directory, MANIFEST).is_file() or data_problems(directory):
        return None
    return sha256_file(Path(directory, MANIFEST))


def other_data(directory, task):
    """Why the finished output `directory` (a checkpoint or an evaluation, which record the
    dataset they read in their `config.yaml`) was made from data other than the study's dataset
    of `task`, or None: generated from another config (another study file on this results_root,
    an edited `n_train`), or regenerated to other bytes since."""
    try:
        recorded = yaml.safe_load(Path(directory, layout.RUN_CONFIG).read_text())[
            "data"
        ]
        made_from = recorded["config_sha256"], recorded["manifest_sha256"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return "records no dataset it was made from"
    if made_from[0] != study_data_config(task):
        return (
            f"was made from data generated from another config ({made_from[0][:12]}), "
            f"the study's is {study_data_config(task)[:12]}"
        )
    current = data_digest(task)
    if current is not None and current != made_from[1]:
        return f"was made from dataset {made_from[1][:12]}, the study's is now {current[:12]}"
    return None


def redo_if_broken(pattern, reads_data=False):
    """An input function (it adds no input) that makes Snakemake redo the job writing the output
    directory `pattern` (formatted with the job's wildcards) when a file of the finished directory
    fails its manifest: deleted, truncated or modified, which file times alone never reveal; with
    `reads_data`, also when it records a dataset other than the study's (`other_data`).

    It marks the job forced, as `--forcerun` of its manifest would, and changes no file: it runs
    while the DAG is built (not when the Snakefile is parsed), for the jobs the targets need only,
    so a dry run lists the job as to-do and leaves the tree as it is, and a real run reruns the
    job, which rewrites the directory. Forcing a job reruns the jobs that read it, except where
    they read it through `ancient` (the datasets: regenerating identical data never retrains;
    `dataset_for` drops `ancient` for a forced job). Snakemake has no public hook for this:
    `workflow.dag.forcefiles` is the set `--forcerun` fills (Snakemake 9.27, pinned in
    pyproject.toml; tests/test_workflow.py checks it).
    """

    def check(wildcards):
        directory = pattern.format(**wildcards)
        if directory not in _CHECKED:
            problems = (
                data_problems(directory) if pattern == DATA_DIR else failed(directory)
            )
            if reads_data and not problems and Path(directory, MANIFEST).is_file():
                stale = other_data(directory, wildcards.task)
                problems = {layout.RUN_CONFIG: stale} if stale else {}
            _CHECKED[directory] = problems
            redone = (
                "would be redone (dry run)" if workflow.dryrun else "will be redone"
            )
            for name, problem in problems.items():
                print(
                    f"anira: {directory}/{name}: {problem}; {directory} {redone}",
                    file=sys.stderr,
                )
        if _CHECKED[directory]:
            workflow.dag.forcefiles.add(f"{directory}/{MANIFEST}")
        return []

    return check


def files_in(directory, names):
    """Named outputs: `{directory}/{name}` keyed by the name with dots as underscores."""
    return {name.replace(".", "_"): f"{directory}/{name}" for name in names}


def dataset_for(pattern):
    """An input function: the dataset of `wildcards.task` as the job writing the output directory
    `pattern` reads it, its manifest. It is `ancient`, so that a regenerated identical dataset
    does not make the job rerun, unless the job is to be redone (`redo_if_broken` with
    `reads_data`): Snakemake never reconsiders a job that reads `ancient` output of a job it
    reruns, so a flagged model or evaluation would otherwise survive a run that regenerates its
    data (a change of the data's config also reruns through `data_params`)."""
    check = redo_if_broken(pattern, reads_data=True)

    def data(wildcards):
        check(wildcards)
        manifest = f"{DATA_DIR}/{MANIFEST}".format(task=wildcards.task)
        return manifest if _CHECKED[pattern.format(**wildcards)] else ancient(manifest)

    return data


SHARDS = config["generation_shards"]


def generation_parts(wildcards):
    """The parts a sharded generation gathers (none with one shard)."""
    if SHARDS == 1:
        return []
    return [
        layout.part_file(PARTS_DIR, shard).format(task=wildcards.task)
        for shard in range(SHARDS)
    ]


def data_params():
    """What the data depends on beyond the Hydra configs a reading rule lists (the seed and the
    study's generate overrides), as a param of the rule: a change reruns it."""
    return f"seed={config['data_seed']} {overrides('generate')}"


def checkpoint_files(wildcards):
    """The files of the checkpoint of `wildcards.task`, `.router` and `.seed`."""
    return [f"{CKPT_DIR}/{name}".format(**wildcards) for name in CKPT_FILES]


def models(pattern, grid=None):
    """`pattern` formatted for every model of the study (or of `grid`, (task, router, seed))."""
    return [
        pattern.format(task=task, router=router, seed=seed)
        for task, router, seed in (study_models() if grid is None else grid)
    ]


def model_options(*patterns, grid=None):
    """`--model <pattern>...` for every model of the study (or of `grid`), e.g. CKPT_DIR
    DATA_DIR."""
    return " ".join(
        "--model "
        + " ".join(p.format(task=task, router=router, seed=seed) for p in patterns)
        for task, router, seed in (study_models() if grid is None else grid)
    )


def dir_of(path):
    return str(Path(path).parent)


def hydra_configs(app, **choices):
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


def overrides(phase):
    """The study's extra Hydra overrides for a phase, quoted for the shell."""
    return " ".join(shlex.quote(item) for item in config["overrides"].get(phase, []))


# Resources. Memory and runtime come from the study config for the current scale; the runtime
# grows with the attempt (`--retries`), so a job killed at its wall-clock limit gets more time.
def mem_mb(phase):
    return config["resources"][SCALE][phase]["mem_mb"]


def runtime(phase):
    minutes = config["resources"][SCALE][phase]["runtime"]
    return lambda wildcards, attempt: minutes * attempt


def planned_mem_mb(phase):
    """`mem_mb` of a train or evaluate job: the phase's floor from the study config plus the
    job's planned peak (a GPU rule falls back to a CPU partition, where the host holds it).
    """

    def evaluate(wildcards):
        plan = memory_plans(wildcards.task, wildcards.router, int(wildcards.seed))[
            phase
        ]
        return mem_mb(phase) + -(-plan.total // 10**6)

    return evaluate


def planned_gpu_mem_mb(phase):
    """`gpu_mem_mb` of a train or evaluate job: its planned GPU peak, for a site's GPU
    constraint (e.g. `--set-resources` mapping it to a `constraint` of 40 or 80 GB cards).
    """
    return lambda wildcards: -(
        -memory_plans(wildcards.task, wildcards.router, int(wildcards.seed))[
            phase
        ].total
        // 10**6
    )


def eval_batch(wildcards):
    """`batch_size=N` when the evaluation plan needs a smaller batch than the scale's."""
    spec = run_spec(wildcards.task, wildcards.router, int(wildcards.seed))
    plan = memory_plans(wildcards.task, wildcards.router, int(wildcards.seed))[
        "evaluate"
    ]
    return f"batch_size={plan.batch}" if plan.batch < spec.eval_batch_size else ""


def threads(phase):
    return config["threads"][phase]


# SLURM account and partitions come from the environment so the profile carries no site names.
SLURM_ENV = {
    "account": ("ANIRA_SLURM_ACCOUNT", None),
    "cpu": ("ANIRA_SLURM_PARTITION", None),
    "gpu": ("ANIRA_SLURM_GPU_PARTITION", "ANIRA_SLURM_PARTITION"),
}


def on_slurm():
    plugin = workflow.executor_plugin
    return plugin is not None and plugin.name == "slurm"


def slurm_env(kind):
    """A resource callable: the SLURM setting `kind` from the environment, only under SLURM.

    Outside the SLURM executor it evaluates to None, which leaves the resource unset.
    """

    def evaluate(wildcards):
        if not on_slurm():
            return None
        name, fallback = SLURM_ENV[kind]
        value = os.environ.get(name) or (os.environ.get(fallback) if fallback else None)
        if not value:
            wanted = name if fallback is None else f"{name} (or {fallback})"
            raise WorkflowError(
                f"the slurm profile needs the environment variable {wanted}: "
                f"export {name}=<your SLURM {'account' if kind == 'account' else 'partition'}>"
            )
        return value

    return evaluate


def eval_records(kind, splits):
    """The evaluation Parquet files of every model for `kind` (tokens | examples | generated)."""
    return [
        path
        for split in splits
        for path in models(f"{EVAL_DIR}/{layout.record_file(split, kind)}")
    ]


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
