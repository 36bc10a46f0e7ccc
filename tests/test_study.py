"""The workflow's logic outside Snakemake (anira.study): validation, the model grid, paths,
resources from the memory plans, priorities, the integrity decisions on damaged directories, and
dvc.yaml derived from the default study. The Snakemake runs are in test_workflow.py."""

from __future__ import annotations

import copy
import math
import shutil
from pathlib import Path

import pytest
import yaml

from anira.cost import decoding_passes, forward_flops, job_cost, sampled_lengths
from anira.io import write_manifest
from anira.layout import MANIFEST
from anira.model import AniraModel
from anira.spec import compose_run, planned_dataset
from anira.study import dvc, grid, paths, resources
from anira.study.grid import StudyError
from anira.study.integrity import Integrity

ROOT = Path(__file__).resolve().parents[1]


def study_file(path: str = "config/config.yaml", **changes) -> dict:
    """A study file of the repository, validated (defaults filled in), with `changes`."""
    study = yaml.safe_load((ROOT / path).read_text())
    return grid.validate({**study, **changes}, ROOT / grid.SCHEMA)


@pytest.fixture(scope="module")
def default_study() -> dict:
    return study_file()


def test_defaults_are_filled_in_and_the_default_results_root_follows_the_scale(default_study):
    assert default_study["results_root"] == "" and default_study["gpu_mem_gb"] == 80
    assert grid.results_root(default_study) == "results/mini"
    assert grid.results_root({**default_study, "results_root": "out/a"}) == "out/a"


@pytest.mark.parametrize(
    ("changes", "key", "fragment"),
    [
        ({"tasks": ["brevo", "nope"]}, "tasks.1", "'nope' is not one of"),
        ({"seeds": [-1]}, "seeds.0", "-1 is less than the minimum of 0"),
        ({"gpu_mem_gb": 0}, "gpu_mem_gb", "less than or equal to the minimum of 0"),
        ({"overrides": {"train": ["no_equals"]}}, "overrides.train.0", "does not match"),
        ({"sclae": "mini"}, "config", "'sclae' was unexpected"),
    ],
)
def test_each_validation_error_is_one_line_naming_the_bad_key(changes, key, fragment):
    with pytest.raises(StudyError) as err:
        study_file(**changes)
    header, *lines = str(err.value).splitlines()
    assert header == "invalid study config:"
    assert len(lines) == 1 and lines[0].startswith(f"  {key}: ") and fragment in lines[0], lines


def test_two_bad_keys_give_two_lines():
    with pytest.raises(StudyError) as err:
        study_file(tasks=["nope"], seeds=[-1])
    lines = str(err.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == ["seeds.0", "tasks.0"]


@pytest.mark.parametrize(
    ("key", "value"), [("results_root", "results/tïny"), ("figures_dir", "my figures")]
)
def test_a_path_the_shell_cannot_carry_is_one_line_naming_it(key, value):
    with pytest.raises(StudyError) as err:
        study_file(**{key: value})
    assert str(err.value).startswith(f"invalid study config: {key} {value!r} has whitespace")
    assert len(str(err.value).splitlines()) == 1


def test_a_scale_without_resources_is_refused(default_study):
    study = copy.deepcopy(default_study)
    del study["resources"]["mini"]
    with pytest.raises(StudyError, match="config resources has no entry for scale 'mini'"):
        grid.validate(study, ROOT / grid.SCHEMA)


def test_the_default_grid_its_controls_and_the_models_it_derives(default_study):
    three = [(router, seed) for router in ("online", "random_online") for seed in (0, 1, 2)]
    assert grid.models(default_study) == [
        *(("lano", router, seed) for router, seed in three),
        ("lano", "fixed", 0),
        ("lano", "fixed1", 0),
    ]
    for seed in (0, 1, 2):
        control = ("lano", "random_online", seed)
        assert grid.matched_model(default_study, control) == ("lano", "online", seed)
        assert grid.matched_model(default_study, ("lano", "online", seed)) is None
    # LANO has a fixed-depth frontier (fixed and fixed1): its online models also under mode.
    assert grid.other_rule_models(default_study) == [
        ("lano", "online", seed, "mode") for seed in (0, 1, 2)
    ]
    assert grid.dynamics_models(default_study) == []  # only BREVO keeps weights at mini
    full = study_file("config/study/full.yaml")
    assert {task for task, _, _ in grid.dynamics_models(full)} == {"brevo"}
    grid.check_matches(default_study)


def test_a_control_without_its_matched_model_is_refused(default_study):
    study = {**default_study, "task_seeds": {"lano": [0]}, "task_routers": {}}
    study["routers"] = ["random_online"]
    with pytest.raises(StudyError, match="lano/random_online seed 0 matches online, which"):
        grid.check_matches(study)


def test_wildcard_constraints_name_the_studys_tasks_and_routers(default_study):
    constraints = grid.wildcard_constraints(default_study)
    assert constraints["task"] == "lano"
    assert constraints["router"] == "online|random_online|fixed|fixed1"
    assert constraints["split"] == "train|test|interp|extrap|val"


def test_overrides_are_quoted_for_the_shell(default_study):
    study = {**default_study, "overrides": {"train": ["scale.train.lr=0.1", "+x='a b'"]}}
    assert grid.overrides(study, "train") == ("scale.train.lr=0.1", "+x='a b'")
    assert grid.quoted_overrides(study, "train") == "scale.train.lr=0.1 '+x='\"'\"'a b'\"'\"''"
    assert grid.quoted_overrides(study, "evaluate") == ""
    assert paths.data_params(default_study) == "seed=0 "


def test_paths_follow_the_results_root_and_figures_dir(default_study):
    layout = paths.paths(default_study)
    assert layout.data == "results/mini/data/{task}"
    assert layout.checkpoint == "results/mini/checkpoints/{task}/{router}/seed{seed}"
    assert layout.eval == "results/mini/eval/{task}/{router}/seed{seed}"
    assert layout.rule_eval == "results/mini/eval/{task}/{router}-{rule}/seed{seed}"
    assert (layout.analysis, layout.logs) == ("results/mini/analysis", "results/mini/logs")
    moved = paths.paths({**default_study, "results_root": "out/x", "figures_dir": "figs"})
    assert moved.parts == "out/x/data_parts/{task}" and moved.figures == "figs"


def test_job_inputs_and_options(default_study):
    records = paths.eval_records(default_study, "examples", ["val", "test"])
    assert len(records) == 2 * len(grid.models(default_study))
    assert records[0] == "results/mini/eval/lano/online/seed0/val.examples.parquet"
    assert paths.model_options([("lano", "fixed", 0)], "{task}/{router}", "s{seed}") == (
        "--model lano/fixed s0"
    )
    assert paths.files_in("d", ["a.json"]) == {"a_json": "d/a.json"}
    options = "inference_rule=mode 'splits=[test,interp,extrap]'"
    assert paths.inference_options(default_study, "mode") == options
    assert paths.generation_parts(default_study, "lano") == []
    sharded = {**default_study, "generation_shards": 2}
    assert paths.generation_parts(sharded, "lano") == [
        f"results/mini/data_parts/lano/part{shard}.parquet" for shard in (0, 1)
    ]
    assert paths.hydra_configs("train", task="{task}", router="{router}", scale="mini") == [
        "config/train.yaml",
        "config/router/{router}.yaml",
        "config/scale/mini.yaml",
        "config/task/{task}.yaml",
    ]


def test_priorities_put_a_matched_model_before_its_control(default_study):
    cost = {m: resources.training_cost(default_study, m) for m in grid.models(default_study)}
    assert all(value > 0 for value in cost.values())
    for seed in (0, 1, 2):
        model, control = ("lano", "online", seed), ("lano", "random_online", seed)
        train = resources.train_priority(default_study, model)
        assert train == cost[model] + cost[control]
        assert train > resources.train_priority(default_study, control) == cost[control]
        assert resources.evaluate_priority(default_study, model) == cost[control]
        assert resources.evaluate_priority(default_study, control) == 0
    assert resources.generate_priority(default_study, "lano") == sum(cost.values())


def test_resources_come_from_the_study_and_the_memory_plan(default_study):
    model = ("lano", "online", 0)
    plans = resources.memory_plans(default_study, model)
    for phase in ("train", "evaluate"):
        floor = default_study["resources"]["mini"][phase]["mem_mb"]
        gpu = math.ceil(plans[phase].total / 10**6)
        assert resources.planned_gpu_mem_mb(default_study, model, phase) == gpu
        assert resources.planned_mem_mb(default_study, model, phase) == floor + gpu
    analyze = default_study["resources"]["mini"]["analyze"]
    assert resources.mem_mb(default_study, "analyze") == analyze["mem_mb"]
    runtimes = [resources.runtime(default_study, "analyze", attempt) for attempt in (1, 3)]
    assert runtimes == [analyze["runtime"], 3 * analyze["runtime"]]
    assert resources.eval_batch_option(default_study, model) == ""  # the scale's batch fits
    # On a GPU too small for the scale's batch the evaluation halves it until it fits.
    batch = grid.run_spec(default_study, model).eval_batch_size
    half = resources.planned_gpu_mem_mb(default_study, model, "evaluate") / 2 / 1000
    small = {**default_study, "gpu_mem_gb": half}
    assert resources.eval_batch_option(small, model) == (
        f"batch_size={resources.memory_plans(small, model)['evaluate'].batch}"
    )
    assert resources.memory_plans(small, model)["evaluate"].batch < batch


@pytest.fixture(scope="module")
def paper_study() -> dict:
    return study_file("config/study/paper.yaml")


def test_each_training_runtime_follows_its_tasks_estimated_compute(paper_study, default_study):
    """At paper scale a training's runtime is its estimated GPU time × the safety factor plus the
    start-up allowance: Floyd–Warshall (≈ 200 training tokens per sequence) gets longer than
    binary search (≈ 70, same steps and D), which stays on the phase's floor; a retry doubles
    it; at mini every job is on the floor."""
    long, short = ("clrs_floyd_warshall", "early", 0), ("clrs_binary_search", "early", 0)
    floor = paper_study["resources"]["paper"]["train"]["runtime"]
    assumed = paper_study["runtime_estimate"]
    hours = resources.estimated_hours(paper_study, long, "train")
    expected = math.ceil(hours * 60 * assumed["safety_factor"] + assumed["startup_minutes"])
    assert resources.planned_runtime(paper_study, long, "train") == expected > floor
    assert resources.planned_runtime(paper_study, long, "train", 2) == 2 * expected
    assert hours > 2 * resources.estimated_hours(paper_study, short, "train")
    assert resources.planned_runtime(paper_study, short, "train") == floor
    assert resources.planned_runtime(paper_study, short, "train", 3) == 3 * floor
    # A throughput assumed twice as high halves the estimate.
    fast = {**paper_study, "runtime_estimate": {**assumed, "assumed_gpu_tflops": 120}}
    assert resources.estimated_hours(fast, long, "train") == pytest.approx(hours / 2)
    for model in grid.models(default_study):
        for phase in ("train", "evaluate"):
            minutes = default_study["resources"]["mini"][phase]["runtime"]
            assert resources.planned_runtime(default_study, model, phase) == minutes, model


def test_each_evaluation_runtime_follows_its_examples_and_decoding(paper_study):
    """LANO's evaluation (≈ 4,000 examples, each decoding a sampled string and two completions of
    up to 433 tokens) takes longer than a short task's; capping the examples per split (the smoke
    study's counts) shrinks its estimate."""
    lano = ("lano", "early", 0)
    full = resources.estimated_hours(paper_study, lano, "evaluate")
    smoke = ["max_train_examples=4", "max_eval_examples=6"]
    capped = {**paper_study, "overrides": {"evaluate": smoke}}
    assert resources.estimated_hours(capped, lano, "evaluate") < full / 2
    minimum = resources.estimated_hours(paper_study, ("clrs_minimum", "early", 0), "evaluate")
    assert full > 20 * minimum


def test_the_dynamics_runtime_follows_its_kept_steps_and_examples(paper_study, default_study):
    """The dynamics job evaluates every kept step of every model on `dynamics_examples` val
    examples: its estimate grows with them, and it is timed as an evaluation (floor, attempt)."""
    small = {**paper_study, "tasks": ["clrs_minimum", "clrs_floyd_warshall"]}
    hours = resources.dynamics_hours(small)
    more = {**small, "analysis": {**small["analysis"], "dynamics_examples": 1000}}
    assert resources.dynamics_hours(more) > 1.2 * hours > 0
    floor = paper_study["resources"]["paper"]["evaluate"]["runtime"]
    slow_gpu = {"assumed_gpu_tflops": 1, "assumed_decode_step_ms": 200}
    slow_gpu = {**small, "runtime_estimate": {**small["runtime_estimate"], **slow_gpu}}
    assumed = slow_gpu["runtime_estimate"]
    minutes = resources.dynamics_hours(slow_gpu) * 60 * assumed["safety_factor"]
    expected = math.ceil(minutes + assumed["startup_minutes"])
    assert resources.dynamics_runtime(slow_gpu, 2) == 2 * expected and expected > floor
    assert resources.dynamics_runtime(default_study) == resources.runtime(default_study, "evaluate")


def test_job_cost_counts_each_sizes_flops_and_decoding_steps():
    """Training: 3 forward passes per example, averaged over the training sizes; evaluation: a
    teacher-forced pass and a decoding pass per example, the train split capped and the cap
    spread over its sizes; each batch (sorted by length, as evaluation batches) decodes until its
    longest answer, plus the tokens greedy decoding may run past it, is cut off."""
    run = compose_run("clrs_sort", "fixed", "mini", 0)
    task = planned_dataset("clrs_sort", "mini", 0).task
    plan = [("train", 4, 10), ("train", 8, 10), ("test", 8, 6), ("extrap", 16, 3)]
    lengths = {
        ("train", 4): (20.0, 5.0),
        ("train", 8): (40.0, 9.0),
        ("test", 8): (40.0, 9.0),
        ("extrap", 16): (80.0, 17.0),
    }
    model = AniraModel(run.model_for(30, 80))  # real weights: the reference counts the same
    flops = {n: forward_flops(model, n) for n in (20, 40, 80)}
    batch, steps = run.train.batch_size, run.train.steps
    assert flops[80] > 4 * flops[20]  # attention: longer than linear

    cost = job_cost(run, task, plan, lengths, 30, eval_batch=4, max_train_examples=5)
    assert cost.train_flops == pytest.approx(3 * (flops[20] + flops[40]) / 2 * batch * steps)
    evaluated = 2.5 * flops[20] + 2.5 * flops[40] + 6 * flops[40] + 3 * flops[80]
    assert cost.eval_flops == pytest.approx(2 * evaluated)
    extra = 4  # EXTRA_ANSWER_TOKENS
    # train: 3 + 3 examples (2.5 rounded up) in batches of 4: answers 5 5 5 9 | 9 9; test: 6 at
    # 9 → 4 | 2; extrap: 3 at 17 → one batch
    expected = (9 + extra) + (9 + extra) + 2 * (9 + extra) + (17 + extra)
    assert cost.eval_decode_steps == expected

    capped = job_cost(run, task, plan, lengths, 30, 4, 5, max_eval_examples=3)
    evaluated = 2.5 * flops[20] + 2.5 * flops[40] + 3 * flops[40] + 3 * flops[80]
    assert capped.eval_flops == pytest.approx(2 * evaluated)
    assert capped.eval_decode_steps == expected - (9 + extra)  # test: one batch of 3
    assert cost.eval_hours(1.0, 0.0) == pytest.approx(cost.eval_flops / 1e12 / 3600)
    assert cost.eval_hours(1.0, 10.0) == pytest.approx(
        (cost.eval_flops / 1e12 + cost.eval_decode_steps * 0.01) / 3600
    )


def test_sampled_lengths_interpolate_between_the_drawn_sizes():
    """LANO's sequence is its string (size terminals) plus a fixed number of other tokens, so
    lengths drawn at three sizes per split and interpolated are exact at every size. It decodes
    three times: a sampled answer and completions of the gold one cut at ¼ and ½."""
    dataset = planned_dataset("lano", "mini", 0)
    lengths, seconds = sampled_lengths(dataset.task, dataset.plan, samples=1, sizes_per_split=3)
    assert set(lengths) == {(split, size) for split, size, _ in dataset.plan}
    assert seconds > 0
    extra = {round(length) - size for (_, size), (length, _) in lengths.items()}
    answer = {round(answer) - size for (_, size), (_, answer) in lengths.items()}
    assert len(extra) == 1 and len(answer) == 1, (extra, answer)
    assert decoding_passes(dataset.task) == 3
    assert decoding_passes(planned_dataset("brevo", "mini", 0).task) == 1


def test_a_bad_evaluation_cap_is_refused_before_any_job(default_study):
    """The caps the runtime estimate reads are validated as the evaluation validates them."""
    study = {**default_study, "overrides": {"evaluate": ["max_eval_examples=0"]}}
    with pytest.raises(StudyError, match="max_eval_examples must be a positive integer, got 0"):
        resources.resolve(study)


def test_a_model_that_cannot_fit_the_gpu_is_refused_before_any_job(default_study):
    with pytest.raises(StudyError, match="invalid study config: task lano router online: train"):
        resources.resolve({**default_study, "gpu_mem_gb": 0.001})


def test_slurm_settings_come_from_the_environment():
    env = {"ANIRA_SLURM_ACCOUNT": "acct", "ANIRA_SLURM_PARTITION": "cpu"}
    assert resources.slurm_setting("account", env) == "acct"
    assert resources.slurm_setting("gpu", env) == "cpu"  # falls back to the CPU partition
    assert resources.slurm_setting("gpu", {**env, "ANIRA_SLURM_GPU_PARTITION": "g"}) == "g"
    with pytest.raises(StudyError, match="ANIRA_SLURM_GPU_PARTITION \\(or ANIRA_SLURM_PARTITION"):
        resources.slurm_setting("gpu", {})


def finished(directory: Path, files: dict[str, bytes]) -> Path:
    """A finished output directory: `files` under a manifest of their checksums."""
    directory.mkdir(parents=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    write_manifest(directory, list(files))
    return directory


def test_integrity_names_each_damaged_file_of_an_output(tmp_path, default_study):
    output = finished(tmp_path / "ckpt", {"model.pt": b"weights", "metrics.jsonl": b"{}\n"})
    (output / "metrics.jsonl").unlink()
    (output / "model.pt").write_bytes(b"weigh")
    problems = Integrity(default_study).output_problems(str(output), "lano")
    assert set(problems) == {"metrics.jsonl", "model.pt"}
    assert problems["metrics.jsonl"] == "is missing"
    assert "does not match its checksum" in problems["model.pt"]
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    assert Integrity(default_study).output_problems(str(unfinished), "lano") == {}


def test_integrity_redoes_an_output_made_from_other_data(tmp_path, default_study):
    study = {**default_study, "results_root": str(tmp_path / "results")}
    integrity = Integrity(study)
    expected = integrity.study_data_config("lano")
    record = {"data": {"config_sha256": "0" * 64, "manifest_sha256": "1" * 64}}
    output = finished(tmp_path / "a", {"config.yaml": yaml.safe_dump(record).encode()})
    problem = integrity.output_problems(str(output), "lano")["config.yaml"]
    assert problem == (
        f"was made from data generated from another config (000000000000), "
        f"the study's is {expected[:12]}"
    )
    record["data"]["config_sha256"] = expected
    output = finished(tmp_path / "b", {"config.yaml": yaml.safe_dump(record).encode()})
    assert integrity.output_problems(str(output), "lano") == {}  # no dataset on disk to compare
    output = finished(tmp_path / "c", {"config.yaml": b"seed: 0\n"})
    assert integrity.output_problems(str(output), "lano") == {
        "config.yaml": "records no dataset it was made from"
    }


def test_integrity_regenerates_a_damaged_dataset(tmp_path, tiny_dataset, default_study):
    data = shutil.copytree(tiny_dataset["brevo"], tmp_path / "results" / "data" / "brevo")
    study = {**default_study, "results_root": str(tmp_path / "results")}
    assert Integrity(study).data_problems(str(data)) == {}
    digest = Integrity(study).data_digest("brevo")
    assert digest is not None and len(digest) == 64
    (data / "vocab.json").unlink()
    (data / "test.parquet").write_bytes((data / "test.parquet").read_bytes()[:100])
    integrity = Integrity(study)
    problems = integrity.data_problems(str(data))
    assert problems["vocab.json"] == "is missing"
    assert "does not match its checksum" in problems["test.parquet"]
    assert integrity.data_digest("brevo") is None
    # A manifest from before the content records: regenerated too.
    shutil.rmtree(data)
    old = finished(data, {"train.parquet": b"rows"})
    assert Integrity(study).data_problems(str(old)) == {
        MANIFEST: "records no row counts (written before content checks)"
    }


def test_the_committed_dvc_yaml_is_derived_from_the_default_study(default_study):
    assert (ROOT / "dvc.yaml").read_text() == dvc.dvc_yaml(default_study)
    stages = yaml.safe_load(dvc.dvc_yaml(default_study))["stages"]
    assert stages["train"]["deps"][0] == "results/mini/data"
    moved = yaml.safe_load(dvc.dvc_yaml({**default_study, "results_root": "out"}))["stages"]
    assert list(moved["evaluate"]["outs"][0]) == ["out/eval"]
    assert moved["analyze"]["deps"][:2] == ["out/eval", "out/checkpoints"]
    assert moved["figures"]["outs"][0] == {"paper_figures": {"persist": True}}
    # every code and config dependency names a path of the repository (a moved module is caught)
    owned = [path for stage in dvc.STAGES for path in stage.own]
    assert owned and [path for path in owned if not (ROOT / path).exists()] == []
