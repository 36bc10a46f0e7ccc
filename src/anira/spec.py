"""The resolved specification of one training run, built once and validated field by field.

:class:`RunSpec` is resolved from a composed ``train`` config (task, router, scale, seed and any
overrides): the scale's training settings with the task's adjustments at that scale merged in,
the model's shape, the router's hyperparameters, the curriculum and the evaluation batch size.
Every field is checked by type and range when the spec is built, so a bad value (``batch_size=-4``,
``steps=10.5``, ``lr=abc``, ``n_heads`` not dividing ``d_model``) is one :class:`AniraInputError`
line naming the key, before any data is read. ``anira.train`` trains from it, ``anira.evaluate``
takes its batch size from it, and the Snakefile resolves one per task × router of a study at
DAG-build time (:func:`compose_run`), so a typo in a study file's overrides fails before any job.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from anira.io import AniraInputError, one_line


def integer(value: Any, key: str, minimum: int = 0) -> int:
    """``value`` as an int of at least ``minimum``; a float, bool or string is an error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer ≥ {minimum}"
        raise AniraInputError(f"{key} must be {kind}, got {value!r}")
    return value


def number(
    value: Any, key: str, low: float = 0.0, high: float = float("inf"), low_open: bool = False
) -> float:
    """``value`` as a float in ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if not numeric or value != value or value > high or value < low or (low_open and value == low):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise AniraInputError(f"{key} must be a number in {interval}, got {value!r}")
    return float(value)


def flag(value: Any, key: str) -> bool:
    """``value`` as a bool; 1, "yes" or "true" (strings) are errors, not silently truthy."""
    if not isinstance(value, bool):
        raise AniraInputError(f"{key} must be true or false, got {value!r}")
    return value


def probabilities(value: Any, key: str, length: int) -> tuple[float, ...]:
    """``value`` as ``length`` probabilities summing to 1 (within 10⁻⁶, then renormalised)."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != length:
        raise AniraInputError(f"{key} must be a list of {length} probabilities, got {value!r}")
    probs = [number(p, key, high=1.0) for p in value]
    if abs(sum(probs) - 1.0) > 1e-6:
        raise AniraInputError(f"{key} must sum to 1, got {sum(probs):.6g}")
    return tuple(p / sum(probs) for p in probs)


def choice(value: Any, key: str, options: Sequence[str]) -> str:
    if value not in options:
        raise AniraInputError(f"{key} must be one of {', '.join(options)}; got {value!r}")
    return value


def task_at_scale(task: Mapping[str, Any], scale: str) -> Mapping[str, Any]:
    """``task.scales.<scale>``: the task's sizes, depth and adjustments at a scale (the one lookup
    of both a run's spec and a dataset's plan, :func:`anira.data.build_task`)."""
    scales = task.get("scales") or {}
    if scale not in scales:
        known = ", ".join(scales) or "none"
        raise AniraInputError(f"task {task.get('name')!r} has no scale {scale!r}; scales: {known}")
    return scales[scale]


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one run (``scale.train`` with the task's adjustments)."""

    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_steps: int
    min_lr_ratio: float
    grad_clip: float
    checkpoint_every: int
    log_every: int
    dynamics_checkpoints: int  # weights kept at this many log-spaced steps (anira.train)

    @classmethod
    def resolve(cls, scale_train: Mapping[str, Any], adjust: Mapping[str, Any]) -> TrainSettings:
        """``scale.train`` with ``task.scales.<scale>.training`` applied: ``steps_factor``
        multiplies the scale's steps (so an override of ``scale.train.steps`` still shrinks every
        task), other keys replace the scale's. Example: MANO's one-token answers need more steps
        and a lower lr than BREVO at ``mini``."""
        adjust = dict(adjust)
        factor = number(adjust.pop("steps_factor", 1), "training.steps_factor", low_open=True)
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(adjust) - set(names)) or sorted(set(scale_train) - set(names))
        if unknown:
            raise AniraInputError(f"unknown training settings {unknown}; known: {names}")
        merged = {**scale_train, **adjust}
        missing = [name for name in names if name not in merged]
        if missing:
            raise AniraInputError(f"scale.train lacks {missing}")
        key = "scale.train."
        settings = cls(
            steps=integer(merged["steps"], key + "steps", 1),
            batch_size=integer(merged["batch_size"], key + "batch_size", 1),
            lr=number(merged["lr"], key + "lr", low_open=True),
            weight_decay=number(merged["weight_decay"], key + "weight_decay"),
            warmup_steps=integer(merged["warmup_steps"], key + "warmup_steps", 0),
            min_lr_ratio=number(merged["min_lr_ratio"], key + "min_lr_ratio", high=1.0),
            grad_clip=number(merged["grad_clip"], key + "grad_clip", low_open=True),
            checkpoint_every=integer(merged["checkpoint_every"], key + "checkpoint_every", 1),
            log_every=integer(merged["log_every"], key + "log_every", 1),
            dynamics_checkpoints=integer(
                merged["dynamics_checkpoints"], key + "dynamics_checkpoints", 0
            ),
        )
        return dataclasses.replace(settings, steps=max(1, round(settings.steps * factor)))


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything a training run is made of, resolved once from its composed config.

    ``model`` holds the model's shape and router; its ``vocab_size`` and ``max_seq_len`` are the
    :class:`~anira.model.ModelConfig` defaults until :meth:`model_for` sets them from the dataset.
    """

    task: str
    router: str
    scale: str
    seed: int
    train: TrainSettings
    model: Any  # anira.model.ModelConfig (imported lazily: the Snakefile need not load torch)
    curriculum: float
    eval_batch_size: int
    # A matched-compute control's adaptive router (``router.match``): the study router, same task
    # and seed, whose val executed depths set this one's distribution (anira.train); else None.
    match: str | None = None

    @classmethod
    def from_config(cls, cfg: DictConfig) -> RunSpec:
        from anira.model.config import ESTIMATORS, EXECUTIONS, ONLINE_RULES, ROUTERS, ModelConfig

        try:
            c = OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException as err:
            raise AniraInputError(f"cannot resolve the config: {err}") from err
        task, router, scale = c["task"], c["router"], c["scale"]
        at_scale = task_at_scale(task, scale["name"])
        key = f"task.scales.{scale['name']}."
        shape = scale["model"]
        d_model = integer(shape["d_model"], "scale.model.d_model", 1)
        n_heads = integer(shape["n_heads"], "scale.model.n_heads", 1)
        if d_model % n_heads or (d_model // n_heads) % 2:
            raise AniraInputError(
                f"scale.model.n_heads={n_heads} must divide d_model={d_model} into heads of "
                "even size (RoPE rotates pairs of dimensions)"
            )
        max_depth = integer(at_scale.get("max_depth"), key + "max_depth", 1)
        # `name` labels the results; `kind` is the model's router (fixed1 is a fixed router)
        kind = choice(router.get("kind", router["name"]), "router.kind", ROUTERS)
        if router.get("depth") is not None:  # a fixed-depth baseline at D' ≤ D
            if kind != "fixed":
                raise AniraInputError(f"router.depth needs a fixed router, got {kind}")
            max_depth = integer(router["depth"], "router.depth", 1)
            if max_depth > at_scale.get("max_depth"):
                raise AniraInputError(
                    f"router.depth must be at most the task's D = {at_scale['max_depth']}, "
                    f"got {max_depth}"
                )
        match = router.get("match")
        if match is not None and kind not in ("random", "fixed"):
            raise AniraInputError(f"router.match needs a random or fixed router, got {kind}")
        depth_probs = router.get("depth_probs")
        if kind == "random" and depth_probs is None and match is None:
            raise AniraInputError(
                "router=random needs router.depth_probs or router.match (the adaptive router "
                "whose val depths it draws from)"
            )
        if depth_probs is not None:
            depth_probs = probabilities(depth_probs, "router.depth_probs", max_depth)
        seed = integer(c["seed"], "seed", 0)
        settings = dict(  # each named by its config key when bad
            d_model=d_model,
            n_heads=n_heads,
            mlp_ratio=integer(shape["mlp_ratio"], "scale.model.mlp_ratio", 1),
            max_depth=max_depth,
            router=kind,
            online_rule=choice(
                router.get("inference_rule", "median"), "router.inference_rule", ONLINE_RULES
            ),
            gamma=number(router["gamma"], "router.gamma"),
            prior_base=number(router["prior_base"], "router.prior_base", low_open=True),
            gumbel_tau=number(router.get("gumbel_tau", 1.0), "router.gumbel_tau", low_open=True),
            estimator=choice(router.get("estimator", "unroll"), "router.estimator", ESTIMATORS),
            act_epsilon=number(
                router.get("act_epsilon", 0.01), "router.act_epsilon", low_open=True, high=1.0
            ),
            capacity_ratio=number(
                router.get("capacity_ratio", 0.8),
                "router.capacity_ratio",
                low_open=True,
                high=1.0,
            ),
            execution=choice(shape["execution"], "scale.model.execution", EXECUTIONS),
            # absent in configs saved before the switch existed: eager, as they ran
            compile=flag(shape.get("compile", False), "scale.model.compile"),
            depth_probs=depth_probs,
            draw_salt=seed if kind == "random" else 0,
        )
        try:
            model = ModelConfig(**settings)
        except AniraInputError as err:  # ModelConfig's own checks, for anything not named above
            raise AniraInputError(f"invalid model settings: {err}") from err
        return cls(
            task=task["name"],
            router=router["name"],
            scale=scale["name"],
            seed=seed,
            train=TrainSettings.resolve(scale["train"], at_scale.get("training") or {}),
            model=model,
            curriculum=number(at_scale.get("curriculum", 0.0), key + "curriculum", high=1.0),
            eval_batch_size=integer(scale["eval"]["batch_size"], "scale.eval.batch_size", 1),
            match=None if match is None else str(match),
        )

    @classmethod
    def from_saved(cls, config: Mapping[str, Any]) -> RunSpec:
        """The spec of a finished run from the config its checkpoint holds (``model.pt``'s
        ``config``), for the stages that read a checkpoint (evaluation, analyses)."""
        return cls.from_config(OmegaConf.create(dict(config)))

    def model_for(self, vocab_size: int, max_seq_len: int) -> Any:
        """The model's config for a dataset: its vocabulary and longest sequence."""
        return dataclasses.replace(self.model, vocab_size=vocab_size, max_seq_len=max_seq_len)


def compose(app: str, overrides: Sequence[str], hydra: bool = False) -> DictConfig:
    """The config ``python -m anira.<app> <overrides>`` runs with (``hydra``: with Hydra's own
    node); an override naming a key or an option that does not exist, or a value Hydra cannot
    parse, is one :class:`AniraInputError` line (an unknown key names the closest one)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    from anira.cli import CONFIG_DIR, check_group_choices

    check_group_choices(list(overrides))
    try:
        # Hydra's override lexer prints its own trace to stderr before raising: kept out.
        with (
            initialize_config_dir(str(CONFIG_DIR), version_base=None),
            redirect_stderr(io.StringIO()),
        ):
            return hydra_compose(app, overrides=list(overrides), return_hydra_config=hydra)
    except (HydraException, OmegaConfBaseException) as err:
        unknown = unparsable(overrides) or unknown_key(app, overrides)
        if unknown:
            raise AniraInputError(unknown) from err
        raise AniraInputError(f"anira.{app} {' '.join(overrides)}: {one_line(err)}") from err


def unparsable(overrides: Sequence[str]) -> str | None:
    """``cannot parse override …`` for the first override Hydra's grammar rejects (naming its
    non-ASCII characters, such as a fullwidth digit, where it has some), or None."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for override in overrides:
        try:
            with redirect_stderr(io.StringIO()):
                parser.parse_override(override)
        except HydraException:
            odd = sorted({c for c in override if not c.isascii()})
            hint = f" (non-ASCII characters {', '.join(map(repr, odd))})" if odd else ""
            return f"cannot parse override {override!r}{hint}; see Hydra's override grammar"
    return None


def unknown_key(app: str, overrides: Sequence[str]) -> str | None:
    """``unknown key K (closest: …)`` for the first override whose key the config of ``app``
    lacks (``+key=`` adds one, so it is never unknown), or None."""
    import difflib

    from anira.cli import CONFIG_DIR

    groups = [o for o in overrides if "=" in o and (CONFIG_DIR / o.split("=")[0]).is_dir()]
    try:
        keys = list(dotted_keys(compose(app, groups, hydra=True)))
    except AniraInputError:
        return None
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("~")
        if "=" not in override or key.startswith("+") or key in keys:
            continue
        close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
        return f"unknown key {key}" + (f" (closest: {close[0]})" if close else "")
    return None


def dotted_keys(node: Any, prefix: str = "") -> Iterator[str]:
    """Every key of a config, nested ones as ``a.b.c``."""
    if isinstance(node, DictConfig):
        for key in node:
            path = f"{prefix}{key}"
            yield path
            yield from dotted_keys(node._get_node(key), f"{path}.")


@functools.cache
def default_choices(app: str) -> dict[str, str]:
    """Group → option ``python -m anira.<app>`` composes when no override names the group (its
    defaults list, as Hydra reads it; Hydra's own groups left out)."""
    choices = compose(app, [], hydra=True).hydra.runtime.choices
    return {g: o for g, o in choices.items() if o is not None and not g.startswith("hydra")}


@functools.cache
def compose_run(
    task: str, router: str, scale: str, seed: int, overrides: tuple[str, ...] = ()
) -> RunSpec:
    """The spec ``python -m anira.train task=… router=… scale=… seed=… <overrides>`` runs."""
    choices = [f"task={task}", f"router={router}", f"scale={scale}", f"seed={seed}"]
    return RunSpec.from_config(compose("train", [*choices, *overrides, "data_dir=-", "out_dir=-"]))


@functools.cache
def planned_dataset(task: str, scale: str, seed: int, overrides: tuple[str, ...] = ()) -> Any:
    """The task, config and effective parameters of ``python -m anira.generate task=… scale=…
    seed=… <overrides>``, after validating its sizes (:func:`anira.data.plan_splits`) as generate
    itself does first."""
    from anira.data import build_task

    choices = [f"task={task}", f"scale={scale}", f"seed={seed}"]
    cfg = compose("generate", [*choices, *overrides, "out_dir=-"])
    task_cfg = OmegaConf.to_container(cfg.task, resolve=True)
    built, params, _ = build_task(task_cfg, scale)
    return built, task_cfg, params, cfg.seed


def dataset_files(task: str, scale: str, seed: int, overrides: tuple[str, ...] = ()) -> list[str]:
    """The files that generate run writes (:func:`planned_dataset`)."""
    from anira.layout import data_files

    return data_files(planned_dataset(task, scale, seed, overrides)[0].artifacts())


def dataset_config_sha256(task: str, scale: str, seed: int, overrides: tuple[str, ...] = ()) -> str:
    """The SHA-256 of the ``config.yaml`` that generate run writes (:func:`planned_dataset`): the
    workflow compares it with the one each output recorded of the data it read."""
    from anira.data import data_config_text

    _, task_cfg, params, seed = planned_dataset(task, scale, seed, overrides)
    return hashlib.sha256(data_config_text(task_cfg, scale, seed, params).encode()).hexdigest()


def study_configs(configfile: str) -> list[str]:
    """The config files a study depends on (globs relative to the repository, for
    :func:`anira.io.measured_on`): the study file, the default study it extends, and the stage,
    scale, task and router configs it names."""
    default = OmegaConf.load("config/config.yaml") if Path("config/config.yaml").is_file() else {}
    study = OmegaConf.merge(default, OmegaConf.load(configfile))
    routers = {
        *study.routers,
        *(r for rs in (study.get("task_routers") or {}).values() for r in rs),
    }
    return [
        "config/config.yaml",
        configfile,
        "config/generate.yaml",
        "config/train.yaml",
        "config/evaluate.yaml",
        "config/grammars/*",
        f"config/scale/{study.scale}.yaml",
        *(f"config/task/{task}.yaml" for task in study.tasks),
        *(f"config/router/{router}.yaml" for router in sorted(routers)),
    ]
