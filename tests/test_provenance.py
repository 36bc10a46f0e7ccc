"""Provenance faults, injected into real processes: every output knows the exact inputs it came
from. A split corrupted under a regenerated manifest, a model evaluated on another dataset, a
sequence longer than the model's context, bad overrides and unusable paths; then, on the tiny
study, two study files sharing one results root and a damaged dataset, checkpoint and evaluation
at once, each run ending in the tree a fresh run gives."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from anira.compose import compose
from anira.dataset import write_dataset_manifest
from anira.generate import generate_dataset
from anira.layout import data_files
from anira.spec import DatasetSpec
from anira.train import Status, train
from tests.factories import (
    ROOT,
    anira,
    checksums,
    one_error_line,
    run,
    study_copy,
    tiny_task,
    train_args,
)

DIGEST = r"[0-9a-f]{12}"


def corrupt_copy(source, target, split, edit):
    """A copy of a dataset whose ``split`` is rewritten by ``edit(frame, dataset)``, under a
    manifest regenerated as the generator writes it: checksums and content records match."""
    shutil.copytree(source, target)
    path = target / f"{split}.parquet"
    frame = edit(pd.read_parquet(path), target)
    frame.reset_index(drop=True).to_parquet(path, index=False)
    write_dataset_manifest(target, data_files())
    return target


def duplicated(frame, _):
    return pd.concat([frame, frame.iloc[:5]])


def shuffled(frame, _):
    return frame.sample(frac=1.0, random_state=0)


def leaked_test_rows(frame, dataset):
    """The token columns of test examples copied over train rows of the same size (ids, sizes
    and counts unchanged: only the content check can see it)."""
    test = pd.read_parquet(dataset / "test.parquet")
    frame = frame.copy()
    for column in [c for c in frame.columns if c not in ("id", "split", "size")]:
        for i, size in enumerate(sorted(set(test["size"]))):
            row = frame.index[frame["size"] == size][i]
            frame.at[row, column] = test[test["size"] == size].iloc[0][column]
    return frame


@pytest.mark.parametrize(
    ("split", "edit", "message"),
    [
        ("train", duplicated, "repeats example ids"),
        ("test", shuffled, "holds its rows out of generation order"),
        ("train", leaked_test_rows, "examples repeat a training example"),
    ],
    ids=["duplicated", "shuffled", "test-in-train"],
)
def test_a_regenerated_manifest_cannot_bless_a_corrupted_split(
    tiny_dataset, tmp_path, split, edit, message
):
    data = corrupt_copy(tiny_dataset["brevo"], tmp_path / "data", split, edit)
    out = tmp_path / "out"
    one_error_line(anira("train", train_args(data, out)), message)
    assert not out.exists()


def test_summary_counts_are_checked(tiny_dataset, tmp_path):
    """Rows dropped from a split and both the summary's and the manifest's counts rewritten to
    match would pass every check; dropped rows with only the manifest regenerated do not."""
    data = corrupt_copy(tiny_dataset["brevo"], tmp_path / "data", "val", lambda f, _: f.iloc[:-2])
    one_error_line(anira("train", train_args(data, tmp_path / "out")), "summary.json says")


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    assert train(compose("train", train_args(tiny_dataset["brevo"], out))) is Status.FINISHED
    return out


def other_dataset(tmp_path, *overrides):
    cfg = compose("generate", [*tiny_task("brevo"), *overrides, "seed=1", "out_dir=-"])
    generate_dataset(DatasetSpec.resolve(cfg.task, "mini", 1), tmp_path / "other")
    return tmp_path / "other"


def test_a_checkpoint_records_its_data_and_evaluation_refuses_other_data(
    tiny_dataset, trained, tmp_path
):
    recorded = yaml.safe_load((trained / "config.yaml").read_text())["data"]
    other = other_dataset(tmp_path)
    out = tmp_path / "eval"
    base = [f"checkpoint={trained}", f"out_dir={out}", "splits=[test]"]
    line = one_error_line(anira("evaluate", [*base, f"data_dir={other}"]), "allow_other_data=true")
    assert recorded["manifest_sha256"][:12] in line
    assert len(re.findall(DIGEST, line)) == 2 and not out.exists()
    # A deliberate transfer runs and says so; its own dataset records both digests.
    assert anira("evaluate", [*base, f"data_dir={other}", "allow_other_data=true"]).returncode == 0
    record = yaml.safe_load((out / "config.yaml").read_text())
    assert record["allow_other_data"] is True
    assert record["data"]["manifest_sha256"] != recorded["manifest_sha256"]
    own = tmp_path / "own"
    command = [f"checkpoint={trained}", f"data_dir={tiny_dataset['brevo']}", f"out_dir={own}"]
    assert anira("evaluate", [*command, "splits=[test]"]).returncode == 0
    record = yaml.safe_load((own / "config.yaml").read_text())
    assert record["data"] == recorded and record["allow_other_data"] is False
    # Training again on other data in the same out_dir is refused too.
    line = one_error_line(anira("train", train_args(other, trained)), "force=true")
    assert len(re.findall(DIGEST, line)) == 2


def test_a_sequence_longer_than_the_context_is_refused_before_any_work(trained, tmp_path):
    """Another seed with more examples per size (same sizes, same vocabulary) draws a longer
    sequence than any the model was built for; evaluating it is refused before any split."""
    longer = other_dataset(tmp_path, "task.scales.mini.n_eval_per_size=100")
    out = tmp_path / "eval"
    result = anira(
        "evaluate",
        [f"checkpoint={trained}", f"data_dir={longer}", f"out_dir={out}", "allow_other_data=true"],
    )
    one_error_line(result, "has a sequence of 49 tokens, longer than the context", "(43)")
    assert result.stdout == "" and not out.exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("scale.train.stesp=3", "unknown key scale.train.stesp (closest: scale.train.steps)"),
        ("sede=3", "unknown key sede (closest: seed)"),
        ("task.scales.mini.n_trian=5", "(closest: task.scales.mini.n_train)"),
        ("scale.train.steps=１０", "cannot parse override 'scale.train.steps=１０' (non-ASCII"),
        ("scale.train.steps=[1", "cannot parse override 'scale.train.steps=[1'"),
    ],
)
def test_every_bad_override_is_one_line_exit_2(tmp_path, override, message):
    result = anira("train", ["task=brevo", override, "data_dir=x", f"out_dir={tmp_path / 'o'}"])
    one_error_line(result, message)


@pytest.mark.parametrize("root", ["results/tïny", "results/tiny run"])
def test_an_unusable_results_root_is_refused_while_the_dag_is_built(root):
    result = run(["snakemake", "-n", "--nolock", "--config", f"results_root={root}"], check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"invalid study config: results_root {root!r} has whitespace or non-ASCII" in output
    assert not (ROOT / root.split()[0]).exists()


# The tiny study end to end: the datasets, models and evaluations (the analyses read nothing else).
OUTPUTS = ("data", "checkpoints", "eval")


def snakemake(repo):
    return run(
        ["snakemake", "--cores", "2", "evaluations"],
        cwd=repo,
        env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )


def set_n_train(repo, n_train):
    """The study file of ``repo`` with another training-set size (as a second study file on the
    same results root would have)."""
    path = repo / "config" / "config.yaml"
    study = yaml.safe_load(path.read_text())
    study["overrides"]["generate"][0] = f"task.scales.mini.n_train={n_train}"
    path.write_text(yaml.safe_dump(study))


def outputs(repo):
    results = repo / "results" / "mini"
    return {name: checksums(results / name) for name in OUTPUTS}


@pytest.fixture(scope="module")
def fresh_128(tmp_path_factory):
    """A fresh run of the tiny study with ``n_train=128``: its repository copy and its outputs."""
    repo = study_copy(tmp_path_factory.mktemp("fresh"))
    set_n_train(repo, 128)
    snakemake(repo)
    return repo, outputs(repo)


@pytest.mark.slow
def test_switching_study_files_on_one_results_root_redoes_what_their_data_changes(
    tmp_path, fresh_128
):
    repo = study_copy(tmp_path)
    snakemake(repo)  # n_train 256
    fresh_256 = outputs(repo)
    set_n_train(repo, 128)
    result = snakemake(repo)
    assert outputs(repo) == fresh_128[1]
    assert "was made from data generated from another config" in result.stderr
    log = (repo / "results/mini/logs/train/brevo/early/seed0.log").read_text()
    assert "128 examples" in log
    set_n_train(repo, 256)
    snakemake(repo)
    assert outputs(repo) == fresh_256


@pytest.mark.slow
def test_a_damaged_dataset_checkpoint_and_evaluation_are_all_redone_in_one_run(tmp_path, fresh_128):
    repo = tmp_path / "repo"
    shutil.copytree(fresh_128[0], repo, symlinks=True)
    results = repo / "results" / "mini"
    train_split = results / "data/brevo/train.parquet"
    train_split.write_bytes(train_split.read_bytes()[:1000])
    model = results / "checkpoints/brevo/early/seed0/model.pt"
    model.write_bytes(model.read_bytes()[:-10] + b"corrupted!")
    (results / "eval/brevo/fixed/seed0/test.examples.parquet").unlink()
    result = snakemake(repo)
    assert "train.parquet: does not match its checksum" in result.stderr
    assert "model.pt: does not match its checksum" in result.stderr
    assert outputs(repo) == fresh_128[1]
    again = run(["snakemake", "-n", "--cores", "2", "evaluations"], cwd=repo)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_a_study_file_evaluates_the_digest_it_will_generate(tmp_path):
    """The workflow's prediction of a dataset's config digest (compared with the one each model
    recorded) is the digest of the config.yaml generate writes."""
    from anira.io import read_manifest
    from anira.spec import dataset_config_sha256

    overrides = ("task.scales.mini.n_train=96", "task.scales.mini.n_eval_per_size=4")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "anira.generate",
            "task=brevo",
            "scale=mini",
            "seed=3",
            f"out_dir={tmp_path}",
            *overrides,
        ],
        check=True,
        capture_output=True,
    )
    predicted = dataset_config_sha256("brevo", "mini", 3, overrides)
    assert read_manifest(tmp_path)["config.yaml"] == predicted
    assert dataset_config_sha256("brevo", "mini", 4, overrides) != predicted
