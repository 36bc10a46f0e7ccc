"""Fault injection: every fault a run can meet, injected into real processes, and what the user
sees. Bad values, a killed training, a corrupt or truncated ``last.pt``, a full disk (``ulimit
-f``), an unwritable output directory, a finished training run again; then, on a tiny study, a
file deleted, truncated or corrupted inside a dataset or checkpoint directory, through Snakemake
and through ``dvc repro`` in a scratch clone."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from anira.compose import compose
from anira.io import AniraInputError
from anira.spec import RunSpec
from anira.train import Status, train
from tests.factories import (
    ROOT,
    anira,
    checksums,
    one_error_line,
    run,
    study_copy,
    train_args,
)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("scale.train.batch_size=-4", "scale.train.batch_size must be a positive integer"),
        ("scale.train.batch_size=0", "scale.train.batch_size must be a positive integer"),
        ("scale.train.steps=10.5", "scale.train.steps must be a positive integer, got 10.5"),
        ("scale.train.warmup_steps=-1", "scale.train.warmup_steps must be an integer ≥ 0"),
        ("scale.train.lr=abc", "scale.train.lr must be a number in (0, inf], got 'abc'"),
        ("scale.train.log_every=0", "scale.train.log_every must be a positive integer"),
        ("scale.train.checkpoint_every=0", "scale.train.checkpoint_every must be a positive"),
        ("scale.train.min_lr_ratio=2", "scale.train.min_lr_ratio must be a number in [0, 1]"),
        ("scale.model.n_heads=3", "n_heads=3 must divide d_model=32"),
        ("scale.model.execution=fast", "scale.model.execution must be one of dense"),
        ("scale.model.compile=1", "scale.model.compile must be true or false, got 1"),
        ("router.gamma=-1", "router.gamma must be a number in [0, inf]"),
        ("++task.scales.mini.curriculum=1.5", "task.scales.mini.curriculum must be a number"),
        ("+task.scales.mini.training={stesp: 3}", "unknown training settings ['stesp']"),
    ],
)
def test_every_bad_training_value_is_named_when_the_spec_is_built(tmp_path, override, message):
    cfg = compose("train", train_args(tmp_path / "data", tmp_path / "out", override))
    with pytest.raises(AniraInputError) as err:
        RunSpec.from_config(cfg)
    assert message in str(err.value)


def test_bad_values_exit_2_with_one_line_before_any_work(tiny_dataset, tmp_path):
    out = tmp_path / "out"
    data = tiny_dataset["brevo"]
    for override in ("scale.train.batch_size=-4", "scale.model.n_heads=3"):
        one_error_line(anira("train", train_args(data, out, override)), override.split("=")[0])
    assert not out.exists()
    trained = tmp_path / "ckpt"
    assert train(compose("train", train_args(data, trained))) is Status.FINISHED
    base = [f"checkpoint={trained}", f"data_dir={data}", f"out_dir={out}"]
    one_error_line(anira("evaluate", [*base, "batch_size=0"]), "batch_size must be a positive")
    one_error_line(anira("evaluate", [*base, "max_train_examples=-1"]), "max_train_examples")
    assert not out.exists()


def test_sigkill_during_training_then_rerun_resumes_to_the_same_weights(
    tiny_dataset, tmp_path, capsys
):
    data = tiny_dataset["brevo"]
    steps = ["scale.train.steps=40", "scale.train.checkpoint_every=2"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    train(compose("train", train_args(data, straight, *steps)))
    process = subprocess.Popen(
        [sys.executable, "-m", "anira.train", *train_args(data, killed, *steps)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (killed / "last.json").exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model.pt").exists(), "killed too late to test resuming"
    capsys.readouterr()
    assert train(compose("train", train_args(data, killed, *steps))) is Status.FINISHED
    assert "resuming" in capsys.readouterr().out
    a = torch.load(straight / "model.pt", weights_only=True)
    b = torch.load(killed / "model.pt", weights_only=True)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    # No timing and no machine-local path in the outputs: the same run gives the same bytes.
    for name in ("model.pt", "metrics.jsonl", "config.yaml", "manifest.json"):
        assert (straight / name).read_bytes() == (killed / name).read_bytes(), name


def test_truncated_last_pt_is_one_line_naming_it(tiny_dataset, tmp_path):
    data, out = tiny_dataset["brevo"], tmp_path / "out"
    cfg = compose("train", train_args(data, out, "stop_after_steps=4"))
    assert train(cfg) is Status.STOPPED
    resume = out / "last.pt"
    resume.write_bytes(resume.read_bytes()[: resume.stat().st_size // 2])
    line = one_error_line(anira("train", train_args(data, out)), str(resume))
    assert "does not match its checksum" in line and "delete it to restart" in line


def test_file_size_limit_is_one_line_naming_the_file_and_leaves_nothing_half_written(
    tiny_dataset, tmp_path
):
    """``ulimit -f`` (the process's file-size limit) stands in for a full disk: the first
    checkpoint exceeds it (BREVO's weights at step 2 for the training dynamics, then last.pt)."""
    out = tmp_path / "out"
    result = anira("train", train_args(tiny_dataset["brevo"], out), limit_bytes=20_000)
    one_error_line(result, f"cannot write {out / 'dynamics' / 'step0000002.pt'}: File too large")
    assert [p for p in out.rglob("*") if p.is_file()] == []
    no_dynamics = train_args(
        tiny_dataset["brevo"], out, "task.scales.mini.training.dynamics_checkpoints=0"
    )
    result = anira("train", no_dynamics, limit_bytes=20_000)
    one_error_line(result, f"cannot write {out / 'last.pt'}: File too large")
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_unwritable_out_dir_is_reported_before_training(tiny_dataset, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory is needed")
    result = anira("train", train_args(tiny_dataset["brevo"], blocker / "ckpt"))
    one_error_line(result, f"cannot write {blocker / 'ckpt'}")
    assert "step" not in result.stdout


def test_finished_training_reruns_only_when_forced(tiny_dataset, tmp_path, capsys):
    data, out = tiny_dataset["brevo"], tmp_path / "out"
    assert train(compose("train", train_args(data, out))) is Status.FINISHED
    trained = (out / "model.pt").stat().st_mtime_ns
    assert train(compose("train", train_args(data, out))) is Status.UP_TO_DATE
    assert "already trained" in capsys.readouterr().out
    assert (out / "model.pt").stat().st_mtime_ns == trained
    with pytest.raises(AniraInputError, match="another configuration.*force=true"):
        train(compose("train", train_args(data, out, "scale.train.lr=0.5")))
    forced = train(compose("train", train_args(data, out, "force=true")))
    assert forced is Status.FINISHED and "force=true: retraining" in capsys.readouterr().out
    assert (out / "model.pt").stat().st_mtime_ns != trained


def test_a_study_files_bad_override_fails_while_the_dag_is_built():
    """A typo'd key and a bad value in a study's overrides stop Snakemake before any job runs."""
    for override, message in (
        ("scale.train.stesp=3", "unknown key scale.train.stesp (closest: scale.train.steps)"),
        ("scale.train.batch_size=-4", "scale.train.batch_size must be a positive integer"),
    ):
        study = f'overrides={{"train": ["{override}"]}}'
        result = run(["snakemake", "-n", "--nolock", "--config", study], check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "invalid study config: " in output and message in output, output


def jobs_run(result) -> set[str]:
    out = result.stdout + result.stderr
    return {line.split()[-1].rstrip(":") for line in out.splitlines() if "rule " in line}


@pytest.mark.slow
def test_snakemake_redoes_only_what_fails_its_manifest(tmp_path):
    repo = study_copy(tmp_path)
    results = repo / "results" / "mini"
    run(["snakemake", "--cores", "2"], cwd=repo)
    ckpt = results / "checkpoints" / "brevo" / "early" / "seed0"
    data = results / "data" / "brevo"
    before = {path: path.stat().st_mtime_ns for path in ckpt.iterdir()}
    good = checksums(results / "checkpoints")

    # A file deleted, then one truncated, inside a dataset: regenerated, no model retrained.
    (data / "vocab.json").unlink()
    result = run(["snakemake", "--cores", "2"], cwd=repo)
    assert "vocab.json: is missing" in result.stderr
    assert "generate" in jobs_run(result) and not {"train", "evaluate"} & jobs_run(result)
    (data / "train.parquet").write_bytes((data / "train.parquet").read_bytes()[:1000])
    result = run(["snakemake", "--cores", "2", "models"], cwd=repo)
    assert "train.parquet: does not match its checksum" in result.stderr
    assert jobs_run(result) == {"generate", "models"}  # the target stops at the models
    assert {path: path.stat().st_mtime_ns for path in ckpt.iterdir()} == before

    # A corrupt checkpoint: retrained (to the same bytes) and everything after it redone.
    model = ckpt / "model.pt"
    model.write_bytes(model.read_bytes()[:-10] + b"corrupted!")
    result = run(["snakemake", "--cores", "2"], cwd=repo)
    assert {"train", "evaluate", "alignment"} <= jobs_run(result)
    assert "generate" not in jobs_run(result)
    assert checksums(results / "checkpoints") == good
    again = run(["snakemake", "-n", "--cores", "2"], cwd=repo)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_dvc_repro_redoes_a_broken_dataset_and_never_retrains_a_pulled_checkpoint(tmp_path):
    """In a scratch clone: a file deleted or truncated inside a dataset is regenerated by `dvc
    repro` (no model retrained); then push, commit, and a fresh `git clone` with an empty cache
    pulls every output from the remote and, after `snakemake --touch`, has nothing to do."""
    repo = study_copy(tmp_path / "repo")
    run(["git", "init", "-q"], cwd=repo)
    run(["dvc", "repro", "-q"], cwd=repo)
    data = repo / "results" / "mini" / "data" / "brevo"
    model = next((repo / "results" / "mini" / "checkpoints").rglob("model.pt"))
    trained, trained_at = model.read_bytes(), model.stat().st_mtime_ns
    (data / "vocab.json").unlink()
    result = run(["dvc", "repro"], cwd=repo)
    assert "Running stage 'generate'" in result.stdout
    assert "Stage 'train' didn't change" in result.stdout
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    n_files = sum(1 for p in data.parent.rglob("*") if p.is_file())
    assert lock["stages"]["generate"]["outs"][0]["nfiles"] == n_files
    (data / "train.parquet").write_bytes(b"truncated")
    run(["dvc", "repro", "-f", "generate"], cwd=repo)
    assert run(["dvc", "status", "-q"], cwd=repo, check=False).returncode == 0
    assert model.stat().st_mtime_ns == trained_at
    assert os.path.getsize(data / "train.parquet") > 1000

    # A collaborator's fresh `git clone` has an empty DVC cache: everything comes from the remote.
    run(["dvc", "remote", "add", "-d", "local", str(tmp_path / "remote")], cwd=repo)
    run(["dvc", "push", "-q"], cwd=repo)
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")  # git ignores results/, as here
    run(["git", "add", "-A"], cwd=repo)
    run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "s"],
        cwd=repo,
    )
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)])
    assert not (clone / "results").exists() and not (clone / ".dvc" / "cache").exists()
    run(["dvc", "pull", "-q"], cwd=clone)
    assert (clone / model.relative_to(repo)).read_bytes() == trained
    outs = [repo / "results" / "mini" / out for out in ("data", "checkpoints", "eval", "analysis")]
    for path in (path for out in outs for path in out.rglob("*") if path.is_file()):
        assert (clone / path.relative_to(repo)).read_bytes() == path.read_bytes(), path
    run(["snakemake", "--cores", "1", "--touch"], cwd=clone)
    after = run(["snakemake", "-n", "--cores", "1"], cwd=clone)
    assert "Nothing to be done" in after.stdout + after.stderr
    assert run(["dvc", "status", "-q"], cwd=clone, check=False).returncode == 0
