"""What each job of the study asks of the machine, and in which order jobs start.

Memory and runtime come from the study config for its scale; a training's and an evaluation's
memory also from its plan (anira.memory), and their runtime from their estimated compute
(anira.cost) at the study's assumed GPU throughput, both made before any job runs.

Priorities: with more ready jobs than cores Snakemake starts the highest priority first, so the
longest trainings go first and short jobs fill the cores at the end (longest-processing-time
first), instead of a long training running alone at the end of the study."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

from anira.cost import JobCost, run_cost
from anira.io import AniraInputError
from anira.memory import Plan, estimated_shapes, fit_evaluation, fit_training
from anira.spec import compose_run, dataset_files, planned_evaluation_caps
from anira.study.grid import (
    Model,
    Study,
    StudyError,
    dynamics_models,
    matched_model,
    models,
    overrides,
    run_spec,
)

# Phases whose jobs run models: a GPU partition under SLURM.
GPU_PHASES = ("train", "evaluate")
# SLURM account and partitions come from the environment so the profile carries no site names:
# setting → (variable, fallback variable).
SLURM_ENV = {
    "account": ("ANIRA_SLURM_ACCOUNT", None),
    "cpu": ("ANIRA_SLURM_PARTITION", None),
    "gpu": ("ANIRA_SLURM_GPU_PARTITION", "ANIRA_SLURM_PARTITION"),
}


def memory_plans(study: Study, model: Model) -> dict[str, Plan]:
    """The training and evaluation memory plans (anira.memory) of a model at its dataset's
    estimated longest sequences, for a GPU of `gpu_mem_gb`: the training's micro-batch and the
    evaluation's batch that fit, or one error line when a single sequence does not fit.
    """
    return _memory_plans(
        model,
        study["scale"],
        study["data_seed"],
        overrides(study, "generate"),
        overrides(study, "train"),
        study["gpu_mem_gb"],
    )


@functools.cache
def _memory_plans(model, scale, data_seed, generate_overrides, train_overrides, gpu_mem_gb):
    task, router, seed = model
    spec = compose_run(task, router, scale, seed, train_overrides)
    vocab, train_len, eval_len = estimated_shapes(task, scale, data_seed, generate_overrides)
    mcfg = spec.model_for(vocab, eval_len)
    what = f"task {task} router {router}"
    return {
        "train": fit_training(mcfg, spec.train.batch_size, train_len, gpu_mem_gb, what),
        "evaluate": fit_evaluation(mcfg, spec.eval_batch_size, eval_len, gpu_mem_gb, what),
    }


def resolve(study: Study) -> None:
    """Resolve every run of the study as its job will (anira.spec), and plan its memory, so a bad
    value or a typo in the study's overrides, or a model that cannot fit the GPU, fails here,
    before any job starts."""
    try:
        planned_evaluation_caps(overrides(study, "evaluate"))
        for task in study["tasks"]:
            dataset_files(task, study["scale"], study["data_seed"], overrides(study, "generate"))
        for model in models(study):
            run_spec(study, model)
            memory_plans(study, model)
    except AniraInputError as err:
        raise StudyError(f"invalid study config: {err}") from None


def mem_mb(study: Study, phase: str) -> int:
    """The memory of a job of `phase` (generate, train, evaluate, analyze) at the study's scale;
    a training's or an evaluation's floor, to which its plan adds (:func:`planned_mem_mb`)."""
    return study["resources"][study["scale"]][phase]["mem_mb"]


def runtime(study: Study, phase: str, attempt: int = 1) -> int:
    """The wall-clock minutes of a job of `phase`; they grow with the attempt (`--retries`), so a
    job killed at its limit gets more time. A training's or an evaluation's floor, above which its
    estimate goes (:func:`planned_runtime`)."""
    return study["resources"][study["scale"]][phase]["runtime"] * attempt


def _cost(study: Study, model: Model, eval_batch: int, caps: tuple, splits=None) -> JobCost:
    """anira.cost's estimate for a model of the study, evaluating `splits` (None: all) in batches
    of `eval_batch` with the caps (max_train_examples, max_eval_examples)."""
    task, router, _ = model
    generate = overrides(study, "generate")
    vocab, _, _ = estimated_shapes(task, study["scale"], study["data_seed"], generate)
    return run_cost(
        task,
        router,
        study["scale"],
        study["data_seed"],
        generate,
        overrides(study, "train"),
        vocab,
        eval_batch,
        *caps,
        splits,
    )


def _eval_hours(study: Study, cost: JobCost) -> float:
    assumed = study["runtime_estimate"]
    return cost.eval_hours(assumed["assumed_gpu_tflops"], assumed["assumed_decode_step_ms"])


def estimated_hours(study: Study, model: Model, phase: str) -> float:
    """The GPU hours of a train or evaluate job (anira.cost) at the study's assumed throughput and
    decoding latency (`runtime_estimate`), evaluating at its memory plan's batch."""
    batch = memory_plans(study, model)["evaluate"].batch
    cost = _cost(study, model, batch, planned_evaluation_caps(overrides(study, "evaluate")))
    if phase == "train":
        return cost.train_hours(study["runtime_estimate"]["assumed_gpu_tflops"])
    return _eval_hours(study, cost)


def _estimated_minutes(study: Study, hours: float, phase: str, attempt: int) -> int:
    """`hours` × `safety_factor` + `startup_minutes`, never below the phase's floor, × attempt."""
    assumed = study["runtime_estimate"]
    estimate = math.ceil(hours * 60 * assumed["safety_factor"] + assumed["startup_minutes"])
    return max(estimate, runtime(study, phase)) * attempt


def planned_runtime(study: Study, model: Model, phase: str, attempt: int = 1) -> int:
    """`runtime` of a train or evaluate job: its estimated time × `safety_factor` +
    `startup_minutes` (`runtime_estimate`), never below the phase's floor, times the attempt."""
    return _estimated_minutes(study, estimated_hours(study, model, phase), phase, attempt)


def dynamics_hours(study: Study) -> float:
    """The GPU hours of the dynamics job: each kept step of each model that keeps them, evaluated
    on `analysis.dynamics_examples` examples of `val` at the scale's batch, as an evaluation."""
    caps, hours = (0, study["analysis"]["dynamics_examples"]), 0.0
    for model in dynamics_models(study):
        spec = run_spec(study, model)
        cost = _cost(study, model, spec.eval_batch_size, caps, ("val",))
        hours += spec.train.dynamics_checkpoints * _eval_hours(study, cost)
    return hours


def dynamics_runtime(study: Study, attempt: int = 1) -> int:
    """`runtime` of the dynamics job, estimated as an evaluation's (:func:`planned_runtime`)."""
    return _estimated_minutes(study, dynamics_hours(study), "evaluate", attempt)


def _megabytes(plan: Plan) -> int:
    return -(-plan.total // 10**6)  # rounded up


def planned_mem_mb(study: Study, model: Model, phase: str) -> int:
    """`mem_mb` of a train or evaluate job: the phase's floor plus the job's planned peak (a GPU
    rule falls back to a CPU partition, where the host holds it)."""
    return mem_mb(study, phase) + _megabytes(memory_plans(study, model)[phase])


def planned_gpu_mem_mb(study: Study, model: Model, phase: str) -> int:
    """`gpu_mem_mb` of a train or evaluate job: its planned GPU peak, for a site's GPU constraint
    (e.g. `--set-resources` mapping it to a `constraint` of 40 or 80 GB cards)."""
    return _megabytes(memory_plans(study, model)[phase])


def eval_batch_option(study: Study, model: Model) -> str:
    """`batch_size=N` when the evaluation plan needs a smaller batch than the scale's."""
    plan = memory_plans(study, model)["evaluate"]
    return f"batch_size={plan.batch}" if plan.batch < run_spec(study, model).eval_batch_size else ""


def threads(study: Study, phase: str) -> int:
    return study["threads"][phase]


def slurm_setting(kind: str, environ: Mapping[str, str]) -> str:
    """The SLURM setting `kind` (account, cpu or gpu partition) from the environment."""
    name, fallback = SLURM_ENV[kind]
    value = environ.get(name) or (environ.get(fallback) if fallback else None)
    if not value:
        wanted = name if fallback is None else f"{name} (or {fallback})"
        raise StudyError(
            f"the slurm profile needs the environment variable {wanted}: "
            f"export {name}=<your SLURM {'account' if kind == 'account' else 'partition'}>"
        )
    return value


def training_cost(study: Study, model: Model) -> int:
    """A training's cost in layer-steps: steps × (core iterations + prelude + coda)."""
    spec = run_spec(study, model)
    return spec.train.steps * (spec.model.max_depth + 2)


def unblocked_controls_cost(study: Study, model: Model) -> int:
    """The cost of the controls that wait for this model's evaluation (their `match`)."""
    return sum(
        training_cost(study, control)
        for control in models(study)
        if matched_model(study, control) == model
    )


def train_priority(study: Study, model: Model) -> int:
    """Own cost plus the controls it unblocks, so a matched model trains early."""
    return training_cost(study, model) + unblocked_controls_cost(study, model)


def evaluate_priority(study: Study, model: Model) -> int:
    """The controls it unblocks: a matched model's evaluation runs before other trainings."""
    return unblocked_controls_cost(study, model)


def generate_priority(study: Study, task: str) -> int:
    """A dataset goes before the trainings it unblocks: the sum of their costs."""
    return sum(training_cost(study, model) for model in models(study) if model[0] == task)
