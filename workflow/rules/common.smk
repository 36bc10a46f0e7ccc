"""Helpers shared by the rules: study-config validation, output paths, Hydra inputs, resources."""

import copy
import os
import shlex
from pathlib import Path

import jsonschema
import yaml

from snakemake.exceptions import WorkflowError

SPLITS = ["train", "test", "interp", "extrap"]
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
TASKS = config["tasks"]
ROUTERS = config["routers"]
SEEDS = config["seeds"]
if SCALE not in config["resources"]:
    raise WorkflowError(f"config resources has no entry for scale {SCALE!r}")


wildcard_constraints:
    task="|".join(TASKS),
    router="|".join(ROUTERS),
    seed=r"\d+",
    split="|".join(SPLITS),


# Output layout: results/<scale>/{data,checkpoints,eval,analysis,logs}/...
DATA_DIR = f"{RESULTS}/data/{{task}}"
CKPT_DIR = f"{RESULTS}/checkpoints/{{task}}/{{router}}/seed{{seed}}"
EVAL_DIR = f"{RESULTS}/eval/{{task}}/{{router}}/seed{{seed}}"
ANALYSIS_DIR = f"{RESULTS}/analysis"
LOG_DIR = f"{RESULTS}/logs"

DATA_FILES = [f"{split}.parquet" for split in SPLITS] + ["vocab.json", "manifest.json"]
CKPT_FILES = ["model.pt", "metrics.jsonl", "config.yaml", "manifest.json"]
EVAL_FILES = [
    f"{split}.{kind}.parquet"
    for split in SPLITS
    for kind in ("tokens", "examples", "generated")
] + ["manifest.json"]


def files_in(directory, names):
    """Named outputs: `{directory}/{name}` keyed by the name with dots as underscores."""
    return {name.replace(".", "_"): f"{directory}/{name}" for name in names}


def dataset(wildcards):
    """The files of the dataset of `wildcards.task`."""
    return [f"{DATA_DIR}/{name}".format(task=wildcards.task) for name in DATA_FILES]


def checkpoint_files(wildcards):
    """The files of the checkpoint of `wildcards.task`, `.router` and `.seed`."""
    return [f"{CKPT_DIR}/{name}".format(**wildcards) for name in CKPT_FILES]


def models(pattern):
    """`pattern` expanded over every task × router × seed of the study."""
    return expand(pattern, task=TASKS, router=ROUTERS, seed=SEEDS)


def dir_of(path):
    return str(Path(path).parent)


def _default_choices(app):
    """Group → option of the defaults list of config/<app>.yaml (empty if the app has none)."""
    path = Path("config", f"{app}.yaml")
    if not path.is_file():
        return {}
    defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults") or []
    choices = {}
    for entry in defaults:
        if isinstance(entry, dict):
            for key, option in entry.items():
                group = key.split()[-1]  # "optional model" → "model"
                if (
                    option is not None
                    and not key.startswith("override")
                    and "hydra" not in group
                ):
                    choices[group] = option
    return choices


def hydra_configs(app, **choices):
    """The Hydra YAML files `python -m anira.<app>` reads with these group choices.

    They are inputs of the rule, so editing one reruns exactly the jobs that read it. Choices may be
    wildcard names (`task="{task}"`); files of the app's defaults list that exist are added.
    """
    merged = {**_default_choices(app), **choices}
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
        for path in models(f"{EVAL_DIR}/{split}.{kind}.parquet")
    ]


def figure_outputs(name):
    return {ext: f"{FIGURES_DIR}/{name}.{ext}" for ext in ("pdf", "png")}
