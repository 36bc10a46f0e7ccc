"""The workflow as users drive it: lint, dry runs (default and SLURM profile), a tiny study end to
end through Snakemake and through the fake SLURM (the DVC scenarios are in test_faults.py).

Runs that write results work in a copy of the repository's workflow files under a temporary
directory, so they never touch the checkout's `results/`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXED_DEPTHS = ("fixed1", "fixed2", "fixed4")
SLURM_ENV = {"ANIRA_SLURM_ACCOUNT": "test-account", "ANIRA_SLURM_PARTITION": "test-partition"}


def run(args, cwd=ROOT, env=None, check=True):
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def study_copy(tmp_path: Path, study: str = "tiny") -> Path:
    """A runnable copy of the workflow whose default config is the named study."""
    for name in ("workflow", "config", "profiles", "src", ".dvc"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("tmp"))
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "slurm").symlink_to("profiles/slurm")
    grid = yaml.safe_load((ROOT / "config" / "study" / f"{study}.yaml").read_text())
    grid.update(results_root="results/mini", figures_dir="paper_figures")
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(grid))
    return tmp_path


def test_snakefmt_and_lint_are_clean():
    run(["snakefmt", "--check", "workflow/"])
    result = run(["snakemake", "--lint", "--nolock"])
    assert "Congratulations" in result.stdout + result.stderr


def test_default_dry_run_plans_every_phase():
    out = run(["snakemake", "-n", "--nolock", "--cores", "all", "--forceall"]).stdout
    for rule in ("generate", "train", "evaluate", "alignment", "fig_generalization"):
        assert f"rule {rule}:" in out or f"localrule {rule}:" in out, rule
    for rule in ("decision_timing", "probes", "pareto", "scorecard", "fig_pareto"):
        assert f"rule {rule}:" in out or f"localrule {rule}:" in out, rule
    # task_seeds: a second seed for BREVO only.
    trained = set(re.findall(r"checkpoints/(\w+)/(\w+)/seed(\d+)/manifest.json", out))
    assert {seed for task, _, seed in trained if task == "brevo"} == {"0", "1"}
    assert {seed for task, _, seed in trained if task != "brevo"} == {"0"}
    # task_routers: the fixed-depth baselines on BREVO only, with the study's one seed.
    extra = {model for model in trained if model[1] in FIXED_DEPTHS}
    assert extra == {("brevo", router, "0") for router in FIXED_DEPTHS}


def test_slurm_profile_requests_a_gpu_for_training_at_paper_scale():
    out = run(
        ["snakemake", "-n", "--nolock", "--cores", "all", "--profile", "slurm"]
        + ["--config", "scale=paper", "--forceall"],
        env=SLURM_ENV,
    ).stdout
    train_jobs = [block for block in out.split("\n\n") if "rule train:" in block]
    assert train_jobs and all("gpu=1" in block for block in train_jobs)
    assert "task=brevo" in out and "scale=paper" in out


def test_unknown_task_is_rejected_at_parse_time():
    result = run(["snakemake", "-n", "--nolock", "--config", "tasks=[nope]"], check=False)
    assert result.returncode != 0
    assert "invalid study config" in result.stdout + result.stderr


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
def test_fake_slurm_drives_a_tiny_study_through_the_real_plugin(tmp_path):
    """`tests/fake_slurm/` puts sbatch, sacct, srun, … first on PATH: sbatch logs its command
    line and runs the job at once; the real snakemake-executor-plugin-slurm does the rest."""
    repo = study_copy(tmp_path / "repo")
    state = tmp_path / "slurm"
    env = {
        **SLURM_ENV,
        "PATH": f"{ROOT / 'tests' / 'fake_slurm'}{os.pathsep}{os.environ['PATH']}",
        "FAKE_SLURM_DIR": str(state),
    }
    run(
        ["snakemake", "--cores", "all", "--profile", "slurm", "--config", "routers=[early]"]
        + ["--seconds-between-status-checks", "1"]
        + ["--slurm-init-seconds-before-status-checks", "1"],
        cwd=repo,
        env=env,
    )
    assert (repo / "paper_figures" / "fig_alignment.png").is_file()
    submitted = (state / "sbatch.log").read_text().splitlines()
    train = [line for line in submitted if "--comment rule_train_" in line]
    assert len(train) == 1 and "--gpus=1" in train[0], train
    assert "-A test-account" in train[0] and "-p test-partition" in train[0]
    figures = [line for line in submitted if "rule_fig_" in line]
    assert not figures, "figures are local rules"
