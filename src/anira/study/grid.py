"""The study config and its models: validation (defaults filled in, names checked against the
Hydra groups), each phase's overrides, the grid of (task, router, seed) models and the models it
derives from it."""

from __future__ import annotations

import copy
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from anira.io import AniraInputError
from anira.layout import SPLITS
from anira.model.config import ONLINE_RULES
from anira.spec import RunSpec, compose_run

Study = Mapping[str, Any]
Model = tuple[str, str, int]  # task, router, seed

SCHEMA = Path("workflow", "schemas", "config.schema.yaml")
HYDRA_GROUPS = ("task", "router", "scale")


class StudyError(AniraInputError):
    """A study config the workflow cannot run (or a cluster setting it lacks); the message is what
    the user sees, starting ``invalid study config:`` for the config's own problems."""


def hydra_options(group: str) -> list[str]:
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


def results_root(study: Study) -> str:
    """Where the study's outputs land: `results_root`, or results/<scale> when it is empty."""
    return study["results_root"] or f"results/{study['scale']}"


def usable_path(key: str, path: str) -> None:
    """Refuse a path the rules cannot carry: whitespace splits their shell commands and log paths
    (Snakemake then reports a missing log, and the shell writes a stray file), and non-ASCII
    characters break tools on some clusters' locales."""
    if any(c.isspace() for c in path) or not path.isascii():
        raise StudyError(
            f"invalid study config: {key} {path!r} has whitespace or non-ASCII characters, "
            "which the workflow's shell commands cannot carry; choose a plain path"
        )


def validate(study: dict[str, Any], schema_path: Path = SCHEMA) -> dict[str, Any]:
    """Validate the study (filling in defaults, in place): the schema, with task, router and
    scale names from the Hydra groups; paths the shell can carry; resources for its scale. A
    :class:`StudyError` lists each bad key on a line of its own."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    for group in HYDRA_GROUPS:
        options = hydra_options(group)
        if not options:
            raise StudyError(f"no Hydra configs in config/{group}/: run from the repository root")
        schema["$defs"][group]["enum"] = options
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(study), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for error in errors:
            where = ".".join(str(p) for p in error.absolute_path) or "config"
            lines.append(f"  {where}: {error.message}")
        raise StudyError("invalid study config:\n" + "\n".join(lines))
    usable_path("results_root", results_root(study))
    usable_path("figures_dir", study["figures_dir"])
    if study["scale"] not in study["resources"]:
        raise StudyError(f"config resources has no entry for scale {study['scale']!r}")
    return study


def overrides(study: Study, phase: str) -> tuple[str, ...]:
    """The study's extra Hydra overrides for a phase (generate, train or evaluate)."""
    return tuple(study["overrides"].get(phase, []))


def quoted_overrides(study: Study, phase: str) -> str:
    """The study's extra Hydra overrides for a phase, quoted for the shell."""
    return " ".join(shlex.quote(item) for item in overrides(study, phase))


def models(study: Study) -> list[Model]:
    """(task, router, seed) of every model: the tasks × routers grid with each task's
    `task_seeds` (default `seeds`), plus each task's `task_routers` with the study's `seeds`.
    """
    grid = []
    for task in study["tasks"]:
        grid += [
            (task, router, seed)
            for router in study["routers"]
            for seed in study["task_seeds"].get(task, study["seeds"])
        ]
        grid += [
            (task, router, seed)
            for router in study["task_routers"].get(task, [])
            for seed in study["seeds"]
        ]
    return grid


def run_spec(study: Study, model: Model) -> RunSpec:
    """The resolved spec of a model's training (anira.spec), as its train job will see it."""
    task, router, seed = model
    return compose_run(task, router, study["scale"], seed, overrides(study, "train"))


def dynamics_models(study: Study) -> list[Model]:
    """The models that keep weights over training, as their spec says."""
    return [model for model in models(study) if run_spec(study, model).train.dynamics_checkpoints]


def other_rule_models(study: Study) -> list[tuple[str, str, int, str]]:
    """(task, router, seed, rule) of every online model of a task with a fixed-depth frontier (two
    or more fixed-depth models), for each inference rule other than its trained one, so that the
    frontier compares both."""
    fixed, online = {}, []
    for model in models(study):
        spec = run_spec(study, model)
        if spec.model.router == "fixed":
            fixed.setdefault(model[0], set()).add(model[1])
        elif spec.model.router == "online":
            online += [(*model, rule) for rule in ONLINE_RULES if rule != spec.model.online_rule]
    return [model for model in online if len(fixed.get(model[0], ())) >= 2]


def matched_model(study: Study, model: Model) -> Model | None:
    """The model a control matches (the adaptive router of its task and seed, whose evaluation
    sets its depths), or None for a router without `match`."""
    match = run_spec(study, model).match
    return None if match is None else (model[0], match, model[2])


def check_matches(study: Study) -> None:
    """Every control needs the model it matches in the study."""
    trained = set(models(study))
    for model in models(study):
        matched = matched_model(study, model)
        if matched is not None and matched not in trained:
            task, router, seed = model
            raise StudyError(
                f"invalid study config: {task}/{router} seed {seed} matches {matched[1]}, which "
                "the study does not train at that seed"
            )


def wildcard_constraints(study: Study) -> dict[str, str]:
    """The patterns the rules' wildcards match: the study's names, digits for seeds and shards."""
    routers = [*study["routers"], *(r for rs in study["task_routers"].values() for r in rs)]
    return {
        "task": "|".join(study["tasks"]),
        "router": "|".join(routers),
        "seed": r"\d+",
        "shard": r"\d+",
        "split": "|".join(SPLITS),
    }
