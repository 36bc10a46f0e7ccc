"""The ``anira.generate`` entry point and the shared ``anira.cli`` helpers, run as a user would."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from anira.compose import CONFIG_DIR, check_group_choices
from anira.dataset import load_split
from anira.io import AniraInputError
from anira.layout import SPLITS
from tests.factories import run_generate

SMALL = ["task.scales.mini.n_train=300", "task.scales.mini.n_eval_per_size=20"]


def test_config_dir_is_the_repository_config():
    assert (CONFIG_DIR / "generate.yaml").is_file() and (
        CONFIG_DIR / "task" / "brevo.yaml"
    ).is_file()


def test_check_group_choices():
    check_group_choices(["task=mano", "scale=mini", "seed=3", "out_dir=x", "task.params.a=1"])
    with pytest.raises(AniraInputError, match="unknown task 'nope'.*brevo"):
        check_group_choices(["task=nope"])
    with pytest.raises(AniraInputError, match="unknown scale"):
        check_group_choices(["seed=1", "scale=huge"])


def test_generate_writes_dataset_and_nothing_else(tmp_path):
    result = run_generate(tmp_path, "task=mano", "seed=1", "out_dir=data", *SMALL)
    assert result.returncode == 0, result.stderr
    assert "train   1:100 2:100 4:100\n" in result.stdout  # L=1 is train_only at mini
    assert "test    2:20 4:20  rejected:" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no outputs/, .hydra/, logs
    files = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert files == sorted(
        [f"{s}.parquet" for s in SPLITS]
        + ["vocab.json", "config.yaml", "summary.json", "manifest.json"]
    )
    assert len(load_split(tmp_path / "data", "extrap")) == 40
    again = run_generate(tmp_path, "task=mano", "seed=1", "out_dir=again", *SMALL)
    assert again.returncode == 0, again.stderr
    for name in files:
        assert (tmp_path / "data" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


@pytest.mark.parametrize(
    "args, message",
    [
        (["task=nope"], "unknown task 'nope'"),
        (["scale=huge"], "unknown scale 'huge'"),
        (["task=mano", "task.scales.mini.interp=[5]"], "interp size 5"),
        (["task=brevo", "task.scales.mini.extrap=[4]"], "extrap size 4"),
        (["task=brevo", "task.scales.mini.train=[1,2,6]"], "minimum"),
        (["task=mano", "task.scales.mini.params.modulus=1"], "modulus"),
        (["seed=-3"], "seed"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    result = run_generate(tmp_path, "out_dir=data", *args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert message in result.stderr
    assert not any(tmp_path.iterdir())


def test_config_dir_override(tmp_path):
    code = "from anira.compose import CONFIG_DIR; print(CONFIG_DIR)"
    env = {**os.environ, "ANIRA_CONFIG_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(tmp_path.resolve())
