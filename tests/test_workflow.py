"""The workflow as users drive it: lint, dry runs (default and SLURM profile), a tiny study end to
end through Snakemake and through the fake SLURM (the DVC scenarios are in test_faults.py).

Runs that write results work in a copy of the repository's workflow files under a temporary
directory, so they never touch the checkout's `results/`."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest
import yaml

from anira.dataset import load_split
from anira.spec import compose_run
from tests.factories import ROOT, run, study_copy

SLURM_ENV = {"ANIRA_SLURM_ACCOUNT": "test-account", "ANIRA_SLURM_PARTITION": "test-partition"}


def test_snakefmt_and_lint_are_clean():
    run(["snakefmt", "--check", "workflow/"])
    result = run(["snakemake", "--lint", "--nolock"])
    assert "Congratulations" in result.stdout + result.stderr


def grid(tasks, routers, seeds):
    return {(t, r, s) for t in tasks for r in routers for s in seeds}


THREE = ("0", "1", "2")
DEFAULT_MODELS = grid(["lano"], ["online", "random_online"], THREE) | grid(
    ["lano"], ["fixed", "fixed1"], "0"
)
ROUTERS = ["fixed", "early", "online", "act", "expert_choice", "pondernet"]
FULL_MODELS = (
    grid(["lano", "brevo"], ROUTERS, THREE)
    | grid(["mano", "clrs_sort"], ROUTERS, "0")
    | grid(["lano", "brevo", "mano", "clrs_sort"], ["fixed1"], "0")
    | grid(["brevo"], ["fixed2", "fixed4"], "0")
    | grid(["lano"], ["random", "random_online", "fixed_mean", "fixed_mean_online"], "0")
)
LANO_MODELS = grid(["lano"], ["early", "online", "random", "random_online"], THREE) | grid(
    ["lano"],
    ["fixed", "fixed1", "fixed_mean", "fixed_mean_online", "act", "expert_choice", "pondernet"],
    "0",
)
SIZES_MODELS = (
    grid(["brevo", "clrs_sort"], ["fixed", "early", "online"], THREE)
    | grid(["mano"], ["fixed", "early", "online"], "0")
    | grid(["brevo", "clrs_sort", "mano"], ["fixed1"], "0")
)


@pytest.mark.parametrize(
    ("study", "models"),
    [
        ([], DEFAULT_MODELS),
        (["--configfile", "config/study/full.yaml"], FULL_MODELS),
        (["--configfile", "config/study/lano.yaml"], LANO_MODELS),
        (["--configfile", "config/study/sizes.yaml"], SIZES_MODELS),
    ],
    ids=["default", "full", "lano", "sizes"],
)
def test_dry_run_plans_every_phase(study, models):
    out = run(["snakemake", "-n", "--nolock", "--cores", "all", "--forceall", *study]).stdout
    for rule in ("generate", "train", "evaluate", "alignment", "fig_generalization"):
        assert f"rule {rule}:" in out or f"localrule {rule}:" in out, rule
    for rule in ("decision_timing", "probes", "pareto", "scorecard", "fig_pareto"):
        assert f"rule {rule}:" in out or f"localrule {rule}:" in out, rule
    # The default study: LANO's ANIRA-O and its random control with three seeds, the fixed
    # baselines and ANIRA-E with one (task_seeds, task_routers); the full study: every task, three
    # seeds of LANO and BREVO, and LANO's controls; the LANO study: both adaptive routers and
    # their random controls with three seeds, the other LANO models with one; the sizes study:
    # BREVO's and clrs_sort's fixed and adaptive models with three seeds, MANO's and D' = 1 with
    # one.
    trained = set(re.findall(r"checkpoints/(\w+)/(\w+)/seed(\d+)/manifest.json", out))
    assert trained == models
    # Every task has a fixed-depth frontier (fixed1 and fixed): its online models are also
    # evaluated with mode, which the frontier reads beside the trained median.
    ruled = set(
        re.findall(r"out_dir=\S+/eval/(\w+)/(\w+)-(\w+)/seed(\d+) inference_rule=(\w+)", out)
    )
    online = {
        (task, router, seed)
        for task, router, seed in trained
        if compose_run(task, router, "mini", int(seed), ()).model.router == "online"
    }
    assert ruled == {(task, router, "mode", seed, "mode") for task, router, seed in online}
    pareto = next(line for line in out.splitlines() if "anira.analysis.pareto" in line)
    assert all(f"eval/{task}/online-mode/seed{seed}" in pareto for task, _, seed in online)
    # The training dynamics read every BREVO model's kept weights, and no other task's.
    dynamics = next(line for line in out.splitlines() if "anira.analysis.dynamics" in line)
    read = set(re.findall(r"--model \S+/checkpoints/(\w+)/(\w+)/seed(\d+) ", dynamics))
    assert read == {model for model in trained if model[0] == "brevo"}
    # Longest first: a training's priority is its layer-steps, plus those of the controls that
    # wait for its evaluation (which gets theirs), a dataset's the sum of its task's trainings.
    specs = {model: compose_run(*model[:2], "mini", int(model[2]), ()) for model in trained}
    cost = {model: s.train.steps * (s.model.max_depth + 2) for model, s in specs.items()}
    waiting = {
        model: sum(c for other, c in cost.items() if specs[other].match == model[1]
                   and other[0::2] == model[0::2])
        for model in trained
    }  # fmt: skip
    trainings = job_priorities(out, "train")
    assert trainings == {model: cost[model] + waiting[model] for model in trained}
    evaluations = job_priorities(out, "evaluate")
    assert evaluations == {model: waiting[model] for model in trained}
    if models == DEFAULT_MODELS:  # each ANIRA-O seed unblocks its random control
        assert all(waiting["lano", "online", seed] == cost["lano", "random_online", seed]
                   for seed in THREE)  # fmt: skip
    for (task,), priority in job_priorities(out, "generate").items():
        own = [c for (name, _, _), c in cost.items() if name == task]
        assert priority == sum(own) > max(own)


def job_priorities(dry_run: str, rule: str) -> dict[tuple[str, ...], float]:
    """{wildcard values: priority} of the jobs of `rule` in a dry run's output."""
    jobs = {}
    for block in dry_run.split("\n\n"):
        if re.search(rf"^(local)?rule {rule}:", block, re.MULTILINE):
            wildcards = re.search(r"wildcards: (.*)", block).group(1)
            values = tuple(item.split("=")[1] for item in wildcards.split(", "))
            priority = re.search(r"priority: (\S+)", block)  # not printed when 0
            jobs[values] = float(priority.group(1)) if priority else 0.0
    return jobs


def test_slurm_profile_requests_a_gpu_for_training_at_paper_scale():
    out = run(
        ["snakemake", "-n", "--nolock", "--cores", "all", "--profile", "slurm"]
        + ["--config", "scale=paper", "--forceall"],
        env=SLURM_ENV,
    ).stdout
    train_jobs = [block for block in out.split("\n\n") if "rule train:" in block]
    assert train_jobs and all("gpu=1" in block for block in train_jobs)
    assert "task=lano" in out and "scale=paper" in out


def job_resources(dry_run: str, rule: str) -> dict[str, dict[str, str]]:
    """{task: {resource: value}} of the jobs of `rule` in a dry run's output."""
    jobs = {}
    for block in dry_run.split("\n\n"):
        if re.search(rf"^(local)?rule {rule}:", block, re.MULTILINE):
            task = re.search(r"task=([^,\s]+)", block).group(1)
            line = re.search(r"resources: (.*)", block).group(1)
            jobs[task] = dict(item.split("=", 1) for item in line.split(", "))
    return jobs


def test_slurm_resources_follow_each_jobs_memory_plan():
    """Under the SLURM profile (fake SLURM on PATH), at paper scale, the longest-sequence task
    (Floyd–Warshall, ≈4,500 tokens at its extrapolation size) asks for more host and GPU memory
    than a short one (minimum, ≈70 tokens), for training and for evaluation, and its training
    asks for more time (its estimated compute, above the phase's floor, where minimum's stays)."""
    env = {**SLURM_ENV, "PATH": f"{ROOT / 'tests' / 'fake_slurm'}{os.pathsep}{os.environ['PATH']}"}
    out = run(
        ["snakemake", "-n", "--nolock", "--cores", "all", "--profile", "slurm", "--forceall"]
        + ["--config", "scale=paper", "tasks=[clrs_floyd_warshall,clrs_minimum]"]
        + ["routers=[early]", "task_routers={}", "--until", "evaluate"],
        env=env,
    ).stdout
    for rule in ("train", "evaluate"):
        jobs = job_resources(out, rule)
        long, short = jobs["clrs_floyd_warshall"], jobs["clrs_minimum"]
        assert int(long["gpu_mem_mb"]) > 2 * int(short["gpu_mem_mb"]), (rule, long, short)
        extra = int(long["gpu_mem_mb"]) - int(short["gpu_mem_mb"])  # on the same floor
        assert int(long["mem_mb"]) - int(short["mem_mb"]) >= extra - 1, (rule, long, short)
        assert int(long["gpu_mem_mb"]) <= 80_000
    floor = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    floor = floor["properties"]["resources"]["default"]["paper"]["train"]["runtime"]
    trainings = job_resources(out, "train")
    long, short = trainings["clrs_floyd_warshall"], trainings["clrs_minimum"]
    assert int(long["runtime"]) > 2 * int(short["runtime"]) and int(short["runtime"]) == floor


def test_a_study_whose_training_cannot_fit_the_gpu_fails_before_any_job():
    result = run(
        ["snakemake", "-n", "--nolock", "--config", "tasks=[brevo]", "routers=[early]"]
        + ["task_routers={}", "gpu_mem_gb=0.001"],
        check=False,
    )
    assert result.returncode != 0
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "gpu_mem_gb" in line]
    assert errors and "task brevo router early: training needs" in errors[0], errors
    assert "more than gpu_mem_gb=0.001" in errors[0]


def test_unknown_task_is_rejected_at_parse_time():
    result = run(["snakemake", "-n", "--nolock", "--config", "tasks=[nope]"], check=False)
    assert result.returncode != 0
    assert "invalid study config" in result.stdout + result.stderr


def tree_state(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root``: its bytes and modification time."""
    return {
        str(path.relative_to(root)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.mark.slow
def test_dry_run_lists_a_broken_dataset_as_to_do_and_changes_nothing(tmp_path):
    """A dry run on a tree whose dataset fails its manifest (a file deleted, another truncated)
    reports what it would redo, lists the job, and leaves every file as it was (the real run
    that redoes it: test_faults.py)."""
    repo = study_copy(tmp_path)
    run(["snakemake", "--cores", "1", "datasets"], cwd=repo)
    intact = run(["snakemake", "-n", "--cores", "1", "datasets"], cwd=repo)
    assert "Nothing to be done" in intact.stdout + intact.stderr
    data = repo / "results" / "mini" / "data" / "brevo"
    (data / "vocab.json").unlink()
    (data / "test.parquet").write_bytes((data / "test.parquet").read_bytes()[:100])
    before = tree_state(repo / "results")

    dry = run(["snakemake", "-n", "--cores", "1", "datasets"], cwd=repo)
    assert tree_state(repo / "results") == before
    assert f"{data.relative_to(repo)} would be redone (dry run)" in dry.stderr
    assert "vocab.json: is missing" in dry.stderr
    assert "test.parquet: does not match its checksum" in dry.stderr
    assert re.search(r"rule generate:\n(.*\n)*?\s+reason: Forced execution", dry.stdout)


@pytest.mark.slow
def test_tiny_study_end_to_end_then_nothing_to_do(tmp_path):
    repo = study_copy(tmp_path)
    run(["snakemake", "--cores", "2"], cwd=repo)
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    for name in schema["properties"]["figures"]["default"]:
        assert (repo / "paper_figures" / f"{name}.png").stat().st_size > 0
    again = run(["snakemake", "-n", "--cores", "2"], cwd=repo)
    assert "Nothing to be done" in again.stdout + again.stderr
    # The HTML report embeds every figure of the study and the scorecard, each with its caption.
    run(["snakemake", "--report", "report.html"], cwd=repo)
    html = (repo / "report.html").read_text()
    for name in schema["properties"]["figures"]["default"]:
        assert f"{name}.png" in html, name
        caption = (ROOT / "workflow" / "report" / f"{name}.rst").read_text().split()[:4]
        assert " ".join(caption) in html, name
    assert "scorecard.csv" in html


@pytest.mark.slow
def test_paper_smoke_runs_the_longest_sequence_task_at_its_real_shapes(tmp_path):
    """The paper-shape smoke study (config/study/paper_smoke.yaml) on Floyd–Warshall, the paper's
    longest sequences: generation in two shards, two training steps of the paper-size model in
    micro-batches planned for its 0.5 GB "GPU", and the cached evaluation of every split at a
    halved batch, its ≈ 4,500-token extrapolation example included (≈ 70 CPU-seconds,
    docs/cluster.md)."""
    repo = study_copy(tmp_path, "paper_smoke")
    study = ["--config", "tasks=[clrs_floyd_warshall]", "routers=[early]"]
    run(["snakemake", "--cores", "1", "evaluations", *study], cwd=repo)
    results = repo / "results" / "mini"  # study_copy's results root
    log = (results / "logs/train/clrs_floyd_warshall/early/seed0.log").read_text()
    micro, accumulated = map(int, re.search(r"micro-batch (\d+) × (\d+)", log).groups())
    assert micro < 8 and accumulated > 1, log  # 8 sequences do not fit in 0.5 GB at once
    evaluation = results / "eval/clrs_floyd_warshall/early/seed0"
    recorded = yaml.safe_load((evaluation / "config.yaml").read_text())
    eval_batch = compose_run("clrs_floyd_warshall", "early", "paper", 0).eval_batch_size
    assert recorded["batch_size"] < eval_batch  # halved by the evaluation's memory plan
    data = results / "data/clrs_floyd_warshall"
    for split in ("val", "test", "interp", "extrap"):
        examples = pd.read_parquet(evaluation / f"{split}.examples.parquet")
        frame = load_split(data, split).set_index("id")
        assert 0 < len(examples) <= 6, split  # max_eval_examples
        longest = frame["tokens"].map(len).max()
        assert frame.loc[examples["example_id"], "tokens"].map(len).max() == longest, split
    assert longest > 4000  # the extrapolation size's sequence, decoded


def submitted_jobs(state: Path) -> dict[str, list[str]]:
    """rule name → the sbatch command lines submitted for it, in order."""
    jobs: dict[str, list[str]] = {}
    for line in (state / "sbatch.log").read_text().splitlines():
        comment = shlex.split(line)[shlex.split(line).index("--comment") + 1]
        rule = re.match(r"rule_(.+?)(_wildcards_.*)?$", comment).group(1)
        jobs.setdefault(rule, []).append(line)
    return jobs


def option(line: str, flag: str) -> str | None:
    """The value of ``flag`` in an sbatch line (``-t 30`` and ``--gpus=1`` forms)."""
    args = shlex.split(line)
    for i, arg in enumerate(args):
        if arg == flag:
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
    return None


def reported_states(state: Path) -> dict[str, list[str]]:
    """job id → the states sacct reported for it, repeats collapsed."""
    states: dict[str, list[str]] = {}
    for line in (state / "sacct.log").read_text().splitlines():
        job, value = line.split("|")
        seen = states.setdefault(job, [])
        if not seen or seen[-1] != value:
            seen.append(value)
    return states


@pytest.mark.slow
def test_fake_slurm_drives_a_tiny_study_through_the_real_plugin(tmp_path):
    """`tests/fake_slurm/` puts sbatch, sacct, srun, … first on PATH: sbatch queues each job and a
    detached runner moves it PENDING → RUNNING → COMPLETED, each state seen by sacct; the first
    training job fails once and its retry succeeds; the real snakemake-executor-plugin-slurm does
    the rest. Every rule's submission is checked for its resources, then an evaluation rerun
    without a GPU partition shows the fallback to the CPU partition."""
    repo = study_copy(tmp_path / "repo")
    state = tmp_path / "slurm"
    env = {
        **SLURM_ENV,
        "ANIRA_SLURM_GPU_PARTITION": "test-gpu",
        "PATH": f"{ROOT / 'tests' / 'fake_slurm'}{os.pathsep}{os.environ['PATH']}",
        "FAKE_SLURM_DIR": str(state),
        "FAKE_SLURM_FAIL_ONCE": "rule_train_",
    }
    polling = ["--seconds-between-status-checks", "1"]
    polling += ["--slurm-init-seconds-before-status-checks", "1"]
    study = ["snakemake", "--cores", "all", "--profile", "slurm", "--config", "routers=[early]"]
    run([*study, *polling], cwd=repo, env=env)
    assert (repo / "paper_figures" / "fig_alignment.png").is_file()

    jobs = submitted_jobs(state)
    assert {"generate", "train", "evaluate", "generalization", "alignment", "dynamics"} <= set(jobs)
    assert not [rule for rule in jobs if rule.startswith("fig_")], "figures are local rules"
    resources = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    mini = resources["properties"]["resources"]["default"]["mini"]
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())["set-resources"]
    # Rules that run models take a GPU and the resources of their phase; the dynamics evaluate.
    phase = {"generate": "generate", "train": "train", "evaluate": "evaluate"}
    phase |= {"evaluate_rule": "evaluate", "dynamics": "evaluate"}
    for rule, lines in jobs.items():
        expected = mini[phase.get(rule, "analyze")]
        on_gpu = phase.get(rule) in ("train", "evaluate")
        for attempt, line in enumerate(lines, start=1):
            assert option(line, "-A") == "test-account", line
            assert option(line, "-p") == ("test-gpu" if on_gpu else "test-partition"), line
            mem = int(option(line, "--mem"))
            if phase.get(rule) in ("train", "evaluate") and rule != "dynamics":
                assert mem > expected["mem_mb"], line  # the floor plus the job's memory plan
            else:
                assert mem == expected["mem_mb"], line
            assert option(line, "-t") == str(expected["runtime"] * attempt), line
            assert option(line, "--gpus") == ("1" if on_gpu else None), line
            cpus = profile.get(rule, {}).get("cpus_per_task")
            assert option(line, "--cpus-per-task") == (str(cpus) if cpus else "1"), line
    # The failed training job was submitted again, with twice the runtime; nothing else was.
    assert [len(lines) for rule, lines in jobs.items() if rule != "train"] == [1] * (len(jobs) - 1)
    assert len(jobs["train"]) == 2

    states = reported_states(state)
    failed = (state / "failed_once").read_text()
    assert states.pop(failed) == ["PENDING", "RUNNING", "FAILED"]
    assert len(states) == sum(len(lines) for lines in jobs.values()) - 1
    assert all(seen == ["PENDING", "RUNNING", "COMPLETED"] for seen in states.values()), states

    # Without ANIRA_SLURM_GPU_PARTITION the GPU rules fall back to the CPU partition.
    del env["ANIRA_SLURM_GPU_PARTITION"], env["FAKE_SLURM_FAIL_ONCE"]
    (state / "sbatch.log").unlink()
    run([*study, *polling, "--forcerun", "evaluate", "--until", "evaluate"], cwd=repo, env=env)
    rerun = submitted_jobs(state)
    assert list(rerun) == ["evaluate"]
    assert option(rerun["evaluate"][0], "-p") == "test-partition"
