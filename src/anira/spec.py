"""The resolved specifications of a dataset and of a training run, each built once and
validated field by field before any work.

:class:`DatasetSpec` is what ``anira.generate`` writes: the task with its effective parameters and
every split's sizes and counts (:func:`plan_splits`).

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
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from anira.compose import compose
from anira.dataset import Vocabulary
from anira.io import AniraInputError
from anira.layout import EXTRAP, INTERP, TEST, TRAIN, VAL, data_files
from anira.tasks import Task, get_task
from anira.tasks.base import PAD


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
    of both a run's spec and a dataset's plan, :class:`DatasetSpec`)."""
    scales = task.get("scales") or {}
    if scale not in scales:
        known = ", ".join(scales) or "none"
        raise AniraInputError(f"task {task.get('name')!r} has no scale {scale!r}; scales: {known}")
    return scales[scale]


# ---------------------------------------------------------------------------------------------
# A dataset's plan: which sizes, how many examples, validated before any work.


SIZE_KEYS = ("train", "train_only", "interp", "extrap")
_RANGE_RE = re.compile(r"^\s*(\d+)\s*\.\.\s*(\d+)\s*$")


def _int_list(value: Any, what: str, task: Task, named: set[int]) -> list[int]:
    """The sizes of one split: integers, or ``"a..b"`` ranges standing for every size in [a, b]
    the task can produce that no split names as an integer (e.g. LANO lengths)."""
    items = list(value) if value is not None else []
    ints: list[int] = []
    for x in items:
        match = _RANGE_RE.match(x) if isinstance(x, str) else None
        if match is not None:
            lo, hi = int(match.group(1)), int(match.group(2))
            ints += [s for s in range(lo, hi + 1) if s not in named and _producible(task, s)]
        elif isinstance(x, bool | str) or int(x) != x:
            raise AniraInputError(
                f"{what} must be a list of integers or 'a..b' ranges, got {items}"
            )
        else:
            ints.append(int(x))
    if len(set(ints)) != len(ints):
        raise AniraInputError(f"{what} repeats a size: {ints}")
    return ints


def _producible(task: Task, size: int) -> bool:
    try:
        task.check_size(size)
    except AniraInputError:
        return False
    return True


def _train_counts(task: Task, train: list[int], n_train: int) -> list[int]:
    """``n_train`` shared by the training sizes: equally, or in proportion to the task's
    :meth:`~anira.tasks.Task.size_weights` (largest remainders; at least one per size)."""
    weights = task.size_weights(train)
    if weights is None:
        return [n_train // len(train) + (i < n_train % len(train)) for i in range(len(train))]
    share = np.asarray(weights, dtype=float) / float(np.sum(weights)) * n_train
    counts = np.floor(share).astype(np.int64)
    extra = np.argsort(-(share - counts), kind="stable")[: n_train - int(counts.sum())]
    counts[extra] += 1
    return [max(1, int(c)) for c in counts]


def plan_splits(task: Task, sizes: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """``(split, size, count)`` for every split and size of a scale config, validated.

    ``train_only`` sizes (optional) are trained on but never tested: sizes whose example space is
    too small for a test split disjoint from train (MANO L=1 has 1,587 expressions) can still teach
    the primitive steps of the larger sizes. ``n_train`` is shared by the training sizes, equally
    unless the task weighs them (:meth:`~anira.tasks.Task.size_weights`, e.g. LANO's lengths in
    proportion to the grammar's length distribution). A list may hold ``"a..b"`` ranges: every
    size in [a, b] the task can produce and that no split names as an integer.

    Raises :class:`AniraInputError` for sizes below the task's minimum, interp sizes not strictly
    inside the training range or equal to a training size, extrap sizes not beyond it, sizes shared
    between splits, non-positive counts, and sizes whose example space (when the task knows it) is
    too small for the examples requested.
    """
    named = {
        int(x)
        for key in SIZE_KEYS
        for x in (sizes.get(key) or [])
        if not isinstance(x, str | bool) and int(x) == x
    }
    tested, train_only, interp, extrap = (
        sorted(_int_list(sizes.get(key), f"{key} sizes", task, named)) for key in SIZE_KEYS
    )
    if not tested:
        raise AniraInputError("train sizes must not be empty")
    if set(train_only) & set(tested):
        both = sorted(set(train_only) & set(tested))
        raise AniraInputError(f"sizes {both} are both train and train_only")
    train = sorted(tested + train_only)
    n_train = integer(sizes.get("n_train"), "n_train", 1)
    n_eval = integer(sizes.get("n_eval_per_size"), "n_eval_per_size", 1)
    if n_train < len(train):
        raise AniraInputError(f"n_train={n_train} is fewer than the {len(train)} training sizes")
    for size in train + interp + extrap:
        task.check_size(size)
    lo, hi = train[0], train[-1]
    for size in interp:
        if not lo < size < hi or size in train:
            raise AniraInputError(
                f"interp size {size} must lie strictly inside the training range [{lo}, {hi}] "
                f"and not be a training size {train}"
            )
    for size in extrap:
        if size <= hi:
            raise AniraInputError(f"extrap size {size} must exceed the largest training size {hi}")
    if set(interp) & set(extrap):
        both = sorted(set(interp) & set(extrap))
        raise AniraInputError(f"sizes {both} are both interp and extrap")
    per_train = _train_counts(task, train, n_train)
    plan = [(TRAIN, s, n) for s, n in zip(train, per_train, strict=True)]
    plan += [(TEST, s, n_eval) for s in tested]
    plan += [(INTERP, s, n_eval) for s in interp] + [(EXTRAP, s, n_eval) for s in extrap]
    plan += [(VAL, s, n_eval) for s in tested]
    drawn: dict[int, int] = {}  # examples of a size planned so far, train included
    for split, size, count in plan:
        drawn[size] = drawn.get(size, 0) + count
        space = task.space_size(size)
        if split != TRAIN and space is not None and space < drawn[size]:
            raise AniraInputError(
                f"task {task.name} size {size} has only {space} distinct examples: too few for "
                f"{count} {split} examples disjoint from the training and evaluation examples of "
                "that size; choose larger sizes or fewer examples"
            )
    return plan


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What ``anira.generate`` writes, resolved and validated before any file is written: the
    task built with its effective parameters, every split's sizes and counts, and the seed.

    A scale may override task parameters (``scales.<scale>.params``), e.g. a smaller MANO modulus
    at ``mini``, and a task may fix parameters of its own for the dataset
    (:meth:`~anira.tasks.Task.dataset_params`); the effective parameters are saved with the
    dataset and score its examples."""

    task: Task
    task_cfg: dict[str, Any]  # the task's config as composed (saved in the dataset's config.yaml)
    scale: str
    seed: int
    params: dict[str, Any]
    plan: list[tuple[str, int, int]]  # (split, size, count), from :func:`plan_splits`

    @classmethod
    def resolve(cls, task_cfg: Mapping[str, Any], scale: str, seed: Any = 0) -> DatasetSpec:
        if isinstance(task_cfg, DictConfig):
            task_cfg = OmegaConf.to_container(task_cfg, resolve=True)  # type: ignore[assignment]
        task_cfg = dict(task_cfg)
        if isinstance(seed, bool) or int(seed) != seed or int(seed) < 0:
            raise AniraInputError(f"seed must be a non-negative integer, got {seed!r}")
        name = task_cfg.get("name")
        at_scale = task_at_scale(task_cfg, scale)
        params = dict(task_cfg.get("params") or {}) | dict(at_scale.get("params") or {})
        task = get_task(name, **params)
        plan = plan_splits(task, at_scale)
        extra = task.dataset_params(max(size for _, size, _ in plan))
        added = {k: v for k, v in extra.items() if k not in params}
        if added:  # the task of the dataset, revalidated with the parameters it fixes
            params.update(added)
            task = get_task(name, **params)
            plan = plan_splits(task, at_scale)
        return cls(task, task_cfg, scale, int(seed), params, plan)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> DatasetSpec:
        """The spec of a composed ``generate`` config."""
        return cls.resolve(cfg.task, str(cfg.scale.name), cfg.seed)

    @property
    def max_size(self) -> int:
        return max(size for _, size, _ in self.plan)

    def vocabulary(self) -> Vocabulary:
        """Every token of the dataset (``<pad>`` first): the task's at its largest size."""
        return Vocabulary([PAD, *self.task.vocab_tokens(self.max_size)])

    def config_text(self) -> str:
        """The bytes of the dataset's ``config.yaml``: what the data was generated from. The
        workflow computes it for the study too (:func:`dataset_config_sha256`), so a model whose
        data was generated from another config is redone before its dataset is regenerated."""
        config = {
            "task": self.task_cfg,
            "scale": self.scale,
            "seed": self.seed,
            "params": self.params,
        }
        return OmegaConf.to_yaml(OmegaConf.create(config))


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


def evaluation_caps(cfg: Mapping[str, Any]) -> tuple[int, int | None]:
    """An evaluation's ``max_train_examples`` and ``max_eval_examples`` (None: every example),
    validated: what it evaluates, which the workflow's runtime estimates read too."""
    cap = cfg["max_eval_examples"]
    return (
        integer(cfg["max_train_examples"], "max_train_examples", 0),
        None if cap is None else integer(cap, "max_eval_examples", 1),
    )


@functools.cache
def planned_evaluation_caps(overrides: tuple[str, ...] = ()) -> tuple[int, int | None]:
    """:func:`evaluation_caps` of ``python -m anira.evaluate <overrides>``."""
    paths = ["checkpoint=-", "data_dir=-", "out_dir=-"]
    return evaluation_caps(compose("evaluate", [*overrides, *paths]))


@functools.cache
def compose_run(
    task: str, router: str, scale: str, seed: int, overrides: tuple[str, ...] = ()
) -> RunSpec:
    """The spec ``python -m anira.train task=… router=… scale=… seed=… <overrides>`` runs."""
    choices = [f"task={task}", f"router={router}", f"scale={scale}", f"seed={seed}"]
    return RunSpec.from_config(compose("train", [*choices, *overrides, "data_dir=-", "out_dir=-"]))


@functools.cache
def planned_dataset(
    task: str, scale: str, seed: int, overrides: tuple[str, ...] = ()
) -> DatasetSpec:
    """The spec of ``python -m anira.generate task=… scale=… seed=… <overrides>``, validated as
    generate itself does first."""
    choices = [f"task={task}", f"scale={scale}", f"seed={seed}"]
    return DatasetSpec.from_config(compose("generate", [*choices, *overrides, "out_dir=-"]))


def dataset_files(task: str, scale: str, seed: int, overrides: tuple[str, ...] = ()) -> list[str]:
    """The files that generate run writes (:func:`planned_dataset`)."""
    return data_files(planned_dataset(task, scale, seed, overrides).task.artifacts())


def dataset_config_sha256(task: str, scale: str, seed: int, overrides: tuple[str, ...] = ()) -> str:
    """The SHA-256 of the ``config.yaml`` that generate run writes (:func:`planned_dataset`): the
    workflow compares it with the one each output recorded of the data it read."""
    text = planned_dataset(task, scale, seed, overrides).config_text()
    return hashlib.sha256(text.encode()).hexdigest()


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
